"""The original README's example, our examples and `omc demo` run as users would run them."""

from __future__ import annotations

import os
import subprocess
import sys

from openai_multi_client.testing import MockOpenAIServer

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def run(args: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        env={**os.environ, "PYTHONWARNINGS": "error", **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_seed_readme_example_runs_unchanged(mock_openai: MockOpenAIServer) -> None:
    done = run(
        [os.path.join("examples", "seed_readme_example.py")],
        {"OPENAI_API_KEY": "sk-example", "OPENAI_BASE_URL": mock_openai.base_url},
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert sorted(int(line.split(" ")[0]) for line in lines) == list(range(1, 10))
    assert all("what is" in line for line in lines)
    assert mock_openai.stats.total_requests == 9


def test_custom_api_mock_example_runs() -> None:
    done = run([os.path.join("examples", "custom_api_mock.py")])
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("Total failed:") == 2


def test_omc_demo_runs_without_a_key() -> None:
    env = dict.fromkeys(("OPENAI_API_KEY", "OPENAI_BASE_URL"), "")
    done = run(["-m", "openai_multi_client", "demo", "-n", "60", "--latency", "0.01"], env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "60/60 done" in done.stdout
    assert "0 failed" in done.stdout
