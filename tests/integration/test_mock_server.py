"""The mock OpenAI server over real loopback HTTP: shapes, errors, limits, faults, accounting."""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import logging
import math
import signal
import struct
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import aiohttp
import openai
import pytest

from openai_multi_client import _json
from openai_multi_client.cli import _mock as mock_cli
from openai_multi_client.testing import FakeClock, Faults, KeyLimits, MockOpenAIServer
from openai_multi_client.testing._mock.accounting import canonical_hash
from openai_multi_client.testing._mock.limits import TokenBucket, format_go_duration
from openai_multi_client.testing._mock.options import FAULT_KINDS

KEY = "sk-test"
AUTH = {"Authorization": f"Bearer {KEY}"}
CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hello there"}]}
RATE_LIMIT_HEADERS = tuple(
    f"x-ratelimit-{what}-{kind}"
    for what in ("limit", "remaining", "reset")
    for kind in ("requests", "tokens")
)


class Reply:
    """A response read in full."""

    def __init__(self, status: int, headers: Mapping[str, str], raw: bytes) -> None:
        self.status = status
        self.headers = headers
        self.raw = raw

    def json(self) -> Any:
        return _json.loads(self.raw)

    def error(self) -> dict[str, Any]:
        body = self.json()
        assert set(body) == {"error"}
        assert set(body["error"]) == {"message", "type", "param", "code"}
        error: dict[str, Any] = body["error"]
        return error


async def post(
    session: aiohttp.ClientSession,
    url: str,
    body: object,
    headers: Mapping[str, str] | None = None,
) -> Reply:
    data = body if isinstance(body, bytes) else _json.dumps(body)
    async with session.post(
        url,
        data=data,
        headers=AUTH if headers is None else headers,
    ) as response:
        return Reply(response.status, response.headers, await response.read())


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as client:
        yield client


@pytest.fixture
async def server() -> AsyncIterator[MockOpenAIServer]:
    async with MockOpenAIServer() as running:
        yield running


def assert_request_id(reply: Reply) -> None:
    request_id = reply.headers["x-request-id"]
    assert request_id.startswith("req_")
    int(request_id[4:], 16)


# ------------------------------------------------------------------------------------------
# Response shapes
# ------------------------------------------------------------------------------------------


async def test_chat_completion_shape(
    server: MockOpenAIServer, session: aiohttp.ClientSession
) -> None:
    reply = await post(session, f"{server.base_url}/chat/completions", {**CHAT, "n": 2})
    assert reply.status == 200
    assert reply.headers["content-type"] == "application/json"
    assert_request_id(reply)
    for name in RATE_LIMIT_HEADERS:
        assert name in reply.headers
    assert int(reply.headers["x-ratelimit-limit-requests"]) >= 10**8  # unlimited key
    body = reply.json()
    assert body["id"].startswith("chatcmpl-")
    assert body["object"] == "chat.completion"
    assert isinstance(body["created"], int)
    assert body["model"] == "gpt-4o-mini"
    assert body["system_fingerprint"]
    assert [choice["index"] for choice in body["choices"]] == [0, 1]
    for choice in body["choices"]:
        assert choice["message"]["role"] == "assistant"
        assert choice["message"]["content"] == "Mock reply to: hello there"
        assert choice["message"]["refusal"] is None
        assert choice["logprobs"] is None
        assert choice["finish_reason"] == "stop"
    usage = body["usage"]
    assert usage["prompt_tokens"] == math.ceil(len("hello there") / 4)
    assert usage["completion_tokens"] == 2 * math.ceil(len("Mock reply to: hello there") / 4)
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


async def test_chat_replies_to_the_last_user_message_and_honours_max_tokens(
    server: MockOpenAIServer, session: aiohttp.ClientSession
) -> None:
    messages = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": [{"type": "text", "text": "first question"}]},
        {"role": "assistant", "content": "an answer"},
        {"role": "user", "content": "second question is rather long"},
    ]
    body = {"model": "m", "messages": messages, "max_completion_tokens": 3}
    reply = await post(session, f"{server.base_url}/chat/completions", body)
    choice = reply.json()["choices"][0]
    assert choice["finish_reason"] == "length"
    assert choice["message"]["content"] == "Mock reply to: second question"[:12]
    assert reply.json()["usage"]["completion_tokens"] == 3


async def test_completions_shape(server: MockOpenAIServer, session: aiohttp.ClientSession) -> None:
    body = {"model": "gpt-3.5-turbo-instruct", "prompt": ["one", "two"], "n": 2}
    reply = await post(session, f"{server.base_url}/completions", body)
    assert reply.status == 200
    result = reply.json()
    assert result["object"] == "text_completion"
    assert result["id"].startswith("cmpl-")
    texts = [choice["text"] for choice in result["choices"]]
    assert texts == ["Mock completion of: one"] * 2 + ["Mock completion of: two"] * 2
    assert [choice["index"] for choice in result["choices"]] == [0, 1, 2, 3]
    assert {choice["finish_reason"] for choice in result["choices"]} == {"stop"}
    assert result["usage"]["prompt_tokens"] == 2


async def test_embeddings_are_deterministic_unit_vectors(
    server: MockOpenAIServer, session: aiohttp.ClientSession
) -> None:
    url = f"{server.base_url}/embeddings"
    body = {"model": "text-embedding-3-small", "input": ["alpha", "beta"]}
    first = (await post(session, url, body)).json()
    again = (await post(session, url, body)).json()
    assert first["object"] == "list"
    assert first["model"] == "text-embedding-3-small"
    assert first["usage"] == {"prompt_tokens": 3, "total_tokens": 3}  # ceil(9 / 4)
    vectors = [item["embedding"] for item in first["data"]]
    assert [item["index"] for item in first["data"]] == [0, 1]
    assert {item["object"] for item in first["data"]} == {"embedding"}
    assert vectors == [item["embedding"] for item in again["data"]]
    assert vectors[0] != vectors[1]
    for vector in vectors:
        assert len(vector) == 1536  # the model's real size
        assert math.fsum(value * value for value in vector) == pytest.approx(1.0)

    sized = (await post(session, url, {**body, "input": "alpha", "dimensions": 3})).json()
    assert len(sized["data"]) == 1
    assert len(sized["data"][0]["embedding"]) == 3

    packed = await post(session, url, {**body, "encoding_format": "base64"})
    raw = base64.b64decode(packed.json()["data"][0]["embedding"])
    assert list(struct.unpack("<1536f", raw)) == pytest.approx(vectors[0], abs=1e-6)


@pytest.mark.parametrize(
    ("model", "size"),
    [
        ("text-embedding-3-small", 1536),
        ("text-embedding-3-large", 3072),
        ("text-embedding-ada-002", 1536),
    ],
)
async def test_embeddings_have_the_models_real_size(
    server: MockOpenAIServer, session: aiohttp.ClientSession, model: str, size: int
) -> None:
    url = f"{server.base_url}/embeddings"
    reply = (await post(session, url, {"model": model, "input": "x"})).json()
    assert len(reply["data"][0]["embedding"]) == size
    async with MockOpenAIServer(embedding_dimensions=8) as small:
        url = f"{small.base_url}/embeddings"
        reply = (await post(session, url, {"model": model, "input": "x"})).json()
        assert len(reply["data"][0]["embedding"]) == 8


async def test_moderations_shape(server: MockOpenAIServer, session: aiohttp.ClientSession) -> None:
    reply = await post(session, f"{server.base_url}/moderations", {"input": ["a", "b", "c"]})
    assert reply.status == 200
    result = reply.json()
    assert result["id"].startswith("modr-")
    assert result["model"] == "omni-moderation-latest"  # OpenAI's default model
    assert len(result["results"]) == 3
    for item in result["results"]:
        assert item["flagged"] is False
        assert "violence" in item["categories"]
        assert not any(item["categories"].values())
        assert max(item["category_scores"].values()) < 0.01


async def test_responses_shape(server: MockOpenAIServer, session: aiohttp.ClientSession) -> None:
    body = {"model": "gpt-4.1-mini", "input": "tell me a joke", "instructions": "be funny"}
    result = (await post(session, f"{server.base_url}/responses", body)).json()
    assert result["object"] == "response"
    assert result["id"].startswith("resp_")
    assert result["status"] == "completed"
    assert result["instructions"] == "be funny"
    [message] = result["output"]
    assert message["type"] == "message"
    assert message["role"] == "assistant"
    [content] = message["content"]
    assert content == {
        "type": "output_text",
        "text": "Mock reply to: tell me a joke",
        "annotations": [],
        "logprobs": [],
    }
    usage = result["usage"]
    assert usage["input_tokens"] == math.ceil(len("tell me a jokebe funny") / 4)
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]

    items = [{"role": "user", "content": [{"type": "input_text", "text": "hi"}]}]
    limited = {"model": "m", "input": items, "max_output_tokens": 2}
    result = (await post(session, f"{server.base_url}/responses", limited)).json()
    assert result["status"] == "incomplete"
    assert result["incomplete_details"] == {"reason": "max_output_tokens"}
    assert result["usage"]["output_tokens"] == 2


async def test_images_shape(server: MockOpenAIServer, session: aiohttp.ClientSession) -> None:
    url = f"{server.base_url}/images/generations"
    as_urls = (await post(session, url, {"model": "dall-e-3", "prompt": "a cat", "n": 2})).json()
    assert isinstance(as_urls["created"], int)
    assert len(as_urls["data"]) == 2
    async with session.get(as_urls["data"][0]["url"]) as response:
        assert response.status == 200
        assert (await response.read()).startswith(b"\x89PNG")
    as_data = (await post(session, url, {"model": "gpt-image-1", "prompt": "a dog"})).json()
    [image] = as_data["data"]
    assert base64.b64decode(image["b64_json"]).startswith(b"\x89PNG")


async def test_models_list(server: MockOpenAIServer, session: aiohttp.ClientSession) -> None:
    async with session.get(f"{server.base_url}/models", headers=AUTH) as response:
        assert response.status == 200
        body = _json.loads(await response.read())
    assert body["object"] == "list"
    assert {"id", "object", "created", "owned_by"} <= set(body["data"][0])


# ------------------------------------------------------------------------------------------
# Errors
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "body", "param"),
    [
        ("chat/completions", {"model": "m"}, "messages"),
        ("chat/completions", {"messages": CHAT["messages"]}, "model"),
        ("chat/completions", {"model": "m", "messages": "hi"}, "messages"),
        ("chat/completions", {**CHAT, "n": 0}, "n"),
        ("chat/completions", {**CHAT, "max_tokens": "many"}, "max_tokens"),
        ("completions", {"model": "m"}, "prompt"),
        ("embeddings", {"model": "m"}, "input"),
        ("embeddings", {"model": "m", "input": []}, "input"),
        ("moderations", {"model": "m"}, "input"),
        ("responses", {"model": "m"}, "input"),
        ("images/generations", {"model": "m"}, "prompt"),
    ],
)
async def test_missing_or_invalid_parameter_is_400(
    server: MockOpenAIServer,
    session: aiohttp.ClientSession,
    path: str,
    body: dict[str, Any],
    param: str,
) -> None:
    reply = await post(session, f"{server.base_url}/{path}", body)
    assert reply.status == 400
    assert_request_id(reply)
    error = reply.error()
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param
    assert f"'{param}'" in error["message"]


@pytest.mark.parametrize("raw", [b"{not json", b"", b"[1, 2]"])
async def test_body_must_be_a_json_object(
    server: MockOpenAIServer, session: aiohttp.ClientSession, raw: bytes
) -> None:
    reply = await post(session, f"{server.base_url}/chat/completions", raw)
    assert reply.status == 400
    assert reply.error()["type"] == "invalid_request_error"


async def test_unknown_path_is_404(
    server: MockOpenAIServer, session: aiohttp.ClientSession
) -> None:
    reply = await post(session, f"{server.base_url}/edits", CHAT)
    assert reply.status == 404
    assert_request_id(reply)
    assert reply.error()["message"] == "Invalid URL (POST /v1/edits)"
    async with session.get(f"{server.base_url}/chat/completions", headers=AUTH) as response:
        assert response.status == 404


async def test_keys_missing_invalid_unknown_and_optional(session: aiohttp.ClientSession) -> None:
    keys = {"sk-good": KeyLimits()}
    async with MockOpenAIServer(keys=keys, invalid_keys={"sk-revoked"}) as server:
        url = f"{server.base_url}/chat/completions"
        missing = await post(session, url, CHAT, headers={})
        assert missing.status == 401
        assert_request_id(missing)
        assert "didn't provide an API key" in missing.error()["message"]
        for key in ("sk-revoked", "sk-unknown-key-123"):
            reply = await post(session, url, CHAT, headers={"Authorization": f"Bearer {key}"})
            assert reply.status == 401
            error = reply.error()
            assert error["code"] == "invalid_api_key"
            assert key not in error["message"]  # redacted, as OpenAI does
        good = await post(session, url, CHAT, headers={"Authorization": "Bearer sk-good"})
        assert good.status == 200
        assert server.stats.status_counts == {401: 3, 200: 1}
        assert server.stats.requests_by_key == {
            "": 1,
            "sk-revoked": 1,
            "sk-unknown-key-123": 1,
            "sk-good": 1,
        }

    async with MockOpenAIServer(require_key=False) as server:
        reply = await post(session, f"{server.base_url}/chat/completions", CHAT, headers={})
        assert reply.status == 200


async def test_an_invalid_key_in_azures_header_gets_azures_401(
    session: aiohttp.ClientSession,
) -> None:
    """Azure words its 401 for an unknown ``api-key`` in its own way: code "401", no type."""
    async with MockOpenAIServer(invalid_keys={"azure-revoked"}) as server:
        url = f"{server.base_url}/chat/completions"
        reply = await post(session, url, CHAT, headers={"api-key": "azure-revoked"})
    assert reply.status == 401
    assert_request_id(reply)
    error = reply.json()["error"]
    assert set(error) == {"code", "message"}
    assert error["code"] == "401"
    assert error["message"].startswith("Access denied due to invalid subscription key")


async def test_insufficient_quota(session: aiohttp.ClientSession) -> None:
    async with MockOpenAIServer(no_quota_keys=["sk-broke"]) as server:
        headers = {"Authorization": "Bearer sk-broke"}
        reply = await post(session, f"{server.base_url}/chat/completions", CHAT, headers=headers)
    assert reply.status == 429
    error = reply.error()
    assert error["code"] == "insufficient_quota"
    assert error["type"] == "insufficient_quota"
    assert "retry-after-ms" not in reply.headers
    assert "retry-after" not in reply.headers


async def test_azure_route_with_api_key_header(session: aiohttp.ClientSession) -> None:
    async with MockOpenAIServer(keys={"azure-key": KeyLimits(requests_per_minute=600)}) as server:
        url = f"{server.url}/openai/deployments/my-gpt/chat/completions?api-version=2024-10-21"
        body = {"messages": CHAT["messages"]}
        reply = await post(session, url, body, headers={"api-key": "azure-key"})
        assert reply.status == 200
        assert reply.json()["model"] == "my-gpt"
        assert reply.headers["x-ratelimit-limit-requests"] == "600"
        embed_url = f"{server.url}/openai/deployments/emb/embeddings?api-version=2024-10-21"
        embedded = await post(session, embed_url, {"input": "x"}, headers={"api-key": "azure-key"})
        assert embedded.json()["model"] == "emb"
        wrong = await post(session, url, body, headers={"api-key": "other"})
        assert wrong.status == 401


# ------------------------------------------------------------------------------------------
# Rate limits
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("rpm", "burst"), [(60, 1), (600, 10)])
async def test_request_limit_allows_one_second_of_burst(
    session: aiohttp.ClientSession, rpm: int, burst: int
) -> None:
    clock = FakeClock()
    limits = {KEY: KeyLimits(requests_per_minute=rpm)}
    async with MockOpenAIServer(keys=limits, clock=clock) as server:
        url = f"{server.base_url}/chat/completions"
        for sent in range(1, burst + 1):
            reply = await post(session, url, CHAT)
            assert reply.status == 200
            assert reply.headers["x-ratelimit-limit-requests"] == str(rpm)
            assert reply.headers["x-ratelimit-remaining-requests"] == str(rpm - sent)
        assert reply.headers["x-ratelimit-reset-requests"] == "1s"  # until the minute is full

        limited = await post(session, url, CHAT)
        assert limited.status == 429
        assert_request_id(limited)
        error = limited.error()
        assert error["code"] == "rate_limit_exceeded"
        assert error["type"] == "requests"
        assert f"Limit {rpm}, Used {burst}, Requested 1." in error["message"]
        wait = 1.0 / burst  # until one request has refilled
        assert f"Please try again in {format_go_duration(wait)}." in error["message"]
        assert limited.headers["retry-after-ms"] == str(round(wait * 1000))
        assert limited.headers["retry-after"] == str(math.ceil(wait))
        assert limited.headers["x-ratelimit-remaining-requests"] == str(rpm - burst - 1)
        assert server.stats.rate_limited_by_type == {"requests": 1}

        clock.advance(wait * 0.9)
        # The rejected request counts: it used up the partial refill, so the wait starts again.
        again = await post(session, url, CHAT)
        assert again.status == 429
        assert again.headers["retry-after-ms"] == str(round(wait * 1000))
        clock.advance(wait)
        assert (await post(session, url, CHAT)).status == 200
        clock.advance(120.0)
        full = await post(session, url, CHAT)
        assert full.headers["x-ratelimit-remaining-requests"] == str(rpm - 1)


async def test_rejected_requests_need_not_count(session: aiohttp.ClientSession) -> None:
    clock = FakeClock()
    limits = KeyLimits(requests_per_minute=60)
    async with MockOpenAIServer(default_limits=limits, clock=clock, count_rejected=False) as server:
        url = f"{server.base_url}/chat/completions"
        assert (await post(session, url, CHAT)).status == 200
        clock.advance(0.5)
        limited = await post(session, url, CHAT)
        assert limited.status == 429
        assert limited.headers["retry-after-ms"] == "500"
        assert limited.headers["x-ratelimit-remaining-requests"] == "59"
        clock.advance(0.5)
        assert (await post(session, url, CHAT)).status == 200


async def test_keys_of_one_organization_share_its_buckets(
    session: aiohttp.ClientSession,
) -> None:
    clock = FakeClock()
    org = KeyLimits(requests_per_minute=60, organization="org-a", project="proj_x")
    limits = {"sk-a1": org, "sk-a2": org, "sk-b": KeyLimits(requests_per_minute=60)}
    async with MockOpenAIServer(keys=limits, clock=clock) as server:
        url = f"{server.base_url}/chat/completions"

        def auth(key: str) -> dict[str, str]:
            return {"Authorization": f"Bearer {key}"}

        first = await post(session, url, CHAT, auth("sk-a1"))
        assert first.status == 200
        assert first.headers["openai-organization"] == "org-a"
        assert first.headers["openai-project"] == "proj_x"
        # The other key of the organization finds its bucket empty: one per second between them.
        second = await post(session, url, CHAT, auth("sk-a2"))
        assert second.status == 429
        assert "in organization org-a on requests" in second.error()["message"]
        assert second.headers["x-ratelimit-remaining-requests"] == "58"  # the 429 counted
        alone = await post(session, url, CHAT, auth("sk-b"))
        assert alone.status == 200
        assert alone.headers["openai-organization"].startswith("org-")
        assert alone.headers["openai-organization"] != "org-a"
        clock.advance(1.0)
        assert (await post(session, url, CHAT, auth("sk-a2"))).status == 200


def test_keys_of_one_organization_must_agree_on_its_limits() -> None:
    with pytest.raises(ValueError, match="organization 'org-a' share its limits"):
        MockOpenAIServer(
            keys={
                "sk-a1": KeyLimits(requests_per_minute=60, organization="org-a"),
                "sk-a2": KeyLimits(requests_per_minute=120, organization="org-a"),
            }
        )
    with pytest.raises(ValueError, match=r"KeyLimits\.organization"):
        KeyLimits(organization=" ")


async def test_token_limit(session: aiohttp.ClientSession) -> None:
    clock = FakeClock()
    limits = {KEY: KeyLimits(tokens_per_minute=600)}  # 10 tokens a second, burst 10
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 9}
    async with MockOpenAIServer(keys=limits, clock=clock) as server:
        url = f"{server.base_url}/chat/completions"
        # Admission charges max(max_tokens, prompt estimate) = 9; the answer uses fewer
        # (usage.total_tokens) and the rest is given back.
        first = await post(session, url, body)
        assert first.status == 200
        used = first.json()["usage"]["total_tokens"]
        assert used < 9
        assert first.headers["x-ratelimit-remaining-tokens"] == str(600 - used)
        assert first.headers["x-ratelimit-reset-tokens"] == f"{used * 100}ms"
        assert int(first.headers["x-ratelimit-limit-requests"]) >= 10**8

        second = await post(session, url, body)
        assert second.status == 429
        error = second.error()
        assert (error["type"], error["code"]) == ("tokens", "rate_limit_exceeded")
        # The refused request is charged too (failed requests count), emptying the bucket, so
        # the wait is for all 9 tokens.
        wait_ms = 900
        assert (
            f"Limit 600, Used {used}, Requested 9. Please try again in {wait_ms}ms."
            in (error["message"])
        )
        assert second.headers["retry-after-ms"] == str(wait_ms)
        assert second.headers["retry-after"] == "1"

        clock.advance(wait_ms / 1000)
        assert (await post(session, url, body)).status == 200

        too_large = await post(session, url, {**body, "max_tokens": 1000})
        assert too_large.status == 429
        assert too_large.headers["x-should-retry"] == "false"
        assert too_large.error()["message"].startswith("Request too large for m")
        assert server.stats.rate_limited_by_type == {"tokens": 2}


async def test_limit_headers_and_retry_after_can_be_turned_off(
    session: aiohttp.ClientSession,
) -> None:
    clock = FakeClock()
    async with MockOpenAIServer(
        default_limits=KeyLimits(requests_per_minute=60),
        retry_after=False,
        rate_limit_headers=False,
        clock=clock,
    ) as server:
        url = f"{server.base_url}/chat/completions"
        ok = await post(session, url, CHAT)
        limited = await post(session, url, CHAT)
    assert (ok.status, limited.status) == (200, 429)
    for reply in (ok, limited):
        assert_request_id(reply)
        assert not any(name.lower().startswith("x-ratelimit") for name in reply.headers)
    assert "retry-after-ms" not in limited.headers
    assert "retry-after" not in limited.headers


def test_token_bucket_with_injected_time() -> None:
    bucket = TokenBucket(60, now=0.0)
    assert bucket.capacity == 1.0
    assert bucket.wait_time(1, 0.0) == 0.0
    bucket.take(1, 0.0)
    assert bucket.wait_time(1, 0.0) == pytest.approx(1.0)
    assert bucket.wait_time(1, 0.25) == pytest.approx(0.75)
    assert bucket.remaining(0.25) == 59
    assert bucket.reset_after(0.25) == pytest.approx(0.75)
    assert bucket.wait_time(1, 1.0) == 0.0
    assert bucket.remaining(1.0) == 60

    # Rejected requests are charged: they eat partial refills, but never make debt.
    bucket.take(1, 1.0)
    bucket.charge_rejected(1, 1.5)
    assert bucket.wait_time(1, 1.5) == pytest.approx(1.0)
    for _ in range(5):
        bucket.charge_rejected(1, 1.5)
    assert bucket.wait_time(1, 1.5) == pytest.approx(1.0)
    assert bucket.remaining(1.5) == 53  # 59.5 - 6, rounded down

    # A request larger than the burst passes when the bucket is full, then the debt refills.
    tokens = TokenBucket(600, now=0.0)
    assert tokens.capacity == 10.0
    assert tokens.wait_time(50, 0.0) == 0.0
    tokens.take(50, 0.0)
    assert tokens.wait_time(5, 0.0) == pytest.approx(4.5)
    assert tokens.wait_time(50, 0.0) == pytest.approx(5.0)
    assert tokens.remaining(0.0) == 550
    assert tokens.reset_after(0.0) == pytest.approx(5.0)
    assert tokens.wait_time(50, 5.0) == 0.0

    # The burst never exceeds one second's worth, however long the bucket rested.
    big = TokenBucket(6000, now=0.0)
    admitted = 0
    while big.wait_time(1, 3600.0) == 0.0:
        big.take(1, 3600.0)
        admitted += 1
    assert admitted == 100


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.0, "0s"),
        (0.0004, "1ms"),
        (0.12, "120ms"),
        (1.0, "1s"),
        (1.5, "1.5s"),
        (59.999, "59.999s"),
        (360.0, "6m0s"),
        (179.56, "2m59.56s"),
        (3600.0, "1h0m0s"),
    ],
)
def test_go_duration_format(seconds: float, text: str) -> None:
    assert format_go_duration(seconds) == text


# ------------------------------------------------------------------------------------------
# Faults and latency
# ------------------------------------------------------------------------------------------


def only(kind: str, **kwargs: Any) -> Faults:
    return Faults(rate=1.0, kinds={kind: 1.0}, **kwargs)


@pytest.mark.parametrize("status", [500, 502, 503])
async def test_status_faults(
    session: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture, status: int
) -> None:
    async with MockOpenAIServer(faults=only(str(status))) as server:
        reply = await post(session, f"{server.base_url}/chat/completions", CHAT)
        assert reply.status == status
        assert_request_id(reply)
        if status == 502:
            assert reply.headers["content-type"].startswith("text/html")  # as a proxy sends
        else:
            assert reply.error()["type"] == "server_error"
        assert server.stats.faults_by_kind == {str(status): 1}
        assert server.times_answered(CHAT) == 0
    assert not [record for record in caplog.records if record.levelno >= logging.ERROR]


async def test_reset_fault_is_a_connection_error(
    session: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    async with MockOpenAIServer(faults=only("reset")) as server:
        with pytest.raises(aiohttp.ClientConnectionError):
            await post(session, f"{server.base_url}/chat/completions", CHAT)
        assert server.stats.faults_by_kind == {"reset": 1}
        assert server.stats.status_counts == {}
    assert not [record for record in caplog.records if record.levelno >= logging.ERROR]


async def test_malformed_fault_sends_truncated_json(session: aiohttp.ClientSession) -> None:
    async with MockOpenAIServer(faults=only("malformed")) as server:
        reply = await post(session, f"{server.base_url}/chat/completions", CHAT)
        assert reply.status == 200
        assert reply.raw.startswith(b'{"id":"chatcmpl-')
        with pytest.raises(json.JSONDecodeError):
            reply.json()
        assert server.stats.faults_by_kind == {"malformed": 1}
        assert server.times_answered(CHAT) == 0


async def test_hang_fault_times_out_and_stop_does_not_wait(
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = MockOpenAIServer(faults=only("hang"))
    await server.start()
    try:
        timeout = aiohttp.ClientTimeout(total=0.3)
        async with aiohttp.ClientSession(timeout=timeout) as client:
            with pytest.raises(asyncio.TimeoutError):
                await post(client, f"{server.base_url}/chat/completions", CHAT)

        # A request still hanging when the server stops is dropped at once.
        async with aiohttp.ClientSession() as client:
            pending = asyncio.ensure_future(
                post(client, f"{server.base_url}/chat/completions", CHAT)
            )
            for _ in range(200):
                if server.stats.faults_by_kind.get("hang") == 2:
                    break
                await asyncio.sleep(0.01)
            assert server.stats.faults_by_kind == {"hang": 2}
            started = time.monotonic()
            await server.stop()
            assert time.monotonic() - started < 2.0
            with pytest.raises(aiohttp.ClientConnectionError):
                await pending
    finally:
        await server.stop()
    assert not [record for record in caplog.records if record.levelno >= logging.ERROR]


async def test_fault_plan_is_reproducible(session: aiohttp.ClientSession) -> None:
    faults = Faults(rate=0.5, kinds={"500": 1.0, "503": 1.0})

    async def statuses(seed: int) -> list[int]:
        async with MockOpenAIServer(faults=faults, seed=seed) as server:
            url = f"{server.base_url}/chat/completions"
            return [(await post(session, url, CHAT)).status for _ in range(30)]

    first = await statuses(7)
    assert first == await statuses(7)
    assert set(first) == {200, 500, 503}


async def test_latency(session: aiohttp.ClientSession) -> None:
    async with MockOpenAIServer(latency=(0.05, 0.06)) as server:
        started = time.monotonic()
        reply = await post(session, f"{server.base_url}/chat/completions", CHAT)
        assert reply.status == 200
        assert time.monotonic() - started >= 0.05


def test_argument_validation() -> None:
    with pytest.raises(ValueError, match="requests_per_minute"):
        KeyLimits(requests_per_minute=0)
    with pytest.raises(ValueError, match="tokens_per_minute"):
        KeyLimits(tokens_per_minute=1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"Faults\.rate"):
        Faults(rate=1.5)
    with pytest.raises(ValueError, match=r"Faults\.kinds"):
        Faults(rate=0.1, kinds={"teapot": 1.0})
    with pytest.raises(ValueError, match=r"Faults\.kinds"):
        Faults(rate=0.1, kinds={"500": -1.0})
    with pytest.raises(ValueError, match=r"Faults\.kinds"):
        Faults(rate=0.1, kinds={"500": 0.0})
    with pytest.raises(ValueError, match=r"Faults\.hang_seconds"):
        Faults(hang_seconds=0)
    # The default plan has the six kinds of a plain answer; the mid-answer ones are opt-in.
    assert set(Faults().kinds) == set(FAULT_KINDS[:6])
    assert {"stream_cut", "stream_stall", "stream_error"} <= set(FAULT_KINDS)
    with pytest.raises(ValueError, match="latency"):
        MockOpenAIServer(latency=(0.5, 0.1))
    with pytest.raises(ValueError, match="latency"):
        MockOpenAIServer(latency=-1.0)
    with pytest.raises(ValueError, match="port"):
        MockOpenAIServer(port=70000)
    with pytest.raises(ValueError, match="embedding_dimensions"):
        MockOpenAIServer(embedding_dimensions=0)
    with pytest.raises(RuntimeError, match="not been started"):
        _ = MockOpenAIServer().base_url


# ------------------------------------------------------------------------------------------
# Accounting
# ------------------------------------------------------------------------------------------


async def test_answer_accounting(server: MockOpenAIServer, session: aiohttp.ClientSession) -> None:
    url = f"{server.base_url}/chat/completions"
    twice = {**CHAT, "user": "a"}
    once = {**CHAT, "user": "b"}
    await post(session, url, twice)
    await post(session, url, once)
    await post(session, url, twice)
    await post(session, url, {"model": "m"})  # 400: not an answer

    reordered = dict(reversed(list(twice.items())))
    assert server.times_answered(reordered) == 2
    assert server.times_answered(once) == 1
    assert server.times_answered({"model": "m"}) == 0
    assert server.answered_more_than_once() == 1
    assert server.answer_counts == {canonical_hash(twice): 2, canonical_hash(once): 1}
    stats = server.stats
    assert stats.total_requests == 4
    assert stats.answered == 3
    assert stats.status_counts == {200: 3, 400: 1}
    assert stats.requests_by_key == {KEY: 4}
    assert stats.requests_by_endpoint == {"chat.completions": 4}

    server.reset_stats()
    assert server.times_answered(twice) == 0
    assert server.answered_more_than_once() == 0
    assert server.stats.total_requests == 0


# ------------------------------------------------------------------------------------------
# Ways to run it
# ------------------------------------------------------------------------------------------


def test_thread_mode_serves_sync_code() -> None:
    with MockOpenAIServer() as server:
        assert server.running
        request = urllib.request.Request(
            f"{server.base_url}/chat/completions",
            data=json.dumps(CHAT).encode(),
            headers={**AUTH, "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            body = json.loads(response.read())
        assert body["choices"][0]["message"]["content"] == "Mock reply to: hello there"
        assert server.times_answered(CHAT) == 1
    assert not server.running


async def test_thread_mode_from_async_code(
    mock_openai: MockOpenAIServer, session: aiohttp.ClientSession
) -> None:
    reply = await post(session, f"{mock_openai.base_url}/chat/completions", CHAT)
    assert reply.status == 200
    assert mock_openai.times_answered(CHAT) == 1


async def test_async_mode_restarts(session: aiohttp.ClientSession) -> None:
    server = MockOpenAIServer()
    for _ in range(2):
        await server.start()
        assert server.base_url == f"http://127.0.0.1:{server.port}/v1"
        assert (await post(session, f"{server.base_url}/chat/completions", CHAT)).status == 200
        await server.stop()
        await server.stop()  # idempotent
    assert server.times_answered(CHAT) == 2


async def test_factory_fixture(
    mock_openai_factory: Callable[..., MockOpenAIServer], session: aiohttp.ClientSession
) -> None:
    first = mock_openai_factory(no_quota_keys=[KEY])
    second = mock_openai_factory()
    assert first.port != second.port
    assert (await post(session, f"{first.base_url}/chat/completions", CHAT)).status == 429
    assert (await post(session, f"{second.base_url}/chat/completions", CHAT)).status == 200


async def test_official_sdk_parses_the_answers(server: MockOpenAIServer) -> None:
    async with openai.AsyncOpenAI(
        base_url=server.base_url, api_key="sk-test", max_retries=0
    ) as client:
        completion = await client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "ping"}]
        )
        assert completion.choices[0].message.content == "Mock reply to: ping"
        assert completion.usage is not None
        assert completion.usage.total_tokens > 0
        embedding = await client.embeddings.create(model="text-embedding-3-small", input="ping")
        vector = embedding.data[0].embedding
        assert len(vector) == 1536
        assert math.fsum(value * value for value in vector) == pytest.approx(1.0, rel=1e-5)


# ------------------------------------------------------------------------------------------
# Streaming
# ------------------------------------------------------------------------------------------


def sse_data(raw: bytes) -> list[str]:
    """The data of each event of a well-formed stream (comments skipped)."""
    events = raw.decode().split("\n\n")
    assert events[-1] == ""
    return [
        line[len("data: ") :]
        for event in events[:-1]
        for line in event.split("\n")
        if line.startswith("data: ")
    ]


async def test_chat_stream_wire_format(
    server: MockOpenAIServer, session: aiohttp.ClientSession
) -> None:
    body = {**CHAT, "stream": True, "n": 2, "stream_options": {"include_usage": True}}
    reply = await post(session, f"{server.base_url}/chat/completions", body)
    assert reply.status == 200
    assert reply.headers["Content-Type"].startswith("text/event-stream")
    assert all(name in reply.headers for name in RATE_LIMIT_HEADERS)
    data = sse_data(reply.raw)
    assert data[-1] == "[DONE]"
    chunks = [json.loads(item) for item in data[:-1]]
    assert {chunk["object"] for chunk in chunks} == {"chat.completion.chunk"}
    assert all(chunk["usage"] is None for chunk in chunks[:-1])
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"]["total_tokens"] > 0
    for index in (0, 1):
        deltas = [
            c["choices"][0] for c in chunks if c["choices"] and c["choices"][0]["index"] == index
        ]
        assert deltas[0]["delta"]["role"] == "assistant"
        assert (
            "".join(d["delta"].get("content", "") for d in deltas) == "Mock reply to: hello there"
        )
        assert [d["finish_reason"] for d in deltas][-1] == "stop"
        assert len(deltas) > 4  # small pieces
    assert server.times_answered(body) == 1
    plain = await post(session, f"{server.base_url}/chat/completions", {**CHAT, "stream": True})
    assert "usage" not in json.loads(sse_data(plain.raw)[-2])  # usage only when asked for


async def test_completions_and_responses_streams(
    server: MockOpenAIServer, session: aiohttp.ClientSession
) -> None:
    body = {"model": "m", "prompt": "abc", "stream": True}
    data = sse_data((await post(session, f"{server.base_url}/completions", body)).raw)
    chunks = [json.loads(item) for item in data[:-1]]
    assert "".join(c["choices"][0]["text"] for c in chunks) == "Mock completion of: abc"
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    body = {"model": "m", "input": "abc", "stream": True}
    reply = await post(session, f"{server.base_url}/responses", body)
    assert b"event: response.created\n" in reply.raw
    events = [json.loads(item) for item in sse_data(reply.raw)]
    assert events[-1]["type"] == "response.completed"
    assert events[-1]["response"]["output"][0]["content"][0]["text"] == "Mock reply to: abc"
    assert [e["sequence_number"] for e in events] == list(range(len(events)))


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({**CHAT, "stream": "yes"}, "stream"),
        ({**CHAT, "stream_options": {"include_usage": True}}, "stream_options"),
        ({**CHAT, "stream": True, "stream_options": []}, "stream_options"),
        (
            {**CHAT, "stream": True, "stream_options": {"include_usage": 1}},
            "stream_options.include_usage",
        ),
    ],
)
async def test_stream_parameters_are_validated(
    server: MockOpenAIServer, session: aiohttp.ClientSession, body: dict[str, Any], param: str
) -> None:
    reply = await post(session, f"{server.base_url}/chat/completions", body)
    assert reply.status == 400
    assert reply.error()["param"] == param


async def test_stream_faults(session: aiohttp.ClientSession) -> None:
    body = {**CHAT, "stream": True}
    async with MockOpenAIServer(faults=only("stream_error")) as server:
        data = sse_data((await post(session, f"{server.base_url}/chat/completions", body)).raw)
        assert json.loads(data[-1])["error"]["type"] == "server_error"
        assert "[DONE]" not in data
        plain = await post(session, f"{server.base_url}/chat/completions", CHAT)
        assert plain.status == 500
        assert server.stats.faults_by_kind == {"stream_error": 2}
    async with MockOpenAIServer(faults=only("malformed")) as server:
        data = sse_data((await post(session, f"{server.base_url}/chat/completions", body)).raw)
        assert data[-1] == "[DONE]"
        assert sum(1 for item in data if item.startswith('{"id": "chatcmpl-trunc')) == 1
    async with MockOpenAIServer(faults=only("stream_cut")) as server:
        for request in (body, CHAT):
            with pytest.raises(aiohttp.ClientPayloadError):
                await post(session, f"{server.base_url}/chat/completions", request)
        assert server.stats.faults_by_kind == {"stream_cut": 2}
        assert server.stats.answered == 0


async def test_official_sdk_parses_the_streams(server: MockOpenAIServer) -> None:
    async with openai.AsyncOpenAI(
        base_url=server.base_url, api_key="sk-test", max_retries=0
    ) as client:
        stream = await client.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": "ping"}],
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = [chunk async for chunk in stream]
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == (
            "Mock reply to: ping"
        )
        assert chunks[-1].usage is not None
        events = [
            event
            async for event in await client.responses.create(
                model="gpt-4o-mini", input="ping", stream=True
            )
        ]
        assert events[-1].type == "response.completed"


def test_cli_serves_until_sigint() -> None:
    code = (
        "import argparse, sys\n"
        "from openai_multi_client.cli import _mock\n"
        "parser = argparse.ArgumentParser(prog='omc')\n"
        "_mock.add_parser(parser.add_subparsers(dest='command'))\n"
        "sys.exit(_mock.run(parser.parse_args(sys.argv[1:])))\n"
    )
    command = [sys.executable, "-c", code, "mock", "--port", "0", "--rpm", "60", "--seed", "3"]
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as process:
        try:
            assert process.stdout is not None
            line = process.stdout.readline().strip()
            prefix, suffix = "mock OpenAI server at ", " (Ctrl-C stops it)"
            assert line.startswith(prefix), line
            assert line.endswith(suffix)
            base_url = line[len(prefix) : -len(suffix)]
            request = urllib.request.Request(
                f"{base_url}/chat/completions", data=json.dumps(CHAT).encode(), headers=AUTH
            )
            with urllib.request.urlopen(request, timeout=10) as response:
                assert response.headers["x-ratelimit-limit-requests"] == "60"
            process.send_signal(signal.SIGINT)
            assert process.wait(timeout=10) == 0
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
        assert process.stderr is not None
        assert process.stderr.read() == ""


def test_cli_arguments() -> None:
    parser = argparse.ArgumentParser(prog="omc")
    mock_cli.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["mock", "--latency", "0.2-0.6", "--fault-rate", "0.1"])
    assert args.latency == (0.2, 0.6)
    assert args.port == 8000
    assert args.fault_rate == 0.1
    assert args.no_rate_limit_headers is False
    assert args.fault_kinds is None
    args = parser.parse_args(["mock", "--fault-rate", "1", "--fault-kinds", "stream_cut,500"])
    assert args.fault_kinds == {"stream_cut": 1.0, "500": 1.0}
    faults = mock_cli._make_server(args).options.faults
    assert faults is not None
    assert list(faults.weights) == ["stream_cut", "500"]
    with pytest.raises(SystemExit):
        parser.parse_args(["mock", "--fault-kinds", "stream_cutt"])


def test_faults_accept_a_set_of_kinds() -> None:
    faults = Faults(rate=0.5, kinds={"500", "reset"})
    assert faults.weights == {"500": 1.0, "reset": 1.0}
    assert Faults(kinds=["hang"]).weights == {"hang": 1.0}
    with pytest.raises(ValueError, match="unknown fault kind 'boom'"):
        Faults(kinds={"boom"})
    with pytest.raises(ValueError, match="collection of kinds"):
        Faults(kinds="500")


def test_default_hang_is_shorter_than_the_default_timeouts() -> None:
    from openai_multi_client._transport import Timeout

    hang = Faults(rate=0.1).hang_seconds
    assert hang <= 10.0
    assert hang < Timeout().total
    assert hang < openai.DEFAULT_TIMEOUT.read  # type: ignore[operator]
    args = mock_cli_parser().parse_args(["mock", "--fault-rate", "0.1"])
    server = mock_cli._make_server(args)
    assert server.options.faults is not None
    assert server.options.faults.hang_seconds == hang


def mock_cli_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="omc")
    mock_cli.add_parser(parser.add_subparsers(dest="command"))
    return parser


def test_the_clock_is_the_librarys_clock_shape() -> None:
    with pytest.raises(ValueError, match=r"clock must be a Clock \(now\(\) and async sleep\(\)"):
        MockOpenAIServer(clock=time.monotonic)  # type: ignore[arg-type]
