"""`omc run --flex` end to end (issue 13, item 7): a subprocess against the mock server, which
refuses some flex requests for lack of capacity."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from openai_multi_client.testing import Faults, MockOpenAIServer

Factory = Callable[..., MockOpenAIServer]


def write_input(path: Path, count: int) -> Path:
    lines = [
        json.dumps(
            {
                "custom_id": f"req-{n}",
                "method": "POST",
                "url": "/v1/chat/completions",
                "body": {
                    "model": "gpt-4o-mini",
                    "messages": [{"role": "user", "content": f"question {n}"}],
                    "max_tokens": 10,
                },
            }
        )
        for n in range(count)
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def omc(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "openai_multi_client", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONWARNINGS": "error"},
        check=False,
    )


def cost(stderr: str) -> float:
    found = re.search(r"Estimated cost: \$([0-9,.]+)", stderr)
    assert found is not None, stderr
    return float(found.group(1).replace(",", ""))


def test_flex_runs_at_half_price_and_rides_out_capacity_429s(
    tmp_path: Path, mock_openai_factory: Factory
) -> None:
    server = mock_openai_factory(faults=Faults(flex_unavailable=0.2), seed=2)
    source = write_input(tmp_path / "in.jsonl", 20)
    prices = tmp_path / "prices.json"
    prices.write_text(json.dumps({"gpt-4o-mini": {"input": 100_000, "output": 100_000}}))
    common = ["--base-url", server.base_url, "--key", "sk-flex", "--prices", str(prices)]
    online = omc("run", str(source), "-o", str(tmp_path / "online.jsonl"), *common)
    assert online.returncode == 0, online.stderr
    assert "flex_unavailable" not in server.stats.faults_by_kind  # not flex: never refused
    flex_out = tmp_path / "flex.jsonl"
    flex = omc("run", str(source), "-o", str(flex_out), *common, "--flex", "-c", "20")
    assert flex.returncode == 0, flex.stderr
    assert server.stats.faults_by_kind["flex_unavailable"] >= 1
    records = [json.loads(line) for line in flex_out.read_text().splitlines()]
    assert sorted(r["custom_id"] for r in records) == sorted(f"req-{n}" for n in range(20))
    assert all(r["error"] is None for r in records)
    assert cost(flex.stderr) == cost(online.stderr) / 2  # the same tokens, at flex prices
    # Resuming the flex run's journal without --flex is refused: it would send other bodies.
    again = omc("run", str(source), "-o", str(flex_out), *common)
    assert again.returncode == 2, again.stderr
    assert "--force" in again.stderr


def test_flex_is_refused_with_batch(tmp_path: Path) -> None:
    source = write_input(tmp_path / "in.jsonl", 1)
    done = omc("run", str(source), "-o", str(tmp_path / "o.jsonl"), "--batch", "--flex")
    assert done.returncode == 2
    assert "--flex is not supported with --batch" in done.stderr
