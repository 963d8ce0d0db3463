"""llmock 0.2.2: OpenAI-style answers, headers and faults, and its verdict on what the client
did (retry-after ignored, retry storms, non-retryable retried, truncated streams accepted)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from openai_multi_client import AsyncMultiClient, BadRequestError

from .helpers import batch_line, chat, omc_run, run_all
from .servers import http_json

pytestmark = pytest.mark.interop


def verdict(base_url: str) -> dict[str, Any]:
    found: dict[str, Any] = http_json("GET", base_url.removesuffix("/v1") + "/_llmock/verdict")
    return found


def scenario(base_url: str, *behaviors: dict[str, Any]) -> None:
    url = base_url.removesuffix("/v1") + "/_llmock/scenario"
    http_json("POST", url, {"behaviors": list(behaviors)})


async def test_chat_embeddings_and_streams(llmock_url: str) -> None:
    bodies = [("chats", chat(f"question {n}")) for n in range(30)]
    bodies += [
        ("embeddings", {"model": "text-embedding-3-small", "input": f"t{n}"}) for n in range(5)
    ]
    bodies += [("chats", chat(f"streamed {n}", stream=True)) for n in range(5)]
    async with AsyncMultiClient(
        api_key="sk-interop-llmock", base_url=llmock_url, concurrency=20
    ) as client:
        results = await run_all(client, bodies)
    assert [r.error for r in results if r.failed] == []
    assert all(r.response["choices"][0]["message"]["content"] for r in results[:30])
    assert all(r.response["data"][0]["embedding"] for r in results[30:35])
    for result in results[35:]:
        assert result.response["choices"][0]["message"]["content"]
        assert result.response["choices"][0]["finish_reason"] == "stop"
    found = verdict(llmock_url)
    assert found["passed"], found
    assert found["attempts"] == 40


async def test_faults_are_retried_as_the_server_asks(llmock_url: str) -> None:
    scenario(
        llmock_url,
        {"type": "fail", "status": 503, "times": 3},
        {"type": "fail", "status": 429, "retry_after": 0.5, "times": 2},
        {"type": "stream_fault", "kind": "disconnect", "after_chunks": 2, "times": 1},
        {"type": "stream_fault", "kind": "truncate", "after_chunks": 2, "times": 1},
    )
    bodies = [("chats", chat(f"q {n}")) for n in range(10)]
    bodies += [("chats", chat(f"s {n}", stream=True)) for n in range(4)]
    async with AsyncMultiClient(
        api_key="sk-interop-llmock", base_url=llmock_url, concurrency=4, retry_multiplier=0.1
    ) as client:
        results = await run_all(client, bodies)
    assert [r.error for r in results if r.failed] == []
    assert sum(r.attempt for r in results) >= len(bodies) + 5  # the faults were met, and retried
    found = verdict(llmock_url)
    # retry_after_ignored, retry_storm, truncated_stream_accepted, no_backoff, gave_up: none.
    assert found["findings"] == [], found


async def test_a_bad_request_is_not_retried(llmock_url: str) -> None:
    scenario(llmock_url, {"type": "fail", "status": 400, "times": 1})
    async with AsyncMultiClient(api_key="sk-interop-llmock", base_url=llmock_url) as client:
        [result] = await run_all(client, [("chats", chat("bad"))])
    assert isinstance(result.error, BadRequestError)
    assert result.attempt == 1
    found = verdict(llmock_url)
    assert found["passed"], found


def test_omc_run(tmp_path: Path, llmock_url: str) -> None:
    lines = [batch_line(n, "gpt-4o-mini") for n in range(40)]
    scenario(llmock_url, {"type": "fail", "status": 500, "times": 3})
    process, records = omc_run(
        tmp_path, lines, llmock_url, "sk-interop-llmock", "--max-retries", "5"
    )
    assert process.returncode == 0, process.stderr
    assert sorted(r["custom_id"] for r in records) == sorted(f"req-{n}" for n in range(40))
    assert all(r["response"]["status_code"] == 200 for r in records)
    assert verdict(llmock_url)["passed"]
