"""The dispatcher: intake, the admission window, attempts and retry timers.

::

    submit ──> intake ──┐                       ┌──> deliver (success, or a final failure)
                        ├─> reserve a key ──> attempt ──> decide ─┤
    retry timer ──> ready ┘   (slot + limits)                      └──> retry timer / ready

One :class:`Dispatcher` per client, driven by one task (:meth:`Dispatcher.run`) that takes the
next request (a ready retry first, then the intake), reserves a key for it through the
:class:`~openai_multi_client._limits.KeyAdmission` (the only thing it sees of the keys) and
starts an attempt. An attempt's failure goes to :func:`~openai_multi_client._retry.decide`, the
same decision ``@stable`` takes; a retry waits for its delay in a timer that holds no slot.

Memory stays bounded whatever the input: a request leaves the intake only while fewer than
``window`` (``concurrency + queue_size``) admitted requests are unconsumed and not held for
reordering (in request, waiting to retry, or waiting for the consumer): a slow consumer slows the
producer. In ordered mode the reorder buffer has its own bound: a request is admitted only while
it lies at most ``reorder_buffer`` places after the oldest unfinished request, so the buffer never
holds more than ``reorder_buffer`` results. A slow head request (one hanging until its timeout)
lets the run go on until that many results wait behind it, instead of stopping it at once.

A request's per-attempt bookkeeping (failures, paced answers, the budget its retries took)
lives in the dispatcher's record (an :class:`~openai_multi_client._retry.Attempts` value for
each request that has failed at least once; a request that succeeds at once costs none), never
on the :class:`Request`; the dispatcher alone writes the two attempt fields a ``custom_api`` or
``on_chunk`` may read (``request.attempt`` and ``request.key``).
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
from collections import deque
from collections.abc import Callable, Coroutine
from typing import Any

from ._api import Backend, Outcome
from ._clock import Clock, LoopClock, wait_event
from ._delivery import Delivery
from ._errors import (
    AbandonedRequestError,
    APIStatusError,
    ConnectError,
    InsufficientQuotaError,
    ModelRefusedError,
    NoUsableKeyError,
    RateLimitError,
    RequestError,
    RequestTooLargeError,
    TransportError,
)
from ._limits import Key, KeyAdmission, Reservation
from ._logfields import log_fields
from ._options import ClientOptions
from ._progressbar import ProgressBar
from ._request import Request
from ._retry import (
    Action,
    Attempts,
    Decision,
    RetryBudget,
    decide,
    is_overload,
    refusal_scope,
)
from ._telemetry import AttemptTrace, Instrumentation

logger = logging.getLogger("openai_multi_client")

# The largest usage.total_tokens believed (2**53: still exact as a float).
_MAX_TOKENS = 1 << 53

_FIRST = Attempts()  # no failed attempt yet

Spawn = Callable[[Coroutine[Any, Any, None]], "asyncio.Task[None]"]


class Dispatcher:
    """Intake, admission window, attempts and retry timers of one client (loop thread only)."""

    def __init__(
        self,
        options: ClientOptions,
        backend: Backend,
        keys: KeyAdmission,
        clock: Clock,
        delivery: Delivery,
        spawn: Spawn,
        crash: Callable[[BaseException], None],
        telemetry: Instrumentation | None = None,
    ) -> None:
        self._backend = backend
        self._telemetry = telemetry
        self.progress = ProgressBar() if options.progress else None
        self._keys = keys
        self._clock = clock
        self._now: Callable[[], float] = clock.now  # the loop's own time() once running
        self._delivery = delivery
        self._spawn = spawn
        # An attempt that fails in a way no result can carry (a bug; on_send raising): the
        # client fails with it. Attempts run as bare tasks, tracked here, not through spawn.
        self._crash = crash
        self._running: dict[Request, asyncio.Task[None]] = {}  # attempts, until they end
        self._resting: set[asyncio.Task[None]] = set()  # ended, waiting out wait_interval
        self._concurrency = options.concurrency
        self._window = options.window
        self._ordered = options.ordered
        self._reorder_buffer = options.reorder_buffer
        self.intake_size = options.intake_size
        self._wait_interval = float(options.wait_interval)
        self._on_send = options.on_send
        self._on_unbilled = options.on_unbilled
        self._rng = options.rng or random.Random()
        self.budget: RetryBudget | None = options.budget()
        self.intake: deque[Request] = deque()  # the client reads its length (backpressure)
        self._ready: deque[Request] = deque()  # retries whose delay is over
        self._waiting: dict[Request, asyncio.Task[None]] = {}  # retries waiting for their delay
        # What the failed attempts cost, for each request that has failed at least once.
        self._attempts: dict[Request, Attempts] = {}
        # The attempts in request: their tasks and the keys they hold (abandon_in_flight).
        self._flights: dict[Request, tuple[asyncio.Task[None], Reservation]] = {}
        self.wakeup = asyncio.Event()  # something changed: look again
        self.space = asyncio.Event()  # the intake has room
        self.submitted = 0
        self.taken = 0
        self.in_flight = 0
        self.attempts = 0
        self.retries = 0
        self.retries_by_reason: dict[str, int] = {}  # error class name -> retries it caused
        self.rate_limited_by_kind: dict[str, int] = {}  # "rate_limit" / "insufficient_quota"
        self.key_wait_seconds = 0.0  # spent waiting for a key with room
        self.last_retry_error: str | None = None
        self.intake_closed = False
        self.abandoning = False

    # ----------------------------------------------------------------- intake

    def submit(self, request: Request) -> int:
        request.index = self.submitted
        self.submitted += 1
        self.intake.append(request)
        self.wakeup.set()
        return request.index

    @property
    def waiting_to_retry(self) -> int:
        return len(self._waiting) + len(self._ready)

    def abandon(self) -> int:
        """Fail every request not in request with :class:`AbandonedRequestError`; a failed
        attempt from now on is not retried. Returns how many were abandoned."""
        self.abandoning = True
        self.taken += len(self.intake)
        abandoned = [*self.intake, *self._ready, *self._waiting]
        self.intake.clear()
        self._ready.clear()
        for task in self._waiting.values():
            task.cancel()
        self._waiting.clear()
        for request in abandoned:
            self._finish(request, None, _abandoned(), None)
        return len(abandoned)

    def tasks(self) -> list[asyncio.Task[None]]:
        """The attempts' tasks not yet ended (to cancel at shutdown). A task cancelled before
        it ever ran never reaches its ``finally``: it stays in ``_running``, done."""
        return [task for task in (*self._running.values(), *self._resting) if not task.done()]

    def abandon_in_flight(self) -> int:
        """Cancel every attempt in request and fail its request with
        :class:`AbandonedRequestError` (its outcome is unknown: it may have reached the server).
        Returns how many were abandoned."""
        self.abandoning = True
        flights, self._flights = self._flights, {}
        now = self._now()
        for request, (task, reservation) in flights.items():
            task.cancel()  # it stays in _running until it ends: aclose() waits for it
            self._keys.release(reservation, now, failed=True)
            self.in_flight -= 1
            self._finish(request, None, _abandoned(), None)
        if flights:
            self.wakeup.set()
        return len(flights)

    # ----------------------------------------------------------------- admission

    async def run(self) -> None:
        """Admit requests and start their attempts, until cancelled."""
        loop = asyncio.get_running_loop()
        create_task = loop.create_task
        if type(self._clock) is LoopClock:  # what LoopClock.now() reads, without its lookups
            self._now = loop.time
        # With shared limits, nothing goes out before this client has its shares.
        await self._keys.start(self.wakeup.set)
        keys = self._keys
        while True:
            request = self._peek()
            if request is None:
                if not self._ready and not self.intake:
                    keys.drained()  # with shared limits, the shares go to who has work
                await self._wait(None)
                continue
            if request.tokens > keys.largest_cost():
                self._take()
                self._finish(request, None, _too_large_error(request, keys), None)
                continue
            model = request.data.get("model")  # (_model(), inline: once per request)
            if type(model) is not str:
                model = None
            reservation = keys.reserve(request.tokens, self._now(), model)
            if reservation is None:  # every key is retired, or refused this model
                self._take()
                error = _no_key_error(keys) if keys.exhausted else _refused_error(model, keys)
                self._finish(request, None, error, None)
                continue
            if isinstance(reservation, float):  # no key has room yet: wait for one
                waited_from = self._now()
                try:
                    await self._wait(reservation)
                finally:
                    self.key_wait_seconds += self._now() - waited_from
                continue
            self._take()
            self.in_flight += 1
            task = create_task(self._attempt(request, reservation))
            self._running[request] = task
            self._flights[request] = (task, reservation)

    def _peek(self) -> Request | None:
        """The request to dispatch next, if a slot and the admission window allow one."""
        if self.in_flight >= self._concurrency:
            return None
        if self._ready:
            return self._ready[0]
        if not self.intake:
            return None
        if self._ordered:
            return self.intake[0] if self._room() else None
        # Unordered, nothing is held back: only the admission window counts.
        return self.intake[0] if self.taken - self._delivery.consumed < self._window else None

    def _room(self) -> bool:
        """Whether the admission window and the reorder buffer allow a new request (ordered)."""
        delivery = self._delivery
        if self.taken - delivery.consumed - delivery.held >= self._window:
            return False
        return self.taken - delivery.head <= self._reorder_buffer

    def _take(self) -> None:
        """Remove the request :meth:`_peek` returned from its queue."""
        if self._ready:
            self._ready.popleft()
        else:
            self.intake.popleft()
            self.taken += 1
            self.space.set()

    async def _wait(self, deadline: float | None) -> None:
        """Wait until something changes, or until ``deadline`` (clock time) if given."""
        wakeup = self.wakeup
        wakeup.clear()
        if deadline is None:
            await wakeup.wait()
            return
        delay = deadline - self._now()
        if delay <= 0:
            return
        if math.isinf(delay):  # "after a release": the pool wakes us, whoever releases
            await wakeup.wait()
            return
        await wait_event(wakeup, self._clock, delay)

    # ----------------------------------------------------------------- attempts

    async def _attempt(self, request: Request, reservation: Reservation) -> None:
        tracked = True  # in self._running (not when resting after wait_interval)
        try:
            request.attempt += 1
            request.key = reservation.key.id
            self.attempts += 1
            clock = self._now
            if self._on_send is not None:
                try:
                    self._on_send(request)
                except BaseException:  # e.g. the journal cannot be written: stop the run
                    if self._flights.pop(request, None) is not None:
                        self._keys.release(reservation, clock(), failed=True)
                    raise
            key = reservation.key
            started = clock()
            telemetry = self._telemetry
            trace = None if telemetry is None else telemetry.attempt(request, key, started)
            try:
                outcome = await self._backend.call(request, key)
            except RequestError as exc:
                if self._flights.pop(request, None) is None:
                    return self._abandoned_meanwhile(trace, started)
                self._failed(request, reservation, exc, clock() - started, trace)
            except Exception as exc:  # a user-supplied transport that broke its contract
                if self._flights.pop(request, None) is None:
                    return self._abandoned_meanwhile(trace, started)
                # Not chained: the original may carry a secret; its text is redacted below.
                error = TransportError(f"transport raised {type(exc).__name__}: {exc}")
                self._failed(request, reservation, error, clock() - started, trace)
            except BaseException:  # cancelled (shutdown, abandoned) or interrupted
                if self._flights.pop(request, None) is not None:  # not abandoned: hand the key back
                    self._keys.release(reservation, clock(), failed=True)
                if trace is not None:
                    trace.interrupted(clock() - started)
                raise
            else:
                if self._flights.pop(request, None) is None:
                    return self._abandoned_meanwhile(trace, started)
                ended = clock()
                used = _used_tokens(outcome)
                self._keys.release(reservation, ended, headers=outcome.headers, used_tokens=used)
                if self.budget is not None:
                    spent = self._attempts.get(request) if self._attempts else None
                    self.budget.on_success(0 if spent is None else spent.retry_cost)
                if trace is not None:
                    trace.succeeded(outcome, ended - started)
                self._finish(request, outcome, None, ended - started)
            if self._wait_interval:
                tracked = False  # a retry of the request may start meanwhile
                task = self._running.pop(request)
                self._resting.add(task)
                try:
                    await self._clock.sleep(self._wait_interval)
                finally:
                    self._resting.discard(task)
            self.in_flight -= 1
            self.wakeup.set()
        except (asyncio.CancelledError, GeneratorExit):
            raise
        except BaseException as exc:  # a bug, or on_send raised (the journal cannot be written)
            self._crash(exc)  # the client fails with it (not raised here: it would stop the loop)
        finally:
            if tracked:
                self._running.pop(request, None)

    def _abandoned_meanwhile(self, trace: AttemptTrace | None, started: float) -> None:
        """An attempt ended after :meth:`abandon_in_flight` settled its request (the attempt
        was no longer in ``_flights``): its trace ends as interrupted, nothing else is done."""
        if trace is not None:
            trace.interrupted(self._now() - started)
        self.wakeup.set()

    def _failed(
        self,
        request: Request,
        reservation: Reservation,
        error: RequestError,
        latency: float,
        trace: AttemptTrace | None,
    ) -> None:
        key = reservation.key
        message = str(error)
        redacted = self._keys.redact(message)
        if redacted != message:
            error.args = (redacted,)
        if trace is not None:
            trace.failed(error, latency)
        now = self._now()
        headers = getattr(error, "headers", None)
        overloaded = is_overload(error)
        if isinstance(error, RateLimitError):
            kind = (
                "insufficient_quota" if isinstance(error, InsufficientQuotaError) else "rate_limit"
            )
            self.rate_limited_by_kind[kind] = self.rate_limited_by_kind.get(kind, 0) + 1
        self._keys.release(reservation, now, headers=headers, overloaded=overloaded, failed=True)
        if self._on_unbilled is not None and _unbilled(error):
            self._on_unbilled(request)
        if self.abandoning:  # stopping: an attempt that failed is not tried again
            self._finish(request, None, _abandoned(), latency)
            return
        policy = request.policy
        attempts = self._attempts.get(request, _FIRST)
        decision = decide(error, attempts, policy, self.budget, self._rng)
        self._attempts[request] = decision.attempts
        if decision.cool_key is not None:
            self._keys.cool_down(key, decision.cool_key, now)
            logger.debug(
                "API key %s is rate limited; cooling for %.3f s",
                key.id,
                decision.cool_key,
                extra=log_fields("key_cooling", request, key.id, error),
            )
        if decision.action is Action.RETIRE_KEY:
            self._retire(request, key, redacted, error, latency)
        elif decision.action is Action.RETRY:
            self._retry(request, decision, error, redacted)
        else:
            fields = log_fields("request_failed", request, key.id, error)
            if decision.reason is not None:  # retryable, but the attempts or the budget are spent
                index = request.index
                logger.info(
                    "%s; request %d fails: %s", decision.reason, index, redacted, extra=fields
                )
            else:
                logger.info("request %d failed: %s", request.index, redacted, extra=fields)
            self._finish(request, None, error, latency)

    def _retire(
        self, request: Request, key: Key, reason: str, error: RequestError, latency: float
    ) -> None:
        model = _model(request)
        # A refusal of one model need not be the key's death: a proxy's dead upstream for one
        # model group answers 401 for it and 200 for the others (the pool weighs the answers).
        if model is None or not self._keys.refuse(key, model, reason, refusal_scope(error)):
            self._keys.retire(key, reason)
        if self._keys.exhausted:
            self._finish(request, None, error, latency)
            self._fail_waiting_retries()
            return
        # Another key will take it; a dead key does not cost the request an attempt.
        request.attempt -= 1
        self._ready.append(request)
        self.wakeup.set()

    def _retry(
        self, request: Request, decision: Decision, error: RequestError, redacted: str
    ) -> None:
        delay, cost, paced = decision.delay, decision.budget_cost, decision.paced
        self.retries += 1
        reason = type(error).__name__
        self.retries_by_reason[reason] = self.retries_by_reason.get(reason, 0) + 1
        if paced:  # turned away by a key's rate limit: wait in the limiter, not in a timer
            self._ready.append(request)
            self.wakeup.set()
            return
        if self.budget is not None:
            self.budget.spend(cost)
        self.last_retry_error = f"{type(error).__name__}: {redacted}"
        logger.debug(
            "request %d attempt %d failed (%s); retrying in %.3f s",
            request.index,
            request.attempt,
            redacted,
            delay,
            extra=log_fields("retry", request, error=error, delay=delay),
        )
        self._waiting[request] = self._spawn(self._retry_later(request, delay))

    async def _retry_later(self, request: Request, delay: float) -> None:
        await self._clock.sleep(delay)
        del self._waiting[request]
        self._ready.append(request)
        self.wakeup.set()

    def _fail_waiting_retries(self) -> None:
        error = _no_key_error(self._keys)
        waiting, self._waiting = self._waiting, {}
        for request, task in waiting.items():
            task.cancel()
            self._finish(request, None, error, None)
        while self._ready:
            self._finish(self._ready.popleft(), None, error, None)

    # ----------------------------------------------------------------- outcomes

    def _finish(
        self,
        request: Request,
        outcome: Outcome | None,
        error: RequestError | None,
        latency: float | None,
    ) -> None:
        if self._attempts:
            self._attempts.pop(request, None)
        self._delivery.deliver(request, outcome, error, latency)
        if self.progress is not None:
            self.progress.finished(self.submitted, error is not None)
        if self.intake_closed and self._delivery.finished == self.submitted:
            self._keys.idle()  # nothing left to send


def _too_large_error(request: Request, keys: KeyAdmission) -> RequestTooLargeError:
    return RequestTooLargeError(
        f"request {request.index} would be charged {request.tokens} tokens, more than any "
        f"key allows per minute ({keys.largest_cost():g}); shorten it or lower max_tokens"
    )


def _refused_error(model: str | None, keys: KeyAdmission) -> ModelRefusedError:
    refusals = {} if model is None else keys.refusals(model)
    reasons = "; ".join(f"{key}: {why}" for key, why in refusals.items())
    error = ModelRefusedError(
        f"no API key may use model {model!r} ({reasons}); the keys stay in use for other "
        "models: fix that model's access (a proxy's upstream key?) and run again"
    )
    error.model, error.refusals = model, refusals  # a plain dict: results may be pickled
    return error


def _no_key_error(keys: KeyAdmission) -> NoUsableKeyError:
    reasons = "; ".join(f"{key}: {why}" for key, why in keys.retired_reasons().items())
    return NoUsableKeyError(
        f"every API key was retired for this run, so nothing can be sent ({reasons})"
    )


def _model(request: Request) -> str | None:
    model = request.data.get("model")
    return model if isinstance(model, str) else None


def _abandoned() -> AbandonedRequestError:
    return AbandonedRequestError("the run stopped before this request had an outcome")


def _unbilled(error: RequestError) -> bool:
    """Whether a failed attempt is known not to have been billed: the server answered with an
    error status, or the connection was never made."""
    return isinstance(error, APIStatusError | ConnectError)


def _used_tokens(outcome: Outcome) -> int | None:
    usage = outcome.response.get("usage") if isinstance(outcome.response, dict) else None
    if isinstance(usage, dict):
        total = usage.get("total_tokens")
        # A count a server could mean: a negative or astronomical one (it would overflow the
        # limiter's float arithmetic) is ignored, as if the answer had no usage.
        if isinstance(total, int) and not isinstance(total, bool) and 0 <= total <= _MAX_TOKENS:
            return total
    return None
