"""OpenTelemetry spans and metrics of each attempt, against the mock server over HTTP, read
back with the SDK's in-memory span exporter and metric reader, attribute by attribute."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk.metrics.export import HistogramDataPoint
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from openai_multi_client import Key, OpenAIMultiOrderedClient
from openai_multi_client._otel import DURATION_BUCKETS, TOKEN_BUCKETS
from openai_multi_client.testing import Faults, MockOpenAIServer

from . import otel_sdk

_EXPORTER = otel_sdk.EXPORTER
_READER = otel_sdk.READER


@pytest.fixture(scope="module", autouse=True)
def _providers() -> None:
    otel_sdk.install()


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    _EXPORTER.clear()
    yield _EXPORTER
    _EXPORTER.clear()


def points(name: str, model: str) -> list[HistogramDataPoint]:
    """The data points of histogram ``name`` for requests to ``model`` (each test its own)."""
    data = _READER.get_metrics_data()
    found: list[HistogramDataPoint] = []
    assert data is not None
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                if metric.name != name:
                    continue
                for point in metric.data.data_points:
                    assert isinstance(point, HistogramDataPoint)
                    if point.attributes and point.attributes.get("gen_ai.request.model") == model:
                        found.append(point)
    return found


def attrs(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


def metric_unit(name: str) -> str | None:
    data = _READER.get_metrics_data()
    assert data is not None
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                if metric.name == name:
                    return metric.unit
    return None


def run(server: MockOpenAIServer, bodies: list[dict[str, Any]], **options: Any) -> list[Any]:
    options.setdefault("api_key", "sk-telemetry-secret-0001")
    options.setdefault("endpoint", "chats")
    api = OpenAIMultiOrderedClient(base_url=server.base_url, **options)
    for n, body in enumerate(bodies):
        api.request(body, metadata={"custom_id": f"line-{n}"})
    api.close()
    return list(api)


def test_a_chat_attempt_is_one_client_span_with_the_genai_attributes(
    mock_openai: MockOpenAIServer, spans: InMemorySpanExporter
) -> None:
    body = {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": "a private prompt"}],
        "max_tokens": 20,
        "temperature": 0.5,
        "service_tier": "default",
    }
    [result] = run(mock_openai, [body])
    assert not result.failed
    [span] = spans.get_finished_spans()
    assert span.name == "chat gpt-4o-mini"
    assert span.kind is SpanKind.CLIENT
    assert span.status.status_code is StatusCode.UNSET
    attributes = dict(span.attributes or {})
    usage = result.response["usage"]
    port = int(mock_openai.base_url.split(":")[2].split("/")[0])
    assert attributes == {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "gpt-4o-mini",
        "gen_ai.request.max_tokens": 20,
        "gen_ai.request.temperature": 0.5,
        "gen_ai.request.stream": False,
        "openai.request.service_tier": "default",
        "server.address": "127.0.0.1",
        "server.port": port,
        "openai_multi_client.attempt": 1,
        "openai_multi_client.key.id": result.key,
        "openai_multi_client.custom_id": "line-0",
        "gen_ai.response.model": result.response["model"],
        "gen_ai.response.id": result.response["id"],
        "gen_ai.response.finish_reasons": ("stop",),
        "gen_ai.usage.input_tokens": usage["prompt_tokens"],
        "gen_ai.usage.output_tokens": usage["completion_tokens"],
        "http.response.status_code": 200,
        **(
            {"openai.response.service_tier": result.response["service_tier"]}
            if "service_tier" in result.response
            else {}
        ),
    }
    assert result.key.startswith("key-")
    assert "private prompt" not in repr(attributes)


def test_duration_and_token_usage_follow_the_conventions(
    mock_openai: MockOpenAIServer, spans: InMemorySpanExporter
) -> None:
    model = "gpt-4o-metrics"
    bodies = [{"model": model, "messages": [{"role": "user", "content": "hi"}]}] * 3
    results = run(mock_openai, bodies)
    assert [r.failed for r in results] == [False] * 3
    assert metric_unit("gen_ai.client.operation.duration") == "s"
    assert metric_unit("gen_ai.client.token.usage") == "{token}"
    [duration] = points("gen_ai.client.operation.duration", model)
    assert duration.count == 3
    assert tuple(duration.explicit_bounds) == DURATION_BUCKETS
    assert duration.sum == pytest.approx(sum(r.latency for r in results))
    assert dict(duration.attributes or {}) == {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": model,
        "gen_ai.response.model": results[0].response["model"],
        "server.address": "127.0.0.1",
        "server.port": int(mock_openai.base_url.split(":")[2].split("/")[0]),
    }
    tokens = {
        (point.attributes or {})["gen_ai.token.type"]: point
        for point in points("gen_ai.client.token.usage", model)
    }
    assert set(tokens) == {"input", "output"}
    assert tokens["input"].sum == sum(r.usage["prompt_tokens"] for r in results)
    assert tokens["output"].sum == sum(r.usage["completion_tokens"] for r in results)
    assert tokens["input"].count == 3
    assert tuple(tokens["input"].explicit_bounds) == TOKEN_BUCKETS


def test_a_retried_request_has_a_failed_span_per_attempt(
    mock_openai_factory: Any, spans: InMemorySpanExporter
) -> None:
    server = mock_openai_factory(faults=Faults(rate=1.0, kinds={"500"}))
    model = "gpt-4o-failing"
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
    [result] = run(server, [body], max_retries=3, retry_multiplier=0.001, retry_max=0.001)
    assert result.failed
    finished: list[ReadableSpan] = sorted(
        spans.get_finished_spans(), key=lambda s: int(attrs(s)["openai_multi_client.attempt"])
    )
    assert [attrs(s)["openai_multi_client.attempt"] for s in finished] == [1, 2, 3]
    assert [attrs(s).get("http.request.resend_count") for s in finished] == [None, 1, 2]
    for span in finished:
        assert span.status.status_code is StatusCode.ERROR
        assert attrs(span)["error.type"] == "InternalServerError"
        assert attrs(span)["http.response.status_code"] == 500
        assert "gen_ai.response.id" not in attrs(span)
    [duration] = points("gen_ai.client.operation.duration", model)
    assert duration.count == 3
    assert (duration.attributes or {})["error.type"] == "InternalServerError"
    assert points("gen_ai.client.token.usage", model) == []


def test_a_stream_records_time_to_first_chunk(
    mock_openai: MockOpenAIServer, spans: InMemorySpanExporter
) -> None:
    model = "gpt-4o-streaming"
    body = {"model": model, "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    [result] = run(mock_openai, [body, body][:1])
    assert not result.failed
    [span] = spans.get_finished_spans()
    assert attrs(span)["gen_ai.request.stream"] is True
    assert attrs(span)["gen_ai.usage.output_tokens"] == result.usage["completion_tokens"]
    [first] = points("gen_ai.client.operation.time_to_first_chunk", model)
    assert first.count == 1
    assert 0 <= first.sum <= result.latency
    assert metric_unit("gen_ai.client.operation.time_to_first_chunk") == "s"


def test_embeddings_and_azure_keys(
    mock_openai: MockOpenAIServer, spans: InMemorySpanExporter
) -> None:
    body = {"model": "text-embedding-3-small", "input": ["a"]}
    [result] = run(mock_openai, [body], endpoint="embeddings")
    assert not result.failed
    [span] = spans.get_finished_spans()
    assert span.name == "embeddings text-embedding-3-small"
    assert attrs(span)["gen_ai.operation.name"] == "embeddings"
    assert attrs(span)["gen_ai.usage.input_tokens"] == result.usage["prompt_tokens"]
    assert "gen_ai.usage.output_tokens" not in attrs(span)
    spans.clear()
    key = Key("sk-azure-secret-0002", azure=True, base_url=mock_openai.base_url)
    [result] = run(mock_openai, [{"model": "gpt-4o-mini", "messages": []}], api_key=[key])
    [span] = spans.get_finished_spans()
    assert attrs(span)["gen_ai.provider.name"] == "azure.ai.openai"


def test_telemetry_false_sends_nothing(
    mock_openai: MockOpenAIServer, spans: InMemorySpanExporter
) -> None:
    model = "gpt-4o-silent"
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
    [result] = run(mock_openai, [body], telemetry=False)
    assert not result.failed
    assert spans.get_finished_spans() == ()
    assert points("gen_ai.client.operation.duration", model) == []


CONTENT = [
    {"role": "system", "content": "be brief"},
    {"role": "user", "content": [{"type": "text", "text": "a private prompt"},
                                 {"type": "image_url", "image_url": {"url": "data:x"}}]},
]  # fmt: skip


@pytest.mark.parametrize(
    ("environment", "option", "captured"),
    [(None, None, False), ("true", None, True), ("TRUE", False, False), ("false", True, True),
     ("1", None, False)],
)  # fmt: skip
def test_message_content_only_when_the_user_opts_in(
    mock_openai: MockOpenAIServer,
    spans: InMemorySpanExporter,
    monkeypatch: pytest.MonkeyPatch,
    environment: str | None,
    option: bool | None,
    captured: bool,
) -> None:
    variable = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"
    if environment is None:
        monkeypatch.delenv(variable, raising=False)
    else:
        monkeypatch.setenv(variable, environment)
    body = {"model": "gpt-4o-mini", "messages": CONTENT}
    [result] = run(mock_openai, [body], capture_message_content=option)
    [span] = spans.get_finished_spans()
    attributes = attrs(span)
    if not captured:
        assert "private prompt" not in span.to_json()
        assert "gen_ai.input.messages" not in attributes
        assert "gen_ai.output.messages" not in attributes
        return
    assert json.loads(attributes["gen_ai.input.messages"]) == [
        {"role": "system", "parts": [{"type": "text", "content": "be brief"}]},
        {"role": "user", "parts": [{"type": "text", "content": "a private prompt"},
                                   {"type": "image_url"}]},
    ]  # fmt: skip
    [choice] = result.response["choices"]
    assert json.loads(attributes["gen_ai.output.messages"]) == [
        {
            "role": "assistant",
            "parts": [{"type": "text", "content": choice["message"]["content"]}],
            "finish_reason": "stop",
        }
    ]
    assert "sk-telemetry-secret-0001" not in span.to_json()


def test_captured_content_of_completions_and_responses(
    mock_openai: MockOpenAIServer, spans: InMemorySpanExporter
) -> None:
    body = {"model": "gpt-4o-mini", "prompt": "complete me"}
    [result] = run(mock_openai, [body], endpoint="completions", capture_message_content=True)
    [span] = spans.get_finished_spans()
    assert json.loads(attrs(span)["gen_ai.input.messages"]) == [
        {"role": "user", "parts": [{"type": "text", "content": "complete me"}]}
    ]
    [output] = json.loads(attrs(span)["gen_ai.output.messages"])
    assert output["parts"] == [{"type": "text", "content": result.response["choices"][0]["text"]}]
    spans.clear()
    body = {"model": "gpt-4o-mini", "input": "respond", "instructions": "be kind"}
    [result] = run(mock_openai, [body], endpoint="responses", capture_message_content=True)
    [span] = spans.get_finished_spans()
    assert json.loads(attrs(span)["gen_ai.system_instructions"]) == [
        {"type": "text", "content": "be kind"}
    ]
    assert json.loads(attrs(span)["gen_ai.input.messages"]) == [
        {"role": "user", "parts": [{"type": "text", "content": "respond"}]}
    ]
    [output] = json.loads(attrs(span)["gen_ai.output.messages"])
    assert output["role"] == "assistant"
    assert output["parts"][0]["type"] == "text"
    assert output["finish_reason"] == "stop"
    spans.clear()
    run(mock_openai, [{"model": "text-embedding-3-small", "input": ["a"]}],
        endpoint="embeddings", capture_message_content=True)  # fmt: skip
    [span] = spans.get_finished_spans()
    assert "gen_ai.input.messages" not in attrs(span)  # the conventions capture no embeddings
