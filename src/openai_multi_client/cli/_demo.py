"""``omc demo``: a whole job against the built-in mock server, with no API key.

It starts the mock server on a free local port (with some latency and a few injected faults,
so retries are visible), sends the requests through the synchronous ordered client exactly as
a user script would, and prints progress and a summary.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from .._sync import OpenAIMultiOrderedClient
from ._argtypes import positive_int


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="run a demo job against the built-in mock server (no API key needed)",
        description=__doc__,
    )
    parser.add_argument(
        "-n",
        "--requests",
        type=positive_int,
        default=200,
        metavar="N",
        help="how many chat requests to send (default 200)",
    )
    parser.add_argument(
        "-c",
        "--concurrency",
        type=positive_int,
        default=20,
        help="requests in flight at once (default 20)",
    )
    parser.add_argument(
        "--latency", type=float, default=0.05, help="mock server latency in seconds (default 0.05)"
    )
    parser.add_argument(
        "--fault-rate",
        type=float,
        default=0.05,
        help="share of requests answered with a 5xx or a reset (default 0.05)",
    )
    parser.add_argument("--seed", type=int, default=1, help="seed of the injected faults")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..testing import Faults, MockOpenAIServer

    faults = Faults(rate=args.fault_rate, kinds={"500": 1, "503": 1, "reset": 1})
    with MockOpenAIServer(latency=args.latency, faults=faults, seed=args.seed) as server:
        print(f"mock OpenAI server at {server.base_url}")
        started = time.monotonic()
        api = OpenAIMultiOrderedClient(
            concurrency=args.concurrency,
            endpoint="chats",
            data_template={"model": "gpt-4o-mini"},
            retry_multiplier=0.1,
            retry_max=1,
            api_key="sk-demo-not-a-real-key",
            base_url=server.base_url,
        )

        def make_requests() -> None:
            for num in range(1, args.requests + 1):
                api.request(
                    data={"messages": [{"role": "user", "content": f"What is {num} * {num}?"}]},
                    metadata={"num": num},
                )

        api.run_request_function(make_requests)
        done = failed = retried = tokens = 0
        step = max(1, args.requests // 10)
        for result in api:
            done += 1
            failed += result.failed
            retried += result.attempt > 1
            usage = result.usage or {}
            tokens += int(usage.get("total_tokens", 0))
            if done <= 3 and not result.failed:
                answer = result.response["choices"][0]["message"]["content"]
                print(f"  {result.metadata['num']}: {answer}")
            if done % step == 0 or done == args.requests:
                elapsed = time.monotonic() - started
                print(
                    f"  {done}/{args.requests} done, {failed} failed, "
                    f"{done / elapsed:.0f} requests/s"
                )
        elapsed = time.monotonic() - started
        print(
            f"done: {done - failed} succeeded, {failed} failed, {retried} needed a retry, "
            f"{tokens} tokens, {elapsed:.2f} s ({done / elapsed:.0f} requests/s); "
            f"server saw {server.stats.total_requests} HTTP requests"
        )
    return 1 if failed else 0
