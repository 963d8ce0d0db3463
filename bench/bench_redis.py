"""Shared-limits benchmark: 3 worker processes share 2 keys of 600 requests/min through Redis,
against the mock server (which enforces the limits as OpenAI does; latency 0.2-0.6 s).

    python bench/bench_redis.py             # the run recorded in docs/benchmarks.md
    python bench/bench_redis.py --quick     # fewer requests
    python bench/bench_redis.py --record    # also append the results to docs/benchmarks.md

Scenarios, each with a fresh redis-server and mock server: the 3 workers each pacing the keys
to their whole limits on their own (the baseline: what happens without sharing); the workers
sharing the limits through Redis; and the same with one worker killed (SIGKILL) midway.
Ideal time = requests / (2 keys x 10 requests/s). Redis round trips are counted by the server
(INFO commandstats), 429s by the mock server.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from typing import Any

from _common import HERE, publish

from openai_multi_client._limits.redis import SCRIPT_COMMANDS
from openai_multi_client.testing import KeyLimits, MockOpenAIServer, RedisServer

WORKERS = 3
KEYS = ["sk-shared-1", "sk-shared-2"]
RPM = 600
RATE = len(KEYS) * RPM / 60  # requests per second, all keys together


def redis_commands(url: str) -> int:
    """Commands the clients sent the Redis server (its round trips), from INFO commandstats:
    every command but those our Lua scripts run inside the server, and INFO and CONFIG."""
    import redis

    with redis.Redis.from_url(url) as connection:
        stats = connection.info("commandstats")
    left_out = SCRIPT_COMMANDS | {"info", "config|resetstat"}
    return sum(
        int(entry["calls"]) + int(entry.get("rejected_calls", 0))
        for name, entry in stats.items()
        if name.removeprefix("cmdstat_") not in left_out
    )


def reset_redis_stats(url: str) -> None:
    import redis

    with redis.Redis.from_url(url) as connection:
        connection.config_resetstat()


def run_scenario(count: int, shared: bool, kill_after: float | None) -> dict[str, Any]:
    limits = {key: KeyLimits(requests_per_minute=RPM) for key in KEYS}
    with (
        RedisServer() as redis_server,
        MockOpenAIServer(keys=limits, latency=(0.2, 0.6), seed=7) as mock,
    ):
        reset_redis_stats(redis_server.url)
        start_at = time.time() + 3.0  # every worker imports, then starts at once
        command = [sys.executable, os.path.join(HERE, "_redis_child.py"), "--url", mock.base_url]
        command += ["--redis", redis_server.url if shared else ""]
        command += ["--count", str(count // WORKERS), "--rpm", str(RPM)]
        command += ["--start-at", repr(start_at)]
        workers = [
            subprocess.Popen(command, stdout=subprocess.PIPE, text=True) for _ in range(WORKERS)
        ]
        killed_at = None
        if kill_after is not None:
            time.sleep(max(0.0, start_at + kill_after - time.time()))
            workers[0].send_signal(signal.SIGKILL)
            killed_at = time.time()
        outputs = []
        for worker in workers:
            stdout, _ = worker.communicate(timeout=600)
            if worker.returncode == 0:
                outputs.append(json.loads(stdout.strip().splitlines()[-1]))
            elif worker.returncode != -signal.SIGKILL:
                raise RuntimeError(f"a worker failed with exit code {worker.returncode}")
        commands = redis_commands(redis_server.url)
        stats = mock.stats
    done = sorted(t for output in outputs for t in output["done"])
    return {
        "start_at": start_at,
        "killed_at": killed_at,
        "outputs": outputs,
        "done": done,
        "wall": done[-1] - start_at,
        "answered": stats.answered,
        "attempts": stats.total_requests,
        "rate_limited": sum(stats.rate_limited_by_type.values()),
        "redis_commands": commands,
        "client_round_trips": sum(output["round_trips"] for output in outputs),
        "failed": sum(output["failed"] for output in outputs),
    }


def share_recovered_at(outputs: list[dict[str, Any]], after: float, full: float) -> float | None:
    """The first sampled time after ``after`` at which the survivors' shares add up to
    ``full`` (every key wholly leased to them)."""
    samples = sorted(
        (t, index, share) for index, o in enumerate(outputs) for t, share in o["shares"]
    )
    latest: dict[int, float] = {}
    for t, index, share in samples:
        latest[index] = share
        if t >= after and len(latest) == len(outputs) and sum(latest.values()) >= full - 0.01:
            return float(t)
    return None


def row(name: str, count: int, result: dict[str, Any]) -> str:
    ideal = count / RATE
    attempts = result["attempts"]
    limited = result["rate_limited"]
    answered = result["answered"]
    return (
        f"| {name} | {answered:,} | {ideal:.1f} s | {result['wall']:.1f} s "
        f"| {result['wall'] / ideal:.3f}x | {limited} of {attempts} "
        f"({100 * limited / max(1, attempts):.2f} %) | {result['redis_commands']} "
        f"({result['redis_commands'] / max(1, answered):.3f}) | {result['failed']} |"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", "--requests", type=int, default=1200)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--record", action="store_true")
    args = parser.parse_args()
    count = 300 if args.quick else args.requests
    baseline = run_scenario(count, shared=False, kill_after=None)
    print(
        "baseline",
        {k: v for k, v in baseline.items() if k not in ("outputs", "done")},
        file=sys.stderr,
    )
    shared = run_scenario(count, shared=True, kill_after=None)
    print(
        "shared", {k: v for k, v in shared.items() if k not in ("outputs", "done")}, file=sys.stderr
    )
    kill_after = count / RATE / 2
    killed = run_scenario(count, shared=True, kill_after=kill_after)
    print(
        "killed", {k: v for k, v in killed.items() if k not in ("outputs", "done")}, file=sys.stderr
    )

    killed_at = killed["killed_at"]
    recovered = share_recovered_at(killed["outputs"], killed_at, full=len(KEYS))
    # Full speed: the survivors' completions from the take-over until the first of them ran
    # out of work (after that, one worker alone finishes its tail).
    first_done = min(output["done"][-1] for output in killed["outputs"])
    after = [t for t in killed["done"] if recovered is not None and recovered <= t <= first_done]
    throughput = (len(after) - 1) / (after[-1] - after[0]) if len(after) > 1 else 0.0
    table = (
        "| scenario | answered | ideal | wall | wall / ideal | 429s of attempts "
        "| Redis commands (per answer) | failed |\n|---|---|---|---|---|---|---|---|\n"
        + "\n".join(
            [
                row("3 workers, local limits only (baseline)", count, baseline),
                row("3 workers sharing limits through Redis", count, shared),
            ]
        )
        + "\n\n"
        + f"One of the 3 sharing workers killed (SIGKILL) {kill_after:.0f} s in: the survivors "
        + "held both keys wholly "
        + (
            f"{recovered - killed_at:.2f} s after the kill (lease TTL 3 s); from then until "
            f"the first of them ran out of work they finished {len(after):,} requests at "
            f"{throughput:.2f} requests/s, "
            f"{throughput / RATE:.3f}x the keys' {RATE:g}/s; "
            if recovered is not None
            else "never; "
        )
        + f"429s: {killed['rate_limited']} of {killed['attempts']} attempts; Redis commands "
        + f"{killed['redis_commands']} for {killed['answered']:,} answers."
    )
    publish(
        f"Shared limits through Redis: {WORKERS} workers, {len(KEYS)} keys of {RPM} RPM",
        f"{count:,} requests in all, {count // WORKERS:,} per worker, concurrency 32 each, "
        "latency 0.2-0.6 s.",
        table,
        args.record,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
