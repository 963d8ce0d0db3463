"""Requests from synchronous threads carried to the engine's loop thread in batches.

A thread calling ``request()`` appends the built request to a thread-side list and, if no
hand-over is pending, schedules one (``call_soon_threadsafe``); the loop takes the whole list
in one go and submits it in order. One wake-up of the loop per batch, no future per request.

Backpressure stays exact: the inbox keeps a count of the room left in the engine's intake
(minus what is on its way there); a producer thread blocks only when it is zero, and the loop
recomputes it and wakes the producers when a request leaves the intake. Requests from the
thread that iterates the client never wait (their results may be what frees the room). Order
is the order of the ``request()`` calls, since every request (waiting or not) goes through the
same list, and so does ``close()``.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable

from ._engine import AsyncMultiClient
from ._errors import ClientClosedError, PortalClosedError
from ._portal import Portal
from ._request import Request

logger = logging.getLogger("openai_multi_client")

_CLOSE_ONLY = object()  # a close() with no reason


class Inbox:
    """The thread side of the sync client's intake (one per client)."""

    def __init__(self, portal: Portal, engine: AsyncMultiClient, room: int) -> None:
        self._portal = portal
        self._engine = engine
        self._cond = threading.Condition(threading.Lock())
        self._items: list[Request] = []
        self._closes: list[BaseException | None] = []  # close() calls on their way
        self._scheduled = False  # a hand-over is queued on the loop
        self._room = room  # intake room not yet spoken for
        self._waiting = 0  # producer threads blocked for room
        self._refusal: BaseException | None = None  # why request() now fails
        self._watcher: asyncio.Task[None] | None = None

    # ----------------------------------------------------------------- thread side

    def put(
        self,
        request: Request,
        wait: bool,
        slow_after: float,
        on_slow: Callable[[], object],
    ) -> None:
        """Queue ``request``; with ``wait``, block while the intake is full."""
        with self._cond:
            if wait and self._room <= 0 and self._refusal is None:
                self._wait_for_room(slow_after, on_slow)
            if self._refusal is not None:
                raise _fresh(self._refusal)
            self._room -= 1
            self._items.append(request)
            self._schedule()

    def _wait_for_room(self, slow_after: float, on_slow: Callable[[], object]) -> None:
        self._waiting += 1
        try:
            warned = False
            while self._room <= 0 and self._refusal is None:
                if not self._cond.wait(None if warned else slow_after) and not warned:
                    warned = True
                    on_slow()
        finally:
            self._waiting -= 1

    def close(self, reason: BaseException | None) -> None:
        """Close the engine after every request already put. Raises PortalClosedError if
        the client was shut down."""
        with self._cond:
            if isinstance(self._refusal, PortalClosedError):
                raise PortalClosedError("the client's event loop has stopped")
            if self._refusal is None:
                self._refusal = _closed_error(reason)
            self._closes.append(reason)
            self._schedule()

    def shut(self) -> None:
        """The client shut down: every request() from now on fails, waiting ones at once."""
        with self._cond:
            self._refusal = PortalClosedError("the client's event loop has stopped")
            self._cond.notify_all()

    def _schedule(self) -> None:
        """Queue a hand-over unless one is already queued (the lock is held)."""
        if self._scheduled:
            return
        try:
            self._portal.call_soon(self._hand_over)
        except PortalClosedError:
            self._refusal = PortalClosedError("the client's event loop has stopped")
            raise
        self._scheduled = True

    # ----------------------------------------------------------------- loop side

    def _hand_over(self) -> None:
        with self._cond:
            items, self._items = self._items, []
            closes, self._closes = self._closes, []
            self._scheduled = False
        engine = self._engine
        try:
            for request in items:
                engine.submit_nowait(request)
        except Exception as exc:  # the engine failed or closed: say so to the next request()
            logger.debug("requests not queued: %r", exc)
            with self._cond:
                if self._refusal is None or isinstance(self._refusal, ClientClosedError):
                    self._refusal = exc
                self._cond.notify_all()
        for reason in closes:
            engine.close(reason)
        self._recount()
        if self._watcher is None and not closes:
            self._watcher = asyncio.get_running_loop().create_task(self._watch())

    def _recount(self) -> None:
        """Recompute the room left and wake the producers if there is some."""
        try:
            self._engine.check_accepting()
            refusal = None
        except Exception as exc:  # closed or failed: waiting producers must hear it
            refusal = exc
        with self._cond:
            if _replaces(refusal, self._refusal):
                self._refusal = refusal
            self._room = self._engine.intake_room - len(self._items)
            if self._waiting and (self._room > 0 or self._refusal is not None):
                self._cond.notify_all()

    async def _watch(self) -> None:
        """Follow the intake: whenever a request leaves it, producers may go on."""
        engine = self._engine
        while True:
            await engine.intake_changed()
            self._recount()


def _closed_error(reason: BaseException | None) -> ClientClosedError:
    if reason is None:
        return ClientClosedError("the client is closed: no requests can be added after close()")
    return ClientClosedError(
        f"the client is closed because the request function raised "
        f"{type(reason).__name__}: {reason}"
    )


def _replaces(new: BaseException | None, old: BaseException | None) -> bool:
    """Whether ``new`` says more than ``old`` about why requests fail: a failure beats a
    close, and a shut-down client stays shut down."""
    if new is None or isinstance(old, PortalClosedError):
        return False
    return old is None or not isinstance(new, ClientClosedError)


def _fresh(refusal: BaseException) -> BaseException:
    """A new exception of the same kind (one instance raised in many threads would share its
    traceback)."""
    if isinstance(refusal, PortalClosedError):
        return PortalClosedError(str(refusal))
    if isinstance(refusal, ClientClosedError):
        return ClientClosedError(str(refusal))
    return refusal
