"""`omc run --batch` benchmark: client wall time (split, upload, poll, download, write) and
peak RSS at two input sizes, against the mock server in its own process with instant batch
processing (every line answered when validation ends, no validating or finalizing delay).

    python bench/bench_batch.py              # 200,000 and 20,000 lines (the recorded run)
    python bench/bench_batch.py --quick      # 20,000 and 2,000 lines
    python bench/bench_batch.py --record     # also append the results to docs/benchmarks.md

Each `omc run --batch` is a fresh process; its peak RSS is read from the kernel (ru_maxrss).
The wall time includes the mock answering every line (in its own process) while omc polls.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

from _common import mock_server, publish, run_child
from bench_run import write_input


def omc_batch(url: str, source: str, output: str) -> dict[str, float]:
    command = [sys.executable, "-m", "openai_multi_client", "run", source, "-o", output]
    command += ["--batch", "--base-url", url, "--key", "sk-bench", "--poll-interval", "0.1"]
    result = run_child("_rss_child.py", command)
    if result["returncode"] != 0:
        raise RuntimeError(f"omc run --batch failed: {result['stderr_tail']}")
    with open(output, "rb") as file:
        written = sum(1 for _ in file)
    result["written"] = written
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="200000,20000")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--record", action="store_true")
    args = parser.parse_args()
    sizes = [20_000, 2_000] if args.quick else [int(n) for n in args.sizes.split(",")]
    options = ("--batch-lines-per-second", "0", "--batch-step-seconds", "0")
    runs: dict[int, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as folder, mock_server(*options) as url:
        for size in sizes:
            source = os.path.join(folder, f"in-{size}.jsonl")
            write_input(source, size)
            run = omc_batch(url, source, os.path.join(folder, f"out-{size}.jsonl"))
            if run["written"] != size:
                raise RuntimeError(f"{size} lines in, {run['written']} out")
            runs[size] = run
            print(f"{size}: {run}", file=sys.stderr)
    rows = [
        f"| {size:,} | {(size + 49_999) // 50_000} | {run['wall']:.1f} s "
        f"| {size / run['wall']:,.0f} lines/s | {run['cpu']:.1f} s | {run['rss_mb']:.1f} MB |"
        for size, run in sorted(runs.items())
    ]
    big, small = max(runs), min(runs)
    ratio = runs[big]["rss_mb"] / runs[small]["rss_mb"]
    publish(
        "omc run --batch",
        "chat requests in Batch-API format, default --batch-size (50,000), --poll-interval "
        "0.1, the mock (`omc mock --batch-lines-per-second 0 --batch-step-seconds 0`) in its "
        f"own process; peak RSS of the `omc run` process; RSS {big:,} / {small:,} lines: "
        f"{ratio:.2f}x.",
        "| input lines | batches | client wall | lines/s | client CPU | peak RSS |\n"
        "|---|---|---|---|---|---|\n" + "\n".join(rows),
        args.record,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
