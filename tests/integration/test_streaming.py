"""Streamed requests over real HTTP on loopback against the mock server: assembly, chunk
callbacks, cut and broken streams retried, stalls timed out, usage settled in the key pool."""

from __future__ import annotations

import json
import threading
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from openai_multi_client import (
    AsyncMultiClient,
    CallbackError,
    OpenAIMultiClient,
    OpenAIMultiOrderedClient,
    Request,
    RequestTimeoutError,
    StreamInterruptedError,
    run_requests,
)
from openai_multi_client.testing import Faults, MockOpenAIServer

from .test_omc_run import omc

Factory = Callable[..., MockOpenAIServer]
STREAM_FAULTS = {"stream_cut": 1, "stream_error": 1, "malformed": 1}


def chat(number: int, **extra: Any) -> dict[str, Any]:
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": f"question {number}"}]}
    return {**body, "stream": True, "max_tokens": 100, **extra}


def test_a_bulk_run_of_streams_with_chunk_callbacks_and_cut_streams(
    mock_openai_factory: Factory,
) -> None:
    server = mock_openai_factory(faults=Faults(rate=0.15, kinds=STREAM_FAULTS), seed=11)
    chunks: dict[tuple[int, int], list[dict[str, Any]]] = defaultdict(list)

    def on_chunk(chunk: dict[str, Any], request: Request) -> None:
        chunks[request.index, request.attempt].append(chunk)

    count = 300
    bodies = [chat(n, n=2) if n % 3 == 0 else chat(n) for n in range(count)]
    results = list(
        run_requests(
            bodies,
            api_key="sk-a",
            base_url=server.base_url,
            concurrency=40,
            retry_multiplier=0,
            on_chunk=on_chunk,
        )
    )
    assert [r.failed for r in results] == [False] * count, [r.error for r in results if r.failed]
    for n, result in enumerate(results):
        choices = result.response["choices"]
        assert result.response["object"] == "chat.completion"
        assert len(choices) == (2 if n % 3 == 0 else 1)
        for choice in choices:
            assert choice["message"] == {
                "role": "assistant",
                "content": f"Mock reply to: question {n}",
                "refusal": None,
            }
            assert choice["finish_reason"] == "stop"
        assert result.usage is not None
        assert result.usage["total_tokens"] > 0
        # The last attempt's chunks, in order, are the whole answer.
        last = chunks[n, result.attempt]
        assert last[-1]["usage"] == result.usage
        texts = [""] * len(choices)
        for chunk in last:
            for choice in chunk["choices"]:
                texts[choice["index"]] += choice["delta"].get("content", "")
        assert texts == [choice["message"]["content"] for choice in choices]
    faults = server.stats.faults_by_kind
    assert set(faults) == set(STREAM_FAULTS)  # every kind happened, and each was retried:
    assert sum(r.attempt - 1 for r in results) == sum(faults.values())
    assert server.stats.answered == count
    assert server.answered_more_than_once() == 0
    restarted = {index for index, attempt in chunks if attempt > 1}
    assert restarted  # on_chunk saw streams restart, with a larger attempt number


async def test_async_client_completions_and_responses_streams(
    mock_openai: MockOpenAIServer,
) -> None:
    async with AsyncMultiClient(api_key="sk-a", base_url=mock_openai.base_url) as client:
        await client.request(
            {"model": "m", "prompt": ["one", "two"], "stream": True}, endpoint="completions"
        )
        await client.request({"model": "m", "input": "hello", "stream": True}, endpoint="responses")
        client.close()
        results = [result async for result in client]
    completion, response = sorted(results, key=lambda r: r.index)
    assert not completion.failed, completion.error
    assert [c["text"] for c in completion.response["choices"]] == [
        "Mock completion of: one",
        "Mock completion of: two",
    ]
    assert completion.usage is not None
    assert not response.failed, response.error
    assert response.response["output"][0]["content"][0]["text"] == "Mock reply to: hello"
    assert response.usage is not None


def test_sync_client_on_chunk_runs_in_the_loop_thread_and_its_errors_surface(
    mock_openai: MockOpenAIServer,
) -> None:
    threads: set[int] = set()

    def failing(chunk: dict[str, Any], request: Request) -> None:
        raise KeyError("bug in my callback")

    api = OpenAIMultiOrderedClient(
        api_key="sk-a",
        base_url=mock_openai.base_url,
        endpoint="chats",
        on_chunk=lambda chunk, request: threads.add(threading.get_ident()),
    )
    with api:
        api.request(chat(0), on_chunk=failing)
        api.request(chat(1))
        api.close()
        with pytest.raises(CallbackError, match="on_chunk callback of request 0") as caught:
            next(api)
        assert caught.value.result.response["choices"][0]["message"]["content"]
        [second] = list(api)
    assert not second.failed
    assert threads
    assert threading.get_ident() not in threads


def test_streamed_usage_settles_the_key_pool(mock_openai: MockOpenAIServer) -> None:
    def pool_tokens(bodies: list[dict[str, Any]]) -> tuple[int, int]:
        api = OpenAIMultiClient(api_key="sk-a", base_url=mock_openai.base_url, endpoint="chats")
        for body in bodies:
            api.request(body)
        api.close()
        used = sum(r.usage["total_tokens"] for r in api if r.usage is not None)
        return api.statistics().keys.tokens, used

    charged, used = pool_tokens([chat(n) for n in range(20)])
    assert used > 0
    assert charged == used  # refunded down to the usage of the final chunk
    unsettled, none = pool_tokens([chat(n, stream_options=None) for n in range(20)])
    assert none == 0  # no usage asked for: the reservation stands
    assert unsettled > charged


def test_a_stream_that_always_breaks_fails_classified(mock_openai_factory: Factory) -> None:
    server = mock_openai_factory(faults=Faults(rate=1.0, kinds={"stream_cut": 1}))
    [result] = run_requests(
        [chat(1)], api_key="sk-a", base_url=server.base_url, max_retries=2, retry_multiplier=0
    )
    assert result.failed
    assert isinstance(result.error, StreamInterruptedError)
    assert result.attempt == 2


def test_a_stalled_stream_times_out(mock_openai_factory: Factory) -> None:
    server = mock_openai_factory(faults=Faults(rate=1.0, kinds={"stream_stall": 1}))
    [result] = run_requests(
        [chat(1)], api_key="sk-a", base_url=server.base_url, max_retries=1, read_timeout=0.2
    )
    assert result.failed
    assert isinstance(result.error, RequestTimeoutError)
    assert "no data for 0.2 s" in str(result.error)


def test_omc_run_streams_lines_that_ask_for_it(
    tmp_path: Path, mock_openai: MockOpenAIServer
) -> None:
    lines = [
        {"custom_id": f"r{n}", "method": "POST", "url": "/v1/chat/completions", "body": chat(n)}
        for n in range(5)
    ]
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps(line) + "\n" for line in lines))
    out = tmp_path / "out.jsonl"
    done = omc(
        "run", str(source), "-o", str(out), "--base-url", mock_openai.base_url,
        "--key", "sk-stream-test", "--read-timeout", "30",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    bodies = {row["custom_id"]: row["response"]["body"] for row in rows}
    assert Counter(body["object"] for body in bodies.values()) == {"chat.completion": 5}
    assert bodies["r3"]["choices"][0]["message"]["content"] == "Mock reply to: question 3"
    assert all(body["usage"]["total_tokens"] > 0 for body in bodies.values())
