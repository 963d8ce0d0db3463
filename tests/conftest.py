"""Fixtures shared by every test."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from hypothesis import settings

from openai_multi_client.testing import FakeClock

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
