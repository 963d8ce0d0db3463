"""The LiteLLM proxy 1.106.12 in front of our MockOpenAIServer (and with ``mock_response``
models): answers, streams and embeddings pass through; the proxy's renamed headers and its
shapes of OpenAI's errors are understood (issue 16, items 2, 4 and 5)."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from openai_multi_client import (
    AsyncMultiClient,
    InsufficientQuotaError,
    ModelRefusedError,
    NoUsableKeyError,
)
from openai_multi_client.testing import MockOpenAIServer

from .conftest import LiteLLM
from .helpers import batch_line, chat, omc_run, run_all
from .strict_upstream import StrictUpstream

pytestmark = pytest.mark.interop

# Requests sent to the strict upstream (STRICT_RPM: one every 2 s) in the item 5 test.
REQUESTS_TO_STRICT = 6

CALL_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def upstream_count(upstream: MockOpenAIServer, group: str) -> int:
    """Requests the upstream saw from one model group's key."""
    return upstream.stats.requests_by_key.get(f"sk-upstream-{group}", 0)


async def test_chat_streams_and_embeddings_through_the_proxy(litellm: LiteLLM) -> None:
    bodies = [("chats", chat(f"question {n}", "good")) for n in range(20)]
    bodies += [("chats", chat(f"streamed {n}", "good", stream=True)) for n in range(3)]
    bodies += [("embeddings", {"model": "embed", "input": f"text {n}"}) for n in range(3)]
    bodies += [("chats", chat(f"canned {n}", "canned")) for n in range(3)]
    async with AsyncMultiClient(
        api_key=litellm.key, base_url=litellm.base_url, concurrency=10
    ) as client:
        results = await run_all(client, bodies)
    assert [r.error for r in results if r.failed] == []
    for result in results[:20]:
        text = result.response["choices"][0]["message"]["content"]
        assert text.startswith("Mock reply to: question"), text
    for result in results[20:23]:
        assert result.response["choices"][0]["message"]["content"]
        assert result.response["choices"][0]["finish_reason"] == "stop"
    assert all(len(r.response["data"][0]["embedding"]) > 0 for r in results[23:26])
    assert [r.response["choices"][0]["message"]["content"] for r in results[26:]] == [
        "canned answer"
    ] * 3
    # Item 5: without x-request-id, LiteLLM's x-litellm-call-id identifies the request.
    plain = [r.request_id for r in results if not r.data.get("stream")]
    assert all(rid is not None and CALL_ID.match(rid) for rid in plain), plain


async def test_an_exhausted_upstream_quota_retires_the_key_at_once(
    litellm: LiteLLM, upstream: MockOpenAIServer
) -> None:
    """Item 2: LiteLLM forwards insufficient_quota as code "429", type "throttling_error"."""
    before = upstream_count(upstream, "noquota")
    started = time.monotonic()
    async with AsyncMultiClient(
        api_key=litellm.key, base_url=litellm.base_url, concurrency=5, max_retries=10
    ) as client:
        results = await run_all(client, [("chats", chat(f"q {n}", "noquota")) for n in range(20)])
    elapsed = time.monotonic() - started
    quota = [r for r in results if isinstance(r.error, InsufficientQuotaError)]
    assert quota, [r.error for r in results]
    assert all(isinstance(r.error, InsufficientQuotaError | NoUsableKeyError) for r in results)
    # Retired on the first answers: a few requests were in flight, no retries after that.
    assert upstream_count(upstream, "noquota") - before <= 5
    assert elapsed < 10


def test_omc_run_paces_to_the_limit_the_proxy_reports(
    tmp_path: Path, litellm: LiteLLM, upstream: MockOpenAIServer
) -> None:
    """Item 4: ``--rpm 100000`` against a 600 rpm upstream (LiteLLM forwards its
    x-ratelimit-limit-requests): the client paces to 600 and says so once."""
    before = upstream_count(upstream, "paced")
    refused_before = upstream.stats.rate_limited_by_type.get("requests", 0)
    lines = [batch_line(n, "paced") for n in range(100)]
    process, records = omc_run(tmp_path, lines, litellm.base_url, litellm.key, "--rpm", "100000")
    assert process.returncode == 0, process.stderr
    assert len(records) == 100
    assert all(r["response"]["status_code"] == 200 for r in records)
    assert process.stderr.count("pacing to the server's limit") == 1, process.stderr
    refused = upstream.stats.rate_limited_by_type.get("requests", 0) - refused_before
    sent = upstream_count(upstream, "paced") - before
    assert refused <= 15, f"{refused} 429s for 100 requests ({sent} sent)"


def test_omc_run_finishes_the_other_models_when_one_models_upstream_key_is_dead(
    tmp_path: Path, litellm: LiteLLM
) -> None:
    """Item 3: one model group's upstream key is dead (the proxy answers 401 for it) while the
    proxy key answers the others: the rest are done; that model's lines are kept for the next
    run (not recorded, not in the output files) and the summary says so."""
    lines = [batch_line(n, "dead" if n % 4 == 3 else "good") for n in range(200)]
    process, records = omc_run(tmp_path, lines, litellm.base_url, litellm.key)
    assert process.returncode == 1, process.stderr
    assert "fix the keys" not in process.stderr, process.stderr
    assert "50 requests for model 'dead' were not done" in process.stderr, process.stderr
    assert sorted(r["custom_id"] for r in records) == sorted(
        f"req-{n}" for n in range(200) if n % 4 != 3
    )
    assert all(r["response"]["status_code"] == 200 for r in records)
    assert litellm.key not in process.stderr


def test_omc_run_survives_a_dead_model_whose_401_is_the_first_answer(
    tmp_path: Path, litellm: LiteLLM, upstream: MockOpenAIServer
) -> None:
    """Item 3, the race lost on purpose: the first 50 lines use the model whose upstream key is
    dead, so every answer at the start is the proxy's 401 for it (nothing yet shows the proxy
    key works). The 150 others are done in one run; those 50 are kept, named in the summary
    with the upstream's words, and a plain rerun takes exactly them again."""
    lines = [batch_line(n, "dead" if n < 50 else "good") for n in range(200)]
    process, records = omc_run(tmp_path, lines, litellm.base_url, litellm.key)
    assert process.returncode == 1, process.stderr
    assert "fix the keys" not in process.stderr, process.stderr
    refused = "50 requests for model 'dead' were not done: every API key was refused that model"
    assert refused in process.stderr, process.stderr
    assert "Incorrect API key provided" in process.stderr  # the upstream's words, passed on
    assert sorted(r["custom_id"] for r in records) == sorted(f"req-{n}" for n in range(50, 200))
    assert all(r["response"]["status_code"] == 200 for r in records)
    assert litellm.key not in process.stderr
    assert litellm.key not in json.dumps(records)
    good_before = upstream_count(upstream, "good")
    rerun, records = omc_run(tmp_path, lines, litellm.base_url, litellm.key)
    assert rerun.returncode == 1, rerun.stderr
    assert refused in rerun.stderr, rerun.stderr
    assert re.search(r"skipped \(already done\)\s+150\n", rerun.stderr), rerun.stderr
    assert upstream_count(upstream, "good") == good_before  # nothing done is sent again
    assert len(records) == 150


async def test_the_library_keeps_the_proxy_key_when_a_dead_models_401_comes_first(
    litellm: LiteLLM,
) -> None:
    """One line in four uses the dead model, the first line among them; a client that learns
    its limits sends its first request alone, so the proxy key's first answer is that 401."""
    models = ["dead" if n % 4 == 0 else "good" for n in range(40)]
    async with AsyncMultiClient(
        api_key=litellm.key, base_url=litellm.base_url, concurrency=8
    ) as client:
        results = await run_all(
            client, [("chats", chat(f"q {n}", m)) for n, m in enumerate(models)]
        )
        statistics = client.statistics()
    good = [r.error for r, m in zip(results, models, strict=True) if m == "good"]
    dead = [r.error for r, m in zip(results, models, strict=True) if m == "dead"]
    assert good == [None] * 30
    assert all(isinstance(error, ModelRefusedError) for error in dead), dead
    assert "Incorrect API key provided" in str(dead[0])  # the upstream's words, passed on
    assert [key.state for key in statistics.keys.keys] == ["active"]


async def test_the_upstreams_wait_renamed_by_the_proxy_is_obeyed(
    litellm: LiteLLM, strict_upstream: StrictUpstream
) -> None:
    """Item 5: the upstream's 429s carry their wait only in ``retry-after(-ms)``, which LiteLLM
    passes on as ``llm_provider-retry-after(-ms)`` (the message's "retry after N seconds" is
    not OpenAI's phrase). Read, they pace the run: every request is answered, with few 429s.
    Unread, each 429 looks like a bare one: an attempt spent after a short jittered wait, so
    requests fail after ``max_retries`` while the upstream turns away the retries."""
    answered, refused = strict_upstream.answered, strict_upstream.refused
    started = time.monotonic()
    async with AsyncMultiClient(
        api_key=litellm.key,
        base_url=litellm.base_url,
        concurrency=REQUESTS_TO_STRICT,
        max_retries=3,
        retry_multiplier=0.1,
    ) as client:
        bodies = [("chats", chat(f"q {n}", "strict")) for n in range(REQUESTS_TO_STRICT)]
        results = await run_all(client, bodies, deadline=40)
    elapsed = time.monotonic() - started
    refusals = strict_upstream.refused - refused
    assert [r.error for r in results if r.failed] == [], f"{refusals} 429s in {elapsed:.1f} s"
    assert strict_upstream.answered - answered == REQUESTS_TO_STRICT
    assert refusals <= 2 * REQUESTS_TO_STRICT, f"{refusals} 429s for {REQUESTS_TO_STRICT} requests"
