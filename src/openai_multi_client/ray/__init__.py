"""openai-multi-client as a Ray Data stage: requests from a dataset's rows, sent by one
:class:`~openai_multi_client.AsyncMultiClient` per actor, with the keys' limits shared across
the cluster through Redis (``shared_limits="redis://..."``). Needs the ``ray`` extra
(``pip install 'openai-multi-client[ray]'``).

* :func:`build_processor` returns a callable from a ``ray.data.Dataset`` to the dataset of
  results, as ``ray.data.llm.build_processor`` does;
* :class:`OpenAIStage` is the stage itself, for ``Dataset.map_batches``.

Each output row is its input row plus ``response`` (the body as a JSON string), ``error``
(``"ClassName: message"`` or null), ``status_code``, ``usage`` (a struct of token counts) and
``latency``: see :data:`RESULT_SCHEMA`.
"""

from __future__ import annotations

try:
    import pyarrow  # noqa: F401
    import ray.data  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        f"openai_multi_client.ray needs Ray Data: pip install 'openai-multi-client[ray]' ({exc})"
    ) from exc

from ._processor import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_MAX_CONCURRENT_BATCHES,
    DEFAULT_NUM_CPUS,
    Processor,
    build_processor,
)
from ._rows import RESULT_COLUMNS, RESULT_SCHEMA
from ._stage import OpenAIStage

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_MAX_CONCURRENT_BATCHES",
    "DEFAULT_NUM_CPUS",
    "RESULT_COLUMNS",
    "RESULT_SCHEMA",
    "OpenAIStage",
    "Processor",
    "build_processor",
]
