"""Running an async server in a daemon thread with its own event loop, for synchronous code."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from typing import Any

from ..._portal import close_loop

_Start = Callable[[], Coroutine[Any, Any, None]]


class LoopThread:
    """A daemon thread running ``start()`` in a new event loop, then the loop until stopped."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def alive(self) -> bool:
        return self._thread is not None

    def is_current(self) -> bool:
        """Whether the caller runs in this thread."""
        return threading.current_thread() is self._thread

    def start(self, start: _Start, timeout: float) -> None:
        """Run ``start()`` in the thread's loop; returns once it has, raising what it raised."""
        loop = self._loop = asyncio.new_event_loop()
        started = threading.Event()
        failure: list[BaseException] = []

        def serve() -> None:
            asyncio.set_event_loop(loop)
            try:
                try:
                    loop.run_until_complete(start())
                except BaseException as exc:
                    failure.append(exc)
                    return
                finally:
                    started.set()
                loop.run_forever()
            finally:
                close_loop(loop)

        thread = threading.Thread(target=serve, name=self._name, daemon=True)
        self._thread = thread
        thread.start()
        if not started.wait(timeout):
            raise RuntimeError(f"the mock server did not start within {timeout} s")
        if failure:
            thread.join(timeout)
            self._thread = None
            raise failure[0]

    def stop(self, stop: _Start, timeout: float) -> None:
        """Run ``stop()`` in the thread's loop, end the loop and join the thread."""
        thread, loop = self._thread, self._loop
        if thread is None:
            return
        try:
            if loop is not None and not loop.is_closed():
                future = asyncio.run_coroutine_threadsafe(stop(), loop)
                try:
                    future.result(timeout)
                finally:
                    loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout)
            if thread.is_alive():
                raise RuntimeError(f"the mock server's thread did not end within {timeout} s")
        finally:
            self._thread = None
            self._loop = None
