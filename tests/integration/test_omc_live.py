"""``omc run`` on a terminal (a pseudo-terminal): the live view (rich) draws the bar, the keys
and the errors in place; then the summary."""

from __future__ import annotations

import contextlib
import json
import os
import pty
import re
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from openai_multi_client import Key
from openai_multi_client.testing import MockOpenAIServer

pytest.importorskip("rich")

Factory = Callable[..., MockOpenAIServer]
GOOD = "sk-good-live-canary-1111111111111"
BAD = "sk-bad-live-canary-22222222222222"
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][0-9A-B]|\r")


def run_on_a_terminal(args: list[str]) -> tuple[int, str]:
    """``omc ARGS`` with standard error on a pseudo-terminal: exit code, what it drew."""
    controller, terminal = pty.openpty()
    chunks: list[bytes] = []

    def read() -> None:
        with contextlib.suppress(OSError):  # EIO once the child has closed the terminal
            while chunk := os.read(controller, 65536):
                chunks.append(chunk)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    env = {**os.environ, "PYTHONWARNINGS": "error", "COLUMNS": "100", "LINES": "40"}
    command = [sys.executable, "-m", "openai_multi_client", *args]
    with subprocess.Popen(command, env=env, stderr=terminal, stdout=subprocess.DEVNULL) as process:
        os.close(terminal)
        process.wait(timeout=60)
    reader.join(10)
    os.close(controller)
    return process.returncode, b"".join(chunks).decode(errors="replace")


def test_the_live_view_shows_the_bar_the_keys_and_the_summary(
    tmp_path: Path, mock_openai_factory: Factory
) -> None:
    server = mock_openai_factory(invalid_keys={BAD}, latency=(0.01, 0.02))
    source = tmp_path / "in.jsonl"
    lines = []
    for n in range(60):
        body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": f"q{n}"}]}
        line = {"custom_id": f"r{n}", "method": "POST", "url": "/v1/chat/completions"}
        lines.append(json.dumps({**line, "body": body}))
    source.write_text("\n".join(lines) + "\n")
    code, drawn = run_on_a_terminal(
        ["run", str(source), "-o", str(tmp_path / "out.jsonl"), "--base-url", server.base_url,
         "--key", BAD, "--key", GOOD, "-c", "4"]
    )  # fmt: skip
    assert code == 0, drawn
    text = ANSI.sub("", drawn)
    for secret in (GOOD, BAD):
        assert secret[8:24] not in drawn
    assert "━" in drawn  # the bar
    assert "60/60 100.0%" in text
    assert re.search(r"ETA 0s • \$0\.\d+", text), text
    assert re.search(r"key\s+state\s+req/min\s+tok/min\s+headroom\s+429s\s+in flight\s+sent", text)
    good, bad = Key(GOOD).id, Key(BAD).id
    assert re.search(rf"{bad}\s+retired\s", text), text
    assert re.search(rf"{good}\s+active\s", text), text
    assert "\x1b[2K" in drawn or "\x1b[1A" in drawn  # redrawn in place
    assert "Run finished in" in text  # then the summary
    assert "succeeded" in text
