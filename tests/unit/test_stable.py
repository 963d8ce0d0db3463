"""KeyManager and @stable (the StableOpenai API) on fake time: no real sleeping, no network."""

from __future__ import annotations

import asyncio
import importlib
import inspect
import logging
import random
import threading
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import openai
import pytest

from openai_multi_client import (
    ConfigurationError,
    ConnectError,
    InsufficientQuotaError,
    InternalServerError,
    Key,
    NoUsableKeyError,
    RateLimitError,
    RequestError,
    RequestTimeoutError,
    _stable,
)
from openai_multi_client._errors import AuthenticationError, PermissionDeniedError, status_error
from openai_multi_client._retry import Action, classify, server_requested_delay
from openai_multi_client._stable import KeyManager, stable, translate_error
from openai_multi_client.testing import FakeClock

# ------------------------------------------------------------------------------- helpers


class FakeTime(FakeClock):
    """The library's FakeClock, also recording the waits of the code under test (no loop
    needs to be installed: an async wait is a blocking one in virtual time)."""

    def __init__(self) -> None:
        super().__init__()
        self.sleeps: list[float] = []
        self._lock = threading.Lock()

    def sleep_blocking(self, seconds: float) -> None:
        with self._lock:
            self.sleeps.append(seconds)
            super().sleep_blocking(seconds)

    async def sleep(self, seconds: float) -> None:
        self.sleep_blocking(seconds)


@pytest.fixture
def fake_time() -> FakeTime:
    return FakeTime()


def make_manager(keys: list[Any], fake_time: FakeTime, **options: Any) -> KeyManager:
    return KeyManager(
        keys,
        clock=fake_time,
        rng=random.Random(0),
        **options,
    )


def http_error(
    status: int, code: str | None = None, message: str = "", headers: dict[str, str] | None = None
) -> RequestError:
    body = {"error": {"message": message, "type": "t", "param": None, "code": code}}
    return status_error(status, body, headers or {})


def _http_library() -> Any:
    # The SDK uses httpx (or, in recent versions, httpx2); its errors only need a response
    # with .request, .status_code and .headers, which both provide.
    for name in ("httpx2", "httpx"):
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    pytest.skip("neither httpx nor httpx2 is installed")


def sdk_response(status: int, headers: dict[str, str] | None = None) -> Any:
    http = _http_library()
    request = http.Request("POST", "https://api.openai.com/v1/chat/completions")
    return http.Response(status, headers=headers or {}, request=request)


def sdk_request() -> Any:
    return _http_library().Request("POST", "https://api.openai.com/v1/chat/completions")


def sdk_status_error(
    cls: type[openai.APIStatusError],
    status: int,
    code: str | None = None,
    headers: dict[str, str] | None = None,
    message: str = "error",
) -> openai.APIStatusError:
    """An SDK error as the SDK builds it: ``body`` is the inner error object."""
    body = {"message": message, "type": "t", "param": None, "code": code}
    return cls(f"Error code: {status} - {body}", response=sdk_response(status, headers), body=body)


class Script:
    """A @stable target: ``outcome(api_key, call_number)`` raises or returns for each call."""

    def __init__(self, outcome: Callable[[str, int], Any]) -> None:
        self.outcome = outcome
        self.keys: list[str] = []
        self._lock = threading.Lock()

    def __call__(self, prompt: str, api_key: str) -> str:
        with self._lock:
            self.keys.append(api_key)
            number = len(self.keys)
        result = self.outcome(api_key, number)
        return f"{prompt} via {api_key}" if result is None else str(result)


def in_flight(manager: KeyManager, fake_time: FakeTime) -> int:
    return sum(key.in_flight for key in manager.statistics(fake_time.now()).keys)


def key_state(manager: KeyManager, fake_time: FakeTime, secret: str) -> str:
    wanted = Key(secret).id
    (state,) = [k.state for k in manager.statistics(fake_time.now()).keys if k.key == wanted]
    return state


# ------------------------------------------------------------------------------- success


def test_each_call_gets_a_key_as_api_key_and_hands_it_back(fake_time: FakeTime) -> None:
    manager = make_manager(["sk-one", "sk-two"], fake_time)
    script = Script(lambda key, n: None)
    wrapped = stable(script)
    assert wrapped("hi") in ("hi via sk-one", "hi via sk-two")
    assert wrapped(prompt="hi") in ("hi via sk-one", "hi via sk-two")
    assert set(script.keys) <= {"sk-one", "sk-two"}
    stats = manager.statistics(fake_time.now())
    assert stats.requests == 2
    assert in_flight(manager, fake_time) == 0
    assert fake_time.sleeps == []


async def test_async_function_gets_a_key_and_hands_it_back(fake_time: FakeTime) -> None:
    manager = make_manager(["sk-one"], fake_time)

    @stable
    async def ask(prompt: str, api_key: str) -> str:
        assert in_flight(manager, fake_time) == 1
        await asyncio.sleep(0)
        return f"{prompt}:{api_key}"

    assert await ask("hi") == "hi:sk-one"
    assert in_flight(manager, fake_time) == 0


def test_decorator_with_options_and_explicit_manager(fake_time: FakeTime) -> None:
    bound = make_manager(["sk-bound"], fake_time)
    make_manager(["sk-default"], fake_time)  # the newer default must not be used
    calls: list[str] = []

    @stable(manager=bound, max_attempts=2)
    def ask(api_key: str) -> str:
        calls.append(api_key)
        raise http_error(500)

    with pytest.raises(InternalServerError):
        ask()
    assert calls == ["sk-bound", "sk-bound"]


# ------------------------------------------------------------------------------- failover


@pytest.mark.parametrize(
    "dead_error",
    [
        pytest.param(lambda: http_error(401, "invalid_api_key"), id="401"),
        pytest.param(lambda: http_error(403), id="403"),
        pytest.param(lambda: http_error(429, "insufficient_quota"), id="insufficient_quota"),
        pytest.param(
            lambda: sdk_status_error(openai.AuthenticationError, 401, "invalid_api_key"),
            id="sdk-401",
        ),
        pytest.param(
            lambda: sdk_status_error(openai.RateLimitError, 429, "insufficient_quota"),
            id="sdk-insufficient_quota",
        ),
    ],
)
def test_dead_key_is_retired_and_the_call_moves_on_without_spending_an_attempt(
    fake_time: FakeTime, dead_error: Callable[[], Exception]
) -> None:
    manager = make_manager(["sk-dead", "sk-live"], fake_time, max_attempts=1)

    def outcome(key: str, n: int) -> None:
        if key == "sk-dead":
            raise dead_error()

    script = Script(outcome)
    wrapped = stable(script)
    for _ in range(5):
        assert wrapped("q") == "q via sk-live"
    assert script.keys.count("sk-dead") == 1  # tried once, never again once retired
    assert key_state(manager, fake_time, "sk-dead") == "retired"
    assert list(manager.retired_reasons()) == [Key("sk-dead").id]
    assert in_flight(manager, fake_time) == 0
    assert fake_time.sleeps == []


async def test_async_failover_after_insufficient_quota(fake_time: FakeTime) -> None:
    manager = make_manager(["sk-broke", "sk-live"], fake_time, max_attempts=1)
    used: list[str] = []

    @stable
    async def ask(api_key: str) -> str:
        used.append(api_key)
        if api_key == "sk-broke":
            raise sdk_status_error(openai.RateLimitError, 429, "insufficient_quota")
        return api_key

    results = await asyncio.gather(*(ask() for _ in range(4)))
    assert results == ["sk-live"] * 4
    assert used.count("sk-broke") == 1
    assert key_state(manager, fake_time, "sk-broke") == "retired"
    assert in_flight(manager, fake_time) == 0


def test_every_key_retired_raises_no_usable_key_chained_from_the_last_error(
    fake_time: FakeTime,
) -> None:
    manager = make_manager(["sk-a", "sk-b"], fake_time)
    errors: list[Exception] = []

    @stable
    def ask(api_key: str) -> None:
        errors.append(http_error(401, "invalid_api_key"))
        raise errors[-1]

    with pytest.raises(NoUsableKeyError) as caught:
        ask()
    assert len(errors) == 2
    assert caught.value.__cause__ is errors[-1]
    assert manager.exhausted
    with pytest.raises(NoUsableKeyError):  # later calls fail at once, trying no key
        ask()
    assert len(errors) == 2


# ------------------------------------------------------------------------------- rate limits


def test_a_429_cools_only_that_key(fake_time: FakeTime) -> None:
    manager = make_manager(["sk-a", "sk-b"], fake_time)

    def outcome(key: str, n: int) -> None:
        if n == 1:
            raise http_error(429, "rate_limit_exceeded", headers={"retry-after-ms": "2500"})

    script = Script(outcome)
    wrapped = stable(script)
    wrapped("q")
    limited, other = script.keys
    assert limited != other  # retried at once on the other key, no sleep
    assert fake_time.sleeps == []
    assert key_state(manager, fake_time, limited) == "cooling"
    assert key_state(manager, fake_time, other) == "active"
    (cooling,) = [k for k in manager.statistics(0.0).keys if k.state == "cooling"]
    assert cooling.cooling_until == pytest.approx(2.5)
    assert cooling.rate_limited == 1

    for _ in range(3):  # while it cools, only the other key is used
        wrapped("q")
    assert script.keys[2:] == [other] * 3

    fake_time.advance(3.0 - fake_time.now())
    for _ in range(4):
        wrapped("q")
    assert limited in script.keys[5:]


def test_a_429_on_the_only_key_waits_for_the_servers_hint(fake_time: FakeTime) -> None:
    make_manager(["sk-only"], fake_time)

    def outcome(key: str, n: int) -> None:
        if n == 1:
            raise sdk_status_error(
                openai.RateLimitError, 429, "rate_limit_exceeded", {"retry-after": "3"}
            )

    script = Script(outcome)
    assert stable(script)("q") == "q via sk-only"
    assert fake_time.sleeps == [pytest.approx(3.0)]


def test_a_429_without_a_hint_cools_the_key_for_one_second(fake_time: FakeTime) -> None:
    make_manager(["sk-only"], fake_time)

    def outcome(key: str, n: int) -> None:
        if n == 1:
            raise http_error(429, "rate_limit_exceeded")

    stable(Script(outcome))("q")
    assert fake_time.sleeps == [pytest.approx(1.0)]


# ------------------------------------------------------------------------------- retries


def test_when_attempts_are_spent_the_last_error_itself_is_raised(fake_time: FakeTime) -> None:
    manager = make_manager(["sk-a"], fake_time, max_attempts=3, retry_multiplier=2.0)
    raised: list[Exception] = []

    @stable
    def ask(api_key: str) -> str:
        raised.append(sdk_status_error(openai.InternalServerError, 500))
        raise raised[-1]

    with pytest.raises(openai.InternalServerError) as caught:
        ask()
    assert caught.value is raised[-1]
    assert len(raised) == 3
    assert len(fake_time.sleeps) == 2  # full jitter: uniform(0, min(max, 2 * 2 ** n))
    assert 0 <= fake_time.sleeps[0] <= 2.0
    assert 0 <= fake_time.sleeps[1] <= 4.0
    assert manager.statistics(fake_time.now()).keys[0].state == "active"
    assert in_flight(manager, fake_time) == 0


async def test_async_attempts_spent_raise_the_last_error(fake_time: FakeTime) -> None:
    make_manager(["sk-a", "sk-b"], fake_time, max_attempts=4)
    raised: list[Exception] = []

    @stable
    async def ask(api_key: str) -> str:
        raised.append(openai.APITimeoutError(request=sdk_request()))
        raise raised[-1]

    with pytest.raises(openai.APITimeoutError) as caught:
        await ask()
    assert caught.value is raised[-1]
    assert len(raised) == 4
    assert len(fake_time.sleeps) == 3


@pytest.mark.parametrize(
    "transient",
    [
        pytest.param(lambda: http_error(502), id="502"),
        pytest.param(lambda: http_error(408), id="408"),
        pytest.param(lambda: RequestTimeoutError("timed out"), id="timeout"),
        pytest.param(lambda: ConnectError("refused"), id="connect"),
        pytest.param(lambda: sdk_status_error(openai.InternalServerError, 503), id="sdk-503"),
        pytest.param(lambda: openai.APIConnectionError(request=sdk_request()), id="sdk-conn"),
        pytest.param(lambda: openai.APITimeoutError(request=sdk_request()), id="sdk-timeout"),
    ],
)
def test_transient_errors_are_retried_after_backoff(
    fake_time: FakeTime, transient: Callable[[], Exception]
) -> None:
    make_manager(["sk-a"], fake_time)

    def outcome(key: str, n: int) -> None:
        if n <= 2:
            raise transient()

    script = Script(outcome)
    assert stable(script)("q") == "q via sk-a"
    assert len(script.keys) == 3
    assert len(fake_time.sleeps) == 2


def test_a_5xx_retry_obeys_the_servers_retry_after(fake_time: FakeTime) -> None:
    make_manager(["sk-a"], fake_time)

    def outcome(key: str, n: int) -> None:
        if n == 1:
            raise sdk_status_error(openai.InternalServerError, 503, headers={"Retry-After": "7"})

    stable(Script(outcome))("q")
    (slept,) = fake_time.sleeps
    assert 7.0 <= slept <= 7.7  # the hint plus up to 10 % jitter


@pytest.mark.parametrize(
    "permanent",
    [
        pytest.param(lambda: http_error(400, "invalid_value"), id="400"),
        pytest.param(lambda: http_error(404), id="404"),
        pytest.param(lambda: http_error(500, headers={"x-should-retry": "false"}), id="no-retry"),
        pytest.param(lambda: ValueError("the function's own bug"), id="ValueError"),
        pytest.param(lambda: sdk_status_error(openai.BadRequestError, 400), id="sdk-400"),
        pytest.param(lambda: sdk_status_error(openai.NotFoundError, 404), id="sdk-404"),
        pytest.param(lambda: openai.OpenAIError("no api key"), id="sdk-other"),
    ],
)
def test_other_errors_propagate_at_once_unchanged(
    fake_time: FakeTime, permanent: Callable[[], Exception]
) -> None:
    manager = make_manager(["sk-a", "sk-b"], fake_time)
    raised: list[Exception] = []

    @stable
    def ask(api_key: str) -> None:
        raised.append(permanent())
        raise raised[-1]

    with pytest.raises(Exception) as caught:  # noqa: PT011 - the very object is checked below
        ask()
    assert caught.value is raised[0]
    assert len(raised) == 1
    assert fake_time.sleeps == []
    assert not manager.retired_reasons()
    assert in_flight(manager, fake_time) == 0


async def test_cancellation_hands_the_key_back(fake_time: FakeTime) -> None:
    manager = make_manager(["sk-a"], fake_time)
    started = asyncio.Event()

    @stable
    async def ask(api_key: str) -> None:
        started.set()
        await asyncio.Event().wait()

    task = asyncio.create_task(ask())
    await started.wait()
    assert in_flight(manager, fake_time) == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert in_flight(manager, fake_time) == 0


# ------------------------------------------------------------------------------- the SDK boundary


@pytest.mark.parametrize(
    ("make", "ours", "action"),
    [
        (
            lambda: sdk_status_error(openai.AuthenticationError, 401, "invalid_api_key"),
            AuthenticationError,
            Action.RETIRE_KEY,
        ),
        (
            lambda: sdk_status_error(openai.PermissionDeniedError, 403),
            PermissionDeniedError,
            Action.RETIRE_KEY,
        ),
        (
            lambda: sdk_status_error(openai.RateLimitError, 429, "insufficient_quota"),
            InsufficientQuotaError,
            Action.RETIRE_KEY,
        ),
        (
            lambda: sdk_status_error(openai.RateLimitError, 429, "rate_limit_exceeded"),
            RateLimitError,
            Action.RETRY,
        ),
        (
            lambda: sdk_status_error(openai.InternalServerError, 500),
            InternalServerError,
            Action.RETRY,
        ),
        (lambda: openai.APITimeoutError(request=sdk_request()), RequestTimeoutError, Action.RETRY),
        (lambda: openai.APIConnectionError(request=sdk_request()), ConnectError, Action.RETRY),
    ],
)
def test_sdk_exceptions_are_translated_into_our_tree(
    make: Callable[[], Exception], ours: type[RequestError], action: Action
) -> None:
    translated = translate_error(make())
    assert type(translated) is ours
    assert translated is not None
    assert classify(translated) is action


def test_sdk_status_error_keeps_code_headers_and_request_id() -> None:
    error = sdk_status_error(
        openai.RateLimitError,
        429,
        "rate_limit_exceeded",
        {"Retry-After-Ms": "1500", "X-Request-Id": "req_123"},
        message="Rate limit reached. Please try again in 20s.",
    )
    translated = translate_error(error)
    assert isinstance(translated, RateLimitError)
    assert translated.code == "rate_limit_exceeded"
    assert translated.request_id == "req_123"
    assert translated.headers["retry-after-ms"] == "1500"
    assert server_requested_delay(translated) == pytest.approx(1.5)
    assert "Rate limit reached" in str(translated)


def test_sdk_status_error_with_a_non_json_body_is_still_classified() -> None:
    response = sdk_response(502)
    error = openai.InternalServerError("Bad gateway", response=response, body="<html>")
    translated = translate_error(error)
    assert isinstance(translated, InternalServerError)
    assert translated.status_code == 502


def test_unknown_exceptions_are_not_translated() -> None:
    assert translate_error(ValueError("x")) is None
    assert translate_error(openai.OpenAIError("x")) is None
    ours = http_error(400)
    assert translate_error(ours) is ours


# ------------------------------------------------------------------------------- the wrapper


def test_name_doc_signature_and_wrapped_are_kept(fake_time: FakeTime) -> None:
    make_manager(["sk-a"], fake_time)

    def completions_with_backoff(model: str, messages: list[Any], api_key: str) -> str:
        """Ask the model."""
        return model

    async def acompletions(model: str, *, api_key: str) -> str:
        """Ask the model, asynchronously."""
        return model

    for function in (completions_with_backoff, acompletions):
        wrapped: Any = stable(function)
        assert wrapped.__name__ == function.__name__
        assert wrapped.__doc__ == function.__doc__
        assert wrapped.__wrapped__ is function
        assert inspect.signature(wrapped) == inspect.signature(function)
    assert inspect.iscoroutinefunction(stable(acompletions))
    assert not inspect.iscoroutinefunction(stable(completions_with_backoff))


def test_a_function_without_api_key_is_refused_when_decorated() -> None:
    def no_key(model: str) -> None: ...

    def with_kwargs(model: str, **kwargs: Any) -> None: ...

    with pytest.raises(TypeError, match="api_key"):
        stable(no_key)
    stable(with_kwargs)  # accepted: api_key arrives in **kwargs


def test_passing_api_key_yourself_is_refused(fake_time: FakeTime) -> None:
    make_manager(["sk-a"], fake_time)
    wrapped = stable(Script(lambda key, n: None))
    with pytest.raises(TypeError, match="api_key"):
        wrapped("q", api_key="sk-mine")


def test_calling_before_any_key_manager_is_a_configuration_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_stable, "_default_manager", None)
    wrapped = stable(Script(lambda key, n: None))  # decorating first is fine
    with pytest.raises(ConfigurationError, match="KeyManager"):
        wrapped("q")


# ------------------------------------------------------------------------------- KeyManager


def test_a_new_key_manager_replaces_the_default(fake_time: FakeTime) -> None:
    first = make_manager(["sk-old"], fake_time)
    script = Script(lambda key, n: None)
    wrapped = stable(script)
    wrapped("q")
    first.retire(first.keys[0], "gone")
    assert KeyManager.current() is first

    second = make_manager(["sk-new", "sk-old"], fake_time)
    assert KeyManager.current() is second
    assert not second.retired_reasons()  # fresh: no retirements carried over
    for _ in range(4):
        wrapped("q")
    assert script.keys[0] == "sk-old"
    assert set(script.keys[1:]) == {"sk-new", "sk-old"}


def test_ellipsis_placeholders_are_skipped(fake_time: FakeTime) -> None:
    manager = make_manager(["your_api_key1", "your_api_key2", ...], fake_time)
    assert [key.id for key in manager.keys] == [
        Key("your_api_key1").id,
        Key("your_api_key2").id,
    ]


@pytest.mark.parametrize("keys", [[], [...], [..., ...]])
def test_no_keys_is_a_configuration_error(fake_time: FakeTime, keys: list[Any]) -> None:
    with pytest.raises(ConfigurationError, match="at least one"):
        make_manager(keys, fake_time)


def test_keys_can_be_key_objects_and_a_single_string(fake_time: FakeTime) -> None:
    manager = make_manager([Key("sk-x", name="first"), "sk-y"], fake_time)
    assert [key.id for key in manager.keys] == ["first", Key("sk-y").id]
    single = KeyManager("sk-single")
    assert len(single.keys) == 1


def test_invalid_options_are_configuration_errors() -> None:
    with pytest.raises(ConfigurationError):
        KeyManager(["sk-a"], max_attempts=-1)
    with pytest.raises(ConfigurationError):
        KeyManager(["sk-a"], retry_max=float("nan"))
    with pytest.raises(ConfigurationError):
        KeyManager(["sk-a", "sk-a"])
    with pytest.raises(ConfigurationError):
        stable(max_attempts=-2)


# ------------------------------------------------------------------------------- threads


def test_many_threads_call_at_once_each_with_a_key(fake_time: FakeTime) -> None:
    secrets = [f"sk-thread-{i}" for i in range(10)]
    manager = make_manager(secrets, fake_time)
    threads_count = 40
    barrier = threading.Barrier(threads_count, timeout=10)
    used: list[str] = []
    lock = threading.Lock()
    peak = 0

    @stable
    def ask(number: int, api_key: str) -> int:
        nonlocal peak
        with lock:
            used.append(api_key)
            peak = max(peak, in_flight(manager, fake_time))
        barrier.wait()  # every call holds its key at the same time
        return number

    results: dict[int, int] = {}
    failures: list[BaseException] = []

    def run(number: int) -> None:
        try:
            results[number] = ask(number)
        except BaseException as error:  # pragma: no cover - reported below
            failures.append(error)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=20)
    assert not failures
    assert results == {i: i for i in range(threads_count)}
    assert len(used) == threads_count
    assert set(used) <= set(secrets)
    assert len(Counter(used)) > 1  # spread over the keys, not one "current key"
    assert peak == threads_count  # no lock serialises the calls
    stats = manager.statistics(fake_time.now())
    assert stats.requests == threads_count
    assert in_flight(manager, fake_time) == 0


def test_threads_failing_over_retire_a_dead_key_once(
    fake_time: FakeTime, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="openai_multi_client")
    manager = make_manager(["sk-dead", "sk-live-1", "sk-live-2"], fake_time, max_attempts=1)

    @stable
    def ask(api_key: str) -> str:
        if api_key == "sk-dead":
            raise http_error(401, "invalid_api_key")
        return api_key

    outcomes: list[str] = []
    threads = [threading.Thread(target=lambda: outcomes.append(ask())) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=20)
    assert len(outcomes) == 20
    assert set(outcomes) <= {"sk-live-1", "sk-live-2"}
    retirements = [r for r in caplog.records if "retired" in r.getMessage()]
    assert len(retirements) == 1
    assert in_flight(manager, fake_time) == 0


# ------------------------------------------------------------------------------- secrets


def test_secrets_never_appear_in_logs_errors_or_reprs(
    fake_time: FakeTime, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="openai_multi_client")
    secrets = ["sk-secret-aaaaaaaaaaaa", "sk-secret-bbbbbbbbbbbb"]
    manager = make_manager(secrets, fake_time, max_attempts=3)

    calls = 0

    @stable
    def ask(api_key: str) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise http_error(500, message=f"server hiccup for {api_key}")
        raise http_error(401, "invalid_api_key", message=f"Incorrect API key provided: {api_key}")

    with pytest.raises(NoUsableKeyError) as caught:
        ask()
    assert calls == 3  # one 5xx retried, then each key retired
    texts = [record.getMessage() for record in caplog.records]
    texts += [str(caught.value), repr(caught.value), repr(manager), str(manager)]
    texts += list(manager.retired_reasons().values())
    texts += [repr(key) for key in manager.keys]
    assert any("retired" in text for text in texts)
    for text in texts:
        for secret in secrets:
            assert secret not in text


class _WatchedManager(KeyManager):
    """Says when a call starts waiting for the manager to change."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.waiting = threading.Event()

    def add_listener(self, listener: Callable[[], None]) -> None:
        super().add_listener(listener)
        self.waiting.set()


def test_a_call_waiting_for_capacity_is_woken_by_the_change_not_a_poll(
    fake_time: FakeTime,
) -> None:
    class Watched(FakeTime):
        def sleep_blocking(self, seconds: float) -> None:  # a poll would sleep; say so, too
            fake_time.sleep_blocking(seconds)
            manager.waiting.set()

    manager = _WatchedManager(["sk-a"], clock=Watched())
    manager.set_shares(0.0)  # e.g. a client sharing the manager has not got its leases yet

    @stable(manager=manager)
    def ask(api_key: str) -> str:
        return api_key

    with ThreadPoolExecutor(1) as pool:
        answer = pool.submit(ask)
        manager.waiting.wait()
        manager.set_shares(1.0)
        assert answer.result() == "sk-a"
    assert fake_time.sleeps == []


async def test_an_async_call_waiting_for_capacity_is_woken_by_the_change(
    fake_time: FakeTime,
) -> None:
    class Watched(FakeTime):
        async def sleep(self, seconds: float) -> None:
            fake_time.sleep_blocking(seconds)
            manager.waiting.set()
            await asyncio.sleep(0)

    manager = _WatchedManager(["sk-a"], clock=Watched())
    manager.set_shares(0.0)

    @stable(manager=manager)
    async def ask(api_key: str) -> str:
        return api_key

    call = asyncio.ensure_future(ask())
    await asyncio.to_thread(manager.waiting.wait)
    # Released from another thread: the wake-up reaches the call through its event loop.
    await asyncio.to_thread(manager.set_shares, 1.0)
    assert await call == "sk-a"
    assert fake_time.sleeps == []


def test_the_manager_takes_the_librarys_clock() -> None:
    with pytest.raises(ConfigurationError, match="clock must be a Clock"):
        KeyManager(["sk-a"], clock=time_source_that_is_not_a_clock)  # type: ignore[arg-type]
    clock = FakeClock(start=5.0)
    manager = KeyManager(["sk-a"], clock=clock)
    assert manager.clock is clock
    assert manager.statistics(clock.now()).keys[0].state == "active"


def time_source_that_is_not_a_clock() -> float:
    return 0.0
