"""The counters ``statistics()`` gives for monitoring: failures by class, retries by reason,
429s by kind, time waiting for a key, and each key's configured limits and remaining room."""

from __future__ import annotations

import asyncio
import json

import pytest

from openai_multi_client import AsyncMultiClient, HTTPRequest, HTTPResponse, Key, Result
from openai_multi_client.testing import FakeClock, MockTransport, error_response, json_response


async def run(client: AsyncMultiClient, contents: list[str]) -> list[Result]:
    async def produce() -> None:
        for content in contents:
            await client.request({"messages": [{"role": "user", "content": content}]})
        client.close()

    producer = asyncio.ensure_future(produce())
    results = [r async for r in client]
    await producer
    return results


def reply() -> HTTPResponse:
    body = {
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 5, "total_tokens": 10},
    }
    return json_response(200, body)


@pytest.fixture(autouse=True)
def _no_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)


async def test_outcomes_retries_and_429s_are_counted_by_class(fake_clock: FakeClock) -> None:
    seen: dict[str, int] = {}

    async def handler(request: HTTPRequest) -> HTTPResponse:
        secret = request.headers["Authorization"].removeprefix("Bearer ")
        content = json.loads(request.content)["messages"][0]["content"]
        seen[content] = seen.get(content, 0) + 1
        await asyncio.sleep(0.1)
        if secret == "sk-quota-0000":
            return error_response(429, "no quota", code="insufficient_quota", type="x")
        if content == "bad":
            return error_response(400, "bad request", type="invalid_request_error")
        if content == "flaky" and seen[content] == 1:
            return error_response(500, "oops")
        if content == "paced" and seen[content] == 1:
            return error_response(429, "slow down", code="rate_limit_exceeded", type="requests")
        return reply()

    keys = [Key("sk-good-0000", name="good"), Key("sk-quota-0000", name="quota", weight=100)]
    client = AsyncMultiClient(
        1, endpoint="chats", api_key=keys, base_url="http://mock.invalid/v1",
        transport=MockTransport(handler), retry_multiplier=0.1,
    )  # fmt: skip
    async with client:
        results = await run(client, ["ok", "bad", "flaky", "paced", "bad"])
        stats = client.statistics()
    assert sum(r.failed for r in results) == 2
    assert stats.failed_by_class == {"BadRequestError": 2}
    assert stats.retries_by_reason == {"InternalServerError": 1, "RateLimitError": 1}
    assert stats.rate_limited_by_kind == {"insufficient_quota": 1, "rate_limit": 1}


async def test_time_waiting_for_a_key_and_remaining_room(fake_clock: FakeClock) -> None:
    async def handler(request: HTTPRequest) -> HTTPResponse:
        return reply()

    key = Key("sk-k1-0000", requests_per_minute=60, tokens_per_minute=60_000)
    client = AsyncMultiClient(
        10, endpoint="chats", api_key=key, base_url="http://mock.invalid/v1",
        transport=MockTransport(handler),
    )  # fmt: skip
    async with client:
        results = await run(client, [str(n) for n in range(5)])
        stats = client.statistics()
    assert not any(r.failed for r in results)
    # One request a second: the 2nd to 5th waited about 4 s in all for the key.
    assert 3.5 <= stats.key_wait_seconds <= 4.5
    (keyed,) = stats.keys.keys
    assert keyed.configured_requests_per_minute == 60
    assert keyed.configured_tokens_per_minute == 60_000
    assert keyed.requests_remaining is not None
    assert 0 <= keyed.requests_remaining <= 1
    assert keyed.tokens_remaining is not None
    assert keyed.tokens_remaining <= 1000
