"""Test helpers: a mock OpenAI server, a virtual clock, a mock transport, a throwaway Redis.

Nothing here talks to the real API, so pipelines can be tested without spending money. The
pytest fixtures ``mock_openai`` and ``mock_openai_factory`` are available in any project that
installs this package (they come from :mod:`openai_multi_client.testing.pytest_plugin`).
The server (and aiohttp.web with it) is imported only when first used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._fake_clock import FakeClock
from ._mock_transport import MockTransport, error_response, json_response, sse_response
from ._redis_server import RedisServer, RedisServerError

if TYPE_CHECKING:
    from ._mock.batch_options import BatchOptions
    from ._mock.options import Faults, KeyLimits
    from ._mock.server import MockOpenAIServer

__all__ = [
    "BatchOptions",
    "FakeClock",
    "Faults",
    "KeyLimits",
    "MockOpenAIServer",
    "MockTransport",
    "RedisServer",
    "RedisServerError",
    "error_response",
    "json_response",
    "sse_response",
]

# Where the names imported on first use live: the server needs aiohttp.web, its options do not.
_LAZY_NAMES = {
    "BatchOptions": "batch_options",
    "Faults": "options",
    "KeyLimits": "options",
    "MockOpenAIServer": "server",
}


def __getattr__(name: str) -> Any:
    module = _LAZY_NAMES.get(name)
    if module is not None:
        return getattr(importlib.import_module(f"._mock.{module}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
