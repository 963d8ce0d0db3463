"""The engine: :class:`AsyncMultiClient`, the public face over three parts.

::

    request() ──> Dispatcher (_dispatch): intake ──> key + slot ──> attempt ──> decide (_retry)
                      │                                                │ retry: a timer, then
                      │ producers wait while the intake is full        │ ahead of the intake
                      v                                                v
                  Delivery (_delivery): results, reordered when ordered ──> consumer (async for)

The client itself keeps the lifecycle (start, close, abandon, shut down), the consumer's side
(``take`` and iteration) and :meth:`AsyncMultiClient.statistics`. Its arguments are a
:class:`~openai_multi_client._options.ClientOptions`, validated once; the sync faces build the
same object.

Every task has an owner: the dispatcher's task, the attempts, the retry timers and the request
functions belong to the client and are cancelled and awaited by :meth:`AsyncMultiClient.aclose`.
An unexpected exception inside the engine is re-raised to the consumer and to producers; it
never vanishes.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import AsyncIterator, Coroutine, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Any

from ._api import Backend, CustomAPI, CustomAPIBackend, HTTPBackend
from ._clock import Clock, LoopClock
from ._config import is_openai_host, resolve_settings
from ._delivery import Delivery
from ._dispatch import Dispatcher
from ._errors import (
    CallbackError,
    ClientClosedError,
    ConfigurationError,
    SharedLimitsError,
)
from ._limits import (
    Key,
    KeyAdmission,
    KeyPool,
    PoolStatistics,
    SharedLimitsStatistics,
    admit,
    as_keys,
    check_secret,
)
from ._options import (
    ClientKeywords,
    ClientOptions,
    KeysArgument,
    face_signature,
    key_list,
    options_for,
)
from ._producers import RequestFunction, RequestFunctions
from ._request import Callback, ChunkCallback, Request, RequestBuilder, Result
from ._stream import raise_chunk_error
from ._telemetry import instrumentation
from ._tokens import TokenEstimator, default_estimator
from ._transport import AiohttpTransport
from ._usage import KeyUsage

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = ["AsyncMultiClient", "KeysArgument", "Statistics", "run_callback"]

logger = logging.getLogger("openai_multi_client")


@dataclass(frozen=True, slots=True)
class Statistics:
    """A snapshot of a client's counters."""

    submitted: int
    queued: int
    in_flight: int
    waiting_to_retry: int
    succeeded: int
    failed: int
    attempts: int
    retries: int
    consumed: int
    retry_budget_level: int | None
    keys: PoolStatistics
    shared_limits: SharedLimitsStatistics | None = None
    last_retry_error: str | None = None
    """The error (class name and message, keys redacted) of the last attempt to be retried."""
    failed_by_class: Mapping[str, int] = field(default_factory=dict)
    """Failed requests by the class name of their error (``"AuthenticationError"``)."""
    retries_by_reason: Mapping[str, int] = field(default_factory=dict)
    """Retries by the class name of the error that caused them (a paced 429 is
    ``"RateLimitError"``)."""
    rate_limited_by_kind: Mapping[str, int] = field(default_factory=dict)
    """429 responses by kind: ``"rate_limit"`` (the key cools down) or
    ``"insufficient_quota"`` (the key is retired)."""
    key_wait_seconds: float = 0.0
    """Seconds the dispatcher spent waiting for a key with room (all keys at their limits)."""
    usage_by_key: Mapping[str, KeyUsage] = field(default_factory=dict)
    """Tokens in and out the answers reported, by key id (name or redacted id); see
    :class:`~openai_multi_client.KeyUsage` (its ``cost(prices)`` estimates the dollars)."""


class AsyncMultiClient:
    """Many concurrent requests to the OpenAI API (or a compatible server) from async code.

    ::

        async with AsyncMultiClient(endpoint="chats", data_template={"model": "gpt-4o-mini"}) as c:
            for n in range(100):
                await c.request({"messages": [{"role": "user", "content": f"{n} * {n}?"}]})
            c.close()
            async for result in c:
                print(result.response["choices"][0]["message"]["content"])

    ``request()`` waits while ``queue_size`` requests are queued (backpressure); ``close()`` says
    no more requests will come, after which iteration ends once every result was yielded. See
    the README for every parameter.
    """

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
        **options: Unpack[ClientKeywords],
    ) -> None:
        self._setup(options_for(self, locals(), options))

    @classmethod
    def from_options(cls, options: ClientOptions) -> AsyncMultiClient:
        """A client made from options already validated (what the sync faces use)."""
        client = cls.__new__(cls)
        client._setup(options)
        return client

    def _setup(self, options: ClientOptions) -> None:
        self._options = options
        self._clock: Clock = options.clock or LoopClock()
        self._backend, pool, estimator = _connect(options)
        self._builder = RequestBuilder(
            options.endpoint,
            options.data_template,
            options.metadata_template,
            options.policy,
            self._backend.prepare,
            estimator,
            options.on_chunk,
            endpoint_needed=not isinstance(self._backend, CustomAPIBackend),
        )
        self._closed = False
        self._close_reason: BaseException | None = None
        self._reason_raised = False
        self._shut_down = False
        self._fatal: BaseException | None = None
        self._consumer_task: asyncio.Task[Any] | None = None
        self._dispatcher_task: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._producers = RequestFunctions(self.close)
        # All the engine sees of its keys; with shared limits it also leases their shares.
        self._keys: KeyAdmission = admit(pool, self._clock, options.shared_limits)
        self._delivery = Delivery(options.ordered)
        base_url = self._backend.base_url if isinstance(self._backend, HTTPBackend) else None
        self._dispatcher = Dispatcher(
            options,
            self._backend,
            self._keys,
            self._clock,
            self._delivery,
            self._spawn,
            self._die,
            instrumentation(
                options.telemetry, base_url, self._clock, options.capture_message_content
            ),
        )

    # ----------------------------------------------------------------- producing

    async def request(
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
    ) -> int:
        """Queue one request; wait while the intake is full. Returns its index (0, 1, ...).

        ``data`` is merged over ``data_template`` and ``metadata`` over ``metadata_template``.
        ``max_retries``, ``retry_multiplier`` and ``retry_max`` override the client's for this
        request (``0`` is honoured), ``on_chunk`` the client's for a streamed request. Called
        from the task that iterates the client, it never waits, so a consumer can queue
        follow-up requests without deadlocking itself.
        """
        request = self._builder.build(
            data, endpoint, metadata, callback, max_retries, retry_multiplier, retry_max, on_chunk
        )
        return await self.submit(request)

    async def submit(self, request: Request) -> int:
        """Queue a request made by :meth:`build_request`, waiting while the intake is full
        (unless called from the task that iterates the client)."""
        dispatcher = self._dispatcher
        while (
            len(dispatcher.intake) >= dispatcher.intake_size
            and self._accepting()
            and asyncio.current_task() is not self._consumer_task
        ):
            dispatcher.space.clear()
            await dispatcher.space.wait()
        return self.submit_nowait(request)

    def build_request(
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
    ) -> Request:
        """Validate and build a request without queueing it (any thread may call this)."""
        return self._builder.build(
            data, endpoint, metadata, callback, max_retries, retry_multiplier, retry_max, on_chunk
        )

    def submit_nowait(self, request: Request) -> int:
        """Queue a built request at once, ignoring ``queue_size`` (loop thread only)."""
        if self._closed or self._fatal is not None:
            self._raise_not_accepting()
        if self._dispatcher_task is None:
            self._ensure_started()
        return self._dispatcher.submit(request)

    def check_accepting(self) -> None:
        """Raise what ``submit_nowait`` would raise now, if the client is closed or failed."""
        if not self._accepting():
            self._raise_not_accepting()

    @property
    def intake_room(self) -> int:
        """How many more requests the intake takes before ``submit`` waits (loop thread)."""
        return self._dispatcher.intake_size - len(self._dispatcher.intake)

    async def intake_changed(self) -> None:
        """Wait until a request left the intake, or the client closed or failed, since the
        last return (look at the intake after this returns: nothing is missed)."""
        space = self._dispatcher.space
        await space.wait()
        space.clear()

    def close(self, reason: BaseException | None = None) -> None:
        """No more requests will come; iteration ends after the last result. Idempotent.

        With ``reason`` (an exception from whatever produced the requests), iteration raises it
        after yielding every result of the requests already queued.
        """
        if self._closed:
            if reason is not None and self._close_reason is None and not self._reason_raised:
                self._close_reason = reason  # a producer failed after close(): still heard
                self._wake_all()
            elif reason is not None:
                logger.warning("ignored after close(): %r", reason)
            return
        self._closed = True
        self._dispatcher.intake_closed = True
        self._close_reason = reason
        self._wake_all()

    def run_request_function(
        self,
        function: RequestFunction,
        *args: Any,
        stop_at_end: bool = True,
        **kwargs: Any,
    ) -> asyncio.Task[Any]:
        """Run ``await function(*args, **kwargs)`` (or a coroutine) in a task owned by the
        client, to queue requests while the caller iterates. With ``stop_at_end`` (the
        default) the client is closed when it returns (with several, when the last returns).
        If it raises, the client is closed and iteration re-raises that exception after
        yielding the results of the requests already queued. Shutting down cancels it."""
        if self._shut_down:
            if inspect.iscoroutine(function):
                function.close()
            raise ClientClosedError("the client was shut down")
        self._ensure_started()
        task = self._producers.start(function, args, kwargs, stop_at_end)
        self._own(task)
        return task

    def abandon_unsent(self) -> int:
        """Stop: close the intake and give up every request not in flight (queued, or waiting
        to be retried). Each yields a result failed with :class:`AbandonedRequestError`;
        requests in flight finish (a failed one is not retried). Returns how many were
        abandoned."""
        self._dispatcher.abandoning = True  # before close(): a failure from now on is final
        self.close()
        abandoned = self._dispatcher.abandon()
        self._wake_all()
        return abandoned

    def abandon_in_flight(self) -> int:
        """Stop at once: :meth:`abandon_unsent`, then cancel every attempt in request. Each
        yields a result failed with :class:`AbandonedRequestError` (whether the server got it is
        unknown). Returns how many were in request."""
        self.abandon_unsent()
        abandoned = self._dispatcher.abandon_in_flight()
        self._wake_all()
        return abandoned

    def _accepting(self) -> bool:
        return not self._closed and self._fatal is None

    def _raise_not_accepting(self) -> None:
        if self._fatal is not None:
            raise self._fatal
        if self._close_reason is not None:
            raise ClientClosedError(
                f"the client is closed because the request function raised "
                f"{type(self._close_reason).__name__}: {self._close_reason}"
            )
        raise ClientClosedError("the client is closed: no requests can be added after close()")

    # ----------------------------------------------------------------- consuming

    def __aiter__(self) -> AsyncIterator[Result]:
        return self

    async def __anext__(self) -> Result:
        self._consumer_task = asyncio.current_task()
        delivery = self._delivery
        if delivery.output and self._fatal is None and self._dispatcher_task is not None:
            result = delivery.pop_one()  # the usual case: a result is waiting
            self._dispatcher.wakeup.set()  # the admission window moved
        else:
            batch = await self.take(1)
            if not batch:
                raise StopAsyncIteration
            result = batch[0]
        if result.callback is not None:
            await run_callback(result)
        if result._chunk_error is not None:
            raise_chunk_error(result)
        return result

    async def take(self, limit: int) -> list[Result]:
        """Wait for at least one result and return up to ``limit`` of them, without running
        callbacks; an empty list means every result was taken. Raises what stopped the run."""
        self._ensure_started()
        delivery = self._delivery
        while not delivery.output:
            if self._fatal is not None:
                raise self._fatal
            if self._closed and delivery.consumed >= self._dispatcher.submitted:
                reason, self._close_reason = self._close_reason, None
                if reason is not None:
                    self._reason_raised = True
                    raise reason
                return []
            if self._shut_down:
                raise ClientClosedError(
                    f"the client was shut down with "
                    f"{self._dispatcher.submitted - delivery.consumed} results not yet yielded"
                )
            delivery.wakeup.clear()
            await delivery.wakeup.wait()
        batch = delivery.pop(limit)
        self._dispatcher.wakeup.set()  # the admission window moved
        return batch

    @property
    def drained(self) -> bool:
        """Closed, every result taken, and nothing left to raise: iteration is over."""
        return (
            self._closed
            and self._delivery.consumed >= self._dispatcher.submitted
            and not self._delivery.output
            and self._fatal is None
            and self._close_reason is None
        )

    # ----------------------------------------------------------------- lifecycle

    async def __aenter__(self) -> AsyncMultiClient:
        self._ensure_started()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Shut down: stop taking requests, cancel what is unfinished, release connections.
        Results not yet yielded are dropped. Idempotent."""
        self._closed = True
        if self._shut_down:
            return
        self._shut_down = True
        tasks = [*self._tasks, *self._dispatcher.tasks()]
        if self._dispatcher_task is not None:
            tasks.append(self._dispatcher_task)
        for task in tasks:
            task.cancel()
        self._wake_all()
        try:
            if tasks:
                await asyncio.gather(*tasks, return_exceptions=True)
            await self._keys.aclose()
        finally:
            await self._backend.aclose()
            if self._dispatcher.progress is not None:
                self._dispatcher.progress.close()

    def _ensure_started(self) -> None:
        if self._dispatcher_task is None:
            if self._shut_down:
                raise ClientClosedError("the client was shut down")
            self._dispatcher_task = asyncio.get_running_loop().create_task(
                self._dispatch(), name="omc-dispatcher"
            )

    async def _dispatch(self) -> None:
        try:
            await self._dispatcher.run()
        except (asyncio.CancelledError, GeneratorExit):  # shut down, or its loop was dropped
            raise
        except BaseException as exc:  # a bug: make sure the caller hears of it
            self._die(exc)
            raise

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)  # as _own, without the call: one task per attempt
        task.add_done_callback(self._task_done)
        return task

    def _own(self, task: asyncio.Task[Any]) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self._die(task.exception())  # type: ignore[arg-type]

    def _wake_all(self) -> None:
        self._dispatcher.wakeup.set()
        self._delivery.wakeup.set()
        self._dispatcher.space.set()

    def _die(self, exc: BaseException) -> None:
        if self._fatal is None:
            if not isinstance(exc, SharedLimitsError):  # that one is explained when raised
                logger.error("openai-multi-client engine failed: %r", exc)
            self._fatal = exc
        self._wake_all()

    # ----------------------------------------------------------------- observing

    def statistics(self) -> Statistics:
        return snapshot(self._dispatcher, self._delivery, self._keys, self._clock.now())

    @property
    def ordered(self) -> bool:
        return self._options.ordered

    def __repr__(self) -> str:
        state = "shut down" if self._shut_down else "closed" if self._closed else "open"
        dispatcher = self._dispatcher
        return (
            f"<AsyncMultiClient {state} ordered={self.ordered} "
            f"concurrency={self._options.concurrency} submitted={dispatcher.submitted} "
            f"in_flight={dispatcher.in_flight} consumed={self._delivery.consumed} "
            f"keys={self._keys!r}>"
        )


def snapshot(
    dispatcher: Dispatcher, delivery: Delivery, keys: KeyAdmission, now: float
) -> Statistics:
    """A client's :class:`Statistics`, read from its parts (``now`` on the client's clock)."""
    budget = dispatcher.budget
    return Statistics(
        submitted=dispatcher.submitted,
        queued=len(dispatcher.intake),
        in_flight=dispatcher.in_flight,
        waiting_to_retry=dispatcher.waiting_to_retry,
        succeeded=delivery.succeeded,
        failed=delivery.failed,
        attempts=dispatcher.attempts,
        retries=dispatcher.retries,
        consumed=delivery.consumed,
        retry_budget_level=None if budget is None else budget.level,
        keys=keys.statistics(now),
        shared_limits=keys.shared_statistics(),
        last_retry_error=dispatcher.last_retry_error,
        failed_by_class=dict(delivery.failed_by_class),
        retries_by_reason=dict(dispatcher.retries_by_reason),
        rate_limited_by_kind=dict(dispatcher.rate_limited_by_kind),
        key_wait_seconds=dispatcher.key_wait_seconds,
        usage_by_key=delivery.usage.snapshot(),
    )


async def run_callback(result: Result) -> None:
    """Run a result's callback (awaiting it if it returns an awaitable); wrap what it raises."""
    assert result.callback is not None
    try:
        returned = result.callback(result)
        if inspect.isawaitable(returned):
            await returned
    except Exception as exc:
        raise CallbackError(
            f"the callback of request {result.index} raised {type(exc).__name__}: {exc}", result
        ) from exc


def _default_key(secret: str | None, base_url: str) -> Key:
    """The key from the settings (argument, environment or ``openai.api_key``): none at all is
    fine for a local server, not for OpenAI's."""
    if secret is None or not secret.strip():
        if is_openai_host(base_url):
            raise ConfigurationError(
                "no API key: pass api_key=..., set the OPENAI_API_KEY environment "
                "variable, or set openai.api_key"
                + ("" if secret is None else " (the key given is empty)")
            )
        return Key.keyless()
    check_secret(secret, "the API key")
    return Key(secret)


def _connect(options: ClientOptions) -> tuple[Backend, KeyPool, TokenEstimator | None]:
    """The backend that makes attempts, the keys it uses and the token estimator (``None``:
    a ``custom_api`` client counts no tokens)."""
    api_key = options.api_key
    shared_pool = api_key if isinstance(api_key, KeyPool) else None
    if options.custom_api is not None:
        backend = CustomAPIBackend(options.custom_api, options.concurrency)
        pool = shared_pool or KeyPool(
            as_keys(key_list(api_key)) or [Key.keyless(name="custom-api")]
        )
        return backend, pool, None
    explicit = key_list(api_key)
    single = explicit[0] if len(explicit) == 1 and isinstance(explicit[0], str) else None
    settings = resolve_settings(single, options.base_url, options.organization)
    # api_key="" alone: no key (a local server); in a list, an empty key is a mistake.
    keys = [] if single is not None and not single.strip() else as_keys(explicit)
    if not keys and shared_pool is None:
        keys = [_default_key(settings.api_key, settings.base_url)]
    default_headers = dict(options.headers or {})
    if settings.organization:
        default_headers.setdefault("OpenAI-Organization", settings.organization)
    transport = options.transport
    timeout, flex_timeout = options.timeouts()
    http = HTTPBackend(
        transport or AiohttpTransport(),
        settings.base_url,
        timeout,
        default_headers,
        owns_transport=transport is None,
        max_response_bytes=options.max_response_bytes,
        flex_timeout=flex_timeout,
    )
    pool = shared_pool or KeyPool(keys, concurrency=options.concurrency)
    return http, pool, options.token_estimator or default_estimator()


setattr(AsyncMultiClient.__init__, "__signature__", face_signature())  # noqa: B010
