"""The engine: :class:`AsyncMultiClient`.

Data flows one way::

    request() ──> intake (bounded: queue_size) ──> dispatcher ──> attempt ──> classify
                                    ^                  │ key, slot                │
                                    │                  v                          v
                         producer waits when      concurrency slots      success/failure: deliver
                         the intake is full       (a retry waiting for   retry: wait (no slot held),
                                                   its delay holds none)  then ahead of the intake
    deliver ──> output (in submission order when ordered) ──> consumer (async for / _take)

Memory stays bounded whatever the input: the dispatcher admits a request from the intake only
while fewer than ``concurrency + queue_size`` admitted requests are still unconsumed (in flight,
waiting to retry, held for reordering or waiting for the consumer). In ordered mode that means a
slow head request slows the intake instead of growing the reorder buffer.

Every task has an owner: the dispatcher, the attempt tasks and the retry timers belong to the
client and are cancelled and awaited by :meth:`AsyncMultiClient.aclose`. An unexpected exception
inside the engine is re-raised to the consumer and to producers; it never vanishes.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import math
import random
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from ._api import Backend, CustomAPI, CustomAPIBackend, HTTPBackend, Outcome
from ._clock import Clock, LoopClock, wait_event
from ._config import is_openai_host, resolve_settings
from ._errors import (
    AbandonedRequestError,
    CallbackError,
    ClientClosedError,
    ConfigurationError,
    NoUsableKeyError,
    RateLimitError,
    RequestError,
    RequestTooLargeError,
    SharedLimitsError,
    TransportError,
)
from ._limits import (
    Key,
    KeyAdmission,
    KeyPool,
    LimitsBackend,
    PoolStatistics,
    Reservation,
    SharedLimitsStatistics,
    admit,
    as_keys,
    check_secret,
)
from ._producers import RequestFunction, RequestFunctions
from ._request import Callback, Request, Result, merge_template, resolve_endpoint
from ._retry import (
    Action,
    RetryBudget,
    RetryPolicy,
    classify,
    is_overload,
    server_requested_delay,
)
from ._stream import ChunkCallback, raise_chunk_error
from ._tokens import TokenEstimator, default_estimator
from ._transport import (
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_MAX_RESPONSE_BYTES,
    DEFAULT_TIMEOUT,
    AiohttpTransport,
    Timeout,
    Transport,
    check_max_response_bytes,
)
from ._validate import check_positive, check_seconds

logger = logging.getLogger("openai_multi_client")

# 429 rate_limit_exceeded answers one request may get before they count as failed attempts.
_MAX_PACED_ATTEMPTS = 100
# The largest usage.total_tokens believed (2**53: still exact as a float).
_MAX_TOKENS = 1 << 53

KeysArgument = str | Key | Sequence[str | Key] | KeyPool | None


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
        *,
        ordered: bool = False,
        api_key: KeysArgument = None,
        base_url: str | None = None,
        organization: str | None = None,
        queue_size: int | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        headers: Mapping[str, str] | None = None,
        transport: Transport | None = None,
        retry_budget: RetryBudget | int | None = 500,
        token_estimator: TokenEstimator | None = None,
        on_send: Callable[[Request], object] | None = None,
        on_chunk: ChunkCallback | None = None,
        read_timeout: float | None = None,
        max_server_delay: float = 120.0,
        shared_limits: str | LimitsBackend | None = None,
        clock: Clock | None = None,
        rng: random.Random | None = None,
        max_response_bytes: int | None = DEFAULT_MAX_RESPONSE_BYTES,
    ) -> None:
        check_positive("concurrency", concurrency)
        check_max_response_bytes(max_response_bytes)
        if queue_size is None:
            queue_size = concurrency
        check_positive("queue_size", queue_size)
        check_seconds("wait_interval", wait_interval)
        self._policy = RetryPolicy(max_retries, retry_multiplier, retry_max, max_server_delay)
        self._policies: dict[tuple[int, float, float], RetryPolicy] = {}
        if endpoint is not None:
            resolve_endpoint(endpoint)
        self._endpoint = endpoint
        self._data_template = dict(merge_template(None, data_template, "data_template"))
        self._metadata_template = dict(merge_template(None, metadata_template, "metadata_template"))
        self._concurrency = concurrency
        self._queue_size = queue_size
        self._window = concurrency + queue_size
        self._wait_interval = float(wait_interval)
        self._ordered = bool(ordered)
        if isinstance(retry_budget, int) and not isinstance(retry_budget, bool):
            retry_budget = RetryBudget(retry_budget)
        elif retry_budget is not None and not isinstance(retry_budget, RetryBudget):
            raise ConfigurationError(
                f"retry_budget must be a RetryBudget, a capacity or None, got {retry_budget!r}"
            )
        self._budget: RetryBudget | None = retry_budget
        self._clock: Clock = clock or LoopClock()
        self._rng = rng or random.Random()
        self._backend: Backend
        shared_pool = api_key if isinstance(api_key, KeyPool) else None
        pool: KeyPool
        self._on_send = on_send
        if on_chunk is not None and not callable(on_chunk):
            raise ConfigurationError(f"on_chunk must be callable, got {type(on_chunk).__name__}")
        self._on_chunk = on_chunk
        self._estimator: TokenEstimator | None = None
        if custom_api is not None:
            if not callable(custom_api):
                raise ConfigurationError("custom_api must be a callable taking the request")
            self._backend = CustomAPIBackend(custom_api, concurrency)
            pool = shared_pool or KeyPool(
                as_keys(_key_list(api_key)) or [Key.keyless(name="custom-api")]
            )
        else:
            explicit = [] if shared_pool is not None else _key_list(api_key)
            single = explicit[0] if len(explicit) == 1 and isinstance(explicit[0], str) else None
            settings = resolve_settings(single, base_url, organization)
            # api_key="" alone: no key (a local server); in a list, an empty key is a mistake.
            keys = [] if single is not None and not single.strip() else as_keys(explicit)
            if not keys and shared_pool is None:
                keys = [_default_key(settings.api_key, settings.base_url)]
            default_headers = dict(headers or {})
            if settings.organization:
                default_headers.setdefault("OpenAI-Organization", settings.organization)
            self._backend = HTTPBackend(
                transport or AiohttpTransport(),
                settings.base_url,
                Timeout(timeout, connect_timeout, read_timeout),
                default_headers,
                owns_transport=transport is None,
                max_response_bytes=max_response_bytes,
            )
            pool = shared_pool or KeyPool(keys, concurrency=concurrency)
            self._estimator = token_estimator or default_estimator()

        # Engine state; touched only from the event loop's thread.
        self._intake: deque[Request] = deque()
        self._ready_retries: deque[Request] = deque()
        self._waiting: dict[Request, asyncio.Task[None]] = {}
        self._last_retry_error: str | None = None
        self._output: deque[Result] = deque()
        self._reorder: dict[int, Result] = {}
        self._next_to_output = 0
        self._submitted = 0
        self._taken = 0
        self._consumed = 0
        self._in_flight = 0
        self._succeeded = 0
        self._failed = 0
        self._attempts = 0
        self._retries = 0
        self._closed = False
        self._close_reason: BaseException | None = None
        self._reason_raised = False
        self._abandoning = False
        self._shut_down = False
        self._fatal: BaseException | None = None
        self._consumer_task: asyncio.Task[Any] | None = None
        self._dispatcher: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._dispatch_wakeup = asyncio.Event()
        self._output_wakeup = asyncio.Event()
        self._space_wakeup = asyncio.Event()
        self._producers = RequestFunctions(self.close)
        # All the engine sees of its keys; with shared limits it also leases their shares.
        self._keys: KeyAdmission = admit(pool, self._clock, shared_limits)

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
        request = self.build_request(
            data,
            endpoint,
            metadata,
            callback,
            max_retries,
            retry_multiplier,
            retry_max,
            on_chunk=on_chunk,
        )
        return await self.submit(request)

    async def submit(self, request: Request) -> int:
        """Queue a request made by :meth:`build_request`, waiting while the intake is full
        (unless called from the task that iterates the client)."""
        self._ensure_started()
        if asyncio.current_task() is not self._consumer_task:
            while len(self._intake) >= self._queue_size and self._accepting():
                self._space_wakeup.clear()
                await self._space_wakeup.wait()
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
        name = endpoint if endpoint is not None else self._endpoint
        if name is not None:
            path = resolve_endpoint(name)
        elif isinstance(self._backend, CustomAPIBackend):
            path = ""  # the seed's custom_api needs no endpoint: it gets request.endpoint None
        else:
            raise ConfigurationError(
                "no endpoint: pass endpoint=... to the client or to request(), e.g. 'chats'"
            )
        merged = merge_template(self._data_template, data, "data")
        merged_metadata = merge_template(self._metadata_template, metadata, "metadata")
        if callback is not None and not callable(callback):
            raise ConfigurationError(f"callback must be callable, got {type(callback).__name__}")
        request = Request(
            -1,
            name,
            path,
            merged,
            merged_metadata,
            callback,
            self._policy_for(max_retries, retry_multiplier, retry_max),
        )
        self._backend.prepare(request)
        if on_chunk is not None and not (callable(on_chunk) and request.stream):
            raise ConfigurationError(
                "on_chunk must be callable and is only called for streamed requests: "
                "set data['stream']=True (chat completions, completions or responses)"
            )
        request.on_chunk = on_chunk or self._on_chunk
        if self._estimator is not None:
            request.tokens = self._estimator(merged)
        return request

    def submit_nowait(self, request: Request) -> int:
        """Queue a built request at once, ignoring ``queue_size`` (loop thread only)."""
        if not self._accepting():
            self._raise_not_accepting()
        request.index = self._submitted
        self._submitted += 1
        self._intake.append(request)
        self._dispatch_wakeup.set()
        return request.index

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
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def abandon_unsent(self) -> int:
        """Stop: close the intake and give up every request not in flight (queued, or waiting
        to be retried). Each yields a result failed with :class:`AbandonedRequestError`;
        requests in flight finish (a failed one is not retried). Returns how many were
        abandoned."""
        self._abandoning = True
        self.close()
        abandoned: list[Request] = list(self._intake)
        self._taken += len(self._intake)
        self._intake.clear()
        abandoned += self._ready_retries
        self._ready_retries.clear()
        waiting, self._waiting = self._waiting, {}
        for request, task in waiting.items():
            task.cancel()
            abandoned.append(request)
        error = _abandoned()
        for request in abandoned:
            self._finish(request, None, error, None)
        self._wake_all()
        return len(abandoned)

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

    def _policy_for(
        self, max_retries: int | None, multiplier: float | None, maximum: float | None
    ) -> RetryPolicy:
        if max_retries is None and multiplier is None and maximum is None:
            return self._policy
        base = self._policy
        spec = (
            base.max_attempts if max_retries is None else max_retries,
            base.multiplier if multiplier is None else multiplier,
            base.max_delay if maximum is None else maximum,
        )
        policy = self._policies.get(spec)
        if policy is None:
            policy = RetryPolicy(*spec, base.max_server_delay)
            if len(self._policies) < 64:
                self._policies[spec] = policy
        return policy

    # ----------------------------------------------------------------- consuming

    def __aiter__(self) -> AsyncIterator[Result]:
        return self

    async def __anext__(self) -> Result:
        self._consumer_task = asyncio.current_task()
        batch = await self.take(1)
        if not batch:
            raise StopAsyncIteration
        result = batch[0]
        if result.callback is not None:
            await run_callback(result)
        raise_chunk_error(result)
        return result

    async def take(self, limit: int) -> list[Result]:
        """Wait for at least one result and return up to ``limit`` of them, without running
        callbacks; an empty list means every result was taken. Raises what stopped the run."""
        self._ensure_started()
        while not self._output:
            if self._fatal is not None:
                raise self._fatal
            if self._closed and self._consumed >= self._submitted:
                reason, self._close_reason = self._close_reason, None
                if reason is not None:
                    self._reason_raised = True
                    raise reason
                return []
            if self._shut_down:
                raise ClientClosedError(
                    f"the client was shut down with {self._submitted - self._consumed} "
                    "results not yet yielded"
                )
            self._output_wakeup.clear()
            await self._output_wakeup.wait()
        output = self._output
        count = min(limit, len(output))
        batch = [output.popleft() for _ in range(count)]
        self._consumed += count
        self._dispatch_wakeup.set()
        return batch

    @property
    def drained(self) -> bool:
        """Closed, every result taken, and nothing left to raise: iteration is over."""
        return (
            self._closed
            and self._consumed >= self._submitted
            and not self._output
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
        tasks = list(self._tasks)
        if self._dispatcher is not None:
            tasks.append(self._dispatcher)
        for task in tasks:
            task.cancel()
        self._wake_all()
        try:
            if tasks:
                await asyncio.gather(*tasks, return_exceptions=True)
            await self._keys.aclose()
        finally:
            await self._backend.aclose()

    def _ensure_started(self) -> None:
        if self._dispatcher is None:
            if self._shut_down:
                raise ClientClosedError("the client was shut down")
            self._dispatcher = asyncio.get_running_loop().create_task(
                self._dispatch(), name="omc-dispatcher"
            )

    def _wake_all(self) -> None:
        self._dispatch_wakeup.set()
        self._output_wakeup.set()
        self._space_wakeup.set()

    def _die(self, exc: BaseException) -> None:
        if self._fatal is None:
            if not isinstance(exc, SharedLimitsError):  # that one is explained when raised
                logger.error("openai-multi-client engine failed: %r", exc)
            self._fatal = exc
        self._wake_all()

    # ----------------------------------------------------------------- dispatching

    async def _dispatch(self) -> None:
        try:
            # With shared limits, nothing goes out before this client has its shares.
            await self._keys.start(self._dispatch_wakeup.set)
            while True:
                request = self._peek_request()
                if request is None:
                    await self._wait_for_wakeup(None)
                    continue
                if request.tokens > self._keys.largest_cost():
                    self._take_request()
                    self._finish(request, None, self._too_large_error(request), None)
                    continue
                reservation = self._keys.reserve(request.tokens, self._clock.now())
                if reservation is None:  # every key is retired
                    self._take_request()
                    self._finish(request, None, self._no_key_error(), None)
                    continue
                if isinstance(reservation, float):  # no key has room yet: wait for one
                    await self._wait_for_wakeup(reservation)
                    continue
                self._take_request()
                self._in_flight += 1
                self._spawn(self._attempt(request, reservation))
        except (asyncio.CancelledError, GeneratorExit):  # shut down, or its loop was dropped
            raise
        except BaseException as exc:  # a bug: make sure the caller hears of it
            self._die(exc)
            raise

    def _peek_request(self) -> Request | None:
        """The request to dispatch next, if a slot and the admission window allow one."""
        if self._in_flight >= self._concurrency:
            return None
        if self._ready_retries:
            return self._ready_retries[0]
        if self._intake and self._taken - self._consumed < self._window:
            return self._intake[0]
        return None

    def _take_request(self) -> None:
        """Remove the request :meth:`_peek_request` returned from its queue."""
        if self._ready_retries:
            self._ready_retries.popleft()
        else:
            self._intake.popleft()
            self._taken += 1
            self._space_wakeup.set()

    async def _wait_for_wakeup(self, deadline: float | None) -> None:
        """Wait until something changes, or until ``deadline`` (clock time) if given."""
        wakeup = self._dispatch_wakeup
        wakeup.clear()
        if deadline is None:
            await wakeup.wait()
            return
        delay = deadline - self._clock.now()
        if delay <= 0:
            return
        if math.isinf(delay):  # "after a release": the pool wakes us, whoever releases
            await wakeup.wait()
            return
        await wait_event(wakeup, self._clock, delay)

    def _spawn(self, coroutine: Any) -> None:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self._die(task.exception())  # type: ignore[arg-type]

    async def _attempt(self, request: Request, reservation: Reservation) -> None:
        key = reservation.key
        request.attempt += 1
        request.key = key.id
        self._attempts += 1
        clock = self._clock
        if self._on_send is not None:
            try:
                self._on_send(request)
            except BaseException:  # e.g. the journal cannot be written: stop the run
                self._keys.release(reservation, clock.now(), failed=True)
                raise
        started = clock.now()
        try:
            outcome = await self._backend.call(request, key)
        except RequestError as exc:
            self._failed_attempt(request, reservation, exc, clock.now() - started)
        except Exception as exc:  # a user-supplied transport that broke its contract
            # Not chained: the original may carry a secret; its text is redacted below.
            error = TransportError(f"transport raised {type(exc).__name__}: {exc}")
            self._failed_attempt(request, reservation, error, clock.now() - started)
        except BaseException:  # cancelled (shutdown) or interrupted: hand the key back
            self._keys.release(reservation, clock.now(), failed=True)
            raise
        else:
            now = clock.now()
            self._keys.release(
                reservation, now, headers=outcome.headers, used_tokens=_used_tokens(outcome)
            )
            if self._budget is not None:
                self._budget.on_success(request.retry_cost)
            self._finish(request, outcome, None, now - started)
        if self._wait_interval:
            await clock.sleep(self._wait_interval)
        self._in_flight -= 1
        self._dispatch_wakeup.set()

    def _failed_attempt(
        self, request: Request, reservation: Reservation, error: RequestError, latency: float
    ) -> None:
        key = reservation.key
        message = str(error)
        redacted = self._keys.redact(message)
        if redacted != message:
            error.args = (redacted,)
        now = self._clock.now()
        self._keys.release(
            reservation,
            now,
            headers=getattr(error, "headers", None),
            overloaded=is_overload(error),
            failed=True,
        )
        if self._abandoning:  # stopping: an attempt that failed is not tried again
            self._finish(request, None, _abandoned(), latency)
            return
        action = classify(error)
        if action is Action.RETIRE_KEY:
            self._keys.retire(key, redacted)
            if self._keys.exhausted:
                self._finish(request, None, error, latency)
                self._fail_waiting_retries()
                return
            # Another key will take it; a dead key does not cost the request an attempt.
            request.attempt -= 1
            self._ready_retries.append(request)
            self._dispatch_wakeup.set()
            return
        if isinstance(error, RateLimitError) and action is Action.RETRY:
            # The key is over its limit: only this key pauses, for as long as the server said,
            # and the request waits for a key with room, in the dispatcher, like any request.
            # Such a pacing signal is not a failure of the request: it spends neither an
            # attempt nor the outage budget (up to a cap, so a key that always refuses cannot
            # keep a request forever).
            hint = server_requested_delay(error)
            pause = min(hint if hint is not None else 1.0, request.policy.max_server_delay)
            self._keys.cool_down(key, pause, now)
            if request.paced < _MAX_PACED_ATTEMPTS:
                request.paced += 1
                self._retries += 1
                self._ready_retries.append(request)
                self._dispatch_wakeup.set()
                return
        if action is Action.RETRY and request.policy.should_retry(request.attempt - request.paced):
            cost = 0 if self._budget is None else self._budget.try_spend(error)
            if cost is not None:
                request.retry_cost += cost
                self._retries += 1
                self._last_retry_error = f"{type(error).__name__}: {redacted}"
                failures = request.attempt - request.paced
                delay = request.policy.next_delay(failures, error, self._rng)
                logger.debug(
                    "request %d attempt %d failed (%s); retrying in %.3f s",
                    request.index,
                    request.attempt,
                    redacted,
                    delay,
                )
                self._schedule_retry(request, delay)
                return
            logger.debug("retry budget exhausted; request %d fails: %s", request.index, redacted)
        self._finish(request, None, error, latency)

    def _schedule_retry(self, request: Request, delay: float) -> None:
        task = asyncio.get_running_loop().create_task(self._retry_later(request, delay))
        self._waiting[request] = task
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    async def _retry_later(self, request: Request, delay: float) -> None:
        await self._clock.sleep(delay)
        del self._waiting[request]
        self._ready_retries.append(request)
        self._dispatch_wakeup.set()

    def _fail_waiting_retries(self) -> None:
        error = self._no_key_error()
        waiting, self._waiting = self._waiting, {}
        for request, task in waiting.items():
            task.cancel()
            self._finish(request, None, error, None)
        while self._ready_retries:
            self._finish(self._ready_retries.popleft(), None, error, None)

    def _too_large_error(self, request: Request) -> RequestTooLargeError:
        return RequestTooLargeError(
            f"request {request.index} would be charged {request.tokens} tokens, more than any "
            f"key allows per minute ({self._keys.largest_cost():g}); shorten it or lower "
            "max_tokens"
        )

    def _no_key_error(self) -> NoUsableKeyError:
        reasons = "; ".join(f"{key}: {why}" for key, why in self._keys.retired_reasons().items())
        return NoUsableKeyError(
            f"every API key was retired for this run, so nothing can be sent ({reasons})"
        )

    # ----------------------------------------------------------------- delivering

    def _finish(
        self,
        request: Request,
        outcome: Outcome | None,
        error: RequestError | None,
        latency: float | None,
    ) -> None:
        result = Result(
            request.index,
            request.endpoint,
            request.data,
            request.metadata,
            attempt=request.attempt,
            latency=latency,
            key=request.key,
            callback=request.callback,
            _chunk_error=request.chunk_error,
        )
        if outcome is not None:
            result.response = outcome.response
            result.status_code = outcome.status_code
            result.request_id = outcome.request_id
            self._succeeded += 1
        else:
            result.failed = True
            result.error = error
            status = getattr(error, "status_code", None)
            result.status_code = status
            result.request_id = getattr(error, "request_id", None)
            result.response = getattr(error, "body", None)
            self._failed += 1
        request.body = None
        if self._closed and self._succeeded + self._failed == self._submitted:
            self._keys.idle()  # nothing left to send
        if self._ordered:
            self._reorder[result.index] = result
            while self._next_to_output in self._reorder:
                self._output.append(self._reorder.pop(self._next_to_output))
                self._next_to_output += 1
        else:
            self._output.append(result)
        self._output_wakeup.set()

    # ----------------------------------------------------------------- observing

    def statistics(self) -> Statistics:
        return Statistics(
            submitted=self._submitted,
            queued=len(self._intake),
            in_flight=self._in_flight,
            waiting_to_retry=len(self._waiting) + len(self._ready_retries),
            succeeded=self._succeeded,
            failed=self._failed,
            attempts=self._attempts,
            retries=self._retries,
            consumed=self._consumed,
            retry_budget_level=None if self._budget is None else self._budget.level,
            keys=self._keys.statistics(self._clock.now()),
            shared_limits=self._keys.shared_statistics(),
            last_retry_error=self._last_retry_error,
        )

    @property
    def ordered(self) -> bool:
        return self._ordered

    def __repr__(self) -> str:
        state = "shut down" if self._shut_down else "closed" if self._closed else "open"
        return (
            f"<AsyncMultiClient {state} ordered={self._ordered} concurrency={self._concurrency} "
            f"submitted={self._submitted} in_flight={self._in_flight} consumed={self._consumed} "
            f"keys={self._keys!r}>"
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


def _abandoned() -> AbandonedRequestError:
    return AbandonedRequestError("the run stopped before this request had an outcome")


def _used_tokens(outcome: Outcome) -> int | None:
    usage = outcome.response.get("usage") if isinstance(outcome.response, dict) else None
    if isinstance(usage, dict):
        total = usage.get("total_tokens")
        # A count a server could mean: a negative or astronomical one (it would overflow the
        # limiter's float arithmetic) is ignored, as if the answer had no usage.
        if isinstance(total, int) and not isinstance(total, bool) and 0 <= total <= _MAX_TOKENS:
            return total
    return None


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


def _key_list(api_key: KeysArgument) -> list[str | Key]:
    if api_key is None:
        return []
    if isinstance(api_key, str | Key):
        return [api_key]
    if isinstance(api_key, Sequence):
        return list(api_key)
    raise ConfigurationError(
        f"api_key must be a string, a Key or a list of them, got {type(api_key).__name__}"
    )
