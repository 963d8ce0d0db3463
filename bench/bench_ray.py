"""Ray Data benchmark: 3 actors share 2 keys of 600 requests/min through Redis, 1,200 rows,
against the mock server (which enforces the limits as OpenAI does; latency 0.2-0.6 s).

    python bench/bench_ray.py             # the run recorded in docs/benchmarks.md
    python bench/bench_ray.py --rows 240  # quicker
    python bench/bench_ray.py --record    # also append the results to docs/benchmarks.md
    python bench/bench_ray.py --only-ours # ours only, printed (no Ray no-op, no Ray HTTP stage)

Two scenarios on one local Ray cluster (``ray.init(num_cpus=2)``), each with a fresh mock
server: openai_multi_client.ray's ``build_processor`` with ``shared_limits`` in a fresh
redis-server; then Ray Data's own HTTP stage (``ray.data.llm.HttpRequestProcessorConfig``, which
needs no vLLM) with ``qps`` set to the keys' limits divided among the actors. That stage takes
one URL and one set of headers, so it can carry only one of the two keys. Ideal time = rows /
(2 keys x 10 requests/s). Wall time counts from the call to the end of ``take_all()``, actors'
start included. 429s are counted by the mock server, and a thread watching its counters notes
when the first request arrived and when the last one did (to within 5 ms), which splits the
wall time into start-up (call to first request), sending (first request to last, and its
rate) and the last answers. Between the two stages, a no-op stage on the same pipeline (the
input cut into blocks of one batch, ``workers`` actors, ``num_cpus`` 0.25) measures Ray's own
start-up: from the call to its first batch, and the wall of a pipeline of the same rows that
does nothing.
"""

from __future__ import annotations

import argparse
import threading
import time
from typing import Any

import pyarrow as pa
import ray
import ray.data
from _common import publish

from openai_multi_client import Key
from openai_multi_client.ray import DEFAULT_NUM_CPUS, build_processor
from openai_multi_client.ray._processor import actor_pool, one_batch_blocks
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


class Arrivals:
    """Watches a mock server's request counter from a thread: when the first request arrived,
    and when the ``expected``-th did (``time.perf_counter()``, to within ``poll`` seconds)."""

    def __init__(self, mock: MockOpenAIServer, expected: int, poll: float = 0.005) -> None:
        self.first: float | None = None
        self.last: float | None = None
        self._mock, self._expected, self._poll = mock, expected, poll
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def _watch(self) -> None:
        while not self._stop.wait(self._poll):
            seen = self._mock.stats.total_requests
            if seen and self.first is None:
                self.first = time.perf_counter()
            if seen >= self._expected:
                self.last = time.perf_counter()
                return

    def __enter__(self) -> Arrivals:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


class Noop:
    """A stage that sends nothing: Ray's own start-up and batching, for comparison."""

    async def __call__(self, batch: Any) -> Any:
        yield batch.append_column("seen", pa.array([time.time()] * batch.num_rows))


def rays_startup(rows: int) -> dict[str, float]:
    """The same actor pool with a stage that does nothing: from the call to its first batch
    (wall clock: the actors are other processes), and to the end."""
    started_at = time.time()
    started = time.perf_counter()
    results = (
        one_batch_blocks(ray.data.range(rows), 40)  # the same pipeline as ours
        .map_batches(
            Noop,
            batch_size=40,
            batch_format="pyarrow",
            num_cpus=DEFAULT_NUM_CPUS,
            **actor_pool(ACTORS, 4),
        )
        .take_all()
    )
    wall = time.perf_counter() - started
    return {"first_batch": min(row["seen"] for row in results) - started_at, "wall": wall}


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
        with Arrivals(mock, rows) as arrivals:
            started = time.perf_counter()
            results = process(ray.data.range(rows)).take_all()
            ended = time.perf_counter()
        stats = mock.stats
    answered = sum(1 for row in results if row["error"] is None)
    assert arrivals.first is not None
    assert arrivals.last is not None
    return {
        "answered": answered,
        "failed": len(results) - answered,
        "wall": ended - started,
        "stats": stats,
        "first_request": arrivals.first - started,
        "sending": arrivals.last - arrivals.first,
        "last_answers": ended - arrivals.last,
    }


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


def summary(rows: int, mine: dict[str, Any]) -> str:
    """Ours in one paragraph: the wall, split into start-up, sending and the last answers."""
    limit = len(KEYS) * RPM / 60
    ideal = rows / limit
    rate = (rows - 1) / mine["sending"]
    stats = mine["stats"]
    limited = sum(stats.rate_limited_by_type.values())
    return (
        f"openai_multi_client.ray's wall of {mine['wall']:.1f} s ({mine['wall'] / ideal:.3f}x "
        f"the ideal; {limited} 429s of {stats.total_requests:,} attempts): first request "
        f"{mine['first_request']:.2f} s after the call; first to last request "
        f"{mine['sending']:.2f} s ({rate:.2f} requests/s, {rate / limit:.3f}x "
        f"the keys' limits); last answers {mine['last_answers']:.2f} s. First request to the end: "
        f"{mine['sending'] + mine['last_answers']:.1f} s, "
        f"{(mine['sending'] + mine['last_answers']) / ideal:.3f}x the ideal."
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1200)
    parser.add_argument("--record", action="store_true")
    parser.add_argument(
        "--warm",
        action="store_true",
        help="run a no-op pipeline first, as a cluster that has run one before has (Ray's "
        "worker processes already started); its start is reported as Ray's cold start",
    )
    parser.add_argument(
        "--only-ours",
        action="store_true",
        help="run only openai_multi_client.ray's stage and print its figures (quick, for "
        "iterating; cannot be recorded)",
    )
    args = parser.parse_args()
    if args.only_ours and args.record:
        parser.error("--only-ours cannot be recorded")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    try:
        cold = rays_startup(args.rows) if args.warm else None
        mine = ours(args.rows)
        if args.only_ours:
            print(summary(args.rows, mine))
            return
        noop = rays_startup(args.rows)
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
    table += (
        f"\n\n{summary(args.rows, mine)} Ray's own start-up, "
        f"a no-op stage on the same pool ({ACTORS} actors) in the same session: first batch "
        f"{noop['first_batch']:.2f} s after the call, whole pipeline of {args.rows:,} rows "
        f"{noop['wall']:.2f} s."
    )
    if cold is not None:
        table += (
            f" A no-op pipeline ran first (--warm), as on a cluster that has run one before: its "
            f"first batch came {cold['first_batch']:.2f} s after its call (Ray's cold start), "
            f"its {args.rows:,} rows took {cold['wall']:.2f} s."
        )
    publish(
        f"Ray Data: {ACTORS} actors, 2 keys of {RPM} RPM",
        f"{args.rows:,} rows, {ACTORS} actors, batch size 40, concurrency 16 per actor, 4 Ray "
        f"tasks at once per actor (max_concurrent_batches), mock "
        f"latency {LATENCY[0]}-{LATENCY[1]} s, one local Ray cluster (2 CPUs) for both stages.",
        table,
        args.record,
    )


if __name__ == "__main__":
    main()
