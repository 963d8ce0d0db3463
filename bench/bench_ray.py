"""Ray Data benchmark: 3 actors share 2 keys of 600 requests/min through Redis, 1,200 rows,
against the mock server (which enforces the limits as OpenAI does; latency 0.2-0.6 s).

    python bench/bench_ray.py             # the run recorded in docs/benchmarks.md
    python bench/bench_ray.py --rows 240  # quicker
    python bench/bench_ray.py --record    # also append the results to docs/benchmarks.md

Two scenarios on one local Ray cluster (``ray.init(num_cpus=2)``), each with a fresh mock
server: openai_multi_client.ray's ``build_processor`` with ``shared_limits`` in a fresh
redis-server; then Ray Data's own HTTP stage (``ray.data.llm.HttpRequestProcessorConfig``, which
needs no vLLM) with ``qps`` set to the keys' limits divided among the actors. That stage takes
one URL and one set of headers, so it can carry only one of the two keys. Ideal time = rows /
(2 keys x 10 requests/s). Wall time counts from the call to the end of ``take_all()``, actors'
start included. 429s are counted by the mock server.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import ray
import ray.data
from _common import publish

from openai_multi_client import Key
from openai_multi_client.ray import build_processor
from openai_multi_client.testing import KeyLimits, MockOpenAIServer, RedisServer

KEYS = ("sk-bench-ray-a-000001", "sk-bench-ray-b-000002")
RPM = 600
ACTORS = 3
LATENCY = (0.2, 0.6)


def body(row: dict[str, Any]) -> dict[str, Any]:
    return {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": f"row {row['id']}"}]}


def server() -> MockOpenAIServer:
    return MockOpenAIServer(
        keys=dict.fromkeys(KEYS, KeyLimits(requests_per_minute=RPM)), latency=LATENCY
    )


def ours(rows: int) -> dict[str, Any]:
    with server() as mock, RedisServer() as redis:
        process = build_processor(
            body,
            workers=ACTORS,
            batch_size=40,
            endpoint="chats",
            api_key=[Key(secret, requests_per_minute=RPM) for secret in KEYS],
            base_url=mock.base_url,
            concurrency=16,
            shared_limits=redis.url,
        )
        started = time.perf_counter()
        results = process(ray.data.range(rows)).take_all()
        wall = time.perf_counter() - started
        stats = mock.stats
    answered = sum(1 for row in results if row["error"] is None)
    return {"answered": answered, "failed": len(results) - answered, "wall": wall, "stats": stats}


def rays_own(rows: int) -> dict[str, Any]:
    from ray.data.llm import HttpRequestProcessorConfig
    from ray.data.llm import build_processor as build_ray_processor

    qps = int(len(KEYS) * RPM / 60 / ACTORS)  # the keys' 20 requests/s among 3 actors: 6
    with server() as mock:
        config = HttpRequestProcessorConfig(
            url=f"{mock.base_url}/chat/completions",
            headers={"Authorization": f"Bearer {KEYS[0]}"},  # one set of headers: one key
            qps=qps,
            concurrency=ACTORS,
            batch_size=40,
            max_retries=5,
        )
        process = build_ray_processor(
            config,
            preprocess=lambda row: {"payload": body(row)},
            postprocess=lambda row: {"ok": "choices" in row["http_response"]},
        )
        started = time.perf_counter()
        outcome = "finished"
        answered = 0
        try:
            results = process(ray.data.range(rows)).take_all()
            answered = sum(1 for row in results if row["ok"])
        except Exception as exc:  # its last retry fails the whole dataset
            outcome = f"failed: {type(exc).__name__}"
        wall = time.perf_counter() - started
        stats = mock.stats
    return {
        "answered": answered,
        "failed": rows - answered,
        "wall": wall,
        "stats": stats,
        "outcome": outcome,
        "qps": qps,
    }


def row_of(name: str, rows: int, run: dict[str, Any]) -> str:
    stats = run["stats"]
    ideal = rows / (len(KEYS) * RPM / 60)
    limited = sum(stats.rate_limited_by_type.values())
    attempts = stats.total_requests
    share = 100 * limited / attempts if attempts else 0.0
    by_key = ", ".join(f"{stats.requests_by_key.get(key, 0):,}" for key in KEYS)
    return (
        f"| {name} | {run['answered']:,} | {run['failed']:,} | {ideal:.1f} s | {run['wall']:.1f} s "
        f"| {run['wall'] / ideal:.3f}x | {limited:,} of {attempts:,} ({share:.2f} %) | {by_key} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1200)
    parser.add_argument("--record", action="store_true")
    args = parser.parse_args()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    try:
        mine = ours(args.rows)
        theirs = rays_own(args.rows)
    finally:
        ray.shutdown()
    table = "\n".join(
        [
            "| stage | answered | failed | ideal | wall | wall / ideal | 429s of attempts "
            "| requests per key (a, b) |",
            "|---|---|---|---|---|---|---|---|",
            row_of("openai_multi_client.ray, shared limits in Redis", args.rows, mine),
            row_of(
                f"ray.data.llm HTTP stage, qps={theirs['qps']} per actor, "
                f"max_retries=5 ({theirs['outcome']})",
                args.rows,
                theirs,
            ),
        ]
    )
    publish(
        f"Ray Data: {ACTORS} actors, 2 keys of {RPM} RPM",
        f"{args.rows:,} rows, {ACTORS} actors, batch size 40, concurrency 16 per actor, mock "
        f"latency {LATENCY[0]}-{LATENCY[1]} s, one local Ray cluster (2 CPUs) for both stages.",
        table,
        args.record,
    )


if __name__ == "__main__":
    main()
