"""OpenTelemetry for each attempt, after the GenAI semantic conventions (the ``otel`` extra).

Imported only by :func:`~openai_multi_client._telemetry.instrumentation`, and only when
``opentelemetry-api`` is installed. Spans and metrics go to the global providers (a no-op until
the user configures the SDK). Per attempt: a CLIENT span ``{operation} {model}`` and the
metrics ``gen_ai.client.operation.duration``, ``gen_ai.client.token.usage`` and, for streams,
``gen_ai.client.operation.time_to_first_chunk``, with the conventions' units and buckets.

Never recorded: the key (only its redacted id). Message content (prompts, answers) only when
the user opts in (``_genai_content``), scrubbed of the key like every message.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from opentelemetry import metrics, trace
from opentelemetry.trace import ProxyTracerProvider, SpanKind, Status, StatusCode

from ._api import Outcome
from ._clock import Clock
from ._errors import APIStatusError, RequestError
from ._genai_content import input_attributes, output_messages
from ._limits.key import Key
from ._request import Request

try:
    from importlib.metadata import version

    _VERSION = version("openai-multi-client")
except Exception:  # pragma: no cover - running from a source tree without metadata
    _VERSION = "0"

try:  # the meter provider in place until the user sets one (not a public name)
    from opentelemetry.metrics._internal import _ProxyMeterProvider as _UnsetMeterProvider
except ImportError:  # pragma: no cover - another API version: always treated as configured

    class _UnsetMeterProvider:  # type: ignore[no-redef]
        pass


_SCOPE = "openai_multi_client"

#: Seconds between looks for an SDK configured after the client was made.
RECHECK_SECONDS = 1.0

# The conventions' advisory buckets (gen-ai-metrics.md).
DURATION_BUCKETS = tuple(0.01 * 2**power for power in range(14))  # 0.01, 0.02, ... 81.92
TOKEN_BUCKETS = tuple(float(4**power) for power in range(14))  # 1, 4, 16, ... 67108864

# gen_ai.operation.name by endpoint path (the conventions' well-known values where one fits).
_OPERATIONS: Mapping[str, str] = {
    "chat/completions": "chat",
    "completions": "text_completion",
    "embeddings": "embeddings",
    "responses": "chat",
}

# Request parameters recorded as gen_ai.request.* (numbers only; never content).
_PARAMETERS: Mapping[str, str] = {
    "max_tokens": "gen_ai.request.max_tokens",
    "max_completion_tokens": "gen_ai.request.max_tokens",
    "max_output_tokens": "gen_ai.request.max_tokens",
    "temperature": "gen_ai.request.temperature",
    "top_p": "gen_ai.request.top_p",
    "seed": "gen_ai.request.seed",
    "frequency_penalty": "gen_ai.request.frequency_penalty",
    "presence_penalty": "gen_ai.request.presence_penalty",
}


class _Instruments:
    def __init__(self) -> None:
        meter = metrics.get_meter(_SCOPE, _VERSION)
        self.duration = meter.create_histogram(
            "gen_ai.client.operation.duration",
            unit="s",
            description="GenAI operation duration",
            explicit_bucket_boundaries_advisory=list(DURATION_BUCKETS),
        )
        self.tokens = meter.create_histogram(
            "gen_ai.client.token.usage",
            unit="{token}",
            description="Number of input and output tokens used",
            explicit_bucket_boundaries_advisory=list(TOKEN_BUCKETS),
        )
        self.first_chunk = meter.create_histogram(
            "gen_ai.client.operation.time_to_first_chunk",
            unit="s",
            description="Time to receive the first chunk of a streamed response",
            explicit_bucket_boundaries_advisory=list(DURATION_BUCKETS),
        )


@functools.cache
def _instruments() -> _Instruments:
    """Created once a process (the global meter provider's proxies forward to a later SDK)."""
    return _Instruments()


class OpenTelemetry:
    """The :class:`~openai_multi_client._telemetry.Instrumentation` of OpenTelemetry."""

    def __init__(self, base_url: str | None, clock: Clock, *, capture: bool = False) -> None:
        self._base_url = base_url
        self._clock = clock
        self._capture = capture
        self._tracer = trace.get_tracer(_SCOPE, _VERSION)
        self._instruments = _instruments()
        self._servers: dict[str | None, dict[str, Any]] = {}
        self._configured = False
        self._next_look = -math.inf

    def attempt(self, request: Request, key: Key, now: float) -> _Attempt | None:
        if not self._configured:
            # Nothing would record it: skip the work. Whether an SDK was configured since is
            # looked up at most once a second (each look reads the environment twice).
            if now < self._next_look:
                return None
            self._next_look = now + RECHECK_SECONDS
            if not _sdk_configured():
                return None
            self._configured = True  # a global provider, once set, stays set
        base = key.base_url or self._base_url
        server = self._servers.get(base)
        if server is None:
            server = self._servers[base] = _server(base)
        common = _common(request, key, server)
        attributes = dict(common)
        data = request.data
        for name, attribute in _PARAMETERS.items():
            value = data.get(name)
            if isinstance(value, int | float) and not isinstance(value, bool):
                attributes[attribute] = value
        tier = data.get("service_tier")
        if isinstance(tier, str):
            attributes["openai.request.service_tier"] = tier
        attributes["gen_ai.request.stream"] = request.stream
        attributes["openai_multi_client.attempt"] = request.attempt
        if request.attempt > 1:
            attributes["http.request.resend_count"] = request.attempt - 1
        attributes["openai_multi_client.key.id"] = key.id
        custom_id = request.metadata.get("custom_id")
        if isinstance(custom_id, str):
            attributes["openai_multi_client.custom_id"] = custom_id
        if self._capture:
            for attribute, text in input_attributes(request.path, data).items():
                attributes[attribute] = key.redact(text)
        model = common.get("gen_ai.request.model")
        name = common["gen_ai.operation.name"] if model is None else f"{common[_OP]} {model}"
        span = self._tracer.start_span(name, kind=SpanKind.CLIENT, attributes=attributes)
        capture = key if self._capture else None
        return _Attempt(span, self._instruments, common, request, self._clock, capture)


_OP = "gen_ai.operation.name"


def _sdk_configured() -> bool:
    """Whether the user has set a global tracer or meter provider (an SDK)."""
    return not (
        isinstance(trace.get_tracer_provider(), ProxyTracerProvider)
        and isinstance(metrics.get_meter_provider(), _UnsetMeterProvider)
    )


def _server(base_url: str | None) -> dict[str, Any]:
    if base_url is None:
        return {}
    parts = urlsplit(base_url)
    if not parts.hostname:
        return {}
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return {"server.address": parts.hostname, "server.port": port}


def _common(request: Request, key: Key, server: Mapping[str, Any]) -> dict[str, Any]:
    """The attributes spans and metrics share (low cardinality)."""
    path = request.path.strip("/")
    operation = _OPERATIONS.get(path) or request.endpoint or path or "custom_api"
    attributes: dict[str, Any] = {
        _OP: operation,
        "gen_ai.provider.name": "azure.ai.openai" if key.azure else "openai",
        **server,
    }
    model = request.data.get("model")
    if isinstance(model, str):
        attributes["gen_ai.request.model"] = model
    return attributes


class _Attempt:
    """One attempt's span and metric attributes."""

    __slots__ = ("_capture", "_clock", "_common", "_instruments", "_request", "_span", "_started")

    def __init__(
        self,
        span: trace.Span,
        instruments: _Instruments,
        common: dict[str, Any],
        request: Request,
        clock: Clock,
        capture: Key | None = None,
    ) -> None:
        self._span = span
        self._capture = capture  # the key to scrub content with, when content is recorded
        self._clock = clock
        self._instruments = instruments
        self._common = common
        self._request = request
        self._started = 0.0
        if request.stream:
            request.first_chunk = self.first_chunk
            self._started = clock.now()

    def first_chunk(self) -> None:
        self._request.first_chunk = None
        self._instruments.first_chunk.record(self._clock.now() - self._started, self._common)

    def succeeded(self, outcome: Outcome, latency: float) -> None:
        self._request.first_chunk = None
        span, metric = self._span, dict(self._common)
        response = outcome.response if isinstance(outcome.response, dict) else {}
        model = response.get("model")
        if isinstance(model, str):
            span.set_attribute("gen_ai.response.model", model)
            metric["gen_ai.response.model"] = model
        answer_id = response.get("id")
        if isinstance(answer_id, str):
            span.set_attribute("gen_ai.response.id", answer_id)
        tier = response.get("service_tier")
        if isinstance(tier, str):
            span.set_attribute("openai.response.service_tier", tier)
        reasons = _finish_reasons(response)
        if reasons:
            span.set_attribute("gen_ai.response.finish_reasons", reasons)
        if outcome.status_code is not None:
            span.set_attribute("http.response.status_code", outcome.status_code)
        if self._capture is not None:
            messages = output_messages(response)
            if messages is not None:
                span.set_attribute("gen_ai.output.messages", self._capture.redact(messages))
        instruments = self._instruments
        for kind, count in _usage(response):
            span.set_attribute(f"gen_ai.usage.{kind}_tokens", count)
            instruments.tokens.record(count, {**metric, "gen_ai.token.type": kind})
        instruments.duration.record(latency, metric)
        span.end()

    def failed(self, error: RequestError, latency: float) -> None:
        kind = type(error).__name__
        if isinstance(error, APIStatusError) and error.status_code is not None:
            self._span.set_attribute("http.response.status_code", error.status_code)
        self._fail(kind, str(error), latency)

    def interrupted(self, latency: float) -> None:
        self._fail("cancelled", "the attempt was cancelled", latency)

    def _fail(self, kind: str, description: str, latency: float) -> None:
        self._request.first_chunk = None
        span = self._span
        span.set_attribute("error.type", kind)
        span.set_status(Status(StatusCode.ERROR, description))
        self._instruments.duration.record(latency, {**self._common, "error.type": kind})
        span.end()


def _finish_reasons(response: Mapping[str, Any]) -> list[str]:
    choices = response.get("choices")
    if not isinstance(choices, list):
        return []
    return [
        choice["finish_reason"]
        for choice in choices
        if isinstance(choice, dict) and isinstance(choice.get("finish_reason"), str)
    ]


def _usage(response: Mapping[str, Any]) -> list[tuple[str, int]]:
    """(``input`` / ``output``, count) from a chat, completions, embeddings or responses usage."""
    usage = response.get("usage")
    if not isinstance(usage, dict):
        return []
    found = []
    for kind, names in (("input", ("prompt_tokens", "input_tokens")), ("output", _OUTPUT)):
        for name in names:
            count = usage.get(name)
            if isinstance(count, int) and not isinstance(count, bool) and count >= 0:
                found.append((kind, count))
                break
    return found


_OUTPUT = ("completion_tokens", "output_tokens")
