"""Test helpers: a mock OpenAI server, a virtual clock, a mock transport, a throwaway Redis.

Nothing here talks to the real API, so pipelines can be tested without spending money. The
pytest fixtures ``mock_openai`` and ``mock_openai_factory`` are available in any project that
installs this package (they come from :mod:`openai_multi_client.testing.pytest_plugin`).
The server (and aiohttp.web with it) is imported only when first used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._fake_clock import FakeClock
from ._mock_transport import MockTransport, error_response, json_response, sse_response
from ._redis_server import RedisServer, RedisServerError

if TYPE_CHECKING:
    from ._mock.server import Faults, KeyLimits, MockOpenAIServer

__all__ = [
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

_SERVER_NAMES = frozenset({"Faults", "KeyLimits", "MockOpenAIServer"})


def __getattr__(name: str) -> Any:
    if name in _SERVER_NAMES:
        from ._mock import server

        return getattr(server, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
