"""`omc run` benchmark: throughput with the journal against without it, and peak memory at two
input sizes, against the zero-latency mock server in its own process.

    python bench/bench_run.py              # 200,000 and 20,000 lines (the recorded run)
    python bench/bench_run.py --quick      # 20,000 and 2,000 lines
    python bench/bench_run.py --record     # also append the results to docs/benchmarks.md
    python bench/bench_run.py --sizes 1000000,300000,30000 --journal-only   # memory: issue 10

Each `omc run` is a fresh process; its peak RSS is read from the kernel (ru_maxrss).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile

from _common import median, mock_server, publish, run_child


def write_input(path: str, count: int) -> None:
    with open(path, "w", encoding="utf-8") as file:
        for n in range(count):
            line = {
                "custom_id": f"request-{n}",
                "method": "POST",
                "url": "/v1/chat/completions",
                "body": {
                    "model": "gpt-4o-mini",
                    "messages": [{"role": "user", "content": f"Classify article {n}."}],
                    "max_tokens": 5,
                },
            }
            file.write(json.dumps(line) + "\n")


def omc_run(url: str, source: str, output: str, *extra: str) -> dict[str, float]:
    command = [sys.executable, "-m", "openai_multi_client", "run", source, "-o", output]
    command += ["--base-url", url, "--key", "sk-bench", "-c", "100", *extra]
    result = run_child("_rss_child.py", command)
    if result["returncode"] != 0:
        raise RuntimeError(f"omc run failed: {result['stderr_tail']}")
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="200000,20000")
    parser.add_argument(
        "--rounds", type=int, default=3, help="alternating rounds for inputs under 50,000 lines"
    )
    parser.add_argument("--quick", action="store_true")
    parser.add_argument(
        "--journal-only", action="store_true", help="skip the runs without a journal"
    )
    parser.add_argument("--record", action="store_true")
    args = parser.parse_args()
    sizes = [20_000, 2_000] if args.quick else [int(n) for n in args.sizes.split(",")]
    rows = []
    with tempfile.TemporaryDirectory() as folder, mock_server("--latency", "0") as url:
        for size in sizes:
            source = os.path.join(folder, f"in-{size}.jsonl")
            write_input(source, size)
            rounds = args.rounds if size < 50_000 else 1
            plain_runs, journal_runs = [], []
            for round_number in range(rounds):
                name = f"{size}-{round_number}"
                if not args.journal_only:
                    plain = os.path.join(folder, f"plain-{name}.jsonl")
                    plain_runs.append(omc_run(url, source, plain, "--no-journal"))
                journal_runs.append(omc_run(url, source, os.path.join(folder, f"j-{name}.jsonl")))
            print(f"{size}: without {plain_runs}, with {journal_runs}", file=sys.stderr)
            journal_rate = median([size / run["wall"] for run in journal_runs])
            journal_rss = max(run["rss_mb"] for run in journal_runs)
            if not plain_runs:
                rows.append(f"| {size:,} | {rounds} | - | {journal_rate:,.0f} req/s, "
                            f"{journal_rss:.1f} MB | - |")  # fmt: skip
                continue
            plain_rate = median([size / run["wall"] for run in plain_runs])
            rows.append(
                f"| {size:,} | {rounds} | {plain_rate:,.0f} req/s, "
                f"{max(run['rss_mb'] for run in plain_runs):.0f} MB "
                f"| {journal_rate:,.0f} req/s, {journal_rss:.1f} MB "
                f"| {journal_rate / plain_rate:.2f}x |"
            )
    publish(
        "omc run",
        "chat requests in Batch-API format, concurrency 100, zero-latency mock server in its "
        "own process; peak RSS of the `omc run` process.",
        "| input lines | rounds | without journal (median, peak RSS) | with journal "
        "| throughput with / without |\n|---|---|---|---|---|\n" + "\n".join(rows),
        args.record,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
