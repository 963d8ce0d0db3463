"""The clients over real HTTP on loopback against the mock server."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Callable
from typing import Any

from openai_multi_client import (
    AsyncMultiClient,
    AuthenticationError,
    ConnectError,
    InsufficientQuotaError,
    Key,
    NoUsableKeyError,
    OpenAIMultiClient,
    OpenAIMultiOrderedClient,
    RequestTimeoutError,
    arun_requests,
    run_requests,
)
from openai_multi_client.testing import Faults, KeyLimits, MockOpenAIServer

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
Factory = Callable[..., MockOpenAIServer]


def chat(text: str) -> dict[str, Any]:
    return {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}]}


def feed(api: OpenAIMultiClient, count: int) -> None:
    for n in range(count):
        api.request(chat(str(n)))


def test_every_endpoint_round_trips(mock_openai: MockOpenAIServer) -> None:
    api = OpenAIMultiOrderedClient(api_key="sk-a", base_url=mock_openai.base_url)
    api.request(chat("hi"), endpoint="chats")
    api.request(chat("hi"), endpoint="chat.completions")
    api.request({"model": "gpt-3.5-turbo-instruct", "prompt": "Say hi"}, endpoint="completions")
    api.request({"model": "text-embedding-3-small", "input": ["a", "b"]}, endpoint="embeddings")
    api.request({"model": "omni-moderation-latest", "input": "text"}, endpoint="moderations")
    api.request({"model": "gpt-4o-mini", "input": "hello"}, endpoint="responses")
    api.request({"model": "dall-e-3", "prompt": "a cat", "n": 1}, endpoint="images")
    api.request(chat("raw"), endpoint="/v1/chat/completions")
    api.close()
    results = list(api)
    assert [r.failed for r in results] == [False] * 8, [r.error for r in results]
    chat_result, _, completion, embedding, moderation, response, image, raw = results
    assert chat_result.response["choices"][0]["message"]["content"]
    assert chat_result.usage is not None
    assert chat_result.request_id is not None
    assert completion.response["choices"][0]["text"]
    assert len(embedding.response["data"]) == 2
    assert "results" in moderation.response
    assert response.response["output"][0]["content"][0]["text"]
    assert image.response["data"]
    assert raw.status_code == 200


def test_faults_are_retried_and_every_request_is_accounted_for(
    mock_openai_factory: Factory,
) -> None:
    server = mock_openai_factory(
        faults=Faults(rate=0.2, kinds={"500": 1, "502": 1, "503": 1, "reset": 1, "malformed": 1}),
        seed=3,
    )
    bodies = [chat(f"question {n}") for n in range(300)]
    results = list(
        run_requests(
            bodies,
            api_key="sk-a",
            base_url=server.base_url,
            concurrency=20,
            retry_multiplier=0.01,
            retry_max=0.05,
        )
    )
    assert len(results) == 300
    assert [r.data["messages"][0]["content"] for r in results] == [
        f"question {n}" for n in range(300)
    ]
    assert all(not r.failed for r in results), [r.error for r in results if r.failed]
    assert sum(r.attempt > 1 for r in results) > 20
    for body, result in zip(bodies, results, strict=True):
        # The answer belongs to its own request.
        assert body["messages"][0]["content"] in result.response["choices"][0]["message"]["content"]
    assert server.answered_more_than_once() <= sum(1 for r in results if r.attempt > 1)


def test_hang_times_out_and_is_retried(mock_openai_factory: Factory) -> None:
    server = mock_openai_factory(faults=Faults(rate=0.3, kinds={"hang": 1}), seed=5)
    with OpenAIMultiClient(
        10,
        endpoint="chats",
        api_key="sk-a",
        base_url=server.base_url,
        timeout=0.3,
        retry_multiplier=0.01,
        max_retries=10,
    ) as api:
        api.run_request_function(feed, api, 30)
        results = list(api)
    assert len(results) == 30
    assert all(not r.failed for r in results)
    assert any(r.attempt > 1 for r in results)


def test_timeout_error_is_classified(mock_openai_factory: Factory) -> None:
    server = mock_openai_factory(faults=Faults(rate=1.0, kinds={"hang": 1}))
    with OpenAIMultiClient(
        endpoint="chats", api_key="sk-a", base_url=server.base_url, timeout=0.2, max_retries=2
    ) as api:
        api.request(chat("x"))
        api.close()
        (result,) = list(api)
    assert result.failed
    assert isinstance(result.error, RequestTimeoutError)
    assert result.attempt == 2


def test_invalid_and_no_quota_keys(mock_openai_factory: Factory) -> None:
    server = mock_openai_factory(invalid_keys={"sk-bad"}, no_quota_keys={"sk-broke"})
    with OpenAIMultiClient(endpoint="chats", api_key="sk-bad", base_url=server.base_url) as api:
        api.run_request_function(feed, api, 20)
        results = list(api)
    errors = [type(r.error) for r in results]
    assert errors.count(AuthenticationError) >= 1
    assert set(errors) <= {AuthenticationError, NoUsableKeyError}
    assert server.stats.total_requests <= 10  # at most the first wave of `concurrency`

    with OpenAIMultiClient(
        endpoint="chats", api_key=["sk-broke", "sk-good"], base_url=server.base_url
    ) as api:
        api.run_request_function(feed, api, 20)
        results = list(api)
    assert all(not r.failed for r in results)
    assert all("sk-" not in (r.key or "") for r in results)


def test_only_quota_less_key_fails_fast(mock_openai_factory: Factory) -> None:
    server = mock_openai_factory(no_quota_keys={"sk-broke"})
    with OpenAIMultiClient(endpoint="chats", api_key="sk-broke", base_url=server.base_url) as api:
        api.request(chat("x"))
        api.close()
        (result,) = list(api)
    assert isinstance(result.error, InsufficientQuotaError)


def test_limits_are_learned_from_headers_and_kept(mock_openai_factory: Factory) -> None:
    server = mock_openai_factory(keys={"sk-slow": KeyLimits(requests_per_minute=600)})
    with OpenAIMultiClient(
        20, endpoint="chats", api_key="sk-slow", base_url=server.base_url
    ) as api:
        api.run_request_function(feed, api, 40)
        results = list(api)
        key = api.statistics().keys.keys[0]
    assert all(not r.failed for r in results), [r.error for r in results if r.failed]
    assert key.requests_per_minute == 600
    assert key.limits_learned
    # At most the odd 429 from timing at a window's edge.
    assert server.stats.status_counts.get(429, 0) <= 1


def test_without_headers_429s_cool_the_key_and_back_off(mock_openai_factory: Factory) -> None:
    # A server that enforces a limit but does not publish it (some proxies): the client learns
    # only from 429s, cooling the key for the time the server gives and backing off its
    # concurrency, and every request still gets through.
    server = mock_openai_factory(
        keys={"sk-slow": KeyLimits(requests_per_minute=600)},
        rate_limit_headers=False,
        latency=0.05,
    )
    with OpenAIMultiClient(
        20, endpoint="chats", api_key="sk-slow", base_url=server.base_url
    ) as api:
        api.run_request_function(feed, api, 40)
        results = list(api)
        statistics = api.statistics()
    assert all(not r.failed for r in results), [r.error for r in results if r.failed]
    assert statistics.keys.rate_limited == server.stats.status_counts.get(429, 0)
    assert statistics.retry_budget_level == 500  # pacing signals never spend the budget


def test_connection_refused_is_a_connect_error() -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with OpenAIMultiClient(
        endpoint="chats",
        api_key="sk-a",
        base_url=f"http://127.0.0.1:{port}/v1",
        max_retries=2,
        retry_multiplier=0.01,
    ) as api:
        api.request(chat("x"))
        api.close()
        (result,) = list(api)
    assert isinstance(result.error, ConnectError)
    assert result.attempt == 2


def test_azure_key_is_sent_as_api_key_header(mock_openai_factory: Factory) -> None:
    server = mock_openai_factory(keys={"azure-secret": KeyLimits()})
    base = f"{server.url}/openai/deployments/gpt-4o-mini?api-version=2024-10-21"
    results = list(
        run_requests(
            [{"messages": [{"role": "user", "content": "hi"}]}],
            api_key=Key("azure-secret", azure=True),
            base_url=base,
        )
    )
    assert not results[0].failed, results[0].error


async def test_async_client_and_one_call_form(mock_openai: MockOpenAIServer) -> None:
    async def bodies() -> Any:
        for n in range(50):
            yield chat(str(n))

    results = [
        r async for r in arun_requests(bodies(), api_key="sk-a", base_url=mock_openai.base_url)
    ]
    assert [r.index for r in results] == list(range(50))
    assert all(not r.failed for r in results)

    async with AsyncMultiClient(
        endpoint="embeddings", api_key="sk-a", base_url=mock_openai.base_url
    ) as client:

        async def produce() -> None:
            for n in range(30):
                await client.request({"model": "text-embedding-3-small", "input": str(n)})
            client.close()

        producer = asyncio.ensure_future(produce())
        count = sum([1 async for r in client if not r.failed])
        await producer
    assert count == 30


def test_openai_module_and_environment_configuration(mock_openai: MockOpenAIServer) -> None:
    code = """
import openai
from openai_multi_client import OpenAIMultiClient
openai.api_key = "sk-from-module"
openai.base_url = "{url}"
api = OpenAIMultiClient(endpoint="chats")
api.request({{"model": "m", "messages": [{{"role": "user", "content": "x"}}]}})
api.close()
print([r.failed for r in api])
"""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")}
    done = subprocess.run(
        [sys.executable, "-c", code.format(url=mock_openai.base_url)],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.stdout.strip() == "[False]", done.stderr
    assert mock_openai.stats.requests_by_key.get("sk-from-module") == 1
