"""Issue 16, item 1: only a 429 recognised as a rate limit is paced (no attempt spent, up to
``max_paced_retries``); a bare 429 is an ordinary retryable failure that lets others run."""

from __future__ import annotations

import asyncio
import random

import pytest

from openai_multi_client import (
    AsyncMultiClient,
    ConfigurationError,
    RateLimitError,
    RequestError,
    Result,
    RetryBudget,
    RetryPolicy,
    _json,
)
from openai_multi_client._errors import status_error
from openai_multi_client._retry import Action, Attempts, decide, is_pacing
from openai_multi_client._transport import HTTPRequest, HTTPResponse
from openai_multi_client.testing import FakeClock, MockTransport, error_response, json_response

KEY = "sk-test-0123456789abcdef"


def error_429(
    message: str = "", code: str | None = None, headers: dict[str, str] | None = None
) -> RequestError:
    body = {"error": {"message": message, "type": "t", "param": None, "code": code}}
    return status_error(429, body, headers or {})


BARE = [
    error_429(),
    error_429("Rate limit exceeded (mock)"),  # fakellm's rule
    error_429("litellm.RateLimitError: upstream said 429", "429"),  # LiteLLM passing one on
    status_error(429, "<html><body>Too Many Requests</body></html>", {}),  # a gateway's page
]
RECOGNISED = [
    error_429(code="rate_limit_exceeded"),
    error_429("Rate limit reached for gpt-4o in organization org-x on requests per min (RPM)"),
    error_429(headers={"retry-after": "2"}),
    error_429(headers={"retry-after-ms": "20"}),
    error_429("slow down, please try again in 1.5s"),
    error_429(headers={"x-ratelimit-limit-requests": "60", "x-ratelimit-remaining-requests": "0"}),
    error_429(headers={"llm_provider-x-ratelimit-remaining-requests": "0"}),
]


@pytest.mark.parametrize("error", BARE)
def test_a_bare_429_spends_an_attempt_backs_off_and_cools_no_key(error: RequestError) -> None:
    assert not is_pacing(error)
    policy = RetryPolicy(max_attempts=3, multiplier=0.5, max_delay=60)
    decision = decide(error, Attempts(), policy, RetryBudget(), random.Random(0))
    assert decision.action is Action.RETRY
    assert not decision.paced
    assert decision.cool_key is None
    assert decision.attempts == Attempts(failures=1, paced=0, retry_cost=5)
    assert 0 <= decision.delay <= 0.5  # full jitter: uniform(0, multiplier * 2**0)
    after_three = decide(error, Attempts(failures=2), policy, None, random.Random(0))
    assert after_three.action is Action.FAIL
    assert after_three.reason == "attempts spent"


@pytest.mark.parametrize("error", RECOGNISED)
def test_a_recognised_rate_limit_is_paced(error: RequestError) -> None:
    assert is_pacing(error)
    decision = decide(error, Attempts(), RetryPolicy(max_attempts=3), None, random.Random(0))
    assert (decision.action, decision.paced, decision.attempts) == (
        Action.RETRY,
        True,
        Attempts(paced=1),
    )
    assert decision.cool_key is not None


def test_the_bound_on_paced_answers_is_the_policys() -> None:
    error = error_429(code="rate_limit_exceeded")
    policy = RetryPolicy(max_attempts=3, max_paced=2)
    decision = decide(error, Attempts(paced=2), policy, None, random.Random(0))
    assert not decision.paced
    assert decision.attempts == Attempts(failures=1, paced=2)
    assert RetryPolicy(max_paced=0).max_paced == 0
    with pytest.raises(ConfigurationError, match="max_paced_retries"):
        RetryPolicy(max_paced=-1)


def test_max_paced_retries_is_a_checked_client_option() -> None:
    with pytest.raises(ConfigurationError, match="max_paced_retries"):
        AsyncMultiClient(api_key=KEY, endpoint="chats", max_paced_retries=-1)


def reply(text: str) -> HTTPResponse:
    return json_response(
        200,
        {"choices": [{"index": 0, "message": {"role": "assistant", "content": text}}]},
    )


async def run(client: AsyncMultiClient, texts: list[str]) -> list[Result]:
    async def produce() -> None:
        for text in texts:
            await client.request({"messages": [{"role": "user", "content": text}]})
        client.close()

    producer = asyncio.ensure_future(produce())
    results = [result async for result in client]
    await producer
    return sorted(results, key=lambda result: result.index)


async def test_a_bare_429_counts_as_an_attempt_and_lets_others_run(
    fake_clock: FakeClock,
) -> None:
    """The fakellm reproduction, on a FakeClock: a request answered bare 429s fails after
    max_retries attempts, the others all succeed meanwhile, and the key's adaptive concurrency
    (the server publishes no limits) grows again after the 429."""
    sent: list[str] = []

    def handler(request: HTTPRequest) -> HTTPResponse:
        text = _json.loads(request.content)["messages"][0]["content"]
        sent.append(text)
        if text == "limited":
            return error_response(429, "Rate limit exceeded (mock)", type="")
        return reply(text)

    texts = ["limited", *(f"echo {n}" for n in range(40))]
    client = AsyncMultiClient(
        transport=MockTransport(handler),
        api_key=KEY,
        endpoint="chats",
        base_url="http://mock.invalid/v1",
        concurrency=20,
        max_retries=3,
        retry_multiplier=1,
        rng=random.Random(0),
    )
    async with client:
        results = await run(client, texts)
        statistics = client.statistics()
    assert isinstance(results[0].error, RateLimitError)
    assert results[0].attempt == 3
    assert sent.count("limited") == 3
    assert [result.error for result in results[1:]] == [None] * 40
    # Others went out while the limited request waited for its retries.
    assert sent.index("echo 39") < len(sent) - 1
    (key,) = statistics.keys.keys
    assert key.concurrency_limit is not None
    assert key.concurrency_limit > 1  # AIMD grew it again
    assert key.rate_limited == 0  # no cool-down: nothing said how long to rest the key


async def test_max_paced_retries_bounds_recognised_rate_limits(fake_clock: FakeClock) -> None:
    sent = 0

    def handler(request: HTTPRequest) -> HTTPResponse:
        nonlocal sent
        sent += 1
        return error_response(
            429, "slow down", "rate_limit_exceeded", headers={"retry-after-ms": "10"}
        )

    client = AsyncMultiClient(
        transport=MockTransport(handler),
        api_key=KEY,
        endpoint="chats",
        base_url="http://mock.invalid/v1",
        max_retries=2,
        max_paced_retries=3,
    )
    async with client:
        (result,) = await run(client, ["hello"])
    assert isinstance(result.error, RateLimitError)
    assert sent == 3 + 2  # three paced answers, then two counted attempts
    assert result.attempt == 5
