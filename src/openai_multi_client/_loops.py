"""Which event loop the library makes for itself: uvloop's when it is installed (the ``speed``
extra), asyncio's otherwise.

Only loops the library owns are concerned: the sync client's loop thread (:mod:`._portal`) and
``omc run``. An :class:`~openai_multi_client.AsyncMultiClient` runs on its caller's loop. With
uvloop, the sync client spends about a quarter less CPU per request and the async engine a
tenth less (docs/benchmarks.md, "The sync face's cost per request"). A loop whose time a
:class:`~openai_multi_client.testing.FakeClock` drives must be asyncio's (it patches the
selector), so a client given a clock of its own gets asyncio's; so does everyone when the
environment variable ``OPENAI_MULTI_CLIENT_LOOP`` is ``asyncio``.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

LOOP_VARIABLE = "OPENAI_MULTI_CLIENT_LOOP"


def _uvloop() -> Any:
    """The uvloop module, or ``None`` when it is not installed or not wanted."""
    if os.environ.get(LOOP_VARIABLE, "").strip().lower() == "asyncio":
        return None
    try:
        import uvloop  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        return None
    return uvloop


def new_event_loop(fast: bool = True) -> asyncio.AbstractEventLoop:
    """A new event loop: uvloop's if ``fast`` and it is installed, else asyncio's."""
    uvloop = _uvloop() if fast else None
    loop: asyncio.AbstractEventLoop = (
        asyncio.new_event_loop() if uvloop is None else uvloop.new_event_loop()
    )
    return loop


def run(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(main)``, on uvloop's loop when it is installed."""
    uvloop = _uvloop()
    if uvloop is None:
        return asyncio.run(main)
    result: T = uvloop.run(main)
    return result
