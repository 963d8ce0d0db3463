"""`omc run` end to end, as a subprocess against the mock server."""

from __future__ import annotations

import errno
import io
import json
import os
import random
import re
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import pytest

from openai_multi_client.cli import _journal, _private, _run, build_parser
from openai_multi_client.cli._journal import Journal
from openai_multi_client.testing import Faults, MockOpenAIServer

from . import kill_bounds

Factory = Callable[..., MockOpenAIServer]
ROOT = Path(__file__).resolve().parents[2]


def request_line(n: int, **overrides: Any) -> str:
    line = {
        "custom_id": f"req-{n}",
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {
            "model": "gpt-4o-mini",
            "messages": [{"role": "user", "content": f"question {n}"}],
            "max_tokens": 10,
        },
    }
    line.update(overrides)
    return json.dumps(line)


def write_input(path: Path, count: int, extra: list[str] | None = None) -> Path:
    lines = [request_line(n) for n in range(count)]
    if extra:
        lines[3:3] = extra
    path.write_text("\n".join(lines) + "\n")
    return path


def omc(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "openai_multi_client", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONWARNINGS": "error", **(env or {})},
        check=False,
    )


def output_ids(path: Path) -> list[str]:
    return [json.loads(line)["custom_id"] for line in path.read_text().splitlines()]


def test_a_run_writes_every_result_and_reports_bad_lines(
    tmp_path: Path, mock_openai: MockOpenAIServer
) -> None:
    bad = [
        "{not json",
        request_line(1),  # a duplicate custom_id
        request_line(900, url="https://evil.example/v1/chat/completions"),
        request_line(901, method="GET"),
    ]
    source = write_input(tmp_path / "in.jsonl", 50, bad)
    out, errors = tmp_path / "out.jsonl", tmp_path / "errors.jsonl"
    done = omc(
        "run", str(source), "-o", str(out), "--errors", str(errors),
        "--base-url", mock_openai.base_url, "--key", "sk-test",
    )  # fmt: skip
    assert done.returncode == 1, done.stderr  # some lines failed
    assert sorted(output_ids(out)) == sorted(f"req-{n}" for n in range(50))
    for line in out.read_text().splitlines():
        record = json.loads(line)
        assert record["response"]["status_code"] == 200
        assert record["response"]["body"]["choices"]
        assert record["error"] is None
    reported = [json.loads(line) for line in errors.read_text().splitlines()]
    assert sorted(r["error"]["line"] for r in reported) == [4, 5, 6, 7]
    assert "sk-test" not in out.read_text() + errors.read_text() + done.stderr
    journal = Path(str(out) + ".journal")
    for path in (out, errors, journal):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert b"sk-test" not in journal.read_bytes()
    assert mock_openai.stats.total_requests == 50


def test_a_second_run_resumes_and_sends_nothing_again(
    tmp_path: Path, mock_openai: MockOpenAIServer
) -> None:
    source = write_input(tmp_path / "in.jsonl", 30)
    out = tmp_path / "out.jsonl"
    args = ("run", str(source), "-o", str(out), "--base-url", mock_openai.base_url, "--key", "k")
    assert omc(*args).returncode == 0
    again = omc(*args)
    assert again.returncode == 0, again.stderr
    assert "30 requests already done" in again.stderr
    assert mock_openai.stats.total_requests == 30
    assert sorted(output_ids(out)) == sorted(f"req-{n}" for n in range(30))
    status = omc("status", str(out) + ".journal")
    assert "30 done" in status.stdout


def test_a_changed_input_is_refused_unless_forced(
    tmp_path: Path, mock_openai: MockOpenAIServer
) -> None:
    source = write_input(tmp_path / "in.jsonl", 5)
    out = tmp_path / "out.jsonl"
    args = ("run", str(source), "-o", str(out), "--base-url", mock_openai.base_url, "--key", "k")
    assert omc(*args).returncode == 0
    write_input(source, 6)
    refused = omc(*args)
    assert refused.returncode == 2
    assert "--force" in refused.stderr
    forced = omc(*args, "--force")
    assert forced.returncode == 0, forced.stderr
    assert len(output_ids(out)) == 6
    assert mock_openai.stats.total_requests == 6


def test_one_process_per_journal(tmp_path: Path, mock_openai: MockOpenAIServer) -> None:
    source = write_input(tmp_path / "in.jsonl", 5)
    out = tmp_path / "out.jsonl"
    with Journal.open(str(out) + ".journal", None):
        refused = omc(
            "run", str(source), "-o", str(out), "--base-url", mock_openai.base_url, "--key", "k"
        )
    assert refused.returncode == 2
    assert "in use by another omc run" in refused.stderr


def test_the_cache_answers_repeated_requests(tmp_path: Path, mock_openai: MockOpenAIServer) -> None:
    source = write_input(tmp_path / "in.jsonl", 10)
    cache = str(tmp_path / "cache.sqlite")
    base = ("--base-url", mock_openai.base_url, "--key", "k", "--cache", cache)
    assert omc("run", str(source), "-o", str(tmp_path / "a.jsonl"), *base).returncode == 0
    again = omc("run", str(source), "-o", str(tmp_path / "b.jsonl"), *base)
    assert again.returncode == 0, again.stderr
    assert re.search(r"from the cache \(not sent\)\s+10\n", again.stderr)
    assert "Tokens: 0 in, 0 out" in again.stderr  # answers from the cache spend nothing
    assert "Estimated cost: $0.00" in again.stderr
    assert mock_openai.stats.total_requests == 10
    assert len(output_ids(tmp_path / "b.jsonl")) == 10


def test_mock_demo_from_the_readme(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    done = omc("run", str(ROOT / "examples" / "requests.jsonl"), "-o", str(out), "--mock")
    assert done.returncode == 0, done.stderr
    assert len(output_ids(out)) == 200


def _resume_counts(stderr: str) -> int:
    match = re.search(r"(\d+) whose outcome is unknown", stderr)
    return int(match.group(1)) if match else 0


def _kill_loop(
    tmp_path: Path, server: MockOpenAIServer, kill: signal.Signals, rounds: int
) -> tuple[list[str], int]:
    source = write_input(tmp_path / "in.jsonl", 2000)
    out = tmp_path / "out.jsonl"
    args = [
        sys.executable, "-m", "openai_multi_client", "run", str(source), "-o", str(out),
        "--base-url", server.base_url, "--key", "k", "-c", "10",
        "--max-retries", "30",
    ]  # fmt: skip
    rng = random.Random(1)
    in_doubt = 0
    for _ in range(rounds):
        process = subprocess.Popen(args, stderr=subprocess.PIPE, text=True)
        time.sleep(rng.uniform(0.6, 1.2))
        process.send_signal(kill)
        _, stderr = process.communicate(timeout=60)
        in_doubt += _resume_counts(stderr)
    # Every kill landed while there was work left: the run was interrupted 'rounds' times.
    assert len(output_ids(out)) < 2000
    final = subprocess.run(args, stderr=subprocess.PIPE, text=True, timeout=120, check=False)
    in_doubt += _resume_counts(final.stderr)
    assert final.returncode == 0, final.stderr
    return output_ids(out), in_doubt


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_sigkill_loop_loses_nothing_and_bounds_double_billing(
    tmp_path: Path, mock_openai_factory: Factory
) -> None:
    # About 100 requests a second: 2,000 take ~20 s, so all 20 kills land mid-run.
    server = mock_openai_factory(
        latency=(0.05, 0.15),
        faults=Faults(rate=0.05, kinds={"500": 1, "502": 1, "503": 1, "reset": 1}),
        seed=11,
    )
    ids, in_doubt = _kill_loop(tmp_path, server, signal.SIGKILL, rounds=20)
    assert sorted(ids) == sorted(f"req-{n}" for n in range(2000))  # each exactly once
    assert server.answered_more_than_once() <= in_doubt


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_sigint_loop_answers_nothing_twice(tmp_path: Path, mock_openai_factory: Factory) -> None:
    server = mock_openai_factory(
        latency=(0.05, 0.15),
        faults=Faults(rate=0.05, kinds={"500": 1, "502": 1, "503": 1, "reset": 1}),
        seed=12,
    )
    ids, _ = _kill_loop(tmp_path, server, signal.SIGINT, rounds=5)
    assert sorted(ids) == sorted(f"req-{n}" for n in range(2000))
    assert server.answered_more_than_once() == 0


def test_a_second_ctrl_c_aborts_at_once_and_the_run_resumes(
    tmp_path: Path, mock_openai_factory: Factory
) -> None:
    server = mock_openai_factory(latency=(0.5, 1.5), seed=3)
    source = write_input(tmp_path / "in.jsonl", 200)
    out = tmp_path / "out.jsonl"
    args = [
        sys.executable, "-m", "openai_multi_client", "run", str(source), "-o", str(out),
        "--base-url", server.base_url, "--key", "k", "-c", "20",
    ]  # fmt: skip
    process = subprocess.Popen(args, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while server.stats.total_requests < 20 and time.monotonic() < deadline:
        time.sleep(0.05)  # wait until 20 requests are in flight (each takes 0.5 s or more)
    process.send_signal(signal.SIGINT)
    time.sleep(0.2)
    sent = time.monotonic()
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=30)
    assert time.monotonic() - sent < 2.0
    # 130 from omc run's own handler; -SIGINT if the run had finished and was exiting.
    assert process.returncode in (130, -signal.SIGINT), stderr
    assert "Traceback" not in stderr
    resumed = subprocess.run(args, stderr=subprocess.PIPE, text=True, timeout=120, check=False)
    assert resumed.returncode == 0, resumed.stderr
    assert sorted(output_ids(out)) == sorted(f"req-{n}" for n in range(200))


def test_dead_keys_stop_the_run_and_keep_the_requests(
    tmp_path: Path, mock_openai_factory: Factory
) -> None:
    server = mock_openai_factory(invalid_keys={"sk-dead"})
    source = write_input(tmp_path / "in.jsonl", 20)
    out = tmp_path / "out.jsonl"
    base = ("run", str(source), "-o", str(out), "--base-url", server.base_url)
    dead = omc(*base, "--key", "sk-dead")
    assert dead.returncode == 1
    assert "fix the keys" in dead.stderr
    assert output_ids(out) == []  # nothing recorded as done
    alive = omc(*base, "--key", "sk-alive")
    assert alive.returncode == 0, alive.stderr
    assert sorted(output_ids(out)) == sorted(f"req-{n}" for n in range(20))


def test_a_one_model_run_with_a_key_refused_unsure_keeps_every_line(
    tmp_path: Path, mock_openai_factory: Factory
) -> None:
    """Azure's 401 for a mistyped key does not say the key is dead (no ``invalid_api_key``),
    so the key is refused the run's only model: every line is kept for the next run, the
    summary names the model and the server's words and says the keys may be wrong, exit 1."""
    server = mock_openai_factory(invalid_keys={"sk-mistyped-azure"})
    source = write_input(tmp_path / "in.jsonl", 20)
    out, errors = tmp_path / "out.jsonl", tmp_path / "errors.jsonl"
    base_url = server.base_url.removesuffix("/v1") + "/openai/deployments/gpt-4o-mini"
    base = ("run", str(source), "-o", str(out), "--errors", str(errors), "--base-url", base_url)
    azure = ("--azure", "--api-version", "2024-10-21")
    refused = omc(*base, *azure, "--key", "sk-mistyped-azure")
    assert refused.returncode == 1, refused.stderr
    assert output_ids(out) == []  # nothing recorded as done
    assert errors.read_text() == ""  # as for dead keys: kept, not failures
    assert "20 requests for model 'gpt-4o-mini' were not done" in refused.stderr
    assert "Access denied due to invalid subscription key" in refused.stderr
    assert "fix the keys" in refused.stderr
    assert "sk-mistyped-azure" not in refused.stderr
    sent_before = server.stats.total_requests
    fixed = omc(*base, *azure, "--key", "sk-right-azure")
    assert fixed.returncode == 0, fixed.stderr
    assert sorted(output_ids(out)) == sorted(f"req-{n}" for n in range(20))
    assert server.stats.total_requests - sent_before == 20


def test_max_requests_sends_exactly_that_many(
    tmp_path: Path, mock_openai: MockOpenAIServer
) -> None:
    source = write_input(tmp_path / "in.jsonl", 40)
    out = tmp_path / "out.jsonl"
    base = ("run", str(source), "-o", str(out), "--base-url", mock_openai.base_url, "--key", "k")
    capped = omc(*base, "--max-requests", "15", "-c", "5")
    assert capped.returncode == 3, capped.stderr  # stopped with requests left
    assert "--max-requests 15" in capped.stderr
    assert len(output_ids(out)) == 15
    assert omc(*base).returncode == 0
    assert len(output_ids(out)) == 40
    assert mock_openai.stats.total_requests == 40


def test_usage_errors_are_messages_not_tracebacks(tmp_path: Path) -> None:
    source = write_input(tmp_path / "in.jsonl", 2)
    not_a_journal = tmp_path / "j.sqlite"
    not_a_journal.write_text("hello")
    for args in (
        ("run", str(source), "-o", str(tmp_path / "missing" / "out.jsonl"), "--mock"),
        ("run", str(source), "-o", str(tmp_path / "o.jsonl"), "--journal", str(not_a_journal),
         "--mock"),
        ("run", str(source), "-o", str(tmp_path / "o.jsonl"), "--mock", "--max-retries", "-1"),
        ("run", str(source), "-o", str(tmp_path / "o.jsonl"), "--mock", "--max-line-bytes", "0"),
        ("run", str(source), "-o", str(tmp_path / "o.jsonl"), "--mock", "--rpm", "0"),
        ("run", str(source), "-o", str(tmp_path / "o.jsonl"), "--mock", "--tpm", "0"),
        ("status", str(source)),
    ):  # fmt: skip
        done = omc(*args)
        assert done.returncode == 2, (args, done.stderr)
        assert "Traceback" not in done.stderr, (args, done.stderr)


def _stop_with(
    tmp_path: Path, server: MockOpenAIServer, signum: signal.Signals, prefix: list[str]
) -> tuple[subprocess.CompletedProcess[str], Path]:
    """Start ``omc run`` (through ``prefix``), send ``signum`` once 10 requests are in flight,
    and wait for it to stop by itself."""
    source = write_input(tmp_path / "in.jsonl", 200)
    out = tmp_path / "out.jsonl"
    args = [
        *prefix, "run", str(source), "-o", str(out),
        "--base-url", server.base_url, "--key", "k", "-c", "10",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONWARNINGS": "error"}
    process = subprocess.Popen(args, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 60
    while server.stats.total_requests < 10 and time.monotonic() < deadline:
        if process.poll() is not None:
            break  # it failed to start: the assertions show why
        time.sleep(0.02)  # each request takes 0.5 s or more: these 10 are in flight
    if process.poll() is None:
        process.send_signal(signum)
    _, stderr = process.communicate(timeout=60)
    return subprocess.CompletedProcess(args, process.returncode, "", stderr), out


def _assert_stopped_cleanly(done: subprocess.CompletedProcess[str], out: Path, code: int) -> None:
    assert done.returncode == code, done.stderr
    assert "Traceback" not in done.stderr
    assert "Run interrupted after" in done.stderr  # the summary
    answered = output_ids(out)
    assert 10 <= len(answered) < 200  # those in flight finished and were written
    with Journal.open(str(out) + ".journal", None) as journal:
        status = journal.status()
    assert status.in_doubt == 0  # nothing will be sent (and billed) twice
    assert status.done == len(answered)


@pytest.mark.parametrize(
    ("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGHUP, 129), (signal.SIGINT, 130)]
)
def test_a_stop_signal_lets_requests_in_flight_finish(
    tmp_path: Path, mock_openai_factory: Factory, signum: signal.Signals, code: int
) -> None:
    server = mock_openai_factory(latency=(0.5, 1.0), seed=5)
    prefix = [sys.executable, "-m", "openai_multi_client"]
    done, out = _stop_with(tmp_path, server, signum, prefix)
    _assert_stopped_cleanly(done, out, code)
    assert f"{signum.name}: stopping" in done.stderr


# A Windows-like start: no fcntl module, an event loop without add_signal_handler (as the
# Proactor loop), so the journal lock and the stop signals take their portable paths. On Linux
# without fcntl, filelock falls back to its soft lock and warns so; on Windows it uses msvcrt.
_WINDOWS_LIKE = """
import asyncio, runpy, sys, warnings
sys.modules["fcntl"] = None
warnings.filterwarnings("ignore", "only soft file lock is available")
def add_signal_handler(*args, **kwargs):
    raise NotImplementedError
asyncio.SelectorEventLoop.add_signal_handler = add_signal_handler
sys.argv[0] = "omc"
runpy.run_module("openai_multi_client", run_name="__main__")
"""


def test_omc_run_works_without_fcntl_and_loop_signal_handlers(
    tmp_path: Path, mock_openai_factory: Factory
) -> None:
    server = mock_openai_factory(latency=(0.5, 1.0), seed=6)
    prefix = [sys.executable, "-c", _WINDOWS_LIKE]
    done, out = _stop_with(tmp_path, server, signal.SIGINT, prefix)
    _assert_stopped_cleanly(done, out, 130)
    assert "SIGINT: stopping" in done.stderr


def test_a_budget_stop_with_requests_left_exits_3_and_a_complete_run_0(tmp_path: Path) -> None:
    source = write_input(tmp_path / "in.jsonl", 40)
    out = tmp_path / "out.jsonl"
    base = ("run", str(source), "-o", str(out), "--mock")  # its answers report usage
    stopped = omc(*base, "--budget-tokens", "1", "-c", "2")
    assert stopped.returncode == 3, stopped.stderr
    assert "stopped at --budget-tokens 1" in stopped.stderr
    assert len(output_ids(out)) < 40
    finished = omc(*base, "--budget-tokens", "1000000", "--max-requests", "40")
    assert finished.returncode == 0, finished.stderr  # the limits were not what stopped it


def test_rpm_zero_is_refused_with_a_message(tmp_path: Path) -> None:
    source = write_input(tmp_path / "in.jsonl", 2)
    done = omc("run", str(source), "-o", str(tmp_path / "o.jsonl"), "--mock", "--rpm", "0")
    assert done.returncode == 2
    assert "--rpm must be a number above 0, got 0" in done.stderr
    assert "leave it out for no fixed limit" in done.stderr


def test_run_help_documents_exit_codes_and_defaults() -> None:
    text = " ".join(omc("run", "--help").stdout.split())  # argparse wraps lines
    codes = (
        "0 every request succeeded",
        "1 some requests failed",
        "2 usage error",
        "3 stopped at --max-requests",
        "130 stopped by Ctrl-C",
        "143 by SIGTERM",
    )
    for code in codes:
        assert code in text
    assert "--max-line-bytes MAX_LINE_BYTES longest input line, in bytes" in text
    assert "(default: 1000000)" in text
    assert "--rpm RPM requests per minute per key, > 0 (default: no fixed limit" in text


def test_blank_lines_are_not_requests(tmp_path: Path, mock_openai: MockOpenAIServer) -> None:
    source = tmp_path / "in.jsonl"
    lines = [request_line(n) for n in range(5)]
    source.write_text("\n\n".join(lines) + "\n  \n\r\n\n")
    done = omc(
        "run", str(source), "-o", str(tmp_path / "o.jsonl"),
        "--base-url", mock_openai.base_url, "--key", "k",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert re.search(r"\n\s+total\s+5\n", done.stderr), done.stderr
    assert "not processed" not in done.stderr


def test_an_output_that_is_the_input_or_another_output_is_refused(tmp_path: Path) -> None:
    source = write_input(tmp_path / "in.jsonl", 3)
    original = source.read_bytes()
    (tmp_path / "link.jsonl").symlink_to(source)
    os.link(source, tmp_path / "hard.jsonl")
    (tmp_path / "dangling.jsonl").symlink_to(tmp_path / "new.jsonl")
    out = str(tmp_path / "o.jsonl")
    cases = [
        ("-o", str(source)),
        ("-o", str(tmp_path / "link.jsonl")),
        ("-o", str(tmp_path / "hard.jsonl")),
        ("-o", str(tmp_path / "." / "in.jsonl")),
        ("-o", out, "--errors", str(source)),
        ("-o", out, "--journal", str(tmp_path / "link.jsonl")),
        ("-o", out, "--errors", out),
        ("-o", out, "--errors", str(tmp_path / "dangling.jsonl"), "--journal",
         str(tmp_path / "new.jsonl")),  # neither exists yet: the same file all the same
        ("-o", str(tmp_path / "new.jsonl"), "--errors", str(tmp_path / "dangling.jsonl")),
    ]  # fmt: skip
    for case in cases:
        done = omc("run", str(source), *case, "--mock")
        assert done.returncode == 2, (case, done.stderr)
        assert "is the same file as" in done.stderr, (case, done.stderr)
        assert source.read_bytes() == original, case
    with source.open("rb") as stdin:  # standard input redirected from the output file
        done = subprocess.run(
            [sys.executable, "-m", "openai_multi_client", "run", "-", "-o", str(source), "--mock"],
            stdin=stdin, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "same file as the input" in done.stderr
    assert source.read_bytes() == original


def test_a_folder_as_input_or_a_missing_output_folder_is_named(tmp_path: Path) -> None:
    source = write_input(tmp_path / "in.jsonl", 2)
    folder = tmp_path / "folder"
    folder.mkdir()
    for args, named in (
        ((str(folder), "-o", str(tmp_path / "o.jsonl")), f"input {str(folder)!r} is a directory"),
        ((str(source), "-o", str(tmp_path / "no" / "o.jsonl")), str(tmp_path / "no")),
        ((str(source), "-o", str(tmp_path / "o.jsonl"), "--errors", str(tmp_path / "no" / "e")),
         "--errors"),
        ((str(source), "-o", str(folder)), f"-o {str(folder)!r} is a directory"),
    ):  # fmt: skip
        done = omc("run", *args, "--mock")
        assert done.returncode == 2, (args, done.stderr)
        assert named in done.stderr, (args, done.stderr)
        assert "Traceback" not in done.stderr


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def test_failures_of_an_outage_are_sent_again_with_retry_failed(
    tmp_path: Path, mock_openai_factory: Factory
) -> None:
    port = _free_port()  # nothing listens there yet: every request meets a refused connection
    source = write_input(tmp_path / "in.jsonl", 10)
    out, errors = tmp_path / "out.jsonl", tmp_path / "errors.jsonl"
    base = (
        "run", str(source), "-o", str(out), "--errors", str(errors), "--key", "k",
        "--base-url", f"http://127.0.0.1:{port}/v1", "--max-retries", "1",
    )  # fmt: skip
    outage = omc(*base)
    assert outage.returncode == 1, outage.stderr
    assert len(output_ids(errors)) == 10
    assert "10 requests failed for a temporary reason" in outage.stderr
    assert "--retry-failed" in outage.stderr
    server = mock_openai_factory(port=port)
    plain = omc(*base)  # a plain rerun sends nothing, and says how to send them again
    assert server.stats.total_requests == 0
    assert "--retry-failed" in plain.stderr
    partly = omc(*base, "--retry-failed", "--max-requests", "4")
    assert partly.returncode == 3, partly.stderr  # stopped at --max-requests with work left
    assert server.stats.total_requests == 4
    # Each id once: the 4 new outcomes replaced their failures, the 6 others are still there.
    assert sorted(output_ids(out)) == sorted(f"req-{n}" for n in range(10))
    assert len(output_ids(errors)) == 6
    assert "6 requests failed for a temporary reason" in partly.stderr
    rest = omc(*base, "--retry-failed")
    assert rest.returncode == 0, rest.stderr
    assert server.stats.total_requests == 10
    assert sorted(output_ids(out)) == sorted(f"req-{n}" for n in range(10))
    assert errors.read_text() == ""
    assert all(json.loads(line)["error"] is None for line in out.read_text().splitlines())
    assert "temporary reason" not in rest.stderr
    assert "10 done (0 failed)" in omc("status", str(out) + ".journal").stdout


def test_stdin_is_checked_against_the_journal_request_by_request(
    tmp_path: Path, mock_openai: MockOpenAIServer
) -> None:
    source = write_input(tmp_path / "in.jsonl", 5)
    out = tmp_path / "out.jsonl"
    base = ["-o", str(out), "--base-url", mock_openai.base_url, "--key", "k"]
    assert omc("run", str(source), *base).returncode == 0

    def from_stdin(text: str, *extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "openai_multi_client", "run", "-", *base, *extra],
            input=text, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip

    lines = source.read_text().splitlines()
    changed = [*lines[:2], request_line(2, body={"model": "gpt-4o", "input": "other"}), *lines[3:]]
    refused = from_stdin("\n".join(changed) + "\n")
    assert refused.returncode == 2, refused.stderr
    assert "line 3: custom_id 'req-2' was sent before with another url or body" in refused.stderr
    assert "--force" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert mock_openai.stats.total_requests == 5
    # The same requests, reformatted (key order and spacing are not the request): all done.
    same = [json.dumps(json.loads(line), indent=None, sort_keys=True) for line in lines]
    again = from_stdin("\n".join(same) + "\n")
    assert again.returncode == 0, again.stderr
    assert mock_openai.stats.total_requests == 5
    forced = from_stdin("\n".join(changed) + "\n", "--force")
    assert forced.returncode == 0, forced.stderr
    assert sorted(output_ids(out)) == sorted(f"req-{n}" for n in range(5))


def test_keys_file_skips_comments_and_names_a_duplicate_line(
    tmp_path: Path, mock_openai: MockOpenAIServer
) -> None:
    source = write_input(tmp_path / "in.jsonl", 3)
    keys = tmp_path / "keys.txt"
    keys.write_text("# team keys\n\nsk-first\n   \n  # old: sk-gone\nsk-second\n")
    base = ("run", str(source), "-o", str(tmp_path / "o.jsonl"), "--base-url", mock_openai.base_url)
    done = omc(*base, "--keys-file", str(keys))
    assert done.returncode == 0, done.stderr
    assert set(mock_openai.stats.requests_by_key) <= {"sk-first", "sk-second"}
    keys.write_text("sk-first\nsk-second\n\nsk-first\n")
    duplicate = omc(*base, "--keys-file", str(keys))
    assert duplicate.returncode == 2
    assert f"--keys-file {keys} line 4: the same key as line 1" in duplicate.stderr
    assert "sk-first" not in duplicate.stderr
    keys.write_text("sk-second\n")
    both = omc(*base, "--keys-file", str(keys), "--key", "sk-second")
    assert both.returncode == 2
    assert "line 1: the same key as a --key argument" in both.stderr


def test_status_given_the_output_file_names_the_journal(tmp_path: Path) -> None:
    source = write_input(tmp_path / "in.jsonl", 2)
    out = tmp_path / "out.jsonl"
    assert omc("run", str(source), "-o", str(out), "--mock").returncode == 0
    wrong = omc("status", str(out))
    assert wrong.returncode == 2
    assert f"{out} is not a journal; did you mean {out}.journal?" in wrong.stderr
    assert "Traceback" not in wrong.stderr


class _FullDisk(io.RawIOBase):
    """A file that takes ``room`` bytes, then fails as a full disk does."""

    def __init__(self, room: int) -> None:
        self.room = room

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        if len(data) > self.room:
            raise OSError(errno.ENOSPC, "No space left on device")
        self.room -= len(data)
        return len(data)


def test_a_full_disk_names_the_file_and_loses_nothing_committed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    source = write_input(tmp_path / "in.jsonl", 300)
    out = tmp_path / "out.jsonl"
    args = build_parser().parse_args(["run", str(source), "-o", str(out), "--mock", "-c", "5"])
    real_open = _private.private_open

    def full_output(path: str, *, truncate: bool = True) -> IO[bytes]:
        if path == str(out):
            real_open(path).close()
            return io.BufferedWriter(_FullDisk(room=20_000), buffer_size=4096)
        return real_open(path, truncate=truncate)

    monkeypatch.setattr(_private, "private_open", full_output)
    assert _run.run(args) == 2
    stderr = capsys.readouterr().err
    assert f"cannot write {out}: No space left on device" in stderr
    assert f"safe in the journal {out}.journal" in stderr
    recorded = _journal.open_status(f"{out}.journal").done
    assert recorded > 20_000 // 1000  # more was committed than the full file could take
    monkeypatch.setattr(_private, "private_open", real_open)
    assert _run.run(args) == 0  # the rerun rewrites the output from the journal, then the rest
    assert "Traceback" not in capsys.readouterr().err
    assert sorted(output_ids(out)) == sorted(f"req-{n}" for n in range(300))


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_after_each_sigkill_the_in_doubt_count_is_bounded_by_the_server_log(
    tmp_path: Path,
) -> None:
    # The server in its own process (latency, 500s, 503s and resets); after each kill, every
    # request the journal holds as "outcome unknown" was in flight by the server's log (bound
    # a), and every request answered on both sides of the kill is among them (bound b).
    options = {"latency": [0.05, 0.3], "fault_rate": 0.15, "fault_kinds": ["500", "503", "reset"]}
    server = kill_bounds.RunServer(tmp_path, options, seed=5)
    try:
        source = write_input(tmp_path / "in.jsonl", 600)
        out = tmp_path / "out.jsonl"
        args = [
            sys.executable, "-m", "openai_multi_client", "run", str(source), "-o", str(out),
            "--base-url", server.base_url, "--key", "k", "-c", "32", "--max-retries", "30",
        ]  # fmt: skip
        rng = random.Random(4)
        kills: list[kill_bounds.Kill] = []
        for _ in range(5):
            kill, reported = kill_bounds.kill_after(
                args, Path(f"{out}.journal"), rng.uniform(0.8, 1.4)
            )
            if kills:
                kills[-1].reported, kills[-1].next_start = reported, kill.started
            kills.append(kill)
        final_start = time.monotonic()
        final = subprocess.run(args, stderr=subprocess.PIPE, text=True, timeout=60, check=False)
        assert final.returncode == 0, final.stderr
        kills[-1].reported = kill_bounds.reported_in_doubt(final.stderr)
        kills[-1].next_start = final_start
        report = server.report()
    finally:
        server.close()
    assert sorted(output_ids(out)) == sorted(f"req-{n}" for n in range(600))
    for kill in kills:
        bound = kill_bounds.bounds(kill, report["attempts"])
        assert bound.reported == len(kill.sent)  # the resume reports what the journal holds
        assert bound.over == [], bound  # (a)
        assert bound.under == [], bound  # (b)
    twice = sum(1 for count in report["answer_counts"].values() if count >= 2)
    assert twice <= sum(kill.reported for kill in kills)
