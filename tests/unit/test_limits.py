"""The per-key limiters, exactly, on explicit time."""

from __future__ import annotations

import copy
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from openai_multi_client._limits import AdaptiveConcurrency, RateLimiter, RateLimitHeaders

steps = st.lists(
    st.tuples(st.floats(min_value=0.0, max_value=0.7), st.integers(min_value=1, max_value=10)),
    min_size=1,
    max_size=300,
)


def drive(limiter: RateLimiter, plan: list[tuple[float, int]]) -> list[tuple[float, int]]:
    """Offer each cost after its pause; admit it when the limiter says it may go now."""
    now = 0.0
    admitted: list[tuple[float, int]] = []
    for pause, cost in plan:
        now += pause
        if limiter.delay(cost, now) == 0.0:
            limiter.acquire(cost, now)
            admitted.append((now, cost))
    return admitted


@settings(max_examples=200, deadline=None)
@given(limit=st.integers(min_value=60, max_value=6000), plan=steps)
def test_never_more_than_the_limit_in_any_one_second_window(
    limit: int, plan: list[tuple[float, int]]
) -> None:
    limiter = RateLimiter(limit)
    per_second = limit / 60
    # Costs up to the window's capacity (larger ones are tested on their own below).
    plan = [(pause, min(cost, max(1, int(per_second)))) for pause, cost in plan]
    admitted = drive(limiter, plan)
    for start, _ in admitted:
        in_window = sum(cost for at, cost in admitted if start <= at < start + 1.0)
        assert in_window <= per_second + 1e-9


@settings(max_examples=200, deadline=None)
@given(limit=st.integers(min_value=600, max_value=6000), plan=steps)
def test_no_waiting_while_there_is_headroom(limit: int, plan: list[tuple[float, int]]) -> None:
    limiter = RateLimiter(limit)
    now = 0.0
    admitted: list[tuple[float, int]] = []
    for pause, cost in plan:
        now += pause
        used = sum(c for at, c in admitted if at > now - 1.0)
        delay = limiter.delay(cost, now)
        if used + cost <= limit / 60:
            assert delay == 0.0
        else:
            assert delay > 0.0
            # ...and the delay is exact: at that moment it may go (asked of a copy, because
            # asking about a later time moves the limiter on).
            assert copy.deepcopy(limiter).delay(cost, now + delay) == 0.0
            continue
        limiter.acquire(cost, now)
        admitted.append((now, cost))


def test_burst_then_steady_rate() -> None:
    limiter = RateLimiter(600)  # 10 a second
    admitted = 0
    now = 0.0
    while now < 60.0:
        wait = limiter.delay(1, now)
        if wait:
            now += wait
            continue
        limiter.acquire(1, now)
        admitted += 1
    assert admitted == 600  # exactly the per-minute limit in a minute


def test_a_cost_above_the_window_passes_at_the_average_rate() -> None:
    limiter = RateLimiter(600)  # 10 units a second
    assert limiter.delay(50, 0.0) == 0.0
    limiter.acquire(50, 0.0)
    assert limiter.delay(1, 0.0) == pytest.approx(5.0)  # held for 50 / 10 seconds
    assert limiter.fits_ever(600)
    assert not limiter.fits_ever(601)


def test_refund_returns_capacity() -> None:
    limiter = RateLimiter(600)
    admission = limiter.acquire(8, 0.0)
    assert limiter.available(0.0) == pytest.approx(2.0)
    limiter.refund(admission, 5, 0.1)
    assert limiter.available(0.1) == pytest.approx(7.0)
    limiter.refund(admission, 100, 0.2)  # never more than was reserved
    assert limiter.available(0.2) == pytest.approx(10.0)


def test_observe_learns_the_limit_and_believes_a_lower_remaining() -> None:
    limiter = RateLimiter(60)
    limiter.observe(limit=600, remaining=None, now=0.0)
    assert limiter.capacity == pytest.approx(10.0)
    limiter.observe(limit=600, remaining=3, now=0.0)  # someone else used the key
    assert limiter.available(0.0) == pytest.approx(3.0)
    assert limiter.available(1.0) == pytest.approx(10.0)


@pytest.mark.parametrize("limit", [0, -5, math.inf, math.nan])
def test_bad_limits(limit: float) -> None:
    with pytest.raises(ValueError, match="per-minute limit"):
        RateLimiter(limit)


def test_adaptive_concurrency_slow_start_then_aimd() -> None:
    adaptive = AdaptiveConcurrency(16, cooldown=1.0)
    assert adaptive.allowed == 1
    for expected in (2, 4, 8, 16, 16):  # slow start: doubles per round trip, up to the max
        for _ in range(adaptive.allowed):
            adaptive.on_success()
        assert adaptive.allowed == expected
    adaptive.on_overload(0.0)
    adaptive.on_overload(0.5)  # the same overload: counted once
    assert adaptive.allowed == 8
    adaptive.on_overload(1.0)
    assert adaptive.allowed == 4
    for _ in range(4 * 4):  # additive increase now: about +1 per round trip
        adaptive.on_success()
    assert 5 <= adaptive.allowed <= 8
    for step in range(20):
        adaptive.on_overload(10.0 + step)
    assert adaptive.allowed == 1
    for _ in range(10_000):
        adaptive.on_success()
    assert adaptive.allowed == 16


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        (
            {
                "x-ratelimit-limit-requests": "600",
                "x-ratelimit-remaining-requests": "599",
                "x-ratelimit-reset-requests": "100ms",
                "x-ratelimit-limit-tokens": "60000",
                "x-ratelimit-remaining-tokens": "59990",
                "x-ratelimit-reset-tokens": "6m0s",
            },
            (600, 599, 60000, 59990),
        ),
        (
            {"x-ratelimit-limit-requests": "abc", "x-ratelimit-reset-requests": "soon"},
            (None, None, None, None),
        ),
        ({"x-ratelimit-limit-tokens": "-1"}, (None, None, None, None)),
        ({}, (None, None, None, None)),
    ],
)
def test_rate_limit_header_table(
    headers: dict[str, str], expected: tuple[float | None, ...]
) -> None:
    parsed = RateLimitHeaders.parse(headers)
    assert (
        parsed.limit_requests,
        parsed.remaining_requests,
        parsed.limit_tokens,
        parsed.remaining_tokens,
    ) == tuple(pytest.approx(v) if v is not None else None for v in expected)
    assert parsed.present == (expected[0] is not None or expected[2] is not None)
