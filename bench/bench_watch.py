"""What watching a run costs: one Prometheus scrape, and one redraw of omc run's live view, for
a client with N keys (the engine's per-request path is untouched: the collector and the view
read ``statistics()`` only when they are drawn or scraped).

    python bench/bench_watch.py --keys 100 --rounds 200
"""

from __future__ import annotations

import argparse
import io
import time

from prometheus_client import CollectorRegistry, generate_latest

from openai_multi_client import AsyncMultiClient, Key
from openai_multi_client._prices import DEFAULT_PRICES
from openai_multi_client.cli._live import LiveView
from openai_multi_client.cli._progress import RunProgress
from openai_multi_client.metrics import PrometheusCollector
from openai_multi_client.testing import FakeClock


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--keys", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=200)
    args = parser.parse_args()
    keys = [Key(f"sk-bench-{n:06d}-xxxxxxxx", requests_per_minute=600) for n in range(args.keys)]
    client = AsyncMultiClient(api_key=keys, base_url="http://127.0.0.1:9/v1", endpoint="chats")
    registry = CollectorRegistry(auto_describe=False)
    registry.register(PrometheusCollector(client))
    started = time.perf_counter()
    for _ in range(args.rounds):
        size = len(generate_latest(registry))
    scrape = (time.perf_counter() - started) / args.rounds
    clock = FakeClock(0.0)
    progress = RunProgress(total=1000, stream=io.StringIO(), clock=clock, live=True,
                           prices=DEFAULT_PRICES)  # fmt: skip
    view = LiveView(progress, io.StringIO(), clock, force_terminal=True, width=120)
    started = time.perf_counter()
    for _ in range(args.rounds):
        clock.advance(LiveView.MIN_GAP)
        view.update(client.statistics())
    redraw = (time.perf_counter() - started) / args.rounds
    view.close()
    print(f"{args.keys} keys: scrape {scrape * 1e3:.2f} ms ({size:,} bytes), "
          f"live view redraw {redraw * 1e3:.2f} ms")  # fmt: skip


if __name__ == "__main__":
    main()
