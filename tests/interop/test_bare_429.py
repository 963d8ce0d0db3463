"""Issue 16, item 1, against fakellm 0.3.5: a 429 with no hint and no rate-limit headers.
Fails until the restructured retry decision lands (see the interop branch's report)."""

from __future__ import annotations

import time

import pytest

from openai_multi_client import AsyncMultiClient, RateLimitError

from .helpers import chat, run_all
from .servers import ServerProcess
from .test_fakellm import rule_counts

pytestmark = pytest.mark.interop


async def test_a_bare_429_counts_as_an_attempt_and_lets_others_run(
    fakellm: ServerProcess,
) -> None:
    """Item 1: 5 requests answered a bare 429, concurrency 50, max_retries=3: each fails after
    at most 3 attempts, and the 20 requests that would succeed are not held up behind them."""
    before = rule_counts(fakellm).get("rate_limit_rule", 0)
    bodies = [("chats", chat(f"rate-limit me {n}")) for n in range(5)]
    bodies += [("chats", chat(f"echo {n}")) for n in range(20)]
    started = time.monotonic()
    async with AsyncMultiClient(
        api_key="sk-interop-fakellm",
        base_url=fakellm.url + "/v1",
        concurrency=50,
        max_retries=3,
        retry_multiplier=0.1,
    ) as client:
        results = await run_all(client, bodies, deadline=30)
    elapsed = time.monotonic() - started
    limited, echoed = results[:5], results[5:]
    assert all(isinstance(r.error, RateLimitError) for r in limited), limited
    assert [r.attempt for r in limited] == [3] * 5
    assert rule_counts(fakellm)["rate_limit_rule"] - before == 15
    assert [r.error for r in echoed if r.failed] == []
    assert elapsed < 15, f"{elapsed:.1f} s for 25 requests"
