"""openai_multi_client.metrics: a client's statistics as Prometheus metrics, read at scrape time."""

from __future__ import annotations

import asyncio
import json
import urllib.request

import pytest

from openai_multi_client import AsyncMultiClient, HTTPRequest, HTTPResponse, Key
from openai_multi_client.testing import FakeClock, MockTransport, error_response, json_response

prometheus_client = pytest.importorskip("prometheus_client")

from openai_multi_client.metrics import MetricsServer, PrometheusCollector  # noqa: E402

SECRETS = ["sk-good-canary-1234567890", "sk-quota-canary-0987654321"]


@pytest.fixture(autouse=True)
def _no_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)


async def handler(request: HTTPRequest) -> HTTPResponse:
    secret = request.headers["Authorization"].removeprefix("Bearer ")
    content = json.loads(request.content)["messages"][0]["content"]
    await asyncio.sleep(0.1)
    if secret == SECRETS[1]:
        return error_response(429, f"no quota for {secret}", code="insufficient_quota")
    if content == "bad":
        return error_response(400, "bad request", type="invalid_request_error")
    body = {
        "model": "gpt-4o-mini-2024-07-18",
        "choices": [],
        "usage": {"prompt_tokens": 5, "completion_tokens": 5, "total_tokens": 10},
    }
    headers = {"x-ratelimit-limit-requests": "600", "x-ratelimit-limit-tokens": "90000"}
    return json_response(200, body, headers)


async def finished_client() -> AsyncMultiClient:
    keys = [Key(SECRETS[0], requests_per_minute=600), Key(SECRETS[1], name="spare", weight=50)]
    client = AsyncMultiClient(
        2, endpoint="chats", api_key=keys, base_url="http://mock.invalid/v1",
        transport=MockTransport(handler),
    )  # fmt: skip

    async def produce() -> None:
        for content in ["a", "bad", "b", "c"]:
            await client.request({"messages": [{"role": "user", "content": content}]})
        client.close()

    async with client:
        producer = asyncio.ensure_future(produce())
        results = [r async for r in client]
        await producer
    assert sum(r.failed for r in results) == 1
    return client


def scrape(collector: PrometheusCollector) -> dict[str, float]:
    registry = prometheus_client.CollectorRegistry(auto_describe=False)
    registry.register(collector)
    text: str = prometheus_client.generate_latest(registry).decode()
    for secret in SECRETS:
        assert secret not in text
        assert secret[:12] not in text
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return samples


async def test_a_scrape_shows_outcomes_retries_and_every_key(fake_clock: FakeClock) -> None:
    client = await finished_client()
    good = client.statistics().keys.keys[0].key
    samples = scrape(PrometheusCollector(client))
    assert samples["omc_requests_submitted_total"] == 4
    assert samples['omc_requests_total{outcome="succeeded"}'] == 3
    assert samples['omc_requests_total{outcome="failed"}'] == 1
    assert samples['omc_request_failures_total{error="BadRequestError"}'] == 1
    assert samples['omc_rate_limited_responses_total{kind="insufficient_quota"}'] == 1
    assert samples["omc_requests_in_flight"] == 0
    assert samples["omc_intake_requests"] == 0
    assert samples['omc_key_state{key="spare",state="retired"}'] == 1
    assert samples['omc_key_state{key="spare",state="active"}'] == 0
    assert samples[f'omc_key_state{{key="{good}",state="active"}}'] == 1
    assert samples[f'omc_key_configured_requests_per_minute{{key="{good}"}}'] == 600
    assert samples[f'omc_key_limit_tokens_per_minute{{key="{good}"}}'] == 90000
    assert samples[f'omc_key_limits_learned{{key="{good}"}}'] == 1
    assert samples[f'omc_key_requests_total{{key="{good}"}}'] == 4
    assert samples['omc_key_rate_limited_responses_total{key="spare"}'] == 0
    assert samples['omc_key_failures_total{key="spare"}'] == 1
    assert 'omc_key_configured_requests_per_minute{key="spare"}' not in samples


async def test_extra_families_and_prefix(fake_clock: FakeClock) -> None:
    client = await finished_client()
    gauge = prometheus_client.core.GaugeMetricFamily("run_things", "Things.", 7)
    samples = scrape(PrometheusCollector(client, prefix="bulk", extra=lambda: [gauge]))
    assert samples["run_things"] == 7
    assert samples["bulk_attempts_total"] == 5  # 4 requests, the retired key's one again


def test_a_bad_prefix_is_refused() -> None:
    from openai_multi_client import ConfigurationError

    with pytest.raises(ConfigurationError, match="prefix"):
        PrometheusCollector(None, prefix="bad-name")  # type: ignore[arg-type]


async def test_the_server_serves_metrics_and_stops(fake_clock: FakeClock) -> None:
    client = await finished_client()
    server = MetricsServer.start(PrometheusCollector(client), 0)
    try:
        url = f"http://127.0.0.1:{server.port}/metrics"
        text = await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=10).read())
    finally:
        server.close()
    assert b'omc_requests_total{outcome="succeeded"} 3.0' in text
    assert b"python_gc" not in text  # only this client's metrics


async def test_tokens_in_and_out_and_cost_per_key(fake_clock: FakeClock) -> None:
    from openai_multi_client._prices import DEFAULT_PRICES, Price

    client = await finished_client()
    stats = client.statistics()
    good = stats.keys.keys[0].key
    usage = stats.usage_by_key[good]
    assert (usage.input_tokens, usage.output_tokens) == (15, 15)  # 3 answers of 5 in, 5 out
    assert "spare" not in stats.usage_by_key  # its one attempt met a 429: no answer, no usage
    samples = scrape(PrometheusCollector(client))
    assert samples[f'omc_key_tokens_total{{direction="input",key="{good}"}}'] == 15
    assert samples[f'omc_key_tokens_total{{direction="output",key="{good}"}}'] == 15
    assert f'omc_key_charged_tokens_total{{key="{good}"}}' in samples  # what its limits counted
    assert not any("estimated_cost" in name for name in samples)  # no prices given
    priced = scrape(PrometheusCollector(client, prices=DEFAULT_PRICES))  # gpt-4o-mini's price
    cost = priced[f'omc_key_estimated_cost_dollars_total{{key="{good}"}}']
    assert cost == pytest.approx((15 * 0.15 + 15 * 0.60) / 1e6)
    unpriced = scrape(PrometheusCollector(client, prices={"o3": Price(2, 8)}))
    assert unpriced[f'omc_key_estimated_cost_dollars_total{{key="{good}"}}'] == 0
