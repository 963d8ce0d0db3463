"""Helpers shared by the benchmarks: a mock server in its own process, child processes that
measure themselves, and the machine description for docs/benchmarks.md."""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import platform
import re
import subprocess
import sys
from collections.abc import Iterator, Sequence
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))


@contextlib.contextmanager
def mock_server(*options: str) -> Iterator[str]:
    """Run ``omc mock`` in its own process (so its CPU is not the client's); yield base URL."""
    process = subprocess.Popen(
        [sys.executable, "-m", "openai_multi_client", "mock", "--port", "0", *options],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        match = re.search(r"(http://\S+/v1)", line)
        if match is None:
            raise RuntimeError(f"mock server did not start: {line!r}")
        yield match.group(1)
    finally:
        process.terminate()
        process.wait(10)


def run_child(script: str, args: Sequence[str]) -> dict[str, Any]:
    """Run ``script`` with ``args`` in a fresh interpreter; it prints one JSON line."""
    done = subprocess.run(
        [sys.executable, os.path.join(HERE, script), *args],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{script} {' '.join(args)} failed:\n{done.stderr}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as info:
        for line in info:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, {platform.system()}"


def median(values: Sequence[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[middle]
    return (ordered[middle - 1] + ordered[middle]) / 2


def publish(title: str, description: str, table: str, record: bool) -> None:
    """Print a report section (title, the command that made it, the machine, the table) and,
    with ``record``, append it to docs/benchmarks.md."""
    command = "python bench/" + os.path.basename(sys.argv[0]) + " " + " ".join(sys.argv[1:])
    report = (
        f"### {title}: {datetime.date.today().isoformat()}\n\n"
        f"`{command.strip()}`: {description} Machine: {machine()}.\n\n{table}\n"
    )
    print(report)
    if record:
        with open(os.path.join(HERE, "..", "docs", "benchmarks.md"), "a", encoding="utf-8") as file:
            file.write("\n" + report)
