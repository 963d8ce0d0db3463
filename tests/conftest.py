"""Fixtures shared by every test."""

from __future__ import annotations

import importlib.util
import os
from collections.abc import AsyncIterator, Iterator

import pytest
from hypothesis import settings

from openai_multi_client.testing import FakeClock, RedisServer, RedisServerError

# Property tests are deterministic (the same examples every run, no example database) and
# never timed: a slow CI machine must not fail them.
settings.register_profile("omc", derandomize=True, database=None, deadline=None)
settings.load_profile("omc")


@pytest.fixture
async def fake_clock() -> AsyncIterator[FakeClock]:
    """The test's event loop on virtual time: sleeps are instant and exact."""
    clock = FakeClock()
    with clock.installed():
        yield clock


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """A redis-server on a free port for the whole session (Debian's package). Skipped when
    the redis extra is not installed (scripts/test.sh runs its first pass without extras);
    a missing redis-server fails in CI and skips elsewhere."""
    if importlib.util.find_spec("redis") is None:
        pytest.skip("the redis extra is not installed: pip install -e '.[redis]'")
    try:
        server = RedisServer().start()
    except RedisServerError as exc:
        if os.environ.get("CI"):
            pytest.fail(str(exc))
        pytest.skip(str(exc))
    yield server
    server.stop()
