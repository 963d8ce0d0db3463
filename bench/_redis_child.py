"""One worker of bench_redis.py: sends its share of the requests with the shared keys, then
prints one JSON line (completion times, share samples, statistics). Waits for --start-at (a
time.time() value) so that every worker starts together."""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from typing import Any

from openai_multi_client import AsyncMultiClient, Key, RedisLimits

KEYS = ["sk-shared-1", "sk-shared-2"]


def body(n: int) -> dict[str, Any]:
    return {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": f"Item {n}?"}]}


async def main(args: argparse.Namespace) -> dict[str, Any]:
    keys = [Key(key, requests_per_minute=args.rpm) for key in KEYS]
    shared = RedisLimits(args.redis) if args.redis else None
    done: list[float] = []
    shares: list[tuple[float, float]] = []
    failed = 0
    await asyncio.sleep(max(0.0, args.start_at - time.time()))
    async with AsyncMultiClient(
        args.concurrency,
        endpoint="chats",
        api_key=keys,
        base_url=args.url,
        shared_limits=shared,
    ) as client:

        async def produce() -> None:
            for n in range(args.count):
                await client.request(body(n))
            client.close()

        async def sample() -> None:
            while True:
                statistics = client.statistics().keys
                shares.append((time.time(), sum(key.share for key in statistics.keys)))
                await asyncio.sleep(0.1)

        producer = asyncio.ensure_future(produce())
        sampler = asyncio.ensure_future(sample())
        async for result in client:
            failed += result.failed
            done.append(time.time())
        await producer
        sampler.cancel()
        statistics = client.statistics()
    if shared is not None:
        await shared.aclose()
    return {
        "done": done,
        "shares": shares,
        "failed": failed,
        "attempts": statistics.attempts,
        "round_trips": 0
        if statistics.shared_limits is None
        else statistics.shared_limits.round_trips,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--redis", default="")
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--rpm", type=int, required=True)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--start-at", type=float, required=True)
    print(json.dumps(asyncio.run(main(parser.parse_args()))))
