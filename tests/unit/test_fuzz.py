"""Property tests on everything a server controls: header values (retry-after, x-ratelimit-*,
x-should-retry), status codes and response bodies. Whatever it sends, nothing crashes, nothing
hangs, every wait is finite and bounded, and every request ends classified."""

from __future__ import annotations

import asyncio
import json
import math
import random
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from openai_multi_client import AsyncMultiClient, InvalidResponseError, RequestError
from openai_multi_client._errors import status_error
from openai_multi_client._headers import (
    parse_rate_limit_reset,
    parse_should_retry,
    parse_try_again_message,
)
from openai_multi_client._limits import Key, KeyPool, RateLimitHeaders, Reservation
from openai_multi_client._retry import Action, RetryPolicy, classify
from openai_multi_client._transport import HTTPRequest, HTTPResponse
from openai_multi_client.testing import FakeClock, MockTransport

RATE_LIMIT_HEADERS = [
    f"x-ratelimit-{what}-{kind}"
    for what in ("limit", "remaining", "reset")
    for kind in ("requests", "tokens")
]
HEADER_NAMES = [*RATE_LIMIT_HEADERS, "retry-after", "retry-after-ms", "x-should-retry", "date"]


def _number_text(value: float) -> str:
    return repr(value)


# What servers and proxies put in these headers, and what a broken one might.
header_values = st.one_of(
    st.text(max_size=30),
    st.integers(min_value=-(10**30), max_value=10**30).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(_number_text),
    st.sampled_from(["0", "1", "0.0001", "1e-300", "1e308", "-0", " 7 ", "9" * 400, "NaN"]),
    st.lists(
        st.tuples(st.integers(0, 10**6), st.sampled_from(["ns", "us", "µs", "ms", "s", "m", "h"])),
        min_size=1,
        max_size=4,
    ).map(lambda parts: "".join(f"{n}{unit}" for n, unit in parts)),
    st.sampled_from(["true", "false", "TRUE", "Wed, 21 Oct 2026 07:28:30 GMT", "soon"]),
)
# Values at the edges, often enough that a whole set of them meets a first response.
edge_values = st.sampled_from(["0", "1", "600", "0.5", "1e-300", "1e308", "-1", "nan", "6m0s", ""])
headers_strategy = st.one_of(
    st.dictionaries(st.sampled_from(HEADER_NAMES), header_values, max_size=10),
    st.fixed_dictionaries(dict.fromkeys(RATE_LIMIT_HEADERS, edge_values)),
)


def sane(seconds: float | None, at_most: float = 7 * 24 * 3600.0) -> bool:
    return seconds is None or (0.0 <= seconds <= at_most and math.isfinite(seconds))


@settings(max_examples=300)
@given(headers=headers_strategy, message=st.text(max_size=60))
def test_header_parsers_are_total_and_sane(headers: dict[str, str], message: str) -> None:
    assert sane(parse_rate_limit_reset(headers))
    assert sane(parse_try_again_message(message))
    assert sane(parse_try_again_message(f"Please try again in {message}"))
    assert parse_should_retry(headers) in (True, False, None)
    parsed = RateLimitHeaders.parse(headers)
    for value in (
        parsed.limit_requests,
        parsed.remaining_requests,
        parsed.limit_tokens,
        parsed.remaining_tokens,
    ):
        assert value is None or (value >= 0 and math.isfinite(value))


STATUSES = st.one_of(
    st.sampled_from([400, 401, 403, 404, 408, 409, 422, 429, 500, 502, 503, 504]),
    st.integers(min_value=300, max_value=599),
)


@settings(max_examples=300)
@given(
    status=STATUSES,
    headers=headers_strategy,
    code=st.sampled_from([None, "rate_limit_exceeded", "insufficient_quota", "server_error"]),
    message=st.text(max_size=60),
    attempts=st.integers(min_value=1, max_value=50),
)
def test_every_error_is_classified_with_a_bounded_wait(
    status: int, headers: dict[str, str], code: str | None, message: str, attempts: int
) -> None:
    body = {"error": {"message": message, "type": "error", "code": code, "param": None}}
    error = status_error(status, body, HTTPResponse.build(status, headers).headers)
    action = classify(error)
    assert isinstance(action, Action)
    policy = RetryPolicy(max_delay=60.0, max_server_delay=120.0)
    delay = policy.next_delay(attempts, error, random.Random(0))
    assert 0.0 <= delay <= 120.0 * 1.1


@settings(max_examples=200)
@given(
    exchanges=st.lists(
        st.tuples(
            headers_strategy,
            st.one_of(st.none(), st.integers(min_value=0, max_value=2**53)),  # see _used_tokens
            st.booleans(),
            st.floats(min_value=0.0, max_value=5.0),
        ),
        min_size=1,
        max_size=8,
    ),
    tokens=st.integers(min_value=0, max_value=10**5),
)
def test_a_pool_learning_from_any_headers_never_crashes_or_stalls(
    exchanges: list[tuple[dict[str, str], int | None, bool, float]], tokens: int
) -> None:
    pool = KeyPool([Key("sk-a"), Key("sk-b")], concurrency=4)
    now = 0.0
    largest = max(tokens, 1)
    for headers, used_tokens, failed, pause in exchanges:
        now += pause
        reservation = pool.reserve(tokens, now)
        for _ in range(3):  # the time given may be a rounding error early: then a bit more
            if not isinstance(reservation, float):
                break
            # Nothing is in flight, so the wait is for time, never for ever: at most what the
            # largest cost takes at the smallest limit a server can publish (1 a minute).
            assert now < reservation <= now + 60.0 * largest + 1.0, reservation
            now = reservation
            reservation = pool.reserve(tokens, now)
        if reservation is None:  # too large for the limits the server published
            assert tokens > pool.largest_cost()
            return
        assert isinstance(reservation, Reservation)
        largest = max(largest, used_tokens or 0)
        pool.release(
            reservation,
            now,
            headers=HTTPResponse.build(200, headers).headers,
            used_tokens=used_tokens,
            failed=failed,
        )
        statistics = pool.statistics(now)
        assert all(key.in_flight == 0 for key in statistics.keys)


# ------------------------------------------------------------------ the engine, end to end


def _json_values() -> st.SearchStrategy[Any]:
    scalars = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(10**30), max_value=10**400),
        st.floats(allow_nan=False, allow_infinity=False),
        st.text(max_size=20),
    )
    return st.recursive(
        scalars,
        lambda inner: st.one_of(
            st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
        ),
        max_leaves=12,
    )


def _answer(usage: Any, extra: dict[str, Any]) -> bytes:
    body = {"choices": [{"message": {"content": "hi"}}], "usage": usage, **extra}
    return json.dumps(body).encode()


answers = st.builds(
    _answer,
    st.one_of(
        _json_values(),
        st.fixed_dictionaries({"total_tokens": _json_values()}),
        st.fixed_dictionaries({"total_tokens": st.sampled_from([-5, 0, 2**53 + 1, 10**400])}),
    ),
    st.dictionaries(st.text(max_size=8), _json_values(), max_size=3),
)
bodies = st.one_of(
    st.binary(max_size=80),
    _json_values().map(lambda value: json.dumps(value).encode()),
    answers,
    st.sampled_from([b"", b"{", b"[]", b"null", b"[" * 5000 + b"]" * 5000, b"\xff\xfe"]),
)
responses = st.lists(
    st.one_of(
        # An answer with a full set of rate-limit headers: what limits are learned from.
        st.tuples(
            st.just(200),
            st.fixed_dictionaries(dict.fromkeys(RATE_LIMIT_HEADERS, edge_values)),
            answers,
        ),
        st.tuples(st.one_of(st.sampled_from([200, 201, 204]), STATUSES), headers_strategy, bodies),
    ),
    min_size=1,
    max_size=6,
)


@settings(max_examples=150)
@given(plan=responses, requests=st.integers(min_value=1, max_value=4))
def test_any_response_ends_in_a_result_or_a_classified_error(
    plan: list[tuple[int, dict[str, str], bytes]], requests: int
) -> None:
    served = iter(plan * 1000)

    def handler(request: HTTPRequest) -> HTTPResponse:
        status, headers, content = next(served)
        return HTTPResponse.build(status, headers, content)

    async def scenario() -> list[Any]:
        clock = FakeClock()
        with clock.installed():
            client = AsyncMultiClient(
                4,
                max_retries=3,
                endpoint="chats",
                api_key=["sk-a", "sk-b"],
                base_url="http://mock.test/v1",
                transport=MockTransport(handler),
                rng=random.Random(0),
            )
            async with client:
                for n in range(requests):
                    await client.request({"model": "m", "messages": [{"content": str(n)}]})
                client.close()
                # Virtual time: an hour passes at once, so only a real stall times out.
                return await asyncio.wait_for(_collect(client), timeout=3600.0)

    results = asyncio.run(scenario())
    assert sorted(result.index for result in results) == list(range(requests))
    for result in results:
        if result.failed:
            assert isinstance(result.error, RequestError), result.error
        else:
            assert isinstance(result.response, dict)


async def _collect(client: AsyncMultiClient) -> list[Any]:
    return [result async for result in client]


async def test_a_body_nested_too_deeply_is_an_invalid_response(fake_clock: FakeClock) -> None:
    deep = b"[" * 100_000 + b"]" * 100_000
    client = AsyncMultiClient(
        max_retries=1,
        endpoint="chats",
        api_key="sk-a",
        base_url="http://mock.test/v1",
        transport=MockTransport(lambda request: HTTPResponse.build(200, {}, deep)),
    )
    async with client:
        await client.request({"model": "m", "messages": []})
        client.close()
        (result,) = await _collect(client)
    assert isinstance(result.error, InvalidResponseError), result.error
