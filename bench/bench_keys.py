"""Key-pool benchmark: how close to the ideal a pool of rate-limited keys gets, and how many 429s
it costs, against the mock server (per-key limits enforced as OpenAI does, latency 0.2-0.6 s).

    python bench/bench_keys.py             # the run recorded in docs/benchmarks.md
    python bench/bench_keys.py --quick     # fewer requests
    python bench/bench_keys.py --record    # also append the results to docs/benchmarks.md
    python bench/bench_keys.py --organizations -n 600   # keys sharing organizations' limits

Scenarios, each with a fresh server: 4 keys of 600 requests/min and 60,000 tokens/min with the
limits configured on the client; the same keys with limits learned from the headers; 4 keys of
which one is invalid and one has no quota; and as a baseline the official SDK's AsyncOpenAI
with a semaphore on one key. Ideal time = requests / aggregate requests per second.

``--organizations`` runs instead: 4 keys in 2 organizations (two keys each, the organization's
limits shared by its keys, rejected requests counting), limits learned, against 4 independent
keys; the ideal counts one set of limits per organization.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Sequence
from typing import Any

from _common import publish

from openai_multi_client import AsyncMultiClient, Key
from openai_multi_client.testing import KeyLimits, MockOpenAIServer

RPM, TPM = 600, 60_000
GOOD = ["sk-bench-1", "sk-bench-2", "sk-bench-3", "sk-bench-4"]
INVALID, NO_QUOTA = "sk-bench-invalid", "sk-bench-broke"


def body(n: int) -> dict[str, Any]:
    return {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": f"Classify article {n}: positive or negative?"}],
        "max_tokens": 20,
    }


def server(
    keys: Sequence[str], organizations: Sequence[str | None] = (), **options: Any
) -> MockOpenAIServer:
    """The mock with each key's limits; ``organizations``, when given, puts each key in one
    (keys of one organization share its buckets)."""
    named = list(organizations) or [None] * len(keys)
    limits = {
        key: KeyLimits(RPM, TPM, organization) if organization else KeyLimits(RPM, TPM)
        for key, organization in zip(keys, named, strict=True)
    }
    return MockOpenAIServer(keys=limits, latency=(0.2, 0.6), seed=7, **options)


async def run_omc(
    api_keys: Sequence[str | Key], base_url: str, count: int, concurrency: int
) -> dict[str, Any]:
    started = time.perf_counter()
    failed = 0
    async with AsyncMultiClient(
        concurrency, endpoint="chats", api_key=list(api_keys), base_url=base_url
    ) as client:

        async def produce() -> None:
            for n in range(count):
                await client.request(body(n))
            client.close()

        producer = asyncio.ensure_future(produce())
        async for result in client:
            failed += result.failed
        await producer
        statistics = client.statistics()
    return {
        "wall": time.perf_counter() - started,
        "failed": failed,
        "attempts": statistics.attempts,
        "per_key": {k.key: k.requests for k in statistics.keys.keys},
    }


async def run_sdk(base_url: str, count: int, concurrency: int) -> dict[str, Any]:
    import openai

    client = openai.AsyncOpenAI(api_key=GOOD[0], base_url=base_url)  # its default 2 retries
    semaphore = asyncio.Semaphore(concurrency)
    failed = 0

    async def one(n: int) -> None:
        nonlocal failed
        async with semaphore:
            try:
                await client.chat.completions.create(**body(n))
            except openai.OpenAIError:
                failed += 1

    started = time.perf_counter()
    await asyncio.gather(*(one(n) for n in range(count)))
    wall = time.perf_counter() - started
    await client.close()
    return {"wall": wall, "failed": failed}


def scenario(
    name: str,
    keys: Sequence[str],
    count: int,
    run: Any,
    organizations: Sequence[str | None] = (),
    **server_options: Any,
) -> str:
    with server(keys, organizations, **server_options) as mock:
        result = asyncio.run(run(mock.base_url))
        stats = mock.stats
    good_keys = [key for key in keys if key not in (INVALID, NO_QUOTA)]
    buckets = len(set(organizations)) if organizations else len(good_keys)
    ideal = count / (buckets * RPM / 60)
    too_many = stats.rate_limited_by_type
    limited = sum(too_many.values())
    attempts = stats.total_requests
    print(f"{name}: {result}, server {stats}", file=sys.stderr)
    extra = ""
    if "per_key" in result:
        bad = [
            f"{key}: {stats.requests_by_key.get(key, 0)} requests"
            for key in (INVALID, NO_QUOTA)
            if key in keys
        ]
        extra = "; ".join(bad)
    return (
        f"| {name} | {count:,} | {ideal:.1f} s | {result['wall']:.1f} s "
        f"| {result['wall'] / ideal:.3f}x | {limited} of {attempts} "
        f"({100 * limited / max(1, attempts):.2f} %) | {result['failed']} | {extra} |"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", "--requests", type=int, default=1200)
    parser.add_argument("--baseline-requests", type=int, default=300)
    parser.add_argument("-c", "--concurrency", type=int, default=64)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--record", action="store_true")
    parser.add_argument(
        "--organizations", action="store_true", help="keys sharing organizations' limits"
    )
    args = parser.parse_args()
    if args.organizations:
        return organizations(args.requests, args.concurrency, args.record)
    if args.quick:
        args.requests, args.baseline_requests = 400, 100
    count, concurrency = args.requests, args.concurrency
    configured = [Key(key, requests_per_minute=RPM, tokens_per_minute=TPM) for key in GOOD]
    with_bad = [GOOD[0], INVALID, GOOD[1], NO_QUOTA]
    rows = [
        scenario(
            "omc, 4 keys, limits configured",
            GOOD,
            count,
            lambda url: run_omc(configured, url, count, concurrency),
        ),
        scenario(
            "omc, 4 keys, limits learned from headers",
            GOOD,
            count,
            lambda url: run_omc(GOOD, url, count, concurrency),
        ),
        scenario(
            "omc, 2 good keys + 1 invalid + 1 without quota",
            with_bad,
            count,
            lambda url: run_omc(with_bad, url, count, concurrency),
            invalid_keys={INVALID},
            no_quota_keys={NO_QUOTA},
        ),
        scenario(
            "baseline: openai.AsyncOpenAI + semaphore, 1 key",
            GOOD[:1],
            args.baseline_requests,
            lambda url: run_sdk(url, args.baseline_requests, concurrency),
        ),
    ]
    publish(
        "Key pools",
        f"keys of {RPM} requests/min and {TPM:,} tokens/min, mock latency uniform 0.2-0.6 s, "
        f"concurrency {concurrency}; ideal = requests / (keys x {RPM // 60} per second).",
        "| scenario | requests | ideal | wall | vs ideal | 429s of attempts | failed | bad keys |\n"
        "|---|---|---|---|---|---|---|---|\n" + "\n".join(rows),
        args.record,
    )
    return 0


def organizations(count: int, concurrency: int, record: bool) -> int:
    """4 keys in 2 organizations against 4 independent keys, limits learned."""
    rows = [
        scenario(
            "omc, 4 keys in 2 organizations, limits learned, rejected requests counting",
            GOOD,
            count,
            lambda url: run_omc(GOOD, url, count, concurrency),
            organizations=["org-1", "org-1", "org-2", "org-2"],
            count_rejected=True,
        ),
        scenario(
            "omc, 4 independent keys, limits learned, rejected requests counting",
            GOOD,
            count,
            lambda url: run_omc(GOOD, url, count, concurrency),
            count_rejected=True,
        ),
    ]
    publish(
        "Keys sharing an organization's limits",
        f"keys of {RPM} requests/min and {TPM:,} tokens/min (an organization's shared by its "
        f"keys), mock latency uniform 0.2-0.6 s, concurrency {concurrency}; ideal = requests / "
        f"(organizations, or independent keys, x {RPM // 60} per second).",
        "| scenario | requests | ideal | wall | vs ideal | 429s of attempts | failed | |\n"
        "|---|---|---|---|---|---|---|---|\n" + "\n".join(rows),
        record,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
