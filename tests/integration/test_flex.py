"""Flex online (issue 13, item 7): ``service_tier: "flex"`` requests over real HTTP to the mock,
which refuses some of them with a 429 "resource unavailable"; their long default timeout."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from openai_multi_client import AsyncMultiClient, RateLimitError, Result
from openai_multi_client._transport import HTTPRequest, HTTPResponse
from openai_multi_client.testing import Faults, KeyLimits, MockOpenAIServer, MockTransport
from openai_multi_client.testing import json_response as answer

Factory = Callable[..., MockOpenAIServer]
KEY = "sk-flex-0123456789"


def chat(text: str, flex: bool) -> dict[str, Any]:
    body: dict[str, Any] = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}]}
    if flex:
        body["service_tier"] = "flex"
    return body


async def run(client: AsyncMultiClient, bodies: list[dict[str, Any]]) -> list[Result]:
    """All of ``bodies``' results, in submission order."""
    async with client:

        async def produce() -> None:
            for body in bodies:
                await client.request(body, endpoint="chats")
            client.close()

        producer = asyncio.ensure_future(produce())
        results = [result async for result in client]
        await producer
    return sorted(results, key=lambda result: bodies.index(result.data))


async def test_flex_capacity_429s_are_retried_without_cooling_or_retiring_the_key(
    mock_openai_factory: Factory,
) -> None:
    # Limits high enough never to refuse, so the mock sends its x-ratelimit-* headers on the
    # flex 429s too, as OpenAI does: they must not make the 429 look like the key's limit.
    server = mock_openai_factory(
        keys={KEY: KeyLimits(requests_per_minute=100_000, tokens_per_minute=100_000_000)},
        faults=Faults(flex_unavailable=0.5),
        seed=11,
    )
    client = AsyncMultiClient(
        8, 12, api_key=KEY, base_url=server.base_url, retry_multiplier=0.002, retry_max=0.01
    )
    bodies = [chat(f"q{n}", flex=n % 2 == 0) for n in range(60)]
    results = await run(client, bodies)
    assert all(not r.failed for r in results), [r.error for r in results if r.failed]
    flex = [r for r in results if r.data.get("service_tier") == "flex"]
    assert any(r.attempt > 1 for r in flex)
    assert all(r.attempt == 1 for r in results if r not in flex)  # only flex is refused
    (key,) = client.statistics().keys.keys
    assert key.rate_limited == 0  # not counted as the key's rate limit ...
    assert key.cooling_until is None  # ... never cooled ...
    assert key.retired_reason is None  # ... never retired
    assert server.stats.faults_by_kind.get("flex_unavailable", 0) >= 5


async def test_a_flex_request_out_of_attempts_fails_with_the_classified_429(
    mock_openai_factory: Factory,
) -> None:
    server = mock_openai_factory(faults=Faults(flex_unavailable=1.0))
    client = AsyncMultiClient(
        2, 3, api_key=KEY, base_url=server.base_url, retry_multiplier=0.001, retry_max=0.001
    )
    flex, plain = await run(client, [chat("busy", flex=True), chat("fine", flex=False)])
    assert flex.failed
    assert isinstance(flex.error, RateLimitError)
    assert flex.error.code == "resource_unavailable"
    assert flex.attempt == 3
    assert not plain.failed  # the same key still answers


async def timeouts_sent(**options: Any) -> dict[bool, float]:
    seen: dict[bool, float] = {}

    def handler(request: HTTPRequest) -> HTTPResponse:
        seen[b'"flex"' in request.content] = request.timeout.total
        return answer(200, {"id": "x", "choices": [], "usage": None})

    client = AsyncMultiClient(api_key=KEY, transport=MockTransport(handler), **options)
    await run(client, [chat("a", flex=True), chat("b", flex=False)])
    return seen


async def test_flex_requests_get_15_minutes_unless_the_user_set_a_timeout() -> None:
    assert await timeouts_sent() == {True: 900.0, False: 600.0}
    assert await timeouts_sent(timeout=30.0) == {True: 30.0, False: 30.0}
    assert await timeouts_sent(timeout=600.0) == {True: 600.0, False: 600.0}
