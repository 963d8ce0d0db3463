from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from openai_multi_client import (
    ConfigurationError,
    ConnectError,
    ConnectionClosedError,
    CustomAPIError,
    InvalidResponseError,
    NoUsableKeyError,
    RequestError,
    RequestTimeoutError,
    RetryBudget,
    RetryPolicy,
)
from openai_multi_client._errors import status_error
from openai_multi_client._retry import MAX_PACED_ATTEMPTS, Action, Attempts, classify, decide


def http_error(
    status: int, code: str | None = None, headers: dict[str, str] | None = None, message: str = ""
) -> RequestError:
    body = {"error": {"message": message, "type": "t", "param": None, "code": code}}
    return status_error(status, body, headers or {})


@pytest.mark.parametrize(
    ("error", "action"),
    [
        (http_error(400), Action.FAIL),
        (http_error(401, "invalid_api_key"), Action.RETIRE_KEY),
        (http_error(403), Action.RETIRE_KEY),
        (http_error(404), Action.FAIL),
        (http_error(408), Action.RETRY),
        (http_error(409), Action.RETRY),
        (http_error(422), Action.FAIL),
        (http_error(429, "rate_limit_exceeded"), Action.RETRY),
        (http_error(429, "insufficient_quota"), Action.RETIRE_KEY),
        (http_error(500), Action.RETRY),
        (http_error(502), Action.RETRY),
        (http_error(503), Action.RETRY),
        (http_error(504), Action.RETRY),
        (http_error(418), Action.FAIL),
        (http_error(503, headers={"x-should-retry": "false"}), Action.FAIL),
        (http_error(400, headers={"x-should-retry": "true"}), Action.RETRY),
        (http_error(401, headers={"x-should-retry": "true"}), Action.RETIRE_KEY),
        (ConnectError("x"), Action.RETRY),
        (RequestTimeoutError("x"), Action.RETRY),
        (ConnectionClosedError("x"), Action.RETRY),
        (InvalidResponseError("x"), Action.RETRY),
        (CustomAPIError("x"), Action.RETRY),
        (NoUsableKeyError("x"), Action.FAIL),
    ],
)
def test_classification_table(error: RequestError, action: Action) -> None:
    assert classify(error) is action


def test_max_attempts_counts_attempts_in_total() -> None:
    policy = RetryPolicy(max_attempts=3)
    assert [policy.should_retry(n) for n in (1, 2, 3)] == [True, True, False]
    assert not RetryPolicy(max_attempts=0).should_retry(1)
    assert not RetryPolicy(max_attempts=1).should_retry(1)


def test_full_jitter_bounds() -> None:
    policy = RetryPolicy(multiplier=1.0, max_delay=60.0)
    rng = random.Random(7)
    for attempt, ceiling in [(1, 1.0), (2, 2.0), (3, 4.0), (7, 60.0)]:
        delays = [policy.backoff(attempt, rng) for _ in range(200)]
        assert all(0.0 <= d <= ceiling for d in delays)
        assert max(delays) > ceiling * 0.8  # really spread over the range


def test_no_overflow_at_huge_attempt_numbers() -> None:
    policy = RetryPolicy(multiplier=3.0, max_delay=60.0)
    rng = random.Random(1)
    for attempt in (63, 64, 1024, 10_000, 10**9):
        assert 0.0 <= policy.backoff(attempt, rng) <= 60.0


def test_zero_multiplier_or_max_means_no_wait() -> None:
    rng = random.Random(0)
    assert RetryPolicy(multiplier=0).backoff(5, rng) == 0.0
    assert RetryPolicy(max_delay=0).backoff(5, rng) == 0.0


def test_server_hint_wins_and_is_capped() -> None:
    policy = RetryPolicy(max_delay=60.0, max_server_delay=120.0)
    rng = random.Random(3)
    delay = policy.next_delay(1, http_error(429, headers={"retry-after-ms": "1500"}), rng)
    assert 1.5 <= delay <= 1.65
    delay = policy.next_delay(1, http_error(503, headers={"retry-after": "100000"}), rng)
    assert 120.0 <= delay <= 132.0
    # A garbage hint is ignored: back to jitter.
    assert policy.next_delay(1, http_error(503, headers={"retry-after": "soon"}), rng) <= 1.0


def test_rate_limit_reset_and_message_are_hints_for_429_only() -> None:
    policy = RetryPolicy()
    rng = random.Random(0)
    reset = {"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "6s"}
    assert 6.0 <= policy.next_delay(1, http_error(429, "rate_limit_exceeded", reset), rng) <= 6.6
    assert policy.next_delay(1, http_error(500, headers=reset), rng) <= 1.0
    message = "Please try again in 2s."
    error = http_error(429, "rate_limit_exceeded", message=message)
    assert 2.0 <= policy.next_delay(1, error, rng) <= 2.2


@given(
    attempt=st.integers(min_value=0, max_value=10**12),
    multiplier=st.floats(min_value=0, max_value=1e6),
    maximum=st.floats(min_value=0, max_value=1e6),
)
def test_backoff_is_always_within_bounds(attempt: int, multiplier: float, maximum: float) -> None:
    delay = RetryPolicy(multiplier=multiplier, max_delay=maximum).backoff(attempt, random.Random(0))
    assert 0.0 <= delay <= maximum


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"max_attempts": -1}, "max_retries"),
        ({"max_attempts": 1.5}, "max_retries"),
        ({"multiplier": -1.0}, "retry_multiplier"),
        ({"max_delay": float("nan")}, "retry_max"),
        ({"max_delay": float("inf")}, "retry_max"),
    ],
)
def test_bad_policy_names_the_argument(kwargs: dict[str, float], name: str) -> None:
    with pytest.raises(ConfigurationError, match=name):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]


def test_budget_stops_retries_in_an_outage_and_refills_on_success() -> None:
    budget = RetryBudget(capacity=50, retry_cost=5, timeout_cost=10)
    outage = http_error(503)
    spent = [budget.try_spend(outage) for _ in range(20)]
    assert spent[:10] == [5] * 10
    assert spent[10:] == [None] * 10
    budget.on_success(0)
    assert budget.level == 1
    budget.on_success(5)
    assert budget.level == 6
    assert budget.try_spend(RequestTimeoutError("slow")) is None  # a timeout costs 10
    assert budget.try_spend(outage) == 5
    for _ in range(100):
        budget.on_success(0)
    assert budget.level == 50


# ------------------------------------------------------------------- the one retry decision

RL = {"retry-after-ms": "2500"}


@pytest.mark.parametrize(
    ("error", "before", "max_attempts", "budget_level", "expected"),
    [
        # action, failures, paced, cool_key, budget_cost, reason
        (http_error(400), Attempts(), 10, 500, (Action.FAIL, 0, 0, None, 0, None)),
        (http_error(401), Attempts(3, 2), 10, 500, (Action.RETIRE_KEY, 3, 2, None, 0, None)),
        (
            http_error(429, "insufficient_quota"),
            Attempts(),
            10,
            500,
            (Action.RETIRE_KEY, 0, 0, None, 0, None),
        ),
        # A key's rate limit: cool the key, no attempt, no budget.
        (
            http_error(429, "rate_limit_exceeded", RL),
            Attempts(),
            1,
            0,
            (Action.RETRY, 0, 1, 2.5, 0, None),
        ),
        (
            http_error(429, "rate_limit_exceeded"),
            Attempts(),
            10,
            500,
            (Action.RETRY, 0, 1, 1.0, 0, None),
        ),
        (
            http_error(429, "rate_limit_exceeded", {"retry-after": "999"}),
            Attempts(),
            10,
            500,
            (Action.RETRY, 0, 1, 120.0, 0, None),
        ),
        # Past the cap of paced answers, a rate limit is a failed attempt like any other.
        (
            http_error(429, "rate_limit_exceeded", RL),
            Attempts(0, MAX_PACED_ATTEMPTS),
            10,
            500,
            (Action.RETRY, 1, MAX_PACED_ATTEMPTS, 2.5, 5, None),
        ),
        (
            http_error(429, "rate_limit_exceeded", RL),
            Attempts(9, MAX_PACED_ATTEMPTS),
            10,
            500,
            (Action.FAIL, 10, MAX_PACED_ATTEMPTS, 2.5, 0, "attempts spent"),
        ),
        (http_error(500), Attempts(), 10, 500, (Action.RETRY, 1, 0, None, 5, None)),
        (http_error(500), Attempts(9), 10, 500, (Action.FAIL, 10, 0, None, 0, "attempts spent")),
        (http_error(500), Attempts(), 1, 500, (Action.FAIL, 1, 0, None, 0, "attempts spent")),
        (http_error(500), Attempts(), 0, 500, (Action.FAIL, 1, 0, None, 0, "attempts spent")),
        (RequestTimeoutError("x"), Attempts(), 10, 500, (Action.RETRY, 1, 0, None, 10, None)),
        (
            http_error(500),
            Attempts(),
            10,
            4,
            (Action.FAIL, 1, 0, None, 0, "retry budget exhausted"),
        ),
        (http_error(500), Attempts(), 10, None, (Action.RETRY, 1, 0, None, 0, None)),
    ],
)
def test_the_retry_decision_table(
    error: RequestError,
    before: Attempts,
    max_attempts: int,
    budget_level: int | None,
    expected: tuple[Action, int, int, float | None, int, str | None],
) -> None:
    budget = None
    if budget_level is not None:
        budget = RetryBudget(capacity=500)
        budget.spend(500 - budget_level)
    policy = RetryPolicy(max_attempts=max_attempts)
    decision = decide(error, before, policy, budget, random.Random(0))
    action, failures, paced, cool_key, cost, reason = expected
    assert decision.action is action
    assert (decision.attempts.failures, decision.attempts.paced) == (failures, paced)
    assert decision.cool_key == cool_key
    assert decision.budget_cost == cost
    assert decision.attempts.retry_cost == before.retry_cost + cost
    assert decision.reason == reason
    assert decision.paced == (paced > before.paced)
    if budget is not None:
        assert budget.level == budget_level  # decided, not spent: the caller spends
    if action is Action.RETRY and not decision.paced:
        again = decide(error, before, policy, budget, random.Random(0))
        assert decision.delay == again.delay  # pure: the same rng state, the same delay
        assert 0 <= decision.delay <= max(policy.max_delay, 2.5 * 1.1)
    else:
        assert decision.delay == 0


def test_the_state_is_a_value() -> None:
    before = Attempts()
    decide(http_error(500), before, RetryPolicy(), None, random.Random(0))
    assert before == Attempts()  # urllib3's Retry.increment(): a new value, never mutated


# A flex 429 as OpenAI sends it: the key's rate-limit headers come along, and say nothing of it.
FLEX_429 = {
    "x-ratelimit-limit-requests": "500",
    "x-ratelimit-remaining-requests": "499",
    "x-ratelimit-reset-requests": "7s",
}


@pytest.mark.parametrize(
    "error",
    [
        http_error(429, "resource_unavailable", FLEX_429, "Resource unavailable"),
        http_error(429, None, FLEX_429, "Resource unavailable. Please try again later."),
        http_error(429, None, {}, "Resource unavailable"),
    ],
)
def test_a_flex_capacity_429_is_an_attempt_with_full_jitter_and_no_key_cooled(
    error: RequestError,
) -> None:
    policy = RetryPolicy(max_attempts=3, multiplier=4.0, max_delay=60.0)
    first = decide(error, Attempts(), policy, RetryBudget(), random.Random(7))
    assert first.action is Action.RETRY
    assert not first.paced
    assert first.cool_key is None  # the key is fine: the shortage is the server's
    assert first.attempts == Attempts(failures=1, retry_cost=5)
    # Full jitter, as backoff() draws it, not the 7 s of the key's reset header.
    assert first.delay == policy.backoff(1, random.Random(7))
    second = decide(error, first.attempts, policy, None, random.Random(7))
    assert second.delay == policy.backoff(2, random.Random(7))
    last = decide(error, second.attempts, policy, None, random.Random(7))
    assert (last.action, last.reason, last.cool_key) == (Action.FAIL, "attempts spent", None)


def test_a_flex_capacity_429_obeys_an_explicit_retry_after() -> None:
    error = http_error(429, "resource_unavailable", {"retry-after": "30"}, "Resource unavailable")
    decision = decide(error, Attempts(), RetryPolicy(), None, random.Random(0))
    assert (decision.action, decision.cool_key, decision.paced) == (Action.RETRY, None, False)
    assert 30 <= decision.delay <= 33


def test_a_rate_limit_429_is_still_pacing_beside_flex() -> None:
    error = http_error(429, "rate_limit_exceeded", FLEX_429, "Rate limit reached for gpt-4o")
    decision = decide(error, Attempts(), RetryPolicy(), None, random.Random(0))
    assert decision.paced
    assert decision.cool_key is not None
