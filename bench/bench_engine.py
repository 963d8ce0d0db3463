"""Engine benchmark: client CPU per request and throughput against the zero-latency mock server,
measured in the same run as a bare aiohttp loop and the official SDK; then peak memory of the
synchronous client at two input sizes.

    python bench/bench_engine.py                   # the full run recorded in docs/benchmarks.md
    python bench/bench_engine.py --quick           # a smaller smoke run
    python bench/bench_engine.py --record          # also append the results to docs/benchmarks.md

Each contender runs in a fresh process, after a warm-up, against a mock server in a process of
its own; contenders alternate over several rounds and the median is reported, because these
machines are shared and noisy. Ratios are against the bare aiohttp loop of the same run.
"""

from __future__ import annotations

import argparse
import sys

from _common import median, mock_server, publish, run_child

CONTENDERS = ["bare-aiohttp", "omc-async", "omc-sync", "openai-sdk"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", "--requests", type=int, default=20_000)
    parser.add_argument("-c", "--concurrency", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--rss-sizes",
        default="10000,100000",
        help="input sizes for the sync client's peak RSS (comma separated)",
    )
    parser.add_argument(
        "--uvloop", action="store_true", help="run every contender on uvloop (pip install uvloop)"
    )
    parser.add_argument(
        "--contenders",
        default=",".join(CONTENDERS),
        help="comma separated, bare-aiohttp first (the baseline)",
    )
    parser.add_argument("--quick", action="store_true", help="2,000 requests, 1 round")
    parser.add_argument("--record", action="store_true", help="append to docs/benchmarks.md")
    args = parser.parse_args()
    if args.quick:
        args.requests, args.rounds, args.rss_sizes = 2_000, 1, "2000,10000"
    rss_sizes = [int(size) for size in args.rss_sizes.split(",") if size]
    contenders = args.contenders.split(",")
    if contenders[0] != "bare-aiohttp" or not set(contenders) <= set(CONTENDERS):
        parser.error(f"--contenders: bare-aiohttp first, then any of {', '.join(CONTENDERS)}")

    runs: dict[str, list[dict[str, float]]] = {name: [] for name in contenders}
    rss: dict[int, dict[str, float]] = {}
    with mock_server("--latency", "0") as url:
        common = ["--url", url, "-n", str(args.requests), "-c", str(args.concurrency)]
        common += ["--uvloop"] if args.uvloop else []
        for round_number in range(args.rounds):
            for name in contenders:
                result = run_child("_engine_child.py", [name, *common])
                runs[name].append(result)
                print(f"round {round_number + 1} {name}: {result}", file=sys.stderr)
        for size in rss_sizes:
            result = run_child(
                "_engine_child.py",
                ["omc-sync", "--url", url, "-n", str(size), "-c", str(args.concurrency)],
            )
            rss[size] = result
            print(f"sync client, {size} requests: {result}", file=sys.stderr)

    base_cpu = median([r["cpu"] / r["requests"] for r in runs["bare-aiohttp"]])
    base_rate = median([r["requests"] / r["wall"] for r in runs["bare-aiohttp"]])
    lines = [
        "| contender | client CPU per request | vs bare aiohttp | requests/s | vs bare aiohttp "
        "| failed |",
        "|---|---|---|---|---|---|",
    ]
    for name in contenders:
        cpu = median([r["cpu"] / r["requests"] for r in runs[name]])
        rate = median([r["requests"] / r["wall"] for r in runs[name]])
        failed = sum(int(r["failed"]) for r in runs[name])
        lines.append(
            f"| {name} | {cpu * 1e3:.3f} ms | {cpu / base_cpu:.2f}x | {rate:,.0f} "
            f"| {rate / base_rate:.2f}x | {failed} |"
        )
    lines += [
        "",
        "| sync client, requests | peak RSS | CPU per request | requests/s | failed |",
        "|---|---|---|---|---|",
    ]
    for size, result in rss.items():
        lines.append(
            f"| {size:,} | {result['rss_mb']:.1f} MB | {result['cpu'] / size * 1e3:.3f} ms "
            f"| {size / result['wall']:,.0f} | {int(result['failed'])} |"
        )
    publish(
        "Engine",
        f"{args.requests:,} chat requests, concurrency {args.concurrency}, zero-latency mock "
        f"server in its own process, median of {args.rounds} alternating rounds.",
        "\n".join(lines),
        args.record,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
