"""The transport's total-time limits, kept by one sweeping task instead of a timer per request.

aiohttp's own ``total`` timeout arms, for every request, a loop timer, a timer context that
every read of the body enters, and a callback to cancel the timer: about 4 % of the client's
instructions per request at high rates (``bench/bench_instructions.py``), for a limit that
almost never fires (600 s by default). Here an exchange only writes its deadline into a dict,
and one task wakes every :attr:`Deadlines.tick` seconds (a twentieth of the shortest limit in
use, at most one second) and cancels the exchanges past their deadline, as aiohttp's timer
would. A limit therefore fires between ``total`` and ``total + tick`` seconds.

The cancellation is told apart from any other (a shutdown, an abandoned attempt) with
``Task.uncancel`` (Python 3.11+): :meth:`Deadlines.expired` says whether the task's only
pending cancellation is the deadline's. The sweeper stops by itself when nothing is watched.
"""

from __future__ import annotations

import asyncio
from typing import Any

SUPPORTED = hasattr(asyncio.Task, "uncancel")  # Python 3.11+; before, aiohttp's timer is used
_MAX_TICK = 1.0
_TICKS_PER_LIMIT = 20


class Deadlines:
    """Deadlines (on the loop's clock) of the exchanges in progress, by the task running each.

    The transport writes ``due[task] = deadline`` when an exchange starts, calls :meth:`sweep`
    if no :attr:`sweeper` runs, and deletes the entry when the exchange ends, however it ends;
    on a ``CancelledError`` it asks :meth:`expired`.
    """

    __slots__ = ("_expired", "due", "sweeper", "tick")

    def __init__(self) -> None:
        self.due: dict[asyncio.Task[Any], float] = {}
        self._expired: set[asyncio.Task[Any]] = set()
        self.sweeper: asyncio.Task[None] | None = None
        self.tick = _MAX_TICK

    def limit_in_use(self, total: float) -> None:
        """A limit of ``total`` seconds will be watched: sweep often enough for it."""
        self.tick = min(self.tick, max(0.001, total / _TICKS_PER_LIMIT))

    def sweep(self, loop: asyncio.AbstractEventLoop) -> None:
        """Start the sweeper (it stops by itself once nothing is watched)."""
        if self.sweeper is None:
            self.sweeper = loop.create_task(self._sweep(loop), name="omc-deadlines")

    def expired(self, task: asyncio.Task[Any]) -> bool:
        """Whether ``task``'s cancellation is its deadline's and nobody else's (the cancel
        request is then withdrawn: the caller raises a timeout instead)."""
        if task not in self._expired:
            return False
        self._expired.discard(task)
        pending: int = task.uncancel()  # type: ignore[attr-defined,unused-ignore]
        return pending == 0

    def cancel_overdue(self, now: float) -> None:
        """One sweep: cancel the exchanges whose deadline is ``now`` or earlier."""
        if self._expired:  # a cancelled exchange that ended before it saw why
            self._expired = {task for task in self._expired if task in self.due}
        overdue = [task for task, deadline in self.due.items() if deadline <= now]
        for task in overdue:
            if task not in self._expired and not task.done():
                self._expired.add(task)
                task.cancel()

    async def _sweep(self, loop: asyncio.AbstractEventLoop) -> None:
        try:
            while self.due:
                await asyncio.sleep(self.tick)
                self.cancel_overdue(loop.time())
        finally:
            if self.sweeper is asyncio.current_task():  # not a newer one, after close()
                self.sweeper = None

    def close(self) -> None:
        """Stop the sweeper (the transport is closing). Not awaited: a shutdown being
        cancelled must still get to close the connections, and the sweeper holds nothing."""
        sweeper, self.sweeper = self.sweeper, None
        if sweeper is not None:
            sweeper.cancel()

    def __repr__(self) -> str:
        return f"Deadlines(watched={len(self.due)}, tick={self.tick:g} s)"
