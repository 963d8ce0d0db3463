"""The answer of ``/embeddings``: a deterministic unit vector per input, of the model's real
size, as floats or as base64 float32."""

from __future__ import annotations

import array
import base64
import hashlib
import math
import struct
import sys
from typing import Any, Final

from .... import _json
from ..validation import embedding_inputs
from .context import Context

# The size of each OpenAI embedding model's vectors; other models get the most common size.
_EMBEDDING_SIZES: Final = {
    "text-embedding-3-small": 1536,
    "text-embedding-3-large": 3072,
    "text-embedding-ada-002": 1536,
}
_DEFAULT_EMBEDDING_SIZE: Final = 1536


def _vector(item: object, dimensions: int) -> list[float]:
    """A deterministic unit vector derived from a hash of ``item``."""
    seed = item.encode() if isinstance(item, str) else _json.dumps(item)
    values: list[float] = []
    block = 0
    while len(values) < dimensions:
        digest = hashlib.sha256(seed + block.to_bytes(4, "little")).digest()
        values.extend(word / 2147483648.0 - 1.0 for word in struct.unpack("<8I", digest))
        block += 1
    del values[dimensions:]
    norm = math.sqrt(sum(value * value for value in values)) or 1.0
    return [value / norm for value in values]


def _float32_base64(values: list[float]) -> str:
    packed = array.array("f", values)
    if sys.byteorder != "little":  # pragma: no cover - big-endian hosts only
        packed.byteswap()
    return base64.b64encode(packed.tobytes()).decode("ascii")


def answer(body: dict[str, Any], context: Context) -> dict[str, Any]:
    model = context.model
    dimensions = body.get("dimensions") or context.embedding_dimensions
    if dimensions is None:
        dimensions = _EMBEDDING_SIZES.get(model, _DEFAULT_EMBEDDING_SIZE)
    as_base64 = body.get("encoding_format") == "base64"
    data: list[dict[str, Any]] = []
    for index, item in enumerate(embedding_inputs(body)):
        vector = _vector(item, dimensions)
        data.append(
            {
                "object": "embedding",
                "index": index,
                "embedding": _float32_base64(vector) if as_base64 else vector,
            }
        )
    tokens = context.plan.prompt_tokens
    return {
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }
