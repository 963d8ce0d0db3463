"""The mock's Files and Batches APIs: the official SDK parses every answer, and each status a
batch can reach is reached on the server's (virtual) clock."""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import openai
import pytest

from openai_multi_client import BatchClient
from openai_multi_client.cli import _mock as mock_cli
from openai_multi_client.testing import BatchOptions, FakeClock, KeyLimits, MockOpenAIServer

KEY = "sk-test"
MODEL = "gpt-4o-mini"


def chat_line(number: int, model: str = MODEL, url: str = "/v1/chat/completions") -> dict[str, Any]:
    return {
        "custom_id": f"r{number}",
        "method": "POST",
        "url": url,
        "body": {"model": model, "messages": [{"role": "user", "content": f"say {number}"}]},
    }


def jsonl(records: list[dict[str, Any]]) -> bytes:
    return b"".join(json.dumps(record).encode() + b"\n" for record in records)


class Setup:
    def __init__(self, server: MockOpenAIServer, sdk: openai.AsyncOpenAI, clock: FakeClock):
        self.server = server
        self.sdk = sdk
        self.clock = clock

    async def submit(self, content: bytes, metadata: dict[str, str] | None = None) -> str:
        uploaded = await self.sdk.files.create(file=("in.jsonl", content), purpose="batch")
        batch = await self.sdk.batches.create(
            input_file_id=uploaded.id,
            endpoint="/v1/chat/completions",
            completion_window="24h",
            metadata=metadata,
        )
        assert batch.status == "validating"
        return batch.id

    async def lines(self, file_id: str | None) -> list[dict[str, Any]]:
        assert file_id is not None
        content = await self.sdk.files.content(file_id)
        return [json.loads(line) for line in content.read().splitlines()]


def make_server(clock: FakeClock, **options: Any) -> MockOpenAIServer:
    return MockOpenAIServer(clock=clock, batches=BatchOptions(**options))


@pytest.fixture
async def setup(request: pytest.FixtureRequest) -> AsyncIterator[Setup]:
    clock = FakeClock()
    options = getattr(request, "param", {})
    async with (
        make_server(clock, **options) as server,
        openai.AsyncOpenAI(api_key=KEY, base_url=server.base_url, max_retries=0) as sdk,
    ):
        yield Setup(server, sdk, clock)


async def test_files_round_trip(setup: Setup) -> None:
    sdk = setup.sdk
    content = jsonl([chat_line(1)])
    uploaded = await sdk.files.create(file=("in.jsonl", content), purpose="batch")
    assert uploaded.bytes == len(content)
    assert uploaded.purpose == "batch"
    assert uploaded.filename == "in.jsonl"
    assert (await sdk.files.retrieve(uploaded.id)).id == uploaded.id
    assert (await sdk.files.content(uploaded.id)).read() == content
    deleted = await sdk.files.delete(uploaded.id)
    assert deleted.deleted
    with pytest.raises(openai.NotFoundError):
        await sdk.files.retrieve(uploaded.id)


async def test_batch_goes_through_every_status_to_completed(setup: Setup) -> None:
    sdk, clock = setup.sdk, setup.clock
    batch_id = await setup.submit(jsonl([chat_line(n) for n in range(20)]), {"run": "t1"})
    clock.advance(1.0)  # validation takes 1 s; 1000 lines/s
    batch = await sdk.batches.retrieve(batch_id)
    assert batch.status == "in_progress"
    assert batch.in_progress_at is not None
    clock.advance(0.01)
    batch = await sdk.batches.retrieve(batch_id)
    assert batch.request_counts is not None
    assert batch.request_counts.completed == 10
    clock.advance(0.01)
    assert (await sdk.batches.retrieve(batch_id)).status == "finalizing"
    clock.advance(1.0)
    batch = await sdk.batches.retrieve(batch_id)
    assert batch.status == "completed"
    assert batch.request_counts is not None
    assert (batch.request_counts.total, batch.request_counts.completed) == (20, 20)
    assert batch.error_file_id is None
    assert batch.metadata == {"run": "t1"}
    assert batch.usage is not None
    assert batch.usage.input_tokens > 0
    output = await setup.lines(batch.output_file_id)
    ids = [line["custom_id"] for line in output]
    assert sorted(ids) == sorted(f"r{n}" for n in range(20))
    assert ids != [f"r{n}" for n in range(20)]  # not in input order
    for line in output:
        assert line["response"]["status_code"] == 200
        assert line["response"]["body"]["object"] == "chat.completion"
        assert line["error"] is None
    assert setup.server.answered_more_than_once() == 0
    listed = await sdk.batches.list(limit=10)
    assert [item.id for item in listed.data] == [batch_id]


@pytest.mark.parametrize(
    ("records", "code", "line"),
    [
        ([chat_line(1), chat_line(1)], "duplicate_custom_id", 2),
        ([chat_line(1), chat_line(2, url="/v1/embeddings")], "url_mismatch", 2),
        ([chat_line(1), chat_line(2, model="gpt-4o")], "model_mismatch", 2),
        ([chat_line(1), {"custom_id": "x"}], "invalid_json_line", 2),
    ],
)
async def test_validation_failures_name_the_code_and_line(
    setup: Setup, records: list[dict[str, Any]], code: str, line: int
) -> None:
    batch_id = await setup.submit(jsonl(records))
    setup.clock.advance(1.0)
    batch = await setup.sdk.batches.retrieve(batch_id)
    assert batch.status == "failed"
    assert batch.failed_at is not None
    assert batch.errors is not None
    assert batch.errors.data is not None
    assert [(error.code, error.line) for error in batch.errors.data] == [(code, line)]


async def test_invalid_json_line(setup: Setup) -> None:
    batch_id = await setup.submit(jsonl([chat_line(1)]) + b"{not json\n")
    setup.clock.advance(1.0)
    batch = await setup.sdk.batches.retrieve(batch_id)
    assert batch.errors is not None
    assert batch.errors.data is not None
    assert [(e.code, e.line) for e in batch.errors.data] == [("invalid_json_line", 2)]


@pytest.mark.parametrize("setup", [{"max_lines": 3, "max_file_bytes": 10_000}], indirect=True)
async def test_size_limits(setup: Setup) -> None:
    too_many = await setup.submit(jsonl([chat_line(n) for n in range(4)]))
    too_big = await setup.submit(jsonl([chat_line(n) for n in range(2)]) + b" " * 10_000)
    setup.clock.advance(1.0)
    for batch_id, code in ((too_many, "too_many_lines"), (too_big, "file_too_large")):
        batch = await setup.sdk.batches.retrieve(batch_id)
        assert batch.status == "failed"
        assert batch.errors is not None
        assert batch.errors.data is not None
        assert batch.errors.data[0].code == code


@pytest.mark.parametrize(
    "setup", [{"lines_per_second": 10.0, "expire_seconds": 3.0}], indirect=True
)
async def test_expired_batch_keeps_partial_output(setup: Setup) -> None:
    batch_id = await setup.submit(jsonl([chat_line(n) for n in range(50)]))
    setup.clock.advance(3.0)  # 1 s validating, then 2 s at 10 lines/s: 20 lines done
    batch = await setup.sdk.batches.retrieve(batch_id)
    assert batch.status == "expired"
    assert batch.expired_at is not None
    assert batch.request_counts is not None
    assert (batch.request_counts.completed, batch.request_counts.failed) == (20, 30)
    output = await setup.lines(batch.output_file_id)
    errors = await setup.lines(batch.error_file_id)
    assert len(output) == 20
    assert {line["error"]["code"] for line in errors} == {"batch_expired"}
    assert {line["custom_id"] for line in output + errors} == {f"r{n}" for n in range(50)}


@pytest.mark.parametrize("setup", [{"lines_per_second": 10.0}], indirect=True)
async def test_cancel(setup: Setup) -> None:
    batch_id = await setup.submit(jsonl([chat_line(n) for n in range(50)]))
    setup.clock.advance(1.5)
    batch = await setup.sdk.batches.cancel(batch_id)
    assert batch.status == "cancelling"
    assert batch.cancelling_at is not None
    setup.clock.advance(1.0)
    batch = await setup.sdk.batches.retrieve(batch_id)
    assert batch.status == "cancelled"
    output = await setup.lines(batch.output_file_id)
    errors = await setup.lines(batch.error_file_id)
    assert len(output) == 5
    assert {line["error"]["code"] for line in errors} == {"batch_cancelled"}
    with pytest.raises(openai.ConflictError):
        await setup.sdk.batches.cancel(batch_id)


@pytest.mark.parametrize("setup", [{"line_fault_rate": 0.3}], indirect=True)
async def test_line_faults_go_to_the_error_file(setup: Setup) -> None:
    records = [chat_line(n) for n in range(100)]
    records[7]["body"]["messages"] = []  # an invalid body: 400 for that line only
    batch_id = await setup.submit(jsonl(records))
    setup.clock.advance(10.0)
    batch = await setup.sdk.batches.retrieve(batch_id)
    assert batch.status == "completed"
    errors = await setup.lines(batch.error_file_id)
    output = await setup.lines(batch.output_file_id)
    statuses = {line["response"]["status_code"] for line in errors}
    assert statuses == {400, 429, 500}
    assert len(output) + len(errors) == 100
    assert batch.request_counts is not None
    assert batch.request_counts.failed == len(errors)
    bad = [line for line in errors if line["custom_id"] == "r7"]
    assert bad[0]["response"]["status_code"] == 400


@pytest.mark.parametrize(
    "setup", [{"enqueued_token_limits": {MODEL: 60}, "lines_per_second": 1.0}], indirect=True
)
async def test_enqueued_token_limit(setup: Setup) -> None:
    first = await setup.submit(jsonl([chat_line(n) for n in range(20)]))
    second = await setup.submit(jsonl([chat_line(n) for n in range(20)]))
    setup.clock.advance(1.0)
    assert (await setup.sdk.batches.retrieve(first)).status == "in_progress"
    batch = await setup.sdk.batches.retrieve(second)
    assert batch.status == "failed"
    assert batch.errors is not None
    assert batch.errors.data is not None
    assert batch.errors.data[0].code == "token_limit_exceeded"
    setup.clock.advance(30.0)
    assert (await setup.sdk.batches.retrieve(first)).status == "completed"
    third = await setup.submit(jsonl([chat_line(n) for n in range(20)]))
    setup.clock.advance(1.0)
    assert (await setup.sdk.batches.retrieve(third)).status == "in_progress"


async def test_completed_with_every_line_failed_has_no_output_file(setup: Setup) -> None:
    records = [chat_line(n) for n in range(3)]
    for record in records:
        record["body"]["messages"] = []
    batch_id = await setup.submit(jsonl(records))
    setup.clock.advance(5.0)
    batch = await setup.sdk.batches.retrieve(batch_id)
    assert batch.status == "completed"
    assert batch.output_file_id is None
    assert len(await setup.lines(batch.error_file_id)) == 3


async def test_list_pages(setup: Setup) -> None:
    ids = [await setup.submit(jsonl([chat_line(1)])) for _ in range(5)]
    page = await setup.sdk.batches.list(limit=2)
    assert [batch.id for batch in page.data] == ids[::-1][:2]
    assert page.has_more
    every = [batch.id async for batch in setup.sdk.batches.list(limit=2)]
    assert every == ids[::-1]


async def test_azure_layout() -> None:
    clock = FakeClock()
    async with make_server(clock) as server:
        azure = openai.AsyncAzureOpenAI(
            api_key=KEY, azure_endpoint=server.url, api_version="2024-10-21", max_retries=0
        )
        async with azure:
            records = [
                chat_line(n, model="my-deployment", url="/chat/completions") for n in range(3)
            ]
            uploaded = await azure.files.create(file=("in.jsonl", jsonl(records)), purpose="batch")
            batch = await azure.batches.create(
                input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
            )
            clock.advance(5.0)
            batch = await azure.batches.retrieve(batch.id)
            assert batch.status == "completed"
            assert batch.output_file_id is not None
            content = (await azure.files.content(batch.output_file_id)).read()
            assert len(content.splitlines()) == 3
        assert set(server.stats.requests_by_key) == {KEY}


async def test_wrong_key_is_refused() -> None:
    async with (
        MockOpenAIServer(keys={KEY: KeyLimits()}) as server,
        openai.AsyncOpenAI(api_key="sk-other", base_url=server.base_url, max_retries=0) as sdk,
    ):
        with pytest.raises(openai.AuthenticationError):
            await sdk.batches.list()


async def test_files_and_batches_belong_to_the_uploading_keys_organization() -> None:
    clock = FakeClock()
    keys = {
        "sk-a1": KeyLimits(organization="org-a"),
        "sk-a2": KeyLimits(organization="org-a"),
        "sk-b": KeyLimits(organization="org-b"),
    }
    limits = {MODEL: 30}  # per organization
    async with MockOpenAIServer(
        clock=clock,
        keys=keys,
        batches=BatchOptions(enqueued_token_limits=limits, lines_per_second=1.0),
    ) as server:
        sdks = {
            key: openai.AsyncOpenAI(api_key=key, base_url=server.base_url, max_retries=0)
            for key in keys
        }
        try:
            a1, a2, b = (Setup(server, sdks[key], clock) for key in keys)
            content = jsonl([chat_line(n) for n in range(8)])  # 24 tokens in
            first = await a1.submit(content)
            uploaded = await a1.sdk.files.create(file=("in.jsonl", content), purpose="batch")
            # A key of the same organization sees them; one of another does not.
            assert (await a2.sdk.files.retrieve(uploaded.id)).id == uploaded.id
            assert (await a2.sdk.batches.retrieve(first)).id == first
            with pytest.raises(openai.NotFoundError):
                await b.sdk.files.retrieve(uploaded.id)
            with pytest.raises(openai.NotFoundError):
                await b.sdk.files.content(uploaded.id)
            with pytest.raises(openai.NotFoundError):
                await b.sdk.batches.retrieve(first)
            with pytest.raises(openai.NotFoundError):
                await b.sdk.batches.cancel(first)
            with pytest.raises(openai.NotFoundError):
                await b.sdk.batches.create(
                    input_file_id=uploaded.id,
                    endpoint="/v1/chat/completions",
                    completion_window="24h",
                )
            assert [batch.id async for batch in b.sdk.batches.list()] == []
            assert uploaded.id not in [item.id async for item in b.sdk.files.list()]
            # Each organization has its own enqueued-token queue: org-b's batch is not over
            # the limit for org-a's running one; a second org-a batch is.
            second_b = await b.submit(content)
            second_a = await a2.submit(content)
            clock.advance(1.5)
            assert (await a1.sdk.batches.retrieve(first)).status == "in_progress"
            assert (await b.sdk.batches.retrieve(second_b)).status == "in_progress"
            assert (await a1.sdk.batches.retrieve(second_a)).status == "failed"
            clock.advance(60.0)
            done = await b.sdk.batches.retrieve(second_b)
            assert done.status == "completed"
            assert done.output_file_id is not None
            assert len(await b.lines(done.output_file_id)) == 8
            with pytest.raises(openai.NotFoundError):
                await a1.sdk.files.content(done.output_file_id)
        finally:
            for sdk in sdks.values():
                await sdk.close()


def test_omc_mock_serves_batches(tmp_path: Path) -> None:
    code = (
        "import argparse, sys\n"
        "from openai_multi_client.cli import _mock\n"
        "parser = argparse.ArgumentParser(prog='omc')\n"
        "_mock.add_parser(parser.add_subparsers(dest='command'))\n"
        "sys.exit(_mock.run(parser.parse_args(sys.argv[1:])))\n"
    )
    options = ["--port", "0", "--batch-lines-per-second", "0", "--batch-step-seconds", "0"]
    command = [sys.executable, "-c", code, "mock", *options]
    source = tmp_path / "in.jsonl"
    source.write_bytes(jsonl([chat_line(n) for n in range(10)]))
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as process:
        try:
            assert process.stdout is not None
            words = process.stdout.readline().split()
            base_url = words[words.index("at") + 1]
            with BatchClient(KEY, base_url=base_url, poll_interval=0.05) as client:
                results = list(client.submit(source).results())
            process.send_signal(signal.SIGINT)
            assert process.wait(timeout=10) == 0
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    assert sorted(result.custom_id for result in results) == sorted(f"r{n}" for n in range(10))
    assert not any(result.failed for result in results)


def test_omc_mock_batch_arguments() -> None:
    parser = argparse.ArgumentParser(prog="omc")
    mock_cli.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["mock", "--batch-lines-per-second", "50"])
    options = mock_cli._make_server(args).batch_options
    assert options.lines_per_second == 50.0
    assert options.validation_seconds == 1.0
    assert mock_cli._make_server(parser.parse_args(["mock"])).batch_options == BatchOptions()
    with pytest.raises(SystemExit):
        parser.parse_args(["mock", "--batch-step-seconds", "-1"])
