"""The server's waits (latency, hangs, stalls), all cut short when it stops."""

from __future__ import annotations

import asyncio


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class Waits:
    """Sleeps that :meth:`close` ends at once; reopened with :meth:`open` on a restart."""

    def __init__(self) -> None:
        self._closing = False
        self._waiters: set[asyncio.Future[None]] = set()

    def open(self) -> None:
        self._closing = False

    def close(self) -> None:
        """End every wait now, and any later one at once."""
        self._closing = True
        for waiter in list(self._waiters):
            _wake(waiter)

    async def pause(self, seconds: float) -> bool:
        """Sleep unless the server stops first; True if it is still running afterwards."""
        if self._closing:
            return False
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        timer = loop.call_later(seconds, _wake, waiter)
        self._waiters.add(waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            self._waiters.discard(waiter)
        return not self._closing
