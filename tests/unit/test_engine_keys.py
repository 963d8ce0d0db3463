"""Key pools inside the engine, on virtual time: pacing, learning, AIMD and failover."""

from __future__ import annotations

import asyncio
from collections import Counter, defaultdict
from typing import Any

import pytest

from openai_multi_client import (
    AsyncMultiClient,
    HTTPRequest,
    HTTPResponse,
    Key,
    RequestTooLargeError,
    Result,
)
from openai_multi_client.testing import FakeClock, error_response, json_response

KEYS = ["sk-k1", "sk-k2", "sk-k3", "sk-k4"]


def reply(headers: dict[str, str] | None = None) -> HTTPResponse:
    body = {
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 5, "total_tokens": 10},
    }
    return json_response(200, body, headers)


def key_of(request: HTTPRequest) -> str:
    return request.headers["Authorization"].removeprefix("Bearer ")


async def run(client: AsyncMultiClient, count: int, max_tokens: int = 20) -> list[Result]:
    async def produce() -> None:
        for n in range(count):
            body = {"messages": [{"role": "user", "content": f"q{n}"}], "max_tokens": max_tokens}
            await client.request(body)
        client.close()

    producer = asyncio.ensure_future(produce())
    results = [r async for r in client]
    await producer
    return results


def max_in_any_second(times: list[float]) -> int:
    times = sorted(times)
    return max(sum(1 for t in times if start <= t < start + 1.0) for start in times)


async def test_configured_limits_pace_every_key_at_its_rate(fake_clock: FakeClock) -> None:
    sent: dict[str, list[float]] = defaultdict(list)

    async def handler(request: HTTPRequest) -> HTTPResponse:
        sent[key_of(request)].append(fake_clock.now())
        await asyncio.sleep(0.3)
        return reply()

    keys = [Key(secret, requests_per_minute=600) for secret in KEYS]
    client = AsyncMultiClient(
        50, endpoint="chats", api_key=keys, base_url="http://mock.invalid/v1",
        transport=_transport(handler),
    )  # fmt: skip
    async with client:
        results = await run(client, 400)
    assert all(not r.failed for r in results)
    # 400 requests at 4 x 10 a second: 40 a second, a first burst of 40, so about 9.3 s.
    assert fake_clock.now() <= 400 / 40 + 0.5
    for times in sent.values():
        assert max_in_any_second(times) <= 10
        assert len(times) == 100


async def test_limits_learned_from_headers(fake_clock: FakeClock) -> None:
    sent: list[float] = []
    headers = {"x-ratelimit-limit-requests": "600", "x-ratelimit-limit-tokens": "100000"}

    async def handler(request: HTTPRequest) -> HTTPResponse:
        sent.append(fake_clock.now())
        await asyncio.sleep(0.3)
        return reply(headers)

    client = AsyncMultiClient(
        50, endpoint="chats", api_key="sk-k1", base_url="http://mock.invalid/v1",
        transport=_transport(handler),
    )  # fmt: skip
    async with client:
        results = await run(client, 100)
        stats = client.statistics().keys.keys[0]
    assert all(not r.failed for r in results)
    assert max_in_any_second(sent) <= 10
    assert stats.requests_per_minute == 600
    assert stats.tokens_per_minute == 100000
    # One probe round trip, then 10 a second.
    assert fake_clock.now() <= 0.3 + 100 / 10 + 0.5


async def test_tokens_per_minute_is_enforced(fake_clock: FakeClock) -> None:
    sent: list[float] = []

    async def handler(request: HTTPRequest) -> HTTPResponse:
        sent.append(fake_clock.now())
        return reply()

    # 100 tokens a second; each request reserves max_tokens=50 and uses 10 (refunded).
    key = Key("sk-k1", tokens_per_minute=6000)
    client = AsyncMultiClient(
        10, endpoint="chats", api_key=key, base_url="http://mock.invalid/v1",
        transport=_transport(handler),
    )  # fmt: skip
    async with client:
        results = await run(client, 60, max_tokens=50)
    assert all(not r.failed for r in results)
    assert fake_clock.now() < 60 * 50 / 100  # refunds make it faster than the reservations


async def test_a_negative_usage_count_refunds_nothing(fake_clock: FakeClock) -> None:
    usages: list[Any] = [None, {"total_tokens": -1000}, {"total_tokens": "7"}]
    charged = []
    for usage in usages:

        async def handler(request: HTTPRequest, usage: Any = usage) -> HTTPResponse:
            return json_response(200, {"choices": [], "usage": usage})

        client = AsyncMultiClient(
            endpoint="chats", api_key="sk-k1", base_url="http://mock.invalid/v1",
            transport=_transport(handler),
        )  # fmt: skip
        async with client:
            results = await run(client, 3, max_tokens=50)
            (key,) = client.statistics().keys.keys
        assert all(not r.failed for r in results)
        charged.append(key.tokens)
    # Counts that cannot be right are ignored: the reservation stands, as with no usage at all.
    assert charged == [150, 150, 150]


async def test_servers_without_headers_get_aimd(fake_clock: FakeClock) -> None:
    in_flight = 0
    peak = 0
    capacity = 6

    async def handler(request: HTTPRequest) -> HTTPResponse:
        nonlocal in_flight, peak
        if in_flight >= capacity:
            return error_response(503, "overloaded")
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.5)
        in_flight -= 1
        return reply()

    client = AsyncMultiClient(
        64, endpoint="chats", api_key="", base_url="http://localhost:8000/v1",
        transport=_transport(handler), retry_multiplier=0.1, retry_max=1,
    )  # fmt: skip
    async with client:
        results = await run(client, 300)
        stats = client.statistics()
    assert all(not r.failed for r in results), Counter(type(r.error) for r in results)
    assert peak <= capacity
    # The client settled near the server's capacity instead of hammering it with 64.
    assert stats.attempts < 300 * 1.5
    assert stats.keys.keys[0].concurrency_limit is not None
    assert stats.keys.keys[0].concurrency_limit <= 2 * capacity


async def test_bad_keys_among_good_ones(fake_clock: FakeClock) -> None:
    per_key: Counter[str] = Counter()

    async def handler(request: HTTPRequest) -> HTTPResponse:
        key = key_of(request)
        per_key[key] += 1
        await asyncio.sleep(0.2)
        if key == "sk-k1":
            return error_response(401, "Incorrect API key provided", "invalid_api_key")
        if key == "sk-k2":
            return error_response(429, "quota", "insufficient_quota", "insufficient_quota")
        return reply()

    concurrency = 20
    client = AsyncMultiClient(
        concurrency, endpoint="chats", api_key=KEYS, base_url="http://mock.invalid/v1",
        transport=_transport(handler),
    )  # fmt: skip
    async with client:
        results = await run(client, 200)
        stats = client.statistics().keys
    assert all(not r.failed for r in results)
    assert all(r.attempt == 1 for r in results)
    assert per_key["sk-k1"] <= concurrency
    assert per_key["sk-k2"] <= concurrency
    assert stats.retired == 2
    states = {k.key: (k.state, k.retired_reason) for k in stats.keys}
    assert "invalid_api_key" in (states[Key("sk-k1").id][1] or "")


async def test_a_request_too_large_for_every_key_fails_at_once(fake_clock: FakeClock) -> None:
    async def handler(request: HTTPRequest) -> HTTPResponse:
        return reply()

    client = AsyncMultiClient(
        endpoint="chats", api_key=Key("sk-k1", tokens_per_minute=1000),
        base_url="http://mock.invalid/v1", transport=_transport(handler), ordered=True,
    )  # fmt: skip
    async with client:
        await client.request({"messages": [], "max_tokens": 50})
        await client.request({"messages": [], "max_tokens": 5000})
        await client.request({"messages": [], "max_tokens": 50})
        client.close()
        results = [r async for r in client]
    assert [r.failed for r in results] == [False, True, False]
    assert isinstance(results[1].error, RequestTooLargeError)
    assert "5000" in str(results[1].error)


def _transport(handler: Any) -> Any:
    from openai_multi_client.testing import MockTransport

    return MockTransport(handler)


@pytest.fixture(autouse=True)
def _no_openai_module(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
