"""pytest fixtures for code that talks to OpenAI: a mock OpenAI server on 127.0.0.1.

Registered through the ``pytest11`` entry point, so installing the package makes the fixtures
available to every test suite:

* ``mock_openai``: a running :class:`~openai_multi_client.testing._mock.server.MockOpenAIServer`
  with default settings (any non-empty key, no limits), in its own thread, one per test;
  point a client at ``mock_openai.base_url``.
* ``mock_openai_factory``: call it with the server's keyword arguments to get more servers
  (limits, faults, latency, ...), each started in its own thread; all are stopped when the
  test ends.

The servers run in their own threads and event loops, so they serve sync tests and async tests
(whatever their event loop) alike. The server module is imported only when a fixture is used,
so the plugin costs nothing to test suites that never use it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from ._mock.server import MockOpenAIServer


@pytest.fixture
def mock_openai() -> Iterator[MockOpenAIServer]:
    """A running mock OpenAI server with default settings, stopped after the test."""
    from ._mock.server import MockOpenAIServer

    server = MockOpenAIServer()
    server.start_in_thread()
    try:
        yield server
    finally:
        server.stop_in_thread()


@pytest.fixture
def mock_openai_factory() -> Iterator[Callable[..., MockOpenAIServer]]:
    """A function taking ``MockOpenAIServer``'s keyword arguments and returning a started
    server; every server it made is stopped after the test."""
    from ._mock.server import MockOpenAIServer

    servers: list[MockOpenAIServer] = []

    def make(**kwargs: Any) -> MockOpenAIServer:
        server = MockOpenAIServer(**kwargs)
        server.start_in_thread()
        servers.append(server)
        return server

    try:
        yield make
    finally:
        errors: list[BaseException] = []
        for server in reversed(servers):
            try:
                server.stop_in_thread()
            except Exception as exc:  # stop the others before reporting
                errors.append(exc)
        if errors:
            raise errors[0]
