"""A virtual clock for asyncio tests: sleeps finish at once, in deadline order, exactly.

``FakeClock.installed()`` makes the running event loop's time virtual. Whenever the loop has
nothing ready to run and would block waiting for a timer, time jumps straight to that timer
(trio's ``MockClock`` with autojump, for asyncio). Everything that waits through the loop
(``asyncio.sleep``, ``asyncio.wait_for``, the library's :class:`~openai_multi_client.LoopClock`)
becomes instant and deterministic, and ``clock.now()`` reads the virtual time.

Use it only where no real I/O is awaited: with a real socket the loop cannot tell "waiting for
the network" from "waiting for a timer", and time would jump past real timeouts.
"""

from __future__ import annotations

import asyncio
import selectors
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


class FakeClock:
    """Virtual time for the running event loop; also a :class:`~openai_multi_client.Clock`."""

    def __init__(self, start: float = 0.0) -> None:
        self._now = float(start)
        self._loop: asyncio.AbstractEventLoop | None = None

    def now(self) -> float:
        return self._now

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))

    def sleep_blocking(self, seconds: float) -> None:
        """A blocking wait in virtual time: returns at once, ``seconds`` later."""
        self.advance(max(0.0, seconds))

    def advance(self, seconds: float) -> None:
        """Move time forward by hand (timers due by then run at the next loop turn)."""
        if seconds < 0:
            raise ValueError("time only moves forward")
        self._now += seconds

    @contextmanager
    def installed(self, loop: asyncio.AbstractEventLoop | None = None) -> Iterator[FakeClock]:
        """Make ``loop`` (default: the running loop) run on this clock's virtual time."""
        loop = loop or asyncio.get_running_loop()
        selector: selectors.BaseSelector | None = getattr(loop, "_selector", None)
        if selector is None:
            raise RuntimeError("FakeClock needs a selector-based asyncio event loop")
        real_select = selector.select

        def select(timeout: float | None = None) -> list[tuple[Any, int]]:
            events = real_select(0)
            if events:
                return events
            if timeout is None:
                # No timer at all: only I/O or another thread can wake the loop.
                return real_select(None)
            if timeout > 0:
                self._now += timeout  # nothing to do until the next timer: jump to it
            return events

        loop.time = self.now  # type: ignore[method-assign]
        selector.select = select  # type: ignore[method-assign]
        self._loop = loop
        try:
            yield self
        finally:
            del loop.time
            del selector.select
            self._loop = None

    def __repr__(self) -> str:
        return f"FakeClock(now={self._now:.6f})"
