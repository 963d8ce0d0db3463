"""Keys of one organization over HTTP to the mock server: the client finds the organizations
from the responses and paces each one's keys as one, so the shared buckets are not overrun."""

from __future__ import annotations

import asyncio

from openai_multi_client import AsyncMultiClient
from openai_multi_client.testing import KeyLimits, MockOpenAIServer

KEYS = ["sk-org1-a", "sk-org1-b", "sk-org2-a", "sk-org2-b"]


async def test_keys_of_two_organizations_are_paced_per_organization() -> None:
    limits = {
        key: KeyLimits(requests_per_minute=1200, organization=organization)
        for key, organization in zip(KEYS, ["org-1", "org-1", "org-2", "org-2"], strict=True)
    }
    async with MockOpenAIServer(keys=limits, latency=(0.02, 0.05), seed=3) as server:
        async with AsyncMultiClient(
            32, endpoint="chats", api_key=KEYS, base_url=server.base_url
        ) as client:

            async def produce() -> None:
                for n in range(160):
                    body = {
                        "model": "gpt-4o-mini",
                        "messages": [{"role": "user", "content": f"q{n}"}],
                    }
                    await client.request(body)
                client.close()

            producer = asyncio.ensure_future(produce())
            results = [result async for result in client]
            await producer
            keys = client.statistics().keys.keys
        stats = server.stats
    assert len(results) == 160
    assert [result.error for result in results if result.failed] == []
    # Each key paced as if it had its own 20 a second would send twice what each organization
    # allows; with rejected requests counting, 429s would pile up.
    assert stats.rate_limited_by_type.get("requests", 0) <= 0.05 * stats.total_requests
    groups = {key.key: key.group for key in keys}
    assert groups[keys[0].key] == groups[keys[1].key] == "org-1/proj_default"
    assert groups[keys[2].key] == groups[keys[3].key] == "org-2/proj_default"
