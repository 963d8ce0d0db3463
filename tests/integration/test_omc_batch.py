"""``omc run --batch`` end to end: real ``omc`` subprocesses against the mock's Batch API over
loopback (in this process, or in its own process for the kill loop)."""

from __future__ import annotations

import dataclasses
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from openai_multi_client.testing import BatchOptions, FakeClock, MockOpenAIServer

from .mock_process import MockProcess

Factory = Callable[..., MockOpenAIServer]
SERVER_SCRIPT = Path(__file__).with_name("batch_mock_process.py")


def fast(**options: Any) -> BatchOptions:
    """Batches that finish at once (a twentieth of a second for each step)."""
    return BatchOptions(
        validation_seconds=0.05, finalizing_seconds=0.05, lines_per_second=None, **options
    )


def line(n: int, model: str = "gpt-4o-mini") -> dict[str, Any]:
    return {
        "custom_id": f"req-{n}",
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {
            "model": model,
            "messages": [{"role": "user", "content": f"question {n}"}],
            "max_tokens": 10,
        },
    }


def write_input(path: Path, lines: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(item) + "\n" for item in lines))
    return path


def omc_args(*args: str) -> list[str]:
    return [sys.executable, "-m", "openai_multi_client", *args]


def omc(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        omc_args(*args),
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONWARNINGS": "error"},
        check=False,
    )


def records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(text) for text in path.read_text().splitlines() if text.strip()]


def answer_text(record: dict[str, Any]) -> str:
    return str(record["response"]["body"]["choices"][0]["message"]["content"])


def batch_run(source: Path, out: Path, base_url: str, *extra: str) -> list[str]:
    return [
        "run", str(source), "-o", str(out), "--batch", "--base-url", base_url, "--key", "sk-b",
        "--poll-interval", "0.05", *extra,
    ]  # fmt: skip


# ------------------------------------------------------------------ a server in its own process


class ServerProcess(MockProcess):
    """The batch mock server in its own process."""

    def __init__(self, tmp_path: Path, options: dict[str, Any], seed: int = 3) -> None:
        super().__init__(SERVER_SCRIPT, tmp_path, options, seed)


@pytest.fixture
def server_process(tmp_path: Path) -> Iterator[Callable[..., ServerProcess]]:
    started: list[ServerProcess] = []

    def start(options: dict[str, Any], seed: int = 3) -> ServerProcess:
        server = ServerProcess(tmp_path, options, seed)
        started.append(server)
        return server

    yield start
    for server in started:
        server.close()


def _check_server_report(report: dict[str, Any], count: int) -> None:
    # The server answered every line once, and no line twice.
    counts = report["answer_counts"]
    assert len(counts) == count
    assert set(counts.values()) == {1}
    # One batch per chunk, ever: none created twice (adopted after a kill instead).
    chunks = Counter(batch["metadata"]["omc_chunk"] for batch in report["batches"])
    assert max(chunks.values()) == 1, chunks
    # No chunk uploaded again once its batch existed: a batch's input file is the last upload
    # of its chunk's file (ids are in upload order).
    uploads: dict[str, list[str]] = {}
    for item in report["files"]:
        uploads.setdefault(item["filename"], []).append(item["id"])
    for batch in report["batches"]:
        name = f"chunk-{int(batch['metadata']['omc_chunk']):05d}.jsonl"
        assert max(uploads[name]) == batch["input_file_id"], (name, uploads[name])


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_sigkill_loop_collects_every_line_once_and_pays_nothing_twice(
    tmp_path: Path, server_process: Callable[..., ServerProcess]
) -> None:
    # 4,000 lines of one model and 2,000 of another, 3,000 a batch: 3 batches. At 600 lines/s
    # the 3,000-line batch needs 5 s and expires at 4 s with about 2,400 lines done; 2% of the
    # lines come back as 500 or 429. Both kinds go again in new batches.
    options = {
        "validation_seconds": 0.2,
        "finalizing_seconds": 0.2,
        "lines_per_second": 600,
        "expire_seconds": 4.0,
        "line_fault_rate": 0.02,
    }
    server = server_process(options)
    lines = [line(n, "gpt-4o-mini" if n % 3 else "gpt-4o") for n in range(6000)]
    source = write_input(tmp_path / "in.jsonl", lines)
    out = tmp_path / "out.jsonl"
    args = omc_args(*batch_run(source, out, server.base_url, "--batch-size", "3000"))
    rng = random.Random(7)
    kills = 0
    while kills < 12:
        process = subprocess.Popen(args, stderr=subprocess.PIPE, text=True)
        time.sleep(rng.uniform(0.3, 1.0))
        process.send_signal(signal.SIGKILL)
        _, stderr = process.communicate(timeout=60)
        if process.returncode == 0:
            break  # finished before the kill
        assert process.returncode == -signal.SIGKILL, stderr
        kills += 1
    assert kills >= 10
    final = subprocess.run(args, capture_output=True, text=True, timeout=120, check=False)
    assert final.returncode == 0, final.stderr
    written = records(out)
    ids = [record["custom_id"] for record in written]
    assert sorted(ids) == sorted(item["custom_id"] for item in lines)  # each exactly once
    for record in written:
        number = record["custom_id"].removeprefix("req-")
        assert answer_text(record).endswith(f"question {number}")  # its own answer
    report = server.report()
    _check_server_report(report, 6000)
    assert sum(batch["status"] == "expired" for batch in report["batches"]) >= 1
    assert len({batch["metadata"]["omc_chunk"] for batch in report["batches"]}) > 3  # resubmits


# ------------------------------------------------------------------ one server in this process


def _journal_batches(journal: Path) -> list[tuple[int, str | None, str]]:
    if not journal.exists():
        return []
    connection = sqlite3.connect(f"file:{journal}?mode=ro", uri=True)
    try:
        return list(
            connection.execute("SELECT chunk_no, batch_id, status FROM batch_chunks ORDER BY 1")
        )
    except sqlite3.OperationalError:
        return []
    finally:
        connection.close()


def _wait_for(condition: Callable[[], bool], process: subprocess.Popen[str]) -> None:
    for _ in range(600):
        if condition():
            return
        assert process.poll() is None, process.communicate()
        time.sleep(0.05)
    raise AssertionError("the condition never held")


def test_a_batch_created_just_before_a_kill_is_adopted_not_created_again(
    tmp_path: Path, mock_openai_factory: Factory
) -> None:
    fake = FakeClock()
    server = mock_openai_factory(clock=fake, batches=fast())
    source = write_input(tmp_path / "in.jsonl", [line(n) for n in range(20)])
    out = tmp_path / "out.jsonl"
    journal = Path(f"{out}.journal")
    process = subprocess.Popen(omc_args(*batch_run(source, out, server.base_url)), text=True,
                               stderr=subprocess.PIPE)  # fmt: skip
    _wait_for(lambda: any(batch_id for _, batch_id, _ in _journal_batches(journal)), process)
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=30)
    # As if the kill came between the batch's creation and the commit of its id.
    connection = sqlite3.connect(journal)
    connection.execute("UPDATE batch_chunks SET batch_id = NULL, status = 'uploaded'")
    connection.commit()
    connection.close()
    fake.advance(1.0)
    done = omc(*batch_run(source, out, server.base_url))
    assert done.returncode == 0, done.stderr
    assert sorted(record["custom_id"] for record in records(out)) == sorted(
        f"req-{n}" for n in range(20)
    )
    listing = server._handler.batch_routes.batches.all()
    assert len(listing) == 1  # adopted, not created again
    assert set(server.answer_counts.values()) == {1}


def _comparable(record: dict[str, Any]) -> dict[str, Any]:
    body = dict(record["response"]["body"])
    for name in ("id", "created", "system_fingerprint"):
        body.pop(name, None)
    response = {**record["response"], "body": body, "request_id": None}
    return {**record, "id": None, "response": response}


def test_online_and_batch_outputs_are_the_same_but_for_ids_and_times(
    tmp_path: Path, mock_openai_factory: Factory
) -> None:
    server = mock_openai_factory(batches=fast())
    lines = [line(n, "gpt-4o" if n % 4 == 0 else "gpt-4o-mini") for n in range(40)]
    source = write_input(tmp_path / "in.jsonl", lines)
    online, batch = tmp_path / "online.jsonl", tmp_path / "batch.jsonl"
    first = omc("run", str(source), "-o", str(online), "--base-url", server.base_url,
                "--key", "sk-b")  # fmt: skip
    assert first.returncode == 0, first.stderr
    second = omc(*batch_run(source, batch, server.base_url, "--batch-size", "7"))
    assert second.returncode == 0, second.stderr
    by_id = {record["custom_id"]: _comparable(record) for record in records(online)}
    got = {record["custom_id"]: _comparable(record) for record in records(batch)}
    assert got == by_id
    assert list(records(batch)[0]) == list(records(online)[0])  # same fields, same order
    assert "estimated cost at batch prices" in second.stderr


def test_a_refused_batch_is_explained_in_one_line_and_its_lines_are_errors(
    tmp_path: Path, mock_openai_factory: Factory
) -> None:
    server = mock_openai_factory(batches=fast(max_lines=5))
    source = write_input(tmp_path / "in.jsonl", [line(n) for n in range(8)])
    out, errors = tmp_path / "out.jsonl", tmp_path / "errors.jsonl"
    done = omc(*batch_run(source, out, server.base_url, "--errors", str(errors)))
    assert done.returncode == 1
    told = [text for text in done.stderr.splitlines() if "failed: too_many_lines" in text]
    assert len(told) == 1, done.stderr
    failed = records(errors)
    assert len(failed) == 8
    assert {record["error"]["code"] for record in failed} == {"too_many_lines"}
    assert {record["error"]["line"] for record in failed} == set(range(1, 9))


def test_the_token_limit_holds_a_chunk_and_sends_it_again_smaller(
    tmp_path: Path, mock_openai_factory: Factory
) -> None:
    # Each line is 3 tokens in at the mock: 30 lines are over a limit of 50, 15 are not.
    server = mock_openai_factory(batches=fast(enqueued_token_limits={"gpt-4o-mini": 50}))
    source = write_input(tmp_path / "in.jsonl", [line(n) for n in range(30)])
    out = tmp_path / "out.jsonl"
    done = omc(*batch_run(source, out, server.base_url))
    assert done.returncode == 0, done.stderr
    assert "enqueued-token limit" in done.stderr
    assert len(records(out)) == 30
    assert set(server.answer_counts.values()) == {1}
    # Capped up front (the estimate counts max_tokens: 10 a line): batches of 10 lines, one
    # enqueued at a time: none is refused.
    server.reset_stats()
    capped = omc(*batch_run(source, tmp_path / "capped.jsonl", server.base_url,
                            "--batch-max-tokens", "100"))  # fmt: skip
    assert capped.returncode == 0, capped.stderr
    assert "enqueued-token limit" not in capped.stderr
    assert len(records(tmp_path / "capped.jsonl")) == 30


def test_azure_layout_and_api_key(tmp_path: Path, mock_openai_factory: Factory) -> None:
    server = mock_openai_factory(batches=fast())
    source = write_input(tmp_path / "in.jsonl", [line(n, "my-deployment") for n in range(5)])
    out = tmp_path / "out.jsonl"
    base = f"{server.url}/openai/deployments/my-deployment"
    done = omc(*batch_run(source, out, base, "--azure", "--api-version", "2024-10-21"))
    assert done.returncode == 0, done.stderr
    assert len(records(out)) == 5
    assert "sk-b" not in done.stderr
    assert "sk-b" not in out.read_text()


def test_ctrl_c_leaves_batches_running_and_cancel_collects_partial_results(
    tmp_path: Path, mock_openai_factory: Factory
) -> None:
    fake = FakeClock()
    options = BatchOptions(
        validation_seconds=0, lines_per_second=1.0, finalizing_seconds=0, cancel_seconds=0
    )
    server = mock_openai_factory(clock=fake, batches=options)
    source = write_input(tmp_path / "in.jsonl", [line(n) for n in range(10)])
    out, errors = tmp_path / "out.jsonl", tmp_path / "errors.jsonl"
    journal = Path(f"{out}.journal")
    args = batch_run(source, out, server.base_url, "--errors", str(errors))
    process = subprocess.Popen(omc_args(*args), text=True, stderr=subprocess.PIPE)
    _wait_for(lambda: any(batch_id for _, batch_id, _ in _journal_batches(journal)), process)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 130, stderr
    assert "keep running" in stderr
    (batch,) = server._handler.batch_routes.batches.all()
    assert batch.status == "in_progress"  # still running: the next run or omc cancel takes it
    fake.advance(4.0)  # 4 of 10 lines done
    status = omc("status", str(journal))
    assert "chunk 1: batch" in status.stdout, status.stdout
    cancel = omc("cancel", str(journal), "--key", "sk-b", "--poll-interval", "0.05")
    assert cancel.returncode == 1, cancel.stderr  # some lines did not run
    written = records(out)
    assert len(written) == 10
    codes = Counter(
        "ok" if record["error"] is None else record["error"]["code"] for record in written
    )
    assert codes == {"ok": 4, "batch_cancelled": 6}
    assert len(records(errors)) == 6
    assert "cancelled" in omc("status", str(journal)).stdout


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--batch-size", "0"], "--batch-size must be from 1 to 50,000"),
        (["--batch-size", "60000"], "--batch-size must be from 1 to 50,000"),
        (["--poll-interval", "0"], "--poll-interval must be seconds above 0"),
        (["--batch-max-tokens", "0"], "--batch-max-tokens must be at least 1"),
        (["--no-journal"], "--batch needs a journal"),
        (["--cache", "c.sqlite"], "--cache is not supported with --batch"),
    ],
)
def test_bad_batch_options_are_named(tmp_path: Path, extra: list[str], message: str) -> None:
    source = write_input(tmp_path / "in.jsonl", [line(1)])
    done = omc("run", str(source), "-o", str(tmp_path / "o.jsonl"), "--batch", *extra)
    assert done.returncode == 2
    assert message in done.stderr


def test_batch_options_need_batch(tmp_path: Path) -> None:
    source = write_input(tmp_path / "in.jsonl", [line(1)])
    done = omc("run", str(source), "-o", str(tmp_path / "o.jsonl"), "--batch-size", "10")
    assert done.returncode == 2
    assert "--batch-size goes with --batch" in done.stderr


def test_a_batch_where_every_line_failed_has_no_output_file_and_is_handled(
    tmp_path: Path, mock_openai_factory: Factory
) -> None:
    server = mock_openai_factory(batches=fast(line_fault_rate=1.0, line_fault_kinds=("500",)))
    source = write_input(tmp_path / "in.jsonl", [line(n) for n in range(6)])
    out, errors = tmp_path / "out.jsonl", tmp_path / "errors.jsonl"
    done = omc(*batch_run(source, out, server.base_url, "--errors", str(errors),
                          "--max-retries", "2"))  # fmt: skip
    assert done.returncode == 1, done.stderr
    batches = server._handler.batch_routes.batches.all()
    assert len(batches) == 2  # the first try, then one resubmission: --max-retries 2 in all
    assert all(batch.output_file_id is None for batch in batches)
    assert [record["response"]["status_code"] for record in records(errors)] == [500] * 6
    assert len(records(out)) == 6


def test_retry_failed_sends_the_temporary_failures_again_in_a_batch(
    tmp_path: Path, mock_openai_factory: Factory
) -> None:
    faulty = mock_openai_factory(batches=fast(line_fault_rate=1.0, line_fault_kinds=("429",)))
    healthy = mock_openai_factory(batches=fast())
    source = write_input(tmp_path / "in.jsonl", [line(n) for n in range(5)])
    out, errors = tmp_path / "out.jsonl", tmp_path / "errors.jsonl"
    first = omc(*batch_run(source, out, faulty.base_url, "--errors", str(errors),
                           "--max-retries", "1"))  # fmt: skip
    assert first.returncode == 1
    assert "--retry-failed" in first.stderr
    assert len(records(errors)) == 5
    again = omc(*batch_run(source, out, healthy.base_url, "--errors", str(errors),
                           "--retry-failed", "--force"))  # fmt: skip
    assert again.returncode == 0, again.stderr
    written = records(out)
    assert sorted(record["custom_id"] for record in written) == [f"req-{n}" for n in range(5)]
    assert all(record["response"]["status_code"] == 200 for record in written)
    assert records(errors) == []


def test_max_requests_submits_that_many_lines_and_the_next_run_goes_on(
    tmp_path: Path, mock_openai_factory: Factory
) -> None:
    server = mock_openai_factory(batches=fast())
    source = write_input(tmp_path / "in.jsonl", [line(n) for n in range(10)])
    out = tmp_path / "out.jsonl"
    first = omc(*batch_run(source, out, server.base_url, "--max-requests", "6"))
    assert first.returncode == 3, first.stderr
    assert "stopped at --max-requests 6" in first.stderr
    assert len(records(out)) == 6
    second = omc(*batch_run(source, out, server.base_url, "--max-requests", "6"))
    assert second.returncode == 0, second.stderr
    assert sorted(record["custom_id"] for record in records(out)) == sorted(
        f"req-{n}" for n in range(10)
    )
    assert sum(len(batch.lines) for batch in server._handler.batch_routes.batches.all()) == 10


def test_mock_runs_the_batch_on_the_built_in_mock_server(tmp_path: Path) -> None:
    """`omc run --batch --mock`, like the online `--mock`: no key, no network, every line."""
    source = write_input(tmp_path / "in.jsonl", [line(n) for n in range(20)])
    out = tmp_path / "out.jsonl"
    done = omc("run", str(source), "-o", str(out), "--batch", "--mock")
    assert done.returncode == 0, done.stderr
    assert "built-in mock server" in done.stderr
    assert sorted(record["custom_id"] for record in records(out)) == sorted(
        f"req-{n}" for n in range(20)
    )


@pytest.mark.parametrize("budget", [["--budget-tokens", "25"], ["--budget-dollars", "0.000001"]])
def test_a_budget_stops_submitting_batches_with_exit_3_and_the_rest_resumes(
    tmp_path: Path, mock_openai_factory: Factory, budget: list[str]
) -> None:
    server = mock_openai_factory(batches=fast())
    source = write_input(tmp_path / "in.jsonl", [line(n) for n in range(20)])
    out = tmp_path / "out.jsonl"
    args = batch_run(source, out, server.base_url, "--batch-size", "5")
    stopped = omc(*args, *budget)
    assert stopped.returncode == 3, stopped.stderr
    assert f"stopped at {budget[0]}" in stopped.stderr
    first = {record["custom_id"] for record in records(out)}
    assert 0 < len(first) < 20  # some batches ran, not all: the budget held the others
    resumed = omc(*args)
    assert resumed.returncode == 0, resumed.stderr
    ids = [record["custom_id"] for record in records(out)]
    assert sorted(ids) == sorted(f"req-{n}" for n in range(20))  # each once
    assert len(server._handler.batch_routes.batches.all()) == 4  # no chunk submitted twice
    assert set(server.answer_counts.values()) == {1}  # no line answered twice


def _progress_line(process: subprocess.Popen[str], wanted: str) -> str:
    """The first line of ``process``'s standard error that holds ``wanted``."""
    assert process.stderr is not None
    for text in process.stderr:
        if wanted in text:
            return text
    raise AssertionError(f"{wanted!r} never came: {process.communicate()}")


def _finish_on_fake_time(process: subprocess.Popen[str], fake: FakeClock) -> str:
    """Let the server's clock run (5 s a step) until ``process`` ends; its standard error."""
    for _ in range(600):
        if process.poll() is not None:
            break
        fake.advance(5.0)
        time.sleep(0.05)
    return process.communicate(timeout=30)[1]


def _slow_lines() -> BatchOptions:
    """Batches that run one line a second of the (fake) server clock."""
    return BatchOptions(
        validation_seconds=0, lines_per_second=1.0, finalizing_seconds=0, cancel_seconds=0
    )


def test_batch_max_tokens_caps_each_model_on_its_own(
    tmp_path: Path, mock_openai_factory: Factory
) -> None:
    # 10 lines of each model, 10 estimated tokens a line: one chunk of 100 tokens a model.
    fake = FakeClock()
    server = mock_openai_factory(clock=fake, batches=_slow_lines())
    lines = [line(n, "gpt-4o" if n % 2 else "gpt-4o-mini") for n in range(20)]
    source = write_input(tmp_path / "in.jsonl", lines)
    out = tmp_path / "out.jsonl"
    args = batch_run(source, out, server.base_url, "--batch-max-tokens", "100")
    process = subprocess.Popen(omc_args(*args), text=True, stderr=subprocess.PIPE)
    try:
        # The first look at the running batches: both models' chunks were created at once.
        said = _progress_line(process, "batches: ")
        assert "batches: 2 in_progress;" in said, said
        assert len(server._handler.batch_routes.batches.all()) == 2
        fake.advance(20.0)
        _, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, stderr
    assert len(records(out)) == 20
    assert set(server.answer_counts.values()) == {1}


def test_a_token_limit_of_one_model_holds_back_only_that_models_chunks(
    tmp_path: Path, mock_openai_factory: Factory
) -> None:
    # gpt-4o-mini: 5-line chunks of 15 tokens at the mock, limit 20: its second chunk is refused
    # while the first runs. gpt-4o: 100 estimated tokens a line, --batch-max-tokens 100: one
    # line a chunk, one chunk at a time. The second gpt-4o chunk must go as soon as the first
    # ends, while gpt-4o-mini is still held.
    fake = FakeClock()
    limits = {"gpt-4o-mini": 20}
    options = dataclasses.replace(_slow_lines(), enqueued_token_limits=limits)
    server = mock_openai_factory(clock=fake, batches=options)
    lines = [line(n) for n in range(10)]
    for n in (10, 11):
        big = line(n, "gpt-4o")
        big["body"]["max_tokens"] = 100
        lines.append(big)
    for item in lines[:10]:
        item["body"]["max_tokens"] = 1
    source = write_input(tmp_path / "in.jsonl", lines)
    out = tmp_path / "out.jsonl"
    args = batch_run(source, out, server.base_url, "--batch-max-tokens", "100",
                     "--batch-size", "5")  # fmt: skip
    process = subprocess.Popen(omc_args(*args), text=True, stderr=subprocess.PIPE)
    batches = server._handler.batch_routes.batches
    try:
        said = _progress_line(process, "enqueued-token limit")
        assert "gpt-4o-mini" in said, said
        fake.advance(1.5)  # the first gpt-4o batch (one line) ends; gpt-4o-mini's still runs
        _wait_for(lambda: sum(batch.model == "gpt-4o" for batch in batches.all()) == 2, process)
        mini = [batch for batch in batches.all() if batch.model == "gpt-4o-mini"]
        assert [batch.status for batch in mini] == ["failed", "in_progress"]  # newest first
        stderr = _finish_on_fake_time(process, fake)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, stderr
    assert len(records(out)) == 12
    assert set(server.answer_counts.values()) == {1}


def _owners(server: MockOpenAIServer) -> Counter[str]:
    """Batches per organization at the mock (each key without one is its own)."""
    return Counter(batch.owner for batch in server._handler.batch_routes.batches.all())


def _journal_keys(journal: Path) -> Counter[str]:
    connection = sqlite3.connect(f"file:{journal}?mode=ro", uri=True)
    try:
        return Counter(key for (key,) in connection.execute("SELECT key_id FROM batch_chunks"))
    finally:
        connection.close()


def test_several_keys_spread_the_batches_and_each_batch_keeps_its_key(
    tmp_path: Path, mock_openai_factory: Factory
) -> None:
    # Two keys of two organizations (the mock gives each key its own): a file uploaded with
    # one is not found with the other, so polling, downloading, resuming, omc status and
    # omc cancel must each use the key the chunk was created with.
    fake = FakeClock()
    server = mock_openai_factory(clock=fake, batches=_slow_lines())
    source = write_input(tmp_path / "in.jsonl", [line(n) for n in range(40)])
    out = tmp_path / "out.jsonl"
    journal = Path(f"{out}.journal")
    two_keys = ("--key", "sk-two")  # and batch_run's --key sk-b
    args = [*batch_run(source, out, server.base_url, "--batch-size", "10"), *two_keys]
    process = subprocess.Popen(omc_args(*args), text=True, stderr=subprocess.PIPE)
    _wait_for(lambda: sum(bool(b) for _, b, _ in _journal_batches(journal)) == 4, process)
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=30)
    assert sorted(_owners(server).values()) == [2, 2]  # spread over both organizations
    keys = _journal_keys(journal)
    assert sorted(keys.values()) == [2, 2], keys
    assert all(key.startswith("key-") for key in keys)  # redacted ids, never the secrets
    assert b"sk-two" not in journal.read_bytes()
    status = omc("status", str(journal))
    assert all(f"(key {key})" in status.stdout for key in keys), status.stdout
    fake.advance(15.0)  # the batches end while no run looks
    resumed = omc(*args)
    assert resumed.returncode == 0, resumed.stderr
    assert sorted(record["custom_id"] for record in records(out)) == sorted(
        f"req-{n}" for n in range(40)
    )
    assert set(server.answer_counts.values()) == {1}
    assert sorted(_owners(server).values()) == [2, 2]  # none created again
    # Stopped with Ctrl-C, then cancelled with both keys: each batch through its own.
    out2 = tmp_path / "out2.jsonl"
    journal2 = Path(f"{out2}.journal")
    args2 = [*batch_run(source, out2, server.base_url, "--batch-size", "20"), *two_keys]
    process = subprocess.Popen(omc_args(*args2), text=True, stderr=subprocess.PIPE)
    _wait_for(lambda: sum(bool(b) for _, b, _ in _journal_batches(journal2)) == 2, process)
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=30) == 130
    process.communicate()
    fake.advance(4.0)  # 4 of each batch's 20 lines done
    keys_file = tmp_path / "keys.txt"
    keys_file.write_text("sk-b\nsk-two\n")
    cancel = omc("cancel", str(journal2), "--keys-file", str(keys_file), "--poll-interval", "0.05")
    assert cancel.returncode == 1, cancel.stderr  # some lines did not run
    codes = Counter(
        "ok" if record["error"] is None else record["error"]["code"] for record in records(out2)
    )
    assert codes == {"ok": 8, "batch_cancelled": 32}
    shown = omc("status", str(journal2)).stdout
    assert shown.count("cancelled") == 2, shown
    assert len(set(_journal_keys(journal2))) == 2


def test_a_refused_key_retires_and_its_chunks_go_through_another(
    tmp_path: Path, mock_openai_factory: Factory
) -> None:
    server = mock_openai_factory(batches=fast(), invalid_keys=["sk-dead"])
    source = write_input(tmp_path / "in.jsonl", [line(n) for n in range(20)])
    out = tmp_path / "out.jsonl"
    args = batch_run(source, out, server.base_url, "--batch-size", "5")
    done = omc(*args, "--key", "sk-dead")  # --key sk-b comes first: the dead key second
    assert done.returncode == 0, done.stderr
    assert "was refused (401)" in done.stderr, done.stderr
    assert "sk-dead" not in done.stderr
    assert len(records(out)) == 20
    assert set(server.answer_counts.values()) == {1}


def test_a_journal_from_before_keys_were_recorded_resumes_with_the_first_key(
    tmp_path: Path, mock_openai_factory: Factory
) -> None:
    fake = FakeClock()
    server = mock_openai_factory(clock=fake, batches=_slow_lines())
    source = write_input(tmp_path / "in.jsonl", [line(n) for n in range(10)])
    out = tmp_path / "out.jsonl"
    journal = Path(f"{out}.journal")
    args = batch_run(source, out, server.base_url, "--batch-size", "5")
    process = subprocess.Popen(omc_args(*args), text=True, stderr=subprocess.PIPE)
    _wait_for(lambda: sum(bool(b) for _, b, _ in _journal_batches(journal)) == 2, process)
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=30)
    connection = sqlite3.connect(journal)  # as an earlier version left it
    connection.execute("ALTER TABLE batch_chunks DROP COLUMN key_id")
    connection.commit()
    connection.close()
    assert "chunk 1: batch batch_" in omc("status", str(journal)).stdout
    fake.advance(10.0)
    resumed = omc(*args, "--key", "sk-other")  # the first key made the batches
    assert resumed.returncode == 0, resumed.stderr
    assert len(records(out)) == 10
    assert len(server._handler.batch_routes.batches.all()) == 2


def test_batches_of_a_key_not_given_again_are_named_and_left_for_a_run_with_it(
    tmp_path: Path, mock_openai_factory: Factory
) -> None:
    fake = FakeClock()
    server = mock_openai_factory(clock=fake, batches=_slow_lines())
    source = write_input(tmp_path / "in.jsonl", [line(n) for n in range(10)])
    out = tmp_path / "out.jsonl"
    journal = Path(f"{out}.journal")
    args = batch_run(source, out, server.base_url, "--batch-size", "5")
    process = subprocess.Popen(omc_args(*args, "--key", "sk-two"), text=True,
                               stderr=subprocess.PIPE)  # fmt: skip
    _wait_for(lambda: sum(bool(b) for _, b, _ in _journal_batches(journal)) == 2, process)
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=30)
    fake.advance(10.0)
    without = omc(*args)  # sk-two's batch cannot be seen with sk-b alone
    assert without.returncode == 1, without.stderr
    told = [text for text in without.stderr.splitlines() if "not collected" in text]
    assert len(told) == 1, without.stderr
    assert "is not among the keys given" in told[0]
    assert len(records(out)) == 5
    again = omc(*args, "--key", "sk-two")
    assert again.returncode == 0, again.stderr
    assert len(records(out)) == 10
    assert len(server._handler.batch_routes.batches.all()) == 2  # none created again
    assert set(server.answer_counts.values()) == {1}
