"""Request functions an async client runs for its caller: the async twin of the sync clients'
``run_request_function``.

A request function (a coroutine) queues requests while the caller iterates the client. When it
returns, the client is closed (with ``stop_at_end``, once the last such function has returned);
when it raises, whatever it raised (any ``BaseException``, ``KeyboardInterrupt`` included) closes
the client and is re-raised by iteration after the results of the requests already queued, so an
``async for`` over the client never waits for a producer that has died.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from ._errors import ConfigurationError

logger = logging.getLogger("openai_multi_client")

RequestFunction = Callable[..., Awaitable[object]] | Coroutine[Any, Any, object]


class RequestFunctions:
    """Runs request functions and closes the client (``close(reason)``) as they end."""

    def __init__(self, close: Callable[[BaseException | None], None]) -> None:
        self._close = close
        self._closing = 0  # running functions that close the client at their end

    def start(
        self,
        function: RequestFunction,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        stop_at_end: bool,
    ) -> asyncio.Task[BaseException | None]:
        """A task running ``function(*args, **kwargs)`` (or awaiting ``function`` when it is
        already a coroutine); the client is closed as it ends."""
        loop = asyncio.get_running_loop()
        awaitable = _awaitable(function, args, kwargs)
        task = loop.create_task(_run(awaitable), name="omc-request-function")
        if stop_at_end:
            self._closing += 1
        task.add_done_callback(lambda task: self._ended(task, awaitable, stop_at_end))
        return task

    def _ended(
        self,
        task: asyncio.Task[BaseException | None],
        awaitable: Awaitable[object],
        stop_at_end: bool,
    ) -> None:
        if inspect.iscoroutine(awaitable):
            awaitable.close()  # a task cancelled before it started never awaited it
        # Cancelled: it ended, nothing went wrong.
        error = None if task.cancelled() else task.result()
        if stop_at_end:
            self._closing -= 1
        if error is not None:
            logger.debug("request function raised %r", error)
            self._close(error)
        elif stop_at_end and self._closing == 0:
            self._close(None)


async def _run(awaitable: Awaitable[object]) -> BaseException | None:
    """Await; return what was raised instead of raising it (asyncio would let a
    ``KeyboardInterrupt`` or ``SystemExit`` out of a task and stop the loop)."""
    try:
        await awaitable
    except asyncio.CancelledError:
        raise
    except BaseException as exc:  # handed to the consumer, never lost
        return exc
    return None


def _awaitable(
    function: RequestFunction, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Awaitable[object]:
    if inspect.iscoroutine(function):
        if args or kwargs:
            function.close()  # never awaited: close it quietly
            raise ConfigurationError(
                "run_request_function got a coroutine and arguments: pass the async function "
                "and its arguments, or the coroutine alone"
            )
        return function
    if not inspect.iscoroutinefunction(function):
        raise ConfigurationError(
            "the async client's run_request_function takes an async function (or a coroutine), "
            f"got {type(function).__name__}; a synchronous one belongs to OpenAIMultiClient"
        )
    return function(*args, **kwargs)
