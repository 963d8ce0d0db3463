"""One measured run of one contender (run by bench_engine.py in a fresh process).

Prints a JSON line: requests, failed, wall seconds, CPU seconds of this process for the timed
part, and peak RSS in MB.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

BODY: dict[str, Any] = {
    "model": "gpt-4o-mini",
    "messages": [{"role": "user", "content": "What is 2 * 2?"}],
    "max_tokens": 8,
}
KEY = "sk-bench-0000"
WARMUP = 300


def body(n: int) -> dict[str, Any]:
    return {**BODY, "messages": [{"role": "user", "content": f"What is {n} * {n}?"}]}


async def bare_aiohttp(url: str, count: int, concurrency: int) -> int:
    """The floor: aiohttp and `concurrency` worker tasks, JSON in and out, nothing else."""
    import aiohttp

    endpoint = url + "/chat/completions"
    headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
    failed = 0
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:

        async def worker(numbers: Iterator[int]) -> None:
            nonlocal failed
            for n in numbers:
                async with session.post(
                    endpoint, data=json.dumps(body(n)).encode(), headers=headers
                ) as response:
                    payload = json.loads(await response.read())
                    failed += response.status != 200 or "choices" not in payload

        await run_workers(worker, 0, WARMUP, concurrency)
        measure.start()
        await run_workers(worker, WARMUP, WARMUP + count, concurrency)
    return failed


async def run_workers(
    worker: Callable[[Iterator[int]], Awaitable[None]], start: int, stop: int, concurrency: int
) -> None:
    """`concurrency` tasks sharing one iterator of request numbers: the leanest fan-out."""
    numbers = iter(range(start, stop))
    await asyncio.gather(*(worker(numbers) for _ in range(concurrency)))


async def openai_sdk(url: str, count: int, concurrency: int) -> int:
    """The official SDK's AsyncOpenAI, `concurrency` workers (a semaphore's equivalent; its own
    retries off)."""
    import openai

    client = openai.AsyncOpenAI(api_key=KEY, base_url=url, max_retries=0)
    failed = 0

    async def worker(numbers: Iterator[int]) -> None:
        nonlocal failed
        for n in numbers:
            try:
                completion = await client.chat.completions.create(**body(n))
                failed += not completion.choices
            except openai.OpenAIError:
                failed += 1

    await run_workers(worker, 0, WARMUP, concurrency)
    measure.start()
    await run_workers(worker, WARMUP, WARMUP + count, concurrency)
    await client.close()
    return failed


async def omc_async(url: str, count: int, concurrency: int) -> int:
    """Ours: AsyncMultiClient, unordered."""
    from openai_multi_client import AsyncMultiClient

    failed = 0
    async with AsyncMultiClient(concurrency, endpoint="chats", api_key=KEY, base_url=url) as client:

        async def produce() -> None:
            for n in range(WARMUP + count):
                await client.request(body(n))
            client.close()

        producer = asyncio.ensure_future(produce())
        seen = 0
        async for result in client:
            seen += 1
            failed += result.failed
            if seen == WARMUP:
                measure.start()
        await producer
    return failed


def omc_sync(url: str, count: int, concurrency: int, ordered: bool) -> int:
    """Ours: the seed's synchronous client fed by run_request_function."""
    from openai_multi_client import OpenAIMultiClient, OpenAIMultiOrderedClient

    cls = OpenAIMultiOrderedClient if ordered else OpenAIMultiClient
    api = cls(concurrency, endpoint="chats", api_key=KEY, base_url=url)

    def make_requests() -> None:
        for n in range(WARMUP + count):
            api.request(body(n))

    api.run_request_function(make_requests)
    failed = 0
    for seen, result in enumerate(api, start=1):
        failed += result.failed
        if seen == WARMUP:
            measure.start()
    return failed


class Measure:
    def __init__(self) -> None:
        self.wall = self.cpu = 0.0

    def start(self) -> None:
        self.wall = time.perf_counter()
        self.cpu = time.process_time()


measure = Measure()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "contender",
        choices=["bare-aiohttp", "openai-sdk", "omc-async", "omc-sync", "omc-sync-ordered"],
    )
    parser.add_argument("--url", required=True)
    parser.add_argument("-n", "--requests", type=int, default=20_000)
    parser.add_argument("-c", "--concurrency", type=int, default=100)
    parser.add_argument("--uvloop", action="store_true", help="every event loop is uvloop's")
    args = parser.parse_args()
    if args.uvloop:
        import uvloop  # type: ignore[import-not-found,unused-ignore]

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    if args.contender == "bare-aiohttp":
        failed = asyncio.run(bare_aiohttp(args.url, args.requests, args.concurrency))
    elif args.contender == "openai-sdk":
        failed = asyncio.run(openai_sdk(args.url, args.requests, args.concurrency))
    elif args.contender == "omc-async":
        failed = asyncio.run(omc_async(args.url, args.requests, args.concurrency))
    else:
        ordered = args.contender == "omc-sync-ordered"
        failed = omc_sync(args.url, args.requests, args.concurrency, ordered)
    wall = time.perf_counter() - measure.wall
    cpu = time.process_time() - measure.cpu
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        json.dumps(
            {
                "requests": args.requests,
                "failed": failed,
                "wall": wall,
                "cpu": cpu,
                "rss_mb": rss_mb,
            }
        )
    )


if __name__ == "__main__":
    main()
