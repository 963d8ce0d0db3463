"""JSON encoding in one place: orjson when installed (the ``speed`` extra), else the stdlib."""

from __future__ import annotations

import json
from typing import Any

try:
    import orjson
except ImportError:  # pragma: no cover - depends on the environment
    orjson = None


def dumps(value: Any) -> bytes:
    """Compact UTF-8 JSON. Raises ``TypeError`` for values JSON cannot represent."""
    if orjson is not None:
        try:
            return orjson.dumps(value)  # type: ignore[no-any-return]
        except orjson.JSONEncodeError as exc:
            raise TypeError(str(exc)) from exc
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def loads(data: bytes | str) -> Any:
    """Parse JSON; raises ``ValueError`` on malformed input."""
    if orjson is not None:
        return orjson.loads(data)
    return json.loads(data)
