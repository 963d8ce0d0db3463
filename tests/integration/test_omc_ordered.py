"""`omc run --ordered` end to end, as a subprocess against the mock server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from openai_multi_client.testing import Faults, MockOpenAIServer

Factory = Callable[..., MockOpenAIServer]


def test_ordered_output_follows_the_input_with_a_small_reorder_buffer(
    tmp_path: Path, mock_openai_factory: Factory
) -> None:
    # Latencies vary and some attempts fail and are retried: results finish out of order.
    server = mock_openai_factory(
        latency=(0.0, 0.03), faults=Faults(rate=0.1, kinds={"500": 1, "503": 1}), seed=3
    )
    source = tmp_path / "in.jsonl"
    lines = []
    for n in range(150):
        body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": f"q {n}"}]}
        line = {"custom_id": f"req-{n}", "method": "POST", "url": "/v1/chat/completions"}
        lines.append(json.dumps({**line, "body": body}))
    source.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out.jsonl"
    command = [sys.executable, "-m", "openai_multi_client", "run", str(source), "-o", str(out)]
    command += ["--base-url", server.base_url, "--key", "sk-test-ordered", "-c", "8"]
    command += ["--ordered", "--reorder-buffer", "7", "--max-retries", "20"]
    done = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONWARNINGS": "error"},
        check=False,
    )
    assert done.returncode == 0, done.stderr
    written = [json.loads(line)["custom_id"] for line in out.read_text().splitlines()]
    assert written == [f"req-{n}" for n in range(150)]
