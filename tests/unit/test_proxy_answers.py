"""Answers a LiteLLM proxy really gave (recorded under tests/fixtures/litellm/), through the error
classification, the retry-delay parsers and the request id: the shapes a proxy puts on
OpenAI's answers must mean what they meant straight from OpenAI."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any

import pytest

from openai_multi_client import (
    AsyncMultiClient,
    AuthenticationError,
    HTTPRequest,
    HTTPResponse,
    InsufficientQuotaError,
    Key,
    RateLimitError,
    _json,
)
from openai_multi_client._errors import status_error
from openai_multi_client._headers import parse_rate_limit_reset, parse_retry_after
from openai_multi_client._limits import KeyPool, Reservation
from openai_multi_client._limits.health import Scope
from openai_multi_client._retry import Action, classify, refusal_scope, server_requested_delay
from openai_multi_client.testing import FakeClock, MockTransport

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "litellm"


def recorded(name: str) -> dict[str, Any]:
    """One recorded answer: ``status``, ``headers`` (lower-case names) and ``body``."""
    answer: dict[str, Any] = json.loads((FIXTURES / f"{name}.json").read_text())
    return answer


def as_error(name: str) -> Any:
    answer = recorded(name)
    return status_error(answer["status"], answer["body"], answer["headers"])


def test_litellms_forwarded_insufficient_quota_retires_the_key() -> None:
    answer = recorded("insufficient_quota")
    # What makes it hard: the proxy's code and type say "rate limit"; only the message differs.
    assert answer["body"]["error"]["code"] == "429"
    assert answer["body"]["error"]["type"] == "throttling_error"
    error = as_error("insufficient_quota")
    assert isinstance(error, InsufficientQuotaError)
    assert classify(error) is Action.RETIRE_KEY


def test_litellms_forwarded_rate_limit_stays_a_rate_limit() -> None:
    error = as_error("rate_limit")
    assert type(error) is RateLimitError
    assert classify(error) is Action.RETRY


def test_litellms_forwarded_401_is_an_authentication_error() -> None:
    error = as_error("authentication_error")
    assert isinstance(error, AuthenticationError)


def test_litellms_forwarded_401_concerns_its_model_group_only() -> None:
    """The upstream's "Incorrect API key provided" arrives with the code rewritten to "401" and
    the model group named: the proxy key is fine, that model's upstream is not."""
    error = as_error("authentication_error")
    assert error.code == "401"
    assert refusal_scope(error) is Scope.MODEL


@pytest.mark.parametrize(
    ("status", "error", "scope"),
    [
        # OpenAI itself: the key does not exist.
        (401, {"code": "invalid_api_key", "message": "Incorrect API key provided: sk-a***"}, "key"),
        # LiteLLM checking its own key.
        (
            401,
            {
                "code": "401",
                "type": "auth_error",
                "message": "Authentication Error, Invalid "
                "proxy server token passed. Received API Key = sk-...1234",
            },
            "key",
        ),
        (429, {"code": "insufficient_quota", "message": "You exceeded your current quota"}, "key"),
        (401, {"code": None, "message": "Unauthorized"}, "unsure"),
        (403, {"code": None, "message": "You are not allowed to sample from this model"}, "unsure"),
        (403, {"code": "403", "message": "litellm.PermissionDeniedError: no access"}, "model"),
    ],
)
def test_what_a_refusal_is_about(status: int, error: dict[str, Any], scope: str) -> None:
    assert refusal_scope(status_error(status, {"error": error})) is Scope(scope)


@pytest.mark.parametrize(
    ("error", "quota"),
    [
        ({"code": "insufficient_quota", "type": "insufficient_quota"}, True),  # OpenAI itself
        ({"code": None, "type": "insufficient_quota", "message": "no quota"}, True),
        (
            {
                "code": "429",
                "type": "throttling_error",
                "message": "You exceeded your current "
                "quota, please check your plan and billing details.",
            },
            True,
        ),
        ({"message": "Upstream said: {'error': {'code': 'insufficient_quota'}}"}, True),
        (
            {
                "code": "rate_limit_exceeded",
                "message": "Rate limit reached for gpt-4o on requests "
                "per min (RPM): Limit 3, Used 3, Requested 1.",
            },
            False,
        ),
        # Azure's rate limit names the pricing tier, not the quota.
        (
            {
                "code": "429",
                "message": "Requests to the ChatCompletions_Create Operation have "
                "exceeded token rate limit of your current OpenAI S0 pricing tier.",
            },
            False,
        ),
        ({"code": 429, "type": None, "message": None}, False),
    ],
)
def test_quota_shapes(error: dict[str, Any], quota: bool) -> None:
    found = status_error(429, {"error": error})
    assert isinstance(found, RateLimitError)
    assert isinstance(found, InsufficientQuotaError) is quota
    # The quota words on another status do not make a quota error.
    assert not isinstance(status_error(400, {"error": error}), InsufficientQuotaError)


def test_litellms_renamed_retry_headers_are_obeyed() -> None:
    headers = recorded("rate_limit")["headers"]
    assert "retry-after" not in headers
    assert "retry-after-ms" not in headers
    assert parse_retry_after(headers) == pytest.approx(1.0)  # llm_provider-retry-after-ms
    # llm_provider-x-ratelimit-reset-requests: 1m0s for 60 requests: one is back in 1 s.
    assert parse_rate_limit_reset(headers) == pytest.approx(1.0)
    error = status_error(429, {"error": {"message": "slow down"}}, headers)
    assert server_requested_delay(error) == pytest.approx(1.0)


def test_plain_retry_headers_win_over_the_providers() -> None:
    headers = {"retry-after": "3", "llm_provider-retry-after-ms": "500"}
    assert parse_retry_after(headers) == pytest.approx(3.0)
    assert parse_retry_after({"llm_provider-retry-after": "2"}) == pytest.approx(2.0)
    assert parse_retry_after({"llm_provider-retry-after": "soon"}) is None


async def test_litellms_call_id_is_the_request_id(fake_clock: FakeClock) -> None:
    answer = recorded("ok")
    assert "x-request-id" not in answer["headers"]

    def handler(request: HTTPRequest) -> HTTPResponse:
        content = _json.dumps(answer["body"])
        return HTTPResponse.build(answer["status"], answer["headers"], content)

    direct = {"x-request-id": "req_direct", "x-litellm-call-id": "call-1"}

    def direct_handler(request: HTTPRequest) -> HTTPResponse:
        return HTTPResponse.build(200, direct, _json.dumps(answer["body"]))

    for serve, expected in (
        (handler, answer["headers"]["x-litellm-call-id"]),
        (direct_handler, "req_direct"),  # the server's own id wins
    ):
        async with AsyncMultiClient(
            api_key="sk-test-0123456789",
            base_url="http://proxy.invalid/v1",
            endpoint="chats",
            transport=MockTransport(serve),
        ) as client:
            await client.request({"model": "good", "messages": []})
            client.close()
            [result] = [result async for result in client]
        assert not result.failed, result.error
        assert result.request_id == expected


def reserve(pool: KeyPool, now: float) -> Reservation:
    reservation = pool.reserve(0, now)
    assert isinstance(reservation, Reservation), reservation
    return reservation


def test_a_configured_limit_above_the_servers_is_lowered_to_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    key = Key("sk-a", requests_per_minute=100_000, tokens_per_minute=10_000_000)
    pool = KeyPool([key], concurrency=50)
    headers = {
        "x-ratelimit-limit-requests": "120",
        "x-ratelimit-remaining-requests": "119",
        "x-ratelimit-limit-tokens": "20000000",  # above the configured: the configured stays
        "x-ratelimit-remaining-tokens": "19999990",
    }
    with caplog.at_level(logging.WARNING, logger="openai_multi_client"):
        for now in (0.0, 0.5, 1.0):
            pool.release(reserve(pool, now), now + 0.01, headers=dict(headers))
            # Another token limit: the headers are read afresh, the log is not repeated.
            headers["x-ratelimit-limit-tokens"] = str(20_000_000 + int(now * 10))
    stats = pool.statistics(1.1).keys[0]
    assert stats.requests_per_minute == 120
    assert stats.tokens_per_minute == 10_000_000
    lowered = [r for r in caplog.records if "fewer than the" in r.getMessage()]
    assert len(lowered) == 1, [r.getMessage() for r in caplog.records]
    assert "120 requests per minute" in lowered[0].getMessage()
    assert "100000 configured" in lowered[0].getMessage()
    # Paced at 120 a minute: two a second, where 100,000 a minute allowed 1,666.
    taken = 0
    while isinstance(pool.reserve(0, 2.5), Reservation):
        taken += 1
    assert taken == 2


def test_a_server_limit_above_the_configured_one_changes_nothing() -> None:
    pool = KeyPool([Key("sk-a", requests_per_minute=60)], concurrency=50)
    pool.release(
        reserve(pool, 0.0),
        0.1,
        headers={"x-ratelimit-limit-requests": "600", "x-ratelimit-remaining-requests": "599"},
    )
    assert pool.statistics(0.1).keys[0].requests_per_minute == 60


# LiteLLM 1.106.12 (litellm/proxy/auth/auth_exception_handler.py): a BudgetExceededError becomes
# {"type": "budget_exceeded", "code": <litellm.budget_exceeded_status_code>, ...}, 422 by
# default; older releases sent 400, and the setting can make it 429.
BUDGET = {
    "message": "Budget has been exceeded! Current cost: 0.0123, Max budget: 0.01",
    "type": "budget_exceeded",
    "param": None,
    "code": "422",
}


@pytest.mark.parametrize("status", [400, 422, 429])
@pytest.mark.parametrize(
    "error",
    [
        BUDGET,
        {**BUDGET, "type": None, "code": "budget_exceeded"},
        {"message": "Budget has been exceeded! Current cost: 2.1, Max budget: 2.0"},
    ],
)
def test_a_proxys_exceeded_budget_is_an_exhausted_quota(status: int, error: dict[str, Any]) -> None:
    found = status_error(status, {"error": error})
    assert isinstance(found, InsufficientQuotaError)
    assert found.status_code == status
    assert classify(found) is Action.RETIRE_KEY
    assert refusal_scope(found) is Scope.KEY


def test_budget_words_elsewhere_are_not_an_exceeded_budget() -> None:
    error = {"message": "max_budget must be a number", "type": "invalid_request_error"}
    assert type(status_error(400, {"error": error})).__name__ == "BadRequestError"
    assert not isinstance(status_error(500, {"error": BUDGET}), InsufficientQuotaError)


async def test_a_key_over_its_proxy_budget_is_retired_and_its_requests_move(
    fake_clock: FakeClock,
) -> None:
    spent, fresh = "sk-spent-0123456789abcdef", "sk-fresh-0123456789abcdef"

    def proxy(request: HTTPRequest) -> HTTPResponse:
        if request.headers["Authorization"] == f"Bearer {spent}":
            return HTTPResponse.build(422, {}, _json.dumps({"error": BUDGET}))
        return HTTPResponse.build(200, {}, _json.dumps(recorded("ok")["body"]))

    async with AsyncMultiClient(
        api_key=[spent, fresh],
        base_url="http://proxy.invalid/v1",
        endpoint="chats",
        concurrency=1,
        transport=MockTransport(proxy),
    ) as client:

        async def produce() -> None:
            for _ in range(6):
                await client.request({"model": "good", "messages": []})
            client.close()

        producer = asyncio.ensure_future(produce())
        results = [result async for result in client]
        await producer
        keys = {key.key: key for key in client.statistics().keys.keys}
    assert [r.error for r in results] == [None] * 6
    assert keys[Key(spent).id].state == "retired"
    assert "Budget has been exceeded" in (keys[Key(spent).id].retired_reason or "")
    assert keys[Key(spent).id].requests == 1


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"request-id": "req_011CV"}, "req_011CV"),  # Anthropic-style, without the x-
        ({"request-id": "req_upstream", "x-litellm-call-id": "call-1"}, "call-1"),
        ({"request-id": "req_other", "x-request-id": "req_direct"}, "req_direct"),
        ({}, None),
    ],
)
async def test_the_request_id_header_without_its_x(
    fake_clock: FakeClock, headers: dict[str, str], expected: str | None
) -> None:
    def handler(request: HTTPRequest) -> HTTPResponse:
        return HTTPResponse.build(200, headers, _json.dumps(recorded("ok")["body"]))

    async with AsyncMultiClient(
        api_key="sk-test-0123456789",
        base_url="http://gateway.invalid/v1",
        endpoint="chats",
        transport=MockTransport(handler),
    ) as client:
        await client.request({"model": "good", "messages": []})
        client.close()
        [result] = [result async for result in client]
    assert not result.failed, result.error
    assert result.request_id == expected
