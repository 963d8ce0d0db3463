"""A Ray Data pipeline that sends one chat request per row through openai-multi-client, with two
keys shared by three actors through Redis. Runs on a laptop: the built-in mock server stands in
for the API, and a throwaway redis-server (Debian's package) for your Redis. Needs
``pip install 'openai-multi-client[ray,redis]'``.

    python examples/ray_pipeline.py

With a real API and Redis, drop the mock and pass your keys, ``base_url`` and Redis URL.
Without Redis, leave ``shared_limits`` out: each actor then gets 1/3 of each key's limits.
"""

from __future__ import annotations

from typing import Any

import ray

from openai_multi_client import Key
from openai_multi_client.ray import build_processor
from openai_multi_client.testing import KeyLimits, MockOpenAIServer, RedisServer

KEYS = {"sk-example-team-a-0001": 600, "sk-example-team-b-0002": 600}  # requests per minute


def make_body(row: dict[str, Any]) -> dict[str, Any]:
    question = f"What is {row['id']} * {row['id']}?"
    return {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": question}]}


def keep(row: dict[str, Any]) -> dict[str, Any]:
    if row["error"] is not None:
        return {"id": row["id"], "answer": None, "error": row["error"]}
    answer = row["response"]["choices"][0]["message"]["content"]
    return {"id": row["id"], "answer": answer, "error": None}


def main() -> None:
    limits = {secret: KeyLimits(requests_per_minute=rpm) for secret, rpm in KEYS.items()}
    with MockOpenAIServer(keys=limits, latency=(0.05, 0.2)) as server, RedisServer() as redis:
        ray.init()  # a local cluster here; on a cluster: ray.init("auto"), or RAY_ADDRESS=...
        process = build_processor(
            make_body,
            keep,
            workers=3,  # actors
            batch_size=20,
            endpoint="chats",
            api_key=[Key(secret, requests_per_minute=rpm) for secret, rpm in KEYS.items()],
            base_url=server.base_url,
            concurrency=10,  # requests in flight per actor
            shared_limits=redis.url,
        )
        rows = process(ray.data.range(120)).take_all()
        ray.shutdown()
        failed = [row for row in rows if row["error"] is not None]
        for row in sorted(rows, key=lambda row: row["id"])[:3]:
            print(row["id"], row["answer"])
        print(f"{len(rows)} rows, {len(failed)} failed, {server.stats.total_requests} requests")


if __name__ == "__main__":
    main()
