"""`omc run` benchmark: throughput with the journal against without it, and peak memory at two
input sizes, against the zero-latency mock server in its own process.

    python bench/bench_run.py              # 200,000 and 20,000 lines (the recorded run)
    python bench/bench_run.py --quick      # 20,000 and 2,000 lines
    python bench/bench_run.py --record     # also append the results to docs/benchmarks.md

Each `omc run` is a fresh process; its peak RSS is read from the kernel (ru_maxrss).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import tempfile

from _common import HERE, machine, mock_server, run_child


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
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--record", action="store_true")
    args = parser.parse_args()
    sizes = [20_000, 2_000] if args.quick else [int(n) for n in args.sizes.split(",")]
    rows = []
    with tempfile.TemporaryDirectory() as folder, mock_server("--latency", "0") as url:
        for size in sizes:
            source = os.path.join(folder, f"in-{size}.jsonl")
            write_input(source, size)
            plain = omc_run(
                url, source, os.path.join(folder, f"plain-{size}.jsonl"), "--no-journal"
            )
            journal = omc_run(url, source, os.path.join(folder, f"journal-{size}.jsonl"))
            print(f"{size}: without {plain}, with {journal}", file=sys.stderr)
            rows.append(
                f"| {size:,} | {size / plain['wall']:,.0f} req/s, {plain['rss_mb']:.0f} MB "
                f"| {size / journal['wall']:,.0f} req/s, {journal['rss_mb']:.0f} MB "
                f"| {plain['wall'] / journal['wall']:.2f}x |"
            )
    command = "python bench/bench_run.py " + " ".join(sys.argv[1:])
    report = (
        f"### omc run: {datetime.date.today().isoformat()}\n\n"
        f"`{command.strip()}`: chat requests in Batch-API format, concurrency 100, zero-latency "
        f"mock server in its own process; peak RSS of the `omc run` process. "
        f"Machine: {machine()}.\n\n"
        "| input lines | without journal | with journal | throughput with / without |\n"
        "|---|---|---|---|\n" + "\n".join(rows) + "\n"
    )
    print(report)
    if args.record:
        with open(os.path.join(HERE, "..", "docs", "benchmarks.md"), "a", encoding="utf-8") as f:
            f.write("\n" + report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
