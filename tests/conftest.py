"""Fixtures shared by every test."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from openai_multi_client.testing import FakeClock


@pytest.fixture
async def fake_clock() -> AsyncIterator[FakeClock]:
    """The test's event loop on virtual time: sleeps are instant and exact."""
    clock = FakeClock()
    with clock.installed():
        yield clock
