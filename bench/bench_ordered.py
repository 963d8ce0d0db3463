"""Ordered `omc run` against unordered: a slow head request must not stall the run (issue 12).

    python bench/bench_ordered.py            # both parts, 2 rounds of part 1
    python bench/bench_ordered.py --record   # also append the results to docs/benchmarks.md

Part 1: 1,000 requests, concurrency 32, 20 s timeout, against the mock server with latency
0.2-0.6 s and 15 % faults, 1 % of requests hanging (60 s, so the client times out at 20 s):
wall time of `omc run` unordered and `--ordered` (target: ordered within 1.25x).

Part 2: 100,000 requests, concurrency 100, where request 0 hangs (20 s timeout, one attempt):
peak RSS of `omc run --ordered` (target: at most 150 MB), unordered beside it.

Each `omc run` is a fresh process (peak RSS from the kernel); each server runs in its own.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator

from _common import HERE, median, publish, run_child


@contextlib.contextmanager
def server(*args: str) -> Iterator[str]:
    command = [sys.executable, os.path.join(HERE, "_ordered_server.py"), *args]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        yield process.stdout.readline().strip()
    finally:
        process.terminate()
        process.wait(10)


def write_input(path: str, count: int, hang_first: bool = False) -> None:
    with open(path, "w", encoding="utf-8") as file:
        for n in range(count):
            text = "HANG" if hang_first and n == 0 else f"Classify article {n}."
            line = {
                "custom_id": f"request-{n}",
                "method": "POST",
                "url": "/v1/chat/completions",
                "body": {
                    "model": "gpt-4o-mini",
                    "messages": [{"role": "user", "content": text}],
                    "max_tokens": 100,
                },
            }
            file.write(json.dumps(line) + "\n")


def omc_run(url: str, source: str, folder: str, *extra: str) -> dict[str, float]:
    output = os.path.join(folder, f"out-{len(os.listdir(folder))}.jsonl")
    command = [sys.executable, "-m", "openai_multi_client", "run", source, "-o", output]
    command += ["--base-url", url, "--key", "sk-bench", "--timeout", "20", *extra]
    result = run_child("_rss_child.py", command)
    if result["returncode"] not in (0, 1):  # 1: some requests failed (the faults)
        raise RuntimeError(f"omc run failed: {result['stderr_tail']}")
    return result


def faults_part(folder: str, rounds: int) -> list[str]:
    source = os.path.join(folder, "faults.jsonl")
    write_input(source, 1000)
    walls: dict[str, list[float]] = {"unordered": [], "ordered": []}
    for round_ in range(rounds):
        for mode in ("unordered", "ordered") if round_ % 2 == 0 else ("ordered", "unordered"):
            extra = ["--ordered"] if mode == "ordered" else []
            with server("faults", str(round_)) as url:  # the same faults for both modes
                result = omc_run(url, source, folder, "-c", "32", *extra)
            walls[mode].append(result["wall"])
            print(f"faults round {round_} {mode}: {result['wall']:.1f} s", file=sys.stderr)
    unordered, ordered = median(walls["unordered"]), median(walls["ordered"])
    return [
        "| 1,000 requests, 15 % faults, 1 % hang, -c 32 | wall (median) | runs |",
        "|---|---|---|",
        f"| unordered | {unordered:.1f} s | {', '.join(f'{w:.1f}' for w in walls['unordered'])} |",
        f"| `--ordered` | {ordered:.1f} s ({ordered / unordered:.2f}x) | "
        f"{', '.join(f'{w:.1f}' for w in walls['ordered'])} |",
    ]


def hung_head_part(folder: str, count: int) -> list[str]:
    source = os.path.join(folder, "hung.jsonl")
    write_input(source, count, hang_first=True)
    rows = [
        f"| {count:,} requests, request 0 hangs (20 s timeout), -c 100 | wall | peak RSS |",
        "|---|---|---|",
    ]
    with server("hung-head") as url:
        for label, extra in (("unordered", []), ("`--ordered`", ["--ordered"])):
            result = omc_run(url, source, folder, "-c", "100", "--max-retries", "1", *extra)
            rows.append(f"| {label} | {result['wall']:.1f} s | {result['rss_mb']:.0f} MB |")
            print(rows[-1], file=sys.stderr)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--count", type=int, default=100_000, help="requests of part 2")
    parser.add_argument("--only", choices=("faults", "hung-head"))
    parser.add_argument("--record", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        table: list[str] = []
        if args.only in (None, "faults"):
            table += [*faults_part(folder, args.rounds), ""]
        if args.only in (None, "hung-head"):
            table += hung_head_part(folder, args.count)
    publish(
        "Ordered runs with a slow head (issue 12)",
        "`omc run` unordered and `--ordered` (default `--reorder-buffer` 10,000), each a fresh "
        "process, servers in their own processes.",
        "\n".join(table).strip(),
        args.record,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
