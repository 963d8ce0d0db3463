"""Stop signals for ``omc run``, on every platform.

``omc run`` stops cleanly on the signals that ask a process to stop: SIGINT (Ctrl-C), SIGTERM
(``docker stop``, Kubernetes, systemd, ``kill``), SIGHUP (the terminal closed) and, on Windows,
SIGBREAK (Ctrl-Break). :func:`stop_signals` routes them to one callback on the event loop.

``loop.add_signal_handler`` does not exist on Windows event loops (it raises
``NotImplementedError``); there the handler is installed with :func:`signal.signal` and hands the
signal to the loop with ``loop.call_soon_threadsafe``, which also wakes a loop waiting for I/O.
Python runs such handlers in the main thread between bytecodes, so the callback itself always
runs on the loop, never inside the signal handler.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any

__all__ = ["STOP_SIGNALS", "exit_code_for", "stop_signals"]

STOP_SIGNALS: tuple[signal.Signals, ...] = tuple(
    getattr(signal, name)
    for name in ("SIGINT", "SIGTERM", "SIGHUP", "SIGBREAK")
    if hasattr(signal, name)
)
"""The signals that stop ``omc run`` cleanly, those that exist on this platform."""


def exit_code_for(signum: int) -> int:
    """The shell's convention for a process stopped by ``signum``: 128 + its number (130 for
    SIGINT, 143 for SIGTERM, 129 for SIGHUP)."""
    return 128 + signum


@contextlib.contextmanager
def stop_signals(
    loop: asyncio.AbstractEventLoop, callback: Callable[[signal.Signals], None]
) -> Iterator[None]:
    """Within the block, each of :data:`STOP_SIGNALS` calls ``callback(signum)`` on ``loop``;
    the previous handlers come back after it. Outside the main thread (where Python allows no
    signal handlers) it does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    on_loop: list[signal.Signals] = []
    previous: dict[signal.Signals, Any] = {}
    try:
        for signum in STOP_SIGNALS:
            try:
                loop.add_signal_handler(signum, callback, signum)
                on_loop.append(signum)
            except (NotImplementedError, RuntimeError):  # Windows, or a loop without them
                previous[signum] = signal.signal(signum, _relay(loop, callback))
        yield
    finally:
        for signum in on_loop:
            loop.remove_signal_handler(signum)
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _relay(
    loop: asyncio.AbstractEventLoop, callback: Callable[[signal.Signals], None]
) -> Callable[[int, FrameType | None], None]:
    def handler(signum: int, frame: FrameType | None) -> None:
        with contextlib.suppress(RuntimeError):  # the loop closed: the run is over
            loop.call_soon_threadsafe(callback, signal.Signals(signum))

    return handler
