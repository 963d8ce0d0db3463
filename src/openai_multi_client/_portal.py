"""A portal from synchronous threads onto one event loop running in its own thread.

Like anyio's BlockingPortal: synchronous code calls coroutines on the loop and blocks until they
finish. The loop thread is a daemon, so a program that forgets to close a client still exits,
and :func:`shutdown_all_at_exit` closes the portals still open when the interpreter exits.

A ``KeyboardInterrupt`` or ``SystemExit`` raised by a called coroutine is carried back to the
calling thread as itself; it never escapes into the loop (where asyncio would let it stop the
loop and tear the thread down under everything still running on it).
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import logging
import threading
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from ._errors import PortalClosedError
from ._loops import new_event_loop

T = TypeVar("T")
logger = logging.getLogger("openai_multi_client")

__all__ = ["Portal", "PortalClosedError", "close_loop", "shutdown_all_at_exit"]

_open_portals: weakref.WeakSet[Portal] = weakref.WeakSet()


class Portal:
    """An event loop in a daemon thread, and blocking calls into it."""

    def __init__(self, name: str = "omc-loop", fast: bool = True) -> None:
        self._loop = new_event_loop(fast)  # uvloop's when installed and ``fast`` (._loops)
        self._stopped = False
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()
        _open_portals.add(self)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_forever()
        finally:
            close_loop(self._loop)

    def in_loop_thread(self) -> bool:
        return threading.get_ident() == self._thread.ident

    def call(
        self,
        function: Callable[..., Awaitable[T]],
        *args: Any,
        slow_after: float | None = None,
        on_slow: Callable[[], object] | None = None,
        timeout: float | None = None,
    ) -> T:
        """Run ``function(*args)`` on the loop and wait for its result (or exception).

        If it takes longer than ``slow_after`` seconds, ``on_slow()`` is called once and the
        wait goes on. After ``timeout`` seconds the call is cancelled and ``TimeoutError``
        raised. If the waiting thread is interrupted (Ctrl-C), the call is cancelled and the
        interrupt propagates.
        """
        if self.in_loop_thread():
            raise RuntimeError("Portal.call from the loop's own thread would deadlock")
        with self._lock:
            if self._stopped:
                raise PortalClosedError("the client's event loop has stopped")
            future = asyncio.run_coroutine_threadsafe(_as_coroutine(function, args), self._loop)
        try:
            outcome = self._wait(future, slow_after, on_slow, timeout)
        except BaseException:
            future.cancel()
            raise
        if isinstance(outcome, _Interrupt):
            raise outcome.exception
        return outcome.value

    @staticmethod
    def _wait(
        future: concurrent.futures.Future[_Returned[T] | _Interrupt],
        slow_after: float | None,
        on_slow: Callable[[], object] | None,
        timeout: float | None,
    ) -> _Returned[T] | _Interrupt:
        if slow_after is not None and on_slow is not None:
            try:
                return future.result(timeout=slow_after)
            except concurrent.futures.TimeoutError:
                on_slow()
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            raise TimeoutError(f"no answer from the event loop within {timeout} s") from None

    def call_soon(self, function: Callable[..., object], *args: Any) -> None:
        """Schedule a plain function on the loop without waiting."""
        with self._lock:
            if self._stopped:
                raise PortalClosedError("the client's event loop has stopped")
            self._loop.call_soon_threadsafe(function, *args)

    def shut_down(self, function: Callable[[], Awaitable[object]], timeout: float) -> None:
        """Run ``function()`` on the loop, then stop the loop; idempotent.

        From another thread, wait up to ``timeout`` seconds for both (then cancel the call and
        stop regardless). From the loop's own thread (a finaliser run by the garbage collector
        there), schedule them and return."""
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
            future = asyncio.run_coroutine_threadsafe(self._run_then_stop(function), self._loop)
        _open_portals.discard(self)
        if self.in_loop_thread():
            return
        try:
            future.result(timeout)
        except BaseException as exc:  # timed out, or the call failed: stop regardless
            logger.debug("shutting down the event loop: %r", exc)
            future.cancel()
            with contextlib.suppress(RuntimeError):  # the loop is already closed
                self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout)

    async def _run_then_stop(self, function: Callable[[], Awaitable[object]]) -> None:
        try:
            await function()
        finally:
            self._loop.stop()

    def stop(self, timeout: float | None = 5.0) -> None:
        """Stop the loop (tasks still running are cancelled) and wait for its thread."""
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
            self._loop.call_soon_threadsafe(self._loop.stop)
        _open_portals.discard(self)
        if not self.in_loop_thread():
            self._thread.join(timeout)


def close_loop(loop: asyncio.AbstractEventLoop) -> None:
    """Finish a private event loop in its own thread, after it stopped: cancel the tasks left
    and wait for them, close async generators and the default executor, close the loop. The
    one teardown for every loop thread of the package (the portal, the mock server's)."""
    try:
        pending = [task for task in asyncio.all_tasks(loop) if not task.done()]
        for task in pending:
            task.cancel()
        if pending:
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.run_until_complete(loop.shutdown_default_executor())
    finally:
        asyncio.set_event_loop(None)
        loop.close()


@dataclass(frozen=True, slots=True)
class _Returned(Generic[T]):
    value: T


@dataclass(frozen=True, slots=True)
class _Interrupt:
    """A ``KeyboardInterrupt`` or ``SystemExit`` on its way to the calling thread."""

    exception: BaseException


async def _as_coroutine(
    function: Callable[..., Awaitable[T]], args: tuple[Any, ...]
) -> _Returned[T] | _Interrupt:
    try:
        return _Returned(await function(*args))
    except (KeyboardInterrupt, SystemExit) as exc:  # asyncio would re-raise these in the loop
        return _Interrupt(exc)


@atexit.register
def shutdown_all_at_exit() -> None:
    for portal in list(_open_portals):
        portal.stop(timeout=1.0)
