from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from openai_multi_client._headers import (
    parse_go_duration,
    parse_rate_limit_reset,
    parse_retry_after,
    parse_should_retry,
    parse_try_again_message,
)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("120ms", 0.12),
        ("1s", 1.0),
        ("6m0s", 360.0),
        ("2m59.56s", 179.56),
        ("1h2m3s", 3723.0),
        ("500us", 0.0005),
        ("7.5", 7.5),
        ("0s", 0.0),
        (".5s", 0.5),
    ],
)
def test_go_durations(text: str, seconds: float) -> None:
    assert parse_go_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "text",
    [None, "", "abc", "1x", "s", "-1s", "1s2", "ms1", "nan", "inf", "1e400", "9999999h", " 1 s"],
)
def test_go_duration_garbage_is_none(text: str | None) -> None:
    assert parse_go_duration(text) is None


@pytest.mark.parametrize(
    ("headers", "seconds"),
    [
        ({"retry-after-ms": "1500"}, 1.5),
        ({"retry-after-ms": "20", "retry-after": "7"}, 0.02),
        ({"retry-after": "3"}, 3.0),
        ({"retry-after": "2.5"}, 2.5),
        (
            {
                "retry-after": "Wed, 21 Oct 2026 07:28:30 GMT",
                "date": "Wed, 21 Oct 2026 07:28:00 GMT",
            },
            30.0,
        ),
        ({"retry-after": "Wed, 21 Oct 2026 07:28:30 GMT"}, None),  # no date to measure from
        ({"retry-after": "soon"}, None),
        ({"retry-after": "-5"}, None),
        ({"retry-after-ms": "nan"}, None),
        ({"retry-after-ms": "inf", "retry-after": "2"}, 2.0),
        ({"retry-after": "1e308"}, None),
        ({}, None),
    ],
)
def test_retry_after(headers: dict[str, str], seconds: float | None) -> None:
    assert parse_retry_after(headers) == (None if seconds is None else pytest.approx(seconds))


def test_should_retry_header() -> None:
    assert parse_should_retry({"x-should-retry": "true"}) is True
    assert parse_should_retry({"x-should-retry": "False"}) is False
    assert parse_should_retry({"x-should-retry": "maybe"}) is None
    assert parse_should_retry({}) is None


def test_try_again_message() -> None:
    text = "Rate limit reached for requests. Limit 600, Used 600. Please try again in 1.2s. Visit"
    assert parse_try_again_message(text) == pytest.approx(1.2)
    assert parse_try_again_message("Please try again in 120ms.") == pytest.approx(0.12)
    assert parse_try_again_message("nothing here") is None


def test_rate_limit_reset_uses_the_exhausted_bucket() -> None:
    headers = {
        "x-ratelimit-remaining-requests": "0",
        "x-ratelimit-reset-requests": "2s",
        "x-ratelimit-remaining-tokens": "5000",
        "x-ratelimit-reset-tokens": "30s",
    }
    assert parse_rate_limit_reset(headers) == pytest.approx(2.0)
    assert parse_rate_limit_reset({"x-ratelimit-reset-tokens": "1m"}) == pytest.approx(60.0)
    assert parse_rate_limit_reset({}) is None
    # "Reset" is the time until the bucket is full; one more request needs 1/limit of it.
    exhausted = {
        "x-ratelimit-limit-requests": "600",
        "x-ratelimit-remaining-requests": "0",
        "x-ratelimit-reset-requests": "1m0s",
    }
    assert parse_rate_limit_reset(exhausted) == pytest.approx(0.1)


@given(st.dictionaries(st.sampled_from(["retry-after", "retry-after-ms", "date"]), st.text()))
def test_retry_after_never_raises_and_is_sane(headers: dict[str, str]) -> None:
    value = parse_retry_after(headers)
    assert value is None or (value >= 0 and math.isfinite(value))


@given(st.text())
def test_go_duration_never_raises_and_is_sane(text: str) -> None:
    value = parse_go_duration(text)
    assert value is None or (value >= 0 and math.isfinite(value))
