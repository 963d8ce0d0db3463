"""Time, as the library sees it.

Every wait and every timestamp in the library goes through a :class:`Clock`, so tests can
replace it (see :class:`openai_multi_client.testing.FakeClock`) and run limiter and retry logic
instantly and exactly. Durations are float seconds.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol, runtime_checkable


@runtime_checkable
class Clock(Protocol):
    """What the library needs of time: a monotonic ``now()``, an awaitable ``sleep()`` and, for
    the synchronous ``@stable`` functions only, a blocking ``sleep_blocking()``."""

    def now(self) -> float:
        """Monotonic seconds; only differences are meaningful."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` (0 or less returns at the next turn of the event loop)."""
        ...

    def sleep_blocking(self, seconds: float) -> None:
        """Block this thread for ``seconds`` (synchronous callers, never the event loop)."""
        ...


class LoopClock:
    """The running event loop's clock (``loop.time()``, ``asyncio.sleep``).

    Because it reads the loop's own clock, it follows a loop whose time is virtual, which is how
    :class:`~openai_multi_client.testing.FakeClock` makes whole engine runs deterministic.
    """

    __slots__ = ()

    def now(self) -> float:
        try:
            return asyncio.get_running_loop().time()
        except RuntimeError:  # outside the loop (a statistics() call from another thread)
            return time.monotonic()  # what the default event loops' time() reads

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))

    def sleep_blocking(self, seconds: float) -> None:
        time.sleep(max(0.0, seconds))

    def __repr__(self) -> str:
        return "LoopClock()"


class MonotonicClock(LoopClock):
    """``time.monotonic()`` whichever thread or loop asks: for state shared by several threads
    and event loops (a :class:`~openai_multi_client.KeyManager`), whose timestamps must all
    come from one source."""

    __slots__ = ()

    def now(self) -> float:
        return time.monotonic()

    def __repr__(self) -> str:
        return "MonotonicClock()"


async def wait_event(event: asyncio.Event, clock: Clock, seconds: float) -> None:
    """Wait until ``event`` is set or ``seconds`` have passed on ``clock``, whichever is first."""
    loop = asyncio.get_running_loop()
    waiters = {loop.create_task(event.wait()), loop.create_task(clock.sleep(seconds))}
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
        await asyncio.gather(*waiters, return_exceptions=True)
