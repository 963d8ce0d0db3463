"""``omc run --metrics-port``: Prometheus scrapes a real run (a subprocess) against the mock
server while it runs, and sees its keys cool down and retire; no key's secret is in the
metrics or the run's messages."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import IO

import pytest

from openai_multi_client.testing import MockOpenAIServer
from openai_multi_client.testing._mock.options import KeyLimits

pytest.importorskip("prometheus_client")

Factory = Callable[..., MockOpenAIServer]
Samples = dict[str, float]
SLOW = "sk-slow-canary-aaaaaaaaaaaaaaaa"
FAST = "sk-fast-canary-bbbbbbbbbbbbbbbb"
BAD = "sk-bad-canary-cccccccccccccccc"


def request_line(n: int) -> str:
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": f"q {n}"}]}
    line = {"custom_id": f"req-{n}", "method": "POST", "url": "/v1/chat/completions"}
    return json.dumps({**line, "body": {**body, "max_tokens": 10}}) + "\n"


def samples(text: str) -> dict[str, float]:
    found = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            found[name] = float(value)
    return found


def metrics_url(stderr: IO[str]) -> str:
    for line in stderr:  # the run says where, before it sends anything
        match = re.search(r"metrics at (http://\S+/metrics)", line)
        if match:
            return match.group(1)
    raise AssertionError("omc run did not say where its metrics are")


def scrape_until(
    url: str, seen: Callable[[dict[str, float]], bool]
) -> tuple[str, dict[str, float]]:
    """Scrape every 0.1 s until ``seen`` (pytest-timeout bounds the wait)."""
    while True:
        text = urllib.request.urlopen(url, timeout=10).read().decode()
        found = samples(text)
        if seen(found):
            return text, found
        time.sleep(0.1)


def state(found: dict[str, float], state: str) -> set[str]:
    keys = set()
    for name, value in found.items():
        match = re.fullmatch(r'omc_key_state\{key="([^"]+)",state="(\w+)"\}', name)
        if match and match.group(2) == state and value == 1:
            keys.add(match.group(1))
    return keys


def answered(found: dict[str, float]) -> dict[str, float]:
    """The tokens in, by key, of the keys with answers so far."""
    keys = {}
    for name, value in found.items():
        match = re.fullmatch(r'omc_key_tokens_total\{direction="input",key="([^"]+)"\}', name)
        if match and value > 0:
            keys[match.group(1)] = value
    return keys


def test_a_scrape_during_a_run_sees_keys_cool_and_retire(
    tmp_path: Path, mock_openai_factory: Factory
) -> None:
    server = mock_openai_factory(
        keys={SLOW: KeyLimits(requests_per_minute=1), FAST: KeyLimits(requests_per_minute=6000)},
        invalid_keys={BAD},
    )
    out = tmp_path / "out.jsonl"
    args = [
        sys.executable, "-m", "openai_multi_client", "run", "-", "-o", str(out),
        "--base-url", server.base_url, "--key", SLOW, "--key", FAST, "--key", BAD,
        "--rpm", "6000", "-c", "12", "--metrics-port", "0",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONWARNINGS": "error"}
    process = subprocess.Popen(
        args, stdin=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    assert process.stdin is not None
    assert process.stderr is not None
    try:
        url = metrics_url(process.stderr)
        process.stdin.writelines(request_line(n) for n in range(300))
        process.stdin.flush()
        # More than one batch of the reader (256 lines) goes in; the input stays open while
        # the slow key's 429s cool it and the bad key's 401 retires it.
        text, found = scrape_until(
            url, lambda f: bool(state(f, "cooling") and state(f, "retired") and answered(f))
        )
        process.stdin.close()
        rest = process.stderr.read()  # until the run ends
        process.wait(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        process.stderr.close()
        if not process.stdin.closed:
            process.stdin.close()
    assert process.returncode == 0, rest
    for secret in (SLOW, FAST, BAD):
        assert secret not in text
        assert secret[:14] not in text
        assert secret not in rest
    (cooling,) = state(found, "cooling")
    (retired,) = state(found, "retired")
    assert cooling != retired
    assert found[f'omc_key_rate_limited_responses_total{{key="{cooling}"}}'] >= 1
    assert found['omc_rate_limited_responses_total{kind="rate_limit"}'] >= 1
    assert found[f'omc_key_limit_requests_per_minute{{key="{cooling}"}}'] == 1  # learned
    assert found[f'omc_key_configured_requests_per_minute{{key="{cooling}"}}'] == 6000
    assert found['omc_journal_requests{state="done"}'] <= 300
    assert "omc_run_items_done" in found
    assert 'omc_tokens_total{direction="input"}' in found
    assert "omc_estimated_cost_dollars_total" in found
    assert len(out.read_text().splitlines()) == 300
    (fast,) = answered(found).keys() - {cooling, retired}
    assert found[f'omc_key_tokens_total{{direction="output",key="{fast}"}}'] > 0
    assert found[f'omc_key_estimated_cost_dollars_total{{key="{fast}"}}'] > 0  # gpt-4o-mini


def test_a_batch_run_serves_its_batches_by_status_and_key_and_their_lines(
    tmp_path: Path, mock_openai_factory: Factory
) -> None:
    from openai_multi_client.testing import BatchOptions, FakeClock

    fake = FakeClock()
    slow = BatchOptions(validation_seconds=0, lines_per_second=1.0, finalizing_seconds=0)
    server = mock_openai_factory(clock=fake, batches=slow)
    source = tmp_path / "in.jsonl"
    source.write_text("".join(request_line(n) for n in range(10)))
    out = tmp_path / "out.jsonl"
    args = [
        sys.executable, "-m", "openai_multi_client", "run", str(source), "-o", str(out),
        "--batch", "--batch-size", "5", "--poll-interval", "0.05", "--base-url",
        server.base_url, "--key", SLOW, "--key", FAST, "--metrics-port", "0",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONWARNINGS": "error"}
    process = subprocess.Popen(args, stderr=subprocess.PIPE, text=True, env=env)
    assert process.stderr is not None
    try:
        url = metrics_url(process.stderr)

        def running(found: Samples) -> float:
            return sum(
                value
                for name, value in found.items()
                if name.startswith("omc_batches{") and 'status="in_progress"' in name
            )

        text, found = scrape_until(url, lambda found: running(found) == 2)
        batch_lines = [line for line in text.splitlines() if line.startswith("omc_batches{")]
        keys = {re.search(r'key="(key-[0-9a-f]{8})"', line).group(1) for line in batch_lines}  # type: ignore[union-attr]
        assert len(keys) == 2, text  # one batch through each key
        assert found['omc_batch_lines{state="total"}'] == 10
        fake.advance(2.0)  # two lines of each batch done
        _, found = scrape_until(
            url, lambda found: found.get('omc_batch_lines{state="completed"}') == 4
        )
        assert found["omc_batch_lines_waiting"] == 0
        assert SLOW not in text
        assert FAST not in text
        while process.poll() is None:
            fake.advance(5.0)
            time.sleep(0.05)
        stderr = process.stderr.read()
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate()
    assert process.returncode == 0, stderr
    assert len(out.read_text().splitlines()) == 10
