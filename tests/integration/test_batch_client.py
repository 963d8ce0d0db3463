"""The library's Batch API client against the mock server over loopback HTTP, in virtual
time: the client's polling sleeps move the server's clock forward."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from openai_multi_client import (
    AsyncBatchClient,
    AuthenticationError,
    BadRequestError,
    BatchClient,
    BatchFailedError,
    BatchLineError,
    BatchResult,
    Key,
)
from openai_multi_client._batches.job import explain
from openai_multi_client._batches.records import BatchChunk
from openai_multi_client._prices import Price
from openai_multi_client.testing import BatchOptions, FakeClock, KeyLimits, MockOpenAIServer

KEY = "sk-batch-test-key"


class StepClock:
    """A client clock whose sleeps advance the server's virtual clock."""

    def __init__(self, fake: FakeClock) -> None:
        self.fake = fake

    def now(self) -> float:
        return self.fake.now()

    async def sleep(self, seconds: float) -> None:
        self.fake.advance(seconds)
        await asyncio.sleep(0)

    def sleep_blocking(self, seconds: float) -> None:
        self.fake.advance(seconds)


def line(number: int, model: str = "gpt-4o-mini") -> dict[str, Any]:
    return {
        "custom_id": f"r{number}",
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {"model": model, "messages": [{"role": "user", "content": f"say {number}"}]},
    }


@pytest.fixture
def fake() -> FakeClock:
    return FakeClock()


async def serve(fake: FakeClock, **options: Any) -> MockOpenAIServer:
    server = MockOpenAIServer(clock=fake, batches=BatchOptions(**options))
    await server.start()
    return server


@pytest.fixture
async def server(
    fake: FakeClock, request: pytest.FixtureRequest
) -> AsyncIterator[MockOpenAIServer]:
    mock = await serve(fake, **getattr(request, "param", {}))
    try:
        yield mock
    finally:
        await mock.stop()


def client_for(server: MockOpenAIServer, fake: FakeClock, **kwargs: Any) -> AsyncBatchClient:
    return AsyncBatchClient(
        KEY, base_url=server.base_url, poll_interval=0.5, clock=StepClock(fake), **kwargs
    )


def by_id(results: list[BatchResult]) -> dict[str, BatchResult]:
    counts = Counter(result.custom_id for result in results)
    assert max(counts.values()) == 1, "a custom_id came back twice"
    return {result.custom_id: result for result in results}


async def test_submit_wait_results(server: MockOpenAIServer, fake: FakeClock) -> None:
    async with client_for(server, fake, max_lines=40) as client:
        lines = [line(n) for n in range(100)] + [line(n, "gpt-4o") for n in range(100, 110)]
        job = await client.submit(lines)
        assert len(job.live) == 4  # 40 + 40 + 20 of one model, 10 of the other
        results = by_id([result async for result in job.results()])
    assert set(results) == {f"r{n}" for n in range(110)}
    for result in results.values():
        assert not result.failed
        assert result.status_code == 200
        assert result.response["object"] == "chat.completion"
    assert results["r105"].response["model"].startswith("gpt-4o")
    assert server.answered_more_than_once() == 0
    cost = job.estimated_cost()
    assert cost is not None
    assert cost > 0
    assert job.estimated_cost({"gpt-4o": Price(0, 0), "gpt-4o-mini": Price(0, 0)}) == 0


async def test_wrong_key_is_a_classified_error_without_the_secret(fake: FakeClock) -> None:
    mock = MockOpenAIServer(clock=fake, keys={"sk-the-right-key": KeyLimits()})
    async with mock, client_for(mock, fake) as client:
        with pytest.raises(AuthenticationError) as caught:
            await client.submit([line(1)])
    assert KEY not in str(caught.value)
    assert KEY not in repr(client)


@pytest.mark.parametrize(
    "server",
    [{"line_fault_rate": 0.2, "lines_per_second": 20.0, "expire_seconds": 3.0}],
    indirect=True,
)
async def test_faults_and_expiry_are_sent_again(server: MockOpenAIServer, fake: FakeClock) -> None:
    async with client_for(server, fake, max_attempts=10) as client:
        job = await client.submit([line(n) for n in range(100)])
        results = by_id([result async for result in job.results()])
    assert set(results) == {f"r{n}" for n in range(100)}
    assert all(not result.failed for result in results.values())
    assert max(result.attempts for result in results.values()) > 2
    assert any(info.status == "expired" for info in job.finished)
    assert server.answered_more_than_once() == 0


@pytest.mark.parametrize("server", [{"line_fault_rate": 1.0}], indirect=True)
async def test_attempts_run_out(server: MockOpenAIServer, fake: FakeClock) -> None:
    async with client_for(server, fake, max_attempts=2) as client:
        job = await client.submit([line(n) for n in range(5)])
        results = by_id([result async for result in job.results()])
    assert len(results) == 5
    for result in results.values():
        assert result.failed
        assert result.attempts == 2
        assert result.status_code in (429, 500)


async def test_bad_body_fails_at_once(server: MockOpenAIServer, fake: FakeClock) -> None:
    records = [line(1), line(2)]
    records[1]["body"]["messages"] = []
    async with client_for(server, fake) as client:
        job = await client.submit(records)
        results = by_id([result async for result in job.results()])
    assert isinstance(results["r2"].error, BadRequestError)
    assert results["r2"].attempts == 1
    assert not results["r1"].failed


@pytest.mark.parametrize("server", [{"max_lines": 3}], indirect=True)
async def test_refused_batch_is_explained(server: MockOpenAIServer, fake: FakeClock) -> None:
    async with client_for(server, fake) as client:
        with pytest.raises(BatchFailedError, match="too_many_lines"):
            job = await client.submit([line(n) for n in range(5)])
            await job.wait()


async def test_validation_error_names_the_input_line(
    server: MockOpenAIServer, fake: FakeClock, tmp_path: Path
) -> None:
    path = tmp_path / "chunk.jsonl"
    path.write_bytes(b"".join(json.dumps(line(1)).encode() + b"\n" for _ in range(2)))
    chunk = BatchChunk(path, "/v1/chat/completions", "gpt-4o-mini", ("r1", "r1"), (10, 11), 0)
    async with client_for(server, fake) as client:
        uploaded = await client.upload(chunk)
        info = await client.create(uploaded.id, chunk.endpoint, run_token="tok", chunk="1")
        assert info.status == "validating"
        fake.advance(2.0)
        info = await client.retrieve(info.id)
    assert info.status == "failed"
    error = explain(info, chunk)
    assert "duplicate_custom_id at input line 11" in str(error)
    assert error.problems[0].line == 2


@pytest.mark.parametrize(
    "server",
    [{"enqueued_token_limits": {"gpt-4o-mini": 50}, "lines_per_second": 5.0}],
    indirect=True,
)
async def test_token_limit_waits_and_splits(server: MockOpenAIServer, fake: FakeClock) -> None:
    async with client_for(server, fake, max_lines=20) as client:
        job = await client.submit([line(n) for n in range(60)])  # 40 tokens a chunk of 20
        results = by_id([result async for result in job.results()])
    assert len(results) == 60
    assert all(not result.failed for result in results.values())
    refused = [info for info in job.finished if info.status == "failed"]
    assert refused
    assert all(info.problems[0].code == "token_limit_exceeded" for info in refused)


@pytest.mark.parametrize("server", [{"lines_per_second": 10.0}], indirect=True)
async def test_cancel_keeps_partial_results(server: MockOpenAIServer, fake: FakeClock) -> None:
    async with client_for(server, fake) as client:
        job = await client.submit([line(n) for n in range(50)])
        fake.advance(2.0)  # 1 s validating, 1 s at 10 lines/s
        await job.cancel()
        results = by_id([result async for result in job.results()])
    assert len(results) == 50
    done = [result for result in results.values() if not result.failed]
    assert len(done) == 10
    cancelled = [result.error for result in results.values() if result.failed]
    assert all(isinstance(error, BatchLineError) for error in cancelled)
    assert {error.code for error in cancelled if isinstance(error, BatchLineError)} == {
        "batch_cancelled"
    }


async def test_find_batches_by_run_token(server: MockOpenAIServer, fake: FakeClock) -> None:
    async with client_for(server, fake, max_lines=2) as client:
        job = await client.submit([line(n) for n in range(5)], run_token="run-42")
        await client.submit([line(n) for n in range(2)], run_token="other")
        found = await client.find("run-42")
        assert {info.id for info in found} == set(job.live)
        assert [info.metadata["omc_chunk"] for info in await client.find("run-42", "2")] == ["2"]
        newest = (await client.find("other"))[0].raw["created_at"]
        assert await client.find("run-42", created_after=newest + 1) == []
        await job.wait()


async def test_azure(server: MockOpenAIServer, fake: FakeClock) -> None:
    key = Key(KEY, azure=True, api_version="2024-10-21")
    client = AsyncBatchClient(
        key,
        base_url=f"{server.url}/openai/deployments/my-deployment",
        poll_interval=1.0,
        clock=StepClock(fake),
    )
    async with client:
        job = await client.submit([line(n, "my-deployment") for n in range(3)])
        results = by_id([result async for result in job.results()])
    assert len(results) == 3
    assert all(not result.failed for result in results.values())
    assert server.stats.requests_by_key[KEY] > 0


def test_sync_client(fake: FakeClock, tmp_path: Path) -> None:
    source = tmp_path / "input.jsonl"
    source.write_text("".join(json.dumps(line(n)) + "\n" for n in range(30)) + "\n")
    with MockOpenAIServer(clock=fake) as server:
        client = BatchClient(
            KEY, base_url=server.base_url, poll_interval=1.0, clock=StepClock(fake)
        )
        with client:
            job = client.submit(source)
            results = by_id(list(job.results()))
            assert client.retrieve(job.job.finished[0].id).status == "completed"
    assert set(results) == {f"r{n}" for n in range(30)}
    assert KEY not in repr(client)


async def test_control_calls_retry_transient_errors_only(fake: FakeClock) -> None:
    calls: Counter[str] = Counter()
    batch = {"id": "batch_1", "object": "batch", "status": "validating", "endpoint": "/v1/x"}

    async def create(request: web.Request) -> web.Response:
        calls["create"] += 1
        if calls["create"] == 1:
            return web.json_response({"error": {"message": "busy"}}, status=503)
        return web.json_response(batch)

    async def retrieve(request: web.Request) -> web.Response:
        calls["retrieve"] += 1
        body = {"error": {"message": f"bad {request.headers['Authorization']}"}}
        return web.json_response(body, status=400)

    app = web.Application()
    app.router.add_post("/v1/batches", create)
    app.router.add_get("/v1/batches/{id}", retrieve)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        client = AsyncBatchClient(
            KEY, base_url=f"http://127.0.0.1:{port}/v1", clock=StepClock(fake)
        )
        async with client:
            info = await client.create("file-1", "/v1/chat/completions")
            assert info.id == "batch_1"
            with pytest.raises(BadRequestError) as caught:
                await client.retrieve("batch_1")
    finally:
        await runner.cleanup()
    assert calls == {"create": 2, "retrieve": 1}
    assert fake.now() > 0  # it waited before trying again
    assert KEY not in str(caught.value.body)
