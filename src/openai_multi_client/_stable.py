"""The API of the StableOpenai library: :class:`KeyManager` and the :func:`stable` decorator.

StableOpenai's README is the contract::

    KeyManager(["sk-1", "sk-2", ...])

    @stable
    def completions_with_backoff(model, messages, api_key):
        client = openai.OpenAI(api_key=api_key)
        ...

Every call of a decorated function takes a key of its own from the manager (a
:class:`~openai_multi_client._keys.KeyPool`, so the keys' limits, cool-downs and retirements are
shared by every thread, and by our clients when the manager is passed as ``api_key=``), calls
the function with ``api_key=<the secret>``, and hands the key back afterwards. Failures are
recognised whether they are our own :class:`~openai_multi_client.RequestError` classes or the
official SDK's exceptions, translated at one boundary (:func:`translate_error`) and handled by
:func:`~openai_multi_client._retry.decide`, the same decision the engine takes:

* 401, 403 and 429 ``insufficient_quota`` retire the key for the process; the call moves to
  another key without spending an attempt;
* a 429 rate limit cools that key only (for the server's hint, or one second) and the call
  retries, on another key when one is free; it spends no attempt (up to 100 such answers),
  as in the engine: being paced is not a failure of the call;
* 5xx, 408, 409, timeouts and connection errors retry after full-jitter backoff, or after the
  wait the server asked for;
* anything else (400, 404, the function's own ``ValueError``, ...) propagates at once.

When the attempts are spent the caller gets the last error itself (the very exception object
the function raised); when every key is retired, :class:`~openai_multi_client.NoUsableKeyError`
chained from the last error.

Unlike StableOpenai there is no module-wide "current key": each call holds its own reservation,
so any number of threads (or asyncio tasks) may call at once.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import inspect
import logging
import math
import random
import sys
import threading
from collections.abc import Awaitable, Callable, Iterable, Mapping
from types import EllipsisType
from typing import Any, TypeVar, cast, overload

from ._clock import Clock, MonotonicClock
from ._errors import (
    APIStatusError,
    ConfigurationError,
    ConnectError,
    NoUsableKeyError,
    RequestError,
    RequestTimeoutError,
    status_error,
)
from ._limits import Key, KeyPool, Reservation, as_keys, loop_listener
from ._retry import Action, Attempts, RetryPolicy, decide, is_overload
from ._validate import check_count

__all__ = ["KeyManager", "stable", "translate_error"]

logger = logging.getLogger("openai_multi_client")

R = TypeVar("R")

_default_lock = threading.Lock()
_default_manager: KeyManager | None = None


class KeyManager(KeyPool):
    """The API keys that :func:`stable` functions share, as in StableOpenai::

        KeyManager(["sk-1", "sk-2", ...])

    ``api_keys`` is a list of secrets or :class:`~openai_multi_client.Key` objects (to give a
    key a name, a base URL or limits). ``...`` entries are skipped, so the placeholder in
    StableOpenai's README works as written; a list with no key left is a
    :class:`~openai_multi_client.ConfigurationError`.

    **Constructing a KeyManager makes it the process-wide default** that every ``@stable``
    function without an explicit ``manager=`` uses from its next call on. Constructing another
    one replaces it: later calls use the new keys, with fresh limits and no retirements, while
    calls already running finish on the old manager. Pass ``manager=`` to :func:`stable` to
    bind a function to one manager instead.

    A KeyManager is a :class:`~openai_multi_client._keys.KeyPool`, so it can also be given to
    our clients as ``api_key=manager``: they then share its keys, limits and retirements with
    the ``@stable`` functions. It is thread-safe.

    Options (keyword-only): ``max_attempts`` is the number of attempts per call in total (a
    key retired on the way does not count); ``retry_multiplier`` and ``retry_max`` shape the
    full-jitter backoff before retrying a 5xx, a timeout or a connection error
    (``uniform(0, min(retry_max, retry_multiplier * 2 ** n))`` seconds) unless the server says
    how long to wait. ``clock`` (a :class:`~openai_multi_client.Clock`, as every component
    takes; default: ``time.monotonic`` and real sleeps) and ``rng`` replace time and the
    jitter's random source, so tests can run on fake time.
    """

    def __init__(
        self,
        api_keys: Iterable[str | Key | EllipsisType],
        *,
        max_attempts: int = 10,
        retry_multiplier: float = 1.0,
        retry_max: float = 60.0,
        clock: Clock | None = None,
        rng: random.Random | None = None,
    ) -> None:
        if isinstance(api_keys, str | Key):
            api_keys = [api_keys]  # one key, not a list of characters
        if not isinstance(api_keys, Iterable):
            raise ConfigurationError(
                f"api_keys must be a list of API keys, got {type(api_keys).__name__}"
            )
        keys = as_keys([item for item in api_keys if not isinstance(item, EllipsisType)])
        if not keys:
            raise ConfigurationError(
                "KeyManager needs at least one API key, e.g. KeyManager(['sk-...', 'sk-...'])"
            )
        check_count("max_attempts", max_attempts)
        if clock is not None and not isinstance(clock, Clock):
            raise ConfigurationError(f"clock must be a Clock, got {clock!r}")
        if rng is not None and not isinstance(rng, random.Random):
            raise ConfigurationError(f"rng must be a random.Random or None, got {rng!r}")
        super().__init__(keys)
        self.retry_policy = RetryPolicy(
            max_attempts=max_attempts, multiplier=retry_multiplier, max_delay=retry_max
        )
        self.clock: Clock = clock or MonotonicClock()
        self.rng = rng or random.Random()
        global _default_manager  # noqa: PLW0603 - the seed's API is a process-wide default
        with _default_lock:
            _default_manager = self

    @classmethod
    def current(cls) -> KeyManager:
        """The default manager: the one constructed last. Raises ConfigurationError if none."""
        with _default_lock:
            manager = _default_manager
        if manager is None:
            raise ConfigurationError(
                "no KeyManager: create one with KeyManager([...your API keys...]) before "
                "calling a @stable function, or pass @stable(manager=...)"
            )
        return manager

    def __repr__(self) -> str:
        retired = len(self.retired_reasons())
        return (
            f"KeyManager(keys={len(self.keys)}, retired={retired}, "
            f"max_attempts={self.retry_policy.max_attempts})"
        )


# ----------------------------------------------------------------------------- error boundary


def translate_error(error: BaseException) -> RequestError | None:
    """``error`` as one of our :class:`~openai_multi_client.RequestError` classes, or ``None``
    when it is not a request failure we know (it then propagates unchanged).

    Our own errors are returned as they are. The official SDK's ``APIStatusError`` (and its
    subclasses) becomes the matching status error, with its error body, code and response
    headers, so that :func:`classify` and :func:`server_requested_delay` work on it;
    ``APITimeoutError`` becomes :class:`RequestTimeoutError` and ``APIConnectionError``
    :class:`ConnectError`. The SDK is never imported here: if it is not loaded, the error
    cannot have come from it.
    """
    if isinstance(error, RequestError):
        return error
    openai = sys.modules.get("openai")
    if openai is None:
        return None
    status_class: Any = getattr(openai, "APIStatusError", None)
    timeout_class: Any = getattr(openai, "APITimeoutError", None)
    connection_class: Any = getattr(openai, "APIConnectionError", None)
    if isinstance(status_class, type) and isinstance(error, status_class):
        return _from_sdk_status_error(error)
    if isinstance(timeout_class, type) and isinstance(error, timeout_class):
        return RequestTimeoutError(str(error) or "request timed out")
    if isinstance(connection_class, type) and isinstance(error, connection_class):
        return ConnectError(str(error) or "connection error")
    return None


def _from_sdk_status_error(error: Any) -> RequestError:
    status = error.status_code
    if isinstance(status, bool) or not isinstance(status, int):
        status = 500
    # The SDK keeps only the inner error object ({"message", "type", "code", ...}) as .body,
    # or the raw text when the body was not JSON; rebuild OpenAI's {"error": {...}} envelope.
    body: object = getattr(error, "body", None)
    details: dict[str, Any] = {}
    if isinstance(body, Mapping):
        inner = body.get("error", body)
        if isinstance(inner, Mapping):
            details.update(inner)
    for field in ("message", "code", "type"):
        value = getattr(error, field, None)
        if isinstance(value, str) and value and not isinstance(details.get(field), str):
            details[field] = value
    headers: dict[str, str] = {}
    response = getattr(error, "response", None)
    raw_headers = getattr(response, "headers", None)
    if raw_headers is not None:
        try:
            headers = {str(name).lower(): str(value) for name, value in raw_headers.items()}
        except (AttributeError, TypeError):  # not a mapping: keep no headers
            headers = {}
    request_id = getattr(error, "request_id", None)
    return status_error(
        status,
        {"error": details},
        headers,
        request_id if isinstance(request_id, str) else None,
    )


# ----------------------------------------------------------------------------- one call


class _Call:
    """The state of one call of a ``@stable`` function: its attempts and its last error.

    Both the sync and the async wrapper drive it; it never sleeps itself, it says how long.
    """

    __slots__ = ("attempts", "last_error", "manager", "policy")

    def __init__(self, manager: KeyManager, policy: RetryPolicy) -> None:
        self.manager = manager
        self.policy = policy
        self.attempts = Attempts()
        self.last_error: BaseException | None = None

    def take_key(self) -> Reservation | float:
        """A reservation, or the seconds to wait before asking again (``inf``: until the
        manager's capacity changes, see :meth:`wait_for_key` and :meth:`await_key`).

        Raises :class:`NoUsableKeyError` (chained from the last error) when every key is
        retired.
        """
        manager = self.manager
        now = manager.clock.now()
        got = manager.reserve(0, now)
        if isinstance(got, Reservation):
            return got
        if got is None:
            reasons = "; ".join(
                f"{key_id}: {reason}" for key_id, reason in manager.retired_reasons().items()
            )
            raise NoUsableKeyError(
                manager.redact(f"every API key of the KeyManager is retired ({reasons})")
            ) from self.last_error
        if math.isinf(got):
            return got
        return max(0.0, got - now)

    def wait_for_key(self) -> Reservation | float:
        """:meth:`take_key`, blocking this thread while its answer is "after a release": woken
        by the manager (a release by another thread or client, new shares), never polling."""
        changed = threading.Event()
        listener = changed.set
        self.manager.add_listener(listener)  # before asking again: no wake-up is lost
        try:
            while True:
                changed.clear()
                step = self.take_key()
                if isinstance(step, Reservation) or not math.isinf(step):
                    return step
                changed.wait()
        finally:
            self.manager.remove_listener(listener)

    async def await_key(self) -> Reservation | float:
        """:meth:`wait_for_key` for a coroutine: the wake-up comes through its event loop."""
        changed = asyncio.Event()
        listener = loop_listener(changed.set)
        self.manager.add_listener(listener)
        try:
            while True:
                changed.clear()
                step = self.take_key()
                if isinstance(step, Reservation) or not math.isinf(step):
                    return step
                await changed.wait()
        finally:
            self.manager.remove_listener(listener)

    def succeeded(self, reservation: Reservation) -> None:
        self.manager.release(reservation, self.manager.clock.now())

    def failed(self, reservation: Reservation, error: BaseException) -> float | None:
        """Hand the key back after ``error`` and decide: the seconds to wait before the next
        attempt, or ``None`` to re-raise ``error`` to the caller."""
        manager = self.manager
        key = reservation.key
        translated = translate_error(error) if isinstance(error, Exception) else None
        if translated is None:
            # Not a request failure (the function's own bug, a cancellation, Ctrl-C): not the
            # key's fault, and not ours to retry.
            manager.release(reservation, manager.clock.now())
            return None
        headers = translated.headers if isinstance(translated, APIStatusError) else None
        manager.release(
            reservation,
            manager.clock.now(),
            headers=headers,
            overloaded=is_overload(translated),
            failed=True,
        )
        self.last_error = error
        decision = decide(translated, self.attempts, self.policy, None, manager.rng)
        self.attempts = decision.attempts
        redacted = manager.redact(str(translated))
        if decision.cool_key is not None:
            manager.cool_down(key, manager.clock.now() + decision.cool_key)
            logger.debug(
                "API key %s is rate limited: cooling it for %.2fs: %s",
                key.id,
                decision.cool_key,
                redacted,
            )
        if decision.action is Action.RETIRE_KEY:
            manager.retire(key, redacted)
            return 0.0  # on to another key; no attempt spent
        if decision.action is Action.FAIL:
            return None
        logger.debug(
            "retrying in %.2fs after attempt %d of %d failed on key %s: %s",
            decision.delay,
            decision.attempts.failures,
            self.policy.max_attempts,
            key.id,
            redacted,
        )
        return decision.delay


# ----------------------------------------------------------------------------- the decorator


@overload
def stable(function: Callable[..., R], /) -> Callable[..., R]: ...


@overload
def stable(
    function: None = None,
    /,
    *,
    manager: KeyManager | None = None,
    max_attempts: int | None = None,
) -> Callable[[Callable[..., R]], Callable[..., R]]: ...


def stable(
    function: Callable[..., R] | None = None,
    /,
    *,
    manager: KeyManager | None = None,
    max_attempts: int | None = None,
) -> Callable[..., R] | Callable[[Callable[..., R]], Callable[..., R]]:
    """Run each call of ``function`` with a key of its own, failing over and retrying.

    Use it bare (``@stable``) or with options (``@stable(manager=m, max_attempts=3)``), on
    plain or ``async`` functions. The function must accept an ``api_key`` keyword: each call
    gets the secret of the key reserved for it, which is handed back when the call returns or
    raises. ``manager`` defaults to the latest :class:`KeyManager` (looked up at each call);
    ``max_attempts`` overrides the manager's. See the module's docstring for how errors are
    handled. The wrapper keeps the function's name, docstring and signature.
    """
    if max_attempts is not None:
        check_count("max_attempts", max_attempts)
    if manager is not None and not isinstance(manager, KeyManager):
        raise ConfigurationError(f"manager must be a KeyManager, got {type(manager).__name__}")

    def decorate(function: Callable[..., R]) -> Callable[..., R]:
        if not callable(function):
            raise TypeError(f"@stable needs a function, got {type(function).__name__}")
        _check_accepts_api_key(function)
        if inspect.iscoroutinefunction(function):
            return cast(
                "Callable[..., R]",
                _async_wrapper(
                    cast("Callable[..., Awaitable[Any]]", function), manager, max_attempts
                ),
            )
        return _sync_wrapper(function, manager, max_attempts)

    if function is None:
        return decorate
    return decorate(function)


def _check_accepts_api_key(function: Callable[..., Any]) -> None:
    try:
        parameters = inspect.signature(function).parameters
    except (TypeError, ValueError):  # no signature to inspect (some builtins): trust the user
        return
    if "api_key" in parameters:
        kind = parameters["api_key"].kind
        if kind is not inspect.Parameter.POSITIONAL_ONLY:
            return
    elif any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return
    name = getattr(function, "__qualname__", repr(function))
    raise TypeError(
        f"@stable: {name}() must accept an api_key keyword argument, "
        "which receives the key chosen for each call"
    )


def _start(
    manager: KeyManager | None, max_attempts: int | None, kwargs: Mapping[str, Any]
) -> _Call:
    if "api_key" in kwargs:
        raise TypeError("@stable supplies api_key itself; do not pass it")
    chosen = manager if manager is not None else KeyManager.current()
    policy = chosen.retry_policy
    if max_attempts is not None:
        policy = dataclasses.replace(policy, max_attempts=max_attempts)
    return _Call(chosen, policy)


def _sync_wrapper(
    function: Callable[..., R], manager: KeyManager | None, max_attempts: int | None
) -> Callable[..., R]:
    @functools.wraps(function)
    def call_with_key(*args: Any, **kwargs: Any) -> R:
        call = _start(manager, max_attempts, kwargs)
        sleep = call.manager.clock.sleep_blocking
        while True:
            step = call.take_key()
            if not isinstance(step, Reservation) and math.isinf(step):
                step = call.wait_for_key()
            if not isinstance(step, Reservation):
                sleep(step)
                continue
            try:
                result = function(*args, **kwargs, api_key=step.key.secret)
            except BaseException as error:
                delay = call.failed(step, error)
                if delay is None:
                    raise
            else:
                call.succeeded(step)
                return result
            if delay > 0:
                sleep(delay)

    return call_with_key


def _async_wrapper(
    function: Callable[..., Awaitable[Any]], manager: KeyManager | None, max_attempts: int | None
) -> Callable[..., Awaitable[Any]]:
    @functools.wraps(function)
    async def call_with_key(*args: Any, **kwargs: Any) -> Any:
        call = _start(manager, max_attempts, kwargs)
        sleep = call.manager.clock.sleep
        while True:
            step = call.take_key()
            if not isinstance(step, Reservation) and math.isinf(step):
                step = await call.await_key()
            if not isinstance(step, Reservation):
                await sleep(step)
                continue
            try:
                result = await function(*args, **kwargs, api_key=step.key.secret)
            except BaseException as error:
                delay = call.failed(step, error)
                if delay is None:
                    raise
            else:
                call.succeeded(step)
                return result
            if delay > 0:
                await sleep(delay)

    return call_with_key
