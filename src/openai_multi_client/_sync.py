"""The seed's synchronous clients, as a portal onto one engine running in a loop thread.

``OpenAIMultiClient`` and ``OpenAIMultiOrderedClient`` keep the seed's API: ``request()`` blocks
while the intake is full (backpressure), ``run_request_function()`` feeds requests from a
thread, iteration yields results, ``close()`` says no more requests will come, ``pull_all()``
drains the results (running their callbacks). There is exactly one engine: the
:class:`~openai_multi_client.AsyncMultiClient` on the loop thread; this module only carries calls
to it and results back.

Guarantees: nothing is pickled; no call here can hang on a closed or failed client; a script
that never calls ``close()`` still exits; Ctrl-C while iterating interrupts at once; callbacks
run in the iterating thread, as in the seed.

Shutdown (the engine is closed, connections released, the loop thread ended) happens at the
first of: the last result handed out after ``close()``; iteration ending (exhausted, or raising
what stopped the run); leaving a ``with`` block; the client being garbage-collected; interpreter
exit. The last two go through a :func:`weakref.finalize` holding only the portal and the engine,
never the client, so a forgotten client does not keep its thread alive.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any

from ._api import CustomAPI
from ._engine import AsyncMultiClient, Statistics
from ._errors import CallbackError, ClientClosedError, PortalClosedError
from ._inbox import Inbox
from ._options import SyncKeywords, face_signature, options_for
from ._portal import Portal
from ._request import Callback, ChunkCallback, Result
from ._stream import raise_chunk_error

if TYPE_CHECKING:
    from typing_extensions import Unpack

logger = logging.getLogger("openai_multi_client")

# Results fetched from the loop per crossing: amortises the thread hand-off.
_BATCH = 256
# After this long blocked in request() with no consumer, warn about the likely mistake.
_SLOW_SUBMIT = 10.0


class OpenAIMultiClient:
    """Concurrent requests from synchronous code; results in completion order.

    The positional parameters and their defaults are the seed's. ``max_retries`` counts
    attempts in total (the seed's meaning): 10 means one try and up to nine retries.
    The keyword-only extras are those of :class:`~openai_multi_client.AsyncMultiClient` but
    ``ordered`` (the class decides): ``api_key`` (a key, a :class:`Key`, or a list of them),
    ``base_url``, ``organization``, ``queue_size`` (requests waiting before ``request()``
    blocks; default ``concurrency``), ``timeout``, ``connect_timeout`` and ``read_timeout`` in
    seconds, ``headers``, ``transport``, ``retry_budget``, ``token_estimator``, ``on_send`` and
    ``on_chunk`` (called in the client's event-loop thread), ``max_server_delay``,
    ``shared_limits`` (a Redis URL or a :class:`RedisLimits`: share the keys' limits with other
    processes), ``clock``, ``rng``, ``max_response_bytes`` (the largest response body read;
    ``None``: no cap) and ``reorder_buffer`` (ordered: results held behind an unfinished one).
    Both lists come from one place, ``_options.ClientOptions``.
    """

    _ordered = False

    def __init__(
        self,
        concurrency: int = 10,
        max_retries: int = 10,
        wait_interval: float = 0,
        retry_multiplier: float = 1,
        retry_max: float = 60,
        endpoint: str | None = None,
        data_template: Mapping[str, Any] | None = None,
        metadata_template: Mapping[str, Any] | None = None,
        custom_api: CustomAPI | None = None,
        **options: Unpack[SyncKeywords],
    ) -> None:
        # Built here, so bad arguments raise in the caller's thread before any thread starts.
        client_options = options_for(self, locals(), options, ordered=self._ordered)
        self._engine = AsyncMultiClient.from_options(client_options)
        # uvloop's loop when installed, unless a clock of the caller's drives time (._loops).
        fast = client_options.clock is None
        self._portal = Portal(name=f"omc-loop-{id(self):x}", fast=fast)
        self._inbox = Inbox(self._portal, self._engine, self._engine.intake_room)
        self._buffer: deque[Result] = deque()
        self._exhausted = False
        self._drained = False  # closed, and every result is in the buffer or handed out
        self._shut_down = False
        self._late_reason: BaseException | None = None  # a producer failed after shutdown
        self._lock = threading.Lock()
        self._consumer_threads: set[int] = set()
        self._closing_producers = 0  # running request functions that close at their end
        # Garbage collection or interpreter exit: release everything (holds no ref to self).
        self._finalizer = weakref.finalize(self, _release, self._portal, self._engine, 1.0)

    # ----------------------------------------------------------------- producing

    def request(
        self,
        data: Mapping[str, Any],
        endpoint: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        callback: Callback | None = None,
        max_retries: int | None = None,
        retry_multiplier: float | None = None,
        retry_max: float | None = None,
        *,
        on_chunk: ChunkCallback | None = None,
    ) -> None:
        """Queue one request; blocks while the intake is full (the seed's backpressure).

        Called from the thread that iterates the client, it never blocks (so a loop over
        results can queue follow-up requests). ``on_chunk`` overrides the client's for this
        (streamed) request.
        """
        engine = self._engine
        request = engine.build_request(
            data,
            endpoint,
            metadata,
            callback,
            max_retries,
            retry_multiplier,
            retry_max,
            on_chunk=on_chunk,
        )
        if self._shut_down:
            raise ClientClosedError("the client was shut down")
        try:
            if self._portal.in_loop_thread():
                engine.submit_nowait(request)
            else:
                waits = threading.get_ident() not in self._consumer_threads
                self._inbox.put(request, waits, _SLOW_SUBMIT, self._warn_stuck)
        except PortalClosedError:
            raise ClientClosedError("the client was shut down") from None

    def _warn_stuck(self) -> None:
        if not self._consumer_threads:
            logger.warning(
                "request() has waited %.0f s for room and nothing is iterating the client: "
                "finished results hold back new requests until they are taken. Iterate the "
                "client while requests are added (run_request_function does that), or this "
                "waits forever",
                _SLOW_SUBMIT,
            )

    def run_request_function(
        self,
        input_function: Callable[..., object],
        *args: Any,
        stop_at_end: bool = True,
        **kwargs: Any,
    ) -> threading.Thread:
        """Run ``input_function(*args, **kwargs)`` in a daemon thread to feed requests while
        this thread iterates. With ``stop_at_end`` (the default) the client is closed when the
        function returns (with several such functions running, when the last one returns). If
        the function raises, the client is closed and iteration re-raises that exception after
        yielding the results of the requests already queued."""
        if stop_at_end:
            with self._lock:
                self._closing_producers += 1

        def produce() -> None:
            try:
                input_function(*args, **kwargs)
            except BaseException as exc:
                logger.debug("request function raised %r", exc)
                self._close(exc)
                return
            finally:
                if stop_at_end:
                    with self._lock:
                        self._closing_producers -= 1
                        last = self._closing_producers == 0
            if stop_at_end and last:
                self._close(None)

        thread = threading.Thread(target=produce, name="omc-request-function", daemon=True)
        thread.start()
        return thread

    def close(self) -> None:
        """No more requests will come: iteration ends after the last result. Idempotent;
        returns at once."""
        self._close(None)

    def _close(self, reason: BaseException | None) -> None:
        try:
            self._inbox.close(reason)
        except PortalClosedError:  # already shut down: nothing to close
            if reason is not None:
                self._late_reason = reason  # raised by the next next()

    # ----------------------------------------------------------------- consuming

    def __iter__(self) -> Iterator[Result]:
        return self

    def __next__(self) -> Result:
        if not self._buffer:
            self._fill_buffer()
        result = self._buffer.popleft()
        if self._drained and not self._buffer:  # the last result: nothing else can come
            self._exhausted = True
            self._shutdown()
        if result.callback is not None:
            try:
                result.callback(result)
            except Exception as exc:
                raise CallbackError(
                    f"the callback of request {result.index} raised {type(exc).__name__}: {exc}",
                    result,
                ) from exc
        raise_chunk_error(result)
        return result

    def _fill_buffer(self) -> None:
        self._raise_late_reason()
        if self._exhausted:
            raise StopIteration
        self._consumer_threads.add(threading.get_ident())
        try:
            batch, self._drained = self._portal.call(_take, self._engine, _BATCH)
        except PortalClosedError:
            self._exhausted = True
            self._raise_late_reason()
            raise StopIteration from None
        except KeyboardInterrupt:
            self._abort()
            raise
        except BaseException:
            self._exhausted = True
            self._shutdown()
            raise
        if not batch:
            self._exhausted = True
            self._shutdown()
            raise StopIteration
        self._buffer.extend(batch)

    def _raise_late_reason(self) -> None:
        """Raise (once) what a request function raised after the client had shut down."""
        reason, self._late_reason = self._late_reason, None
        if reason is not None:
            self._exhausted = True
            raise reason

    def pull_all(self) -> None:
        """Consume every result, running callbacks (for callback-driven code)."""
        for _ in self:
            pass

    # ----------------------------------------------------------------- lifecycle

    def __enter__(self) -> OpenAIMultiClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is KeyboardInterrupt:
            self._abort()
        else:
            self._shutdown()

    def _shutdown(self, timeout: float = 5.0) -> None:
        """Cancel what is unfinished, release connections, stop the loop thread."""
        with self._lock:
            if self._shut_down:
                return
            self._shut_down = True
        self._finalizer.detach()
        self._inbox.shut()
        _release(self._portal, self._engine, timeout)

    def _abort(self) -> None:
        # After Ctrl-C: do not wait long for anything.
        self._shutdown(timeout=1.0)

    def statistics(self) -> Statistics:
        """A snapshot of the engine's counters."""
        return self._engine.statistics()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} engine={self._engine!r}>"


setattr(OpenAIMultiClient.__init__, "__signature__", face_signature(exclude=("ordered",)))  # noqa: B010


class OpenAIMultiOrderedClient(OpenAIMultiClient):
    """As :class:`OpenAIMultiClient`, with results yielded in the order requests were queued.
    Memory stays bounded: results finished behind a slow request wait in a reorder buffer of at
    most ``reorder_buffer`` results (default 10,000); when it is full, the intake waits."""

    _ordered = True


def _release(portal: Portal, engine: AsyncMultiClient, timeout: float) -> None:
    """Shut the engine down and stop its loop thread (the client's finaliser: no ``self``)."""
    portal.shut_down(engine.aclose, timeout)


async def _take(engine: AsyncMultiClient, limit: int) -> tuple[list[Result], bool]:
    """Up to ``limit`` results, and whether they are the last ones."""
    batch = await engine.take(limit)
    return batch, engine.drained
