"""A mock OpenAI API server on 127.0.0.1, for tests, benchmarks and demonstrations.

No real API is needed to exercise a client end to end: :class:`MockOpenAIServer` speaks the
OpenAI REST API over real HTTP (aiohttp.web) and imitates the parts that matter to a bulk client:

* the endpoints ``/v1/chat/completions``, ``/v1/completions``, ``/v1/embeddings``,
  ``/v1/moderations``, ``/v1/responses``, ``/v1/images/generations``, ``GET /v1/models`` and
  ``GET /v1/models/{model}``, plus Azure's ``/openai/...`` and
  ``/openai/deployments/{deployment}/...`` forms, with response bodies shaped like OpenAI's and
  deterministic content: tool calls when ``tool_choice`` requires one, JSON conforming to a
  ``response_format`` / ``text.format`` schema, logprobs when asked for (see ``features``);
* authentication (``Authorization: Bearer KEY`` or Azure's ``api-key``), invalid keys (401) and
  keys without quota (429 ``insufficient_quota``);
* per-key rate limits enforced the way OpenAI enforces them (requests and tokens per minute,
  about one second of burst, failed requests counted too), the six ``x-ratelimit-*`` headers and
  ``retry-after-ms`` / ``retry-after`` on 429s;
* latency and a seeded plan of faults (5xx, connection resets, hangs, truncated bodies);
* accounting that tests read: status counts, and how often each distinct request body was
  answered (to prove that a client never pays twice for the same request).

It runs either in the current event loop (``await server.start()`` / ``async with server``) or in
a daemon thread with its own loop (``server.start_in_thread()`` / ``with server``).

Request flow, in order: route, authentication, body validation (400), rate limits (429),
latency, fault plan, answer. Latency and faults apply only to requests that reach the answer
stage; error responses are immediate.
"""

from __future__ import annotations

import array
import asyncio
import base64
import contextlib
import hashlib
import itertools
import json
import logging
import math
import os
import random
import socket
import struct
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Final, NamedTuple

from aiohttp import web

from ... import _json
from . import features as answers
from .chat_stream import completion_events
from .errors import BadRequest as _BadRequest
from .errors import invalid_type as _invalid_type
from .responses_stream import response_events
from .sse import split

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_HANG_SECONDS",
    "FAULT_KINDS",
    "Faults",
    "KeyLimits",
    "MockOpenAIServer",
    "ServerStats",
    "TokenBucket",
    "canonical_hash",
    "format_go_duration",
]

#: How long a ``hang`` or ``stream_stall`` fault lasts by default: far less than the 600 s
#: default timeout of this library's client and of the official SDK, so a hang costs seconds.
DEFAULT_HANG_SECONDS: Final = 5.0
#: The kinds of fault :class:`Faults` can inject.
FAULT_KINDS: Final[tuple[str, ...]] = (
    "500",
    "502",
    "503",
    "reset",
    "hang",
    "malformed",
    "stream_cut",
    "stream_stall",
    "stream_error",
)
# The kinds a plain Faults() injects; the mid-answer kinds are asked for by name.
_DEFAULT_FAULT_KINDS: Final = FAULT_KINDS[:6]
# Kinds that send part of the answer, so they are injected while answering.
_ANSWER_FAULTS: Final = frozenset({"malformed", "stream_cut", "stream_stall", "stream_error"})

_JSON: Final = "application/json"
_ORGANIZATION: Final = "org-mock"
_RATE_LIMIT_DOCS: Final = "Visit https://platform.openai.com/account/rate-limits to learn more."
# What an unlimited key reports in its x-ratelimit-* headers.
_UNLIMITED_REQUESTS: Final = 1_000_000_000
_UNLIMITED_TOKENS: Final = 1_000_000_000_000
# Output tokens a request reserves when it names no maximum (OpenAI's completions default).
_DEFAULT_MAX_TOKENS: Final = 16
# How many characters of the user's message a mock reply quotes.
_QUOTE_CHARS: Final = 200
_MAX_EMBEDDING_DIMENSIONS: Final = 8192
# The size of each OpenAI embedding model's vectors; other models get the most common size.
_EMBEDDING_SIZES: Final = {
    "text-embedding-3-small": 1536,
    "text-embedding-3-large": 3072,
    "text-embedding-ada-002": 1536,
}
_DEFAULT_EMBEDDING_SIZE: Final = 1536
# A valid 1x1 PNG, the mock's only image.
_PNG_B64: Final = (
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6"
    "kgAAAABJRU5ErkJggg=="
)
_PNG: Final = base64.b64decode(_PNG_B64)
_MODELS: Final = (
    "gpt-4o",
    "gpt-4o-mini",
    "gpt-4.1-mini",
    "gpt-3.5-turbo-instruct",
    "text-embedding-3-small",
    "text-embedding-3-large",
    "text-embedding-ada-002",
    "omni-moderation-latest",
    "dall-e-3",
    "gpt-image-1",
)
_MODERATION_CATEGORIES: Final = (
    "harassment",
    "harassment/threatening",
    "hate",
    "hate/threatening",
    "illicit",
    "illicit/violent",
    "self-harm",
    "self-harm/instructions",
    "self-harm/intent",
    "sexual",
    "sexual/minors",
    "violence",
    "violence/graphic",
)
# Shared, never mutated: they are serialised straight away.
_MODERATION_FLAGS: Final = dict.fromkeys(_MODERATION_CATEGORIES, False)
_MODERATION_SCORES: Final = dict.fromkeys(_MODERATION_CATEGORIES, 1e-06)
_MODERATION_INPUT_TYPES: Final = {name: ["text"] for name in _MODERATION_CATEGORIES}


# --------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class KeyLimits:
    """Per-minute limits of one API key; ``None`` means unlimited."""

    requests_per_minute: int | None = None
    tokens_per_minute: int | None = None

    def __post_init__(self) -> None:
        for name in ("requests_per_minute", "tokens_per_minute"):
            value = getattr(self, name)
            if value is None:
                continue
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(
                    f"KeyLimits.{name} must be a positive integer or None, not {value!r}"
                )


def _default_fault_weights() -> dict[str, float]:
    return dict.fromkeys(_DEFAULT_FAULT_KINDS, 1.0)


@dataclass(frozen=True)
class Faults:
    """A seeded plan of faults.

    ``rate`` is the probability that a request (one that got past authentication, validation and
    rate limits) meets a fault; ``kinds`` gives the relative weights of the kinds of fault
    (see :data:`FAULT_KINDS`; kinds left out weigh 0; default: the first six, equally); a
    collection of kinds (``{"500", "reset"}``) weighs them equally:

    * ``"500"``, ``"502"``, ``"503"``: that status (500 and 503 with OpenAI's JSON error body,
      502 with an HTML page, as a proxy in front of the API sends);
    * ``"reset"``: the TCP connection is aborted (RST) without a response;
    * ``"hang"``: no answer for ``hang_seconds`` (or until the server stops), then the
      connection is aborted; a client waits ``min(hang_seconds, its timeout)`` for it (default
      :data:`DEFAULT_HANG_SECONDS`, 5 s, well under the usual 600 s default timeouts, so a test
      with faults does not stall; raise it above your timeout to exercise timeouts);
    * ``"malformed"``: HTTP 200 with a truncated JSON body (a stream: one truncated event
      midway, the rest as usual);
    * ``"stream_cut"``: HTTP 200 and half the answer's bytes (a stream: half its events, cut
      mid-event), then the connection is aborted;
    * ``"stream_stall"``: the same half, then nothing for ``hang_seconds`` (or until the server
      stops), then the connection is aborted;
    * ``"stream_error"``: a stream sends half its events, then an error event
      (``data: {"error": {... "server_error"}}``) and ends; a plain request gets a 500.
    """

    rate: float = 0.0
    kinds: Mapping[str, float] | Iterable[str] = field(
        default_factory=_default_fault_weights, hash=False
    )
    hang_seconds: float = DEFAULT_HANG_SECONDS

    def __post_init__(self) -> None:
        if not _is_real(self.rate) or not 0.0 <= self.rate <= 1.0:
            raise ValueError(f"Faults.rate must be a probability in [0, 1], not {self.rate!r}")
        kinds = self.kinds
        if isinstance(kinds, str) or not isinstance(kinds, Iterable):
            raise ValueError(
                "Faults.kinds must be a mapping of kind to weight or a collection of kinds, "
                f"not {kinds!r}"
            )
        if not isinstance(kinds, Mapping):
            kinds = dict.fromkeys(sorted(kinds, key=str), 1.0)  # sorted: sets are unordered
        weights: dict[str, float] = {}
        for kind, weight in kinds.items():
            if kind not in FAULT_KINDS:
                raise ValueError(
                    f"Faults.kinds: unknown fault kind {kind!r}; expected some of {FAULT_KINDS}"
                )
            if not _is_real(weight) or weight < 0 or math.isinf(weight):
                raise ValueError(
                    f"Faults.kinds[{kind!r}] must be a finite weight >= 0, not {weight!r}"
                )
            weights[kind] = float(weight)
        if sum(weights.values()) <= 0:
            raise ValueError("Faults.kinds needs at least one kind with a positive weight")
        if not _is_real(self.hang_seconds) or not 0 < self.hang_seconds < math.inf:
            raise ValueError(
                "Faults.hang_seconds must be a positive number of seconds, "
                f"not {self.hang_seconds!r}"
            )
        object.__setattr__(self, "kinds", weights)

    @property
    def weights(self) -> dict[str, float]:
        """The kinds and their weights as validated (a collection of kinds: 1.0 each)."""
        assert isinstance(self.kinds, dict)  # __post_init__ made it so
        return dict(self.kinds)


def _is_real(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and not math.isnan(value)


@dataclass
class ServerStats:
    """What the server has seen since it was created or since :meth:`~MockOpenAIServer.reset_stats`.

    ``total_requests`` counts every request on arrival (image downloads excepted);
    ``status_counts`` the status codes sent (a connection reset or a hang sends none);
    ``requests_by_key`` requests per API key as presented (``""`` when none);
    ``requests_by_endpoint`` requests per endpoint (``"chat.completions"``, ``"embeddings"``,
    ..., ``"models"``, ``"unknown"``); ``faults_by_kind`` injected faults; ``rate_limited_by_type``
    429 ``rate_limit_exceeded`` responses per type (``"requests"`` or ``"tokens"``);
    ``answered`` complete 200 answers sent (see ``MockOpenAIServer.answer_counts``).
    """

    total_requests: int = 0
    answered: int = 0
    status_counts: dict[int, int] = field(default_factory=dict)
    requests_by_key: dict[str, int] = field(default_factory=dict)
    requests_by_endpoint: dict[str, int] = field(default_factory=dict)
    faults_by_kind: dict[str, int] = field(default_factory=dict)
    rate_limited_by_type: dict[str, int] = field(default_factory=dict)

    def copy(self) -> ServerStats:
        """An independent snapshot."""
        return ServerStats(
            total_requests=self.total_requests,
            answered=self.answered,
            status_counts=dict(self.status_counts),
            requests_by_key=dict(self.requests_by_key),
            requests_by_endpoint=dict(self.requests_by_endpoint),
            faults_by_kind=dict(self.faults_by_kind),
            rate_limited_by_type=dict(self.rate_limited_by_type),
        )


# --------------------------------------------------------------------------------------------
# Rate limiting
# --------------------------------------------------------------------------------------------


class TokenBucket:
    """One per-minute limit (requests or tokens) of one key, enforced as OpenAI does.

    Algorithm: a token bucket that refills continuously at ``limit / 60`` per second and holds
    ``max(1, limit / 60)``, i.e. about one second of burst. A request is admitted when the
    bucket holds its cost, or is full when the cost exceeds the capacity (the bucket then goes
    into debt, so large requests still pass at the average rate). Rejected requests are charged
    too: they use up what has refilled since, but never push the bucket below empty, so a
    client that hammers a key loses partial refills, yet a herd of retries that all obey
    ``retry-after`` still gets the full rate.

    Beside it runs a per-minute view (capacity ``limit``, same refill, same charges) from which
    ``remaining`` and the time until full (``reset_after``) are reported, as in OpenAI's
    ``x-ratelimit-remaining-*`` and ``x-ratelimit-reset-*`` headers.

    Time is passed in (``now``, monotonic seconds), so the bucket is exact under a fake clock.
    """

    __slots__ = ("_level", "_minute", "_updated", "capacity", "limit", "limit_text", "rate")

    def __init__(self, limit_per_minute: int, now: float) -> None:
        if limit_per_minute < 1:
            raise ValueError(f"limit_per_minute must be >= 1, not {limit_per_minute!r}")
        self.limit = limit_per_minute
        self.limit_text = str(limit_per_minute)
        self.rate = limit_per_minute / 60.0
        self.capacity = max(1.0, self.rate)
        self._level = self.capacity
        self._minute = float(limit_per_minute)
        self._updated = now

    def _refill(self, now: float) -> None:
        elapsed = now - self._updated
        if elapsed > 0:
            gained = elapsed * self.rate
            self._level = min(self.capacity, self._level + gained)
            self._minute = min(float(self.limit), self._minute + gained)
            self._updated = now

    def wait_time(self, cost: float, now: float) -> float:
        """Seconds until a request of ``cost`` would be admitted; 0.0 when it would be now."""
        self._refill(now)
        deficit = min(cost, self.capacity) - self._level
        # The tolerance absorbs float rounding in the refill arithmetic.
        return deficit / self.rate if deficit > 1e-9 else 0.0

    def take(self, cost: float, now: float) -> None:
        """Charge an admitted request (may leave the bucket in debt)."""
        self._refill(now)
        self._level -= cost
        self._minute = max(0.0, self._minute - cost)

    def charge_rejected(self, cost: float, now: float) -> None:
        """Charge a rejected request: failed requests count against the limit too."""
        self._refill(now)
        self._level = max(self._level - cost, min(self._level, 0.0))
        self._minute = max(0.0, self._minute - cost)

    def refund(self, amount: float, now: float) -> None:
        """Give back what an answered request reserved but did not use."""
        if amount > 0:
            self._refill(now)
            self._level = min(self.capacity, self._level + amount)
            self._minute = min(float(self.limit), self._minute + amount)

    def remaining(self, now: float) -> int:
        """What is left of the per-minute view."""
        self._refill(now)
        return int(self._minute + 1e-9)

    def used(self, now: float) -> int:
        """The per-minute view's consumption (``limit - remaining``)."""
        return self.limit - self.remaining(now)

    def reset_after(self, now: float) -> float:
        """Seconds until the per-minute view is full again."""
        self._refill(now)
        return max(0.0, (self.limit - self._minute) / self.rate)


def format_go_duration(seconds: float) -> str:
    """Format a duration as Go does, rounded up to the millisecond, as OpenAI's headers show
    it: ``0s``, ``120ms``, ``1s``, ``1.5s``, ``6m0s``, ``2m59.56s``, ``1h0m0s``."""
    ms = math.ceil(seconds * 1000.0 - 1e-6)
    if ms <= 0:
        return "0s"
    if ms < 1000:
        return f"{ms}ms"
    minutes, rest = divmod(ms, 60_000)
    secs = f"{rest // 1000}" if rest % 1000 == 0 else f"{rest / 1000:.3f}".rstrip("0")
    if minutes == 0:
        return f"{secs}s"
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    return f"{minutes}m{secs}s"


class _KeyState:
    """The buckets of one key (``None``: that dimension is unlimited)."""

    __slots__ = ("requests", "tokens")

    def __init__(self, limits: KeyLimits, now: float) -> None:
        rpm, tpm = limits.requests_per_minute, limits.tokens_per_minute
        self.requests = TokenBucket(rpm, now) if rpm is not None else None
        self.tokens = TokenBucket(tpm, now) if tpm is not None else None


_UNLIMITED_REQUEST_HEADERS: Final = {
    "x-ratelimit-limit-requests": str(_UNLIMITED_REQUESTS),
    "x-ratelimit-remaining-requests": str(_UNLIMITED_REQUESTS),
    "x-ratelimit-reset-requests": "0s",
}
_UNLIMITED_TOKEN_HEADERS: Final = {
    "x-ratelimit-limit-tokens": str(_UNLIMITED_TOKENS),
    "x-ratelimit-remaining-tokens": str(_UNLIMITED_TOKENS),
    "x-ratelimit-reset-tokens": "0s",
}


# --------------------------------------------------------------------------------------------
# Request bodies: validation, token estimates, answers
# --------------------------------------------------------------------------------------------


class _Plan(NamedTuple):
    """What validation learnt of a request: its admission cost and generation parameters."""

    cost: int
    prompt_tokens: int
    n: int
    max_tokens: int | None


def canonical_hash(body: Mapping[str, Any]) -> str:
    """The key of ``MockOpenAIServer.answer_counts``: sha256 of the body as JSON with sorted
    keys, so the same request hashes the same however its keys were ordered."""
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


def _missing(param: str) -> _BadRequest:
    return _BadRequest(
        f"Missing required parameter: '{param}'.", param, "missing_required_parameter"
    )


def _int_param(body: Mapping[str, Any], name: str, low: int, high: int | None) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        raise _invalid_type(name, "an integer", value)
    if value < low:
        raise _BadRequest(
            f"Invalid '{name}': integer below minimum value. Expected a value >= {low}, "
            f"but got {value} instead.",
            name,
            "integer_below_min_value",
        )
    if high is not None and value > high:
        raise _BadRequest(
            f"Invalid '{name}': integer above maximum value. Expected a value <= {high}, "
            f"but got {value} instead.",
            name,
            "integer_above_max_value",
        )
    return value


def _model_of(body: Mapping[str, Any], default: str | None) -> str:
    model = body.get("model")
    if model is None:
        if default is None:
            raise _missing("model")
        return default
    if not isinstance(model, str):
        raise _invalid_type("model", "a string", model)
    if not model:
        raise _BadRequest("Invalid 'model': empty string.", "model", "empty_string")
    return model


def _chars(value: object) -> int:
    """Characters of prompt text in ``value``: strings, lists of them, message objects
    (``content`` / ``text``); a token id counts as four characters (one token)."""
    if isinstance(value, str):
        return len(value)
    if isinstance(value, list):
        total = 0
        for item in value:
            total += _chars(item)
        return total
    if isinstance(value, dict):
        return _chars(value.get("content")) + _chars(value.get("text"))
    if isinstance(value, int) and not isinstance(value, bool):
        return 4
    return 0


def _estimate(chars: int) -> int:
    """OpenAI's rule of thumb: a token is about four characters."""
    return (chars + 3) // 4


def _text_of(content: object) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(
            part["text"]
            for part in content
            if isinstance(part, dict) and isinstance(part.get("text"), str)
        )
    return ""


def _last_user_text(items: list[Any]) -> str:
    for item in reversed(items):
        if isinstance(item, dict) and item.get("role") == "user":
            return _text_of(item.get("content"))
    last = items[-1] if items else None
    return _text_of(last.get("content")) if isinstance(last, dict) else ""


def _reply(
    prefix: str, text: str, max_tokens: int | None, *, quote: bool = True
) -> tuple[str, int, bool]:
    """A deterministic reply quoting ``text`` (``quote=False``: all of it): (reply, its
    tokens, whether truncated)."""
    quoted = text if len(text) <= _QUOTE_CHARS or not quote else text[:_QUOTE_CHARS] + "..."
    reply = f"{prefix}{quoted}"
    tokens = max(1, _estimate(len(reply)))
    if max_tokens is not None and tokens > max_tokens:
        return reply[: max_tokens * 4], max_tokens, True
    return reply, tokens, False


def _generation_cost(prompt_tokens: int, max_tokens: int | None, outputs: int) -> int:
    """What OpenAI charges at admission: max(max_tokens * n, estimate of the prompt)."""
    reserved = max_tokens if max_tokens is not None else _DEFAULT_MAX_TOKENS
    return max(prompt_tokens, reserved * outputs)


def _check_stream(body: Mapping[str, Any]) -> None:
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise _invalid_type("stream", "a boolean", stream)
    options = body.get("stream_options")
    if options is None:
        return
    if not stream:
        raise _BadRequest(
            "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
            "stream_options",
            "invalid_value",
        )
    if not isinstance(options, dict):
        raise _invalid_type("stream_options", "an object", options)
    usage = options.get("include_usage")
    if usage is not None and not isinstance(usage, bool):
        raise _invalid_type("stream_options.include_usage", "a boolean", usage)


def _check_chat(body: Mapping[str, Any]) -> _Plan:
    messages = body.get("messages")
    if messages is None:
        raise _missing("messages")
    if not isinstance(messages, list):
        raise _invalid_type("messages", "an array", messages)
    if not messages:
        raise _BadRequest(
            "Invalid 'messages': empty array. Expected an array with minimum length 1, "
            "but got an empty array instead.",
            "messages",
            "empty_array",
        )
    for index, message in enumerate(messages):
        if not isinstance(message, dict):
            raise _invalid_type(f"messages[{index}]", "an object", message)
        if "role" not in message:
            raise _missing(f"messages[{index}].role")
    _check_stream(body)
    answers.chat_logprobs_wanted(body)
    answers.tool_call(body)
    answers.structured_text(body.get("response_format"), "response_format", "")
    n = _int_param(body, "n", 1, 128) or 1
    max_tokens = _int_param(body, "max_completion_tokens", 1, None)
    if max_tokens is None:
        max_tokens = _int_param(body, "max_tokens", 1, None)
    prompt_tokens = _estimate(_chars(messages))
    return _Plan(_generation_cost(prompt_tokens, max_tokens, n), prompt_tokens, n, max_tokens)


def _prompts(body: Mapping[str, Any]) -> list[Any]:
    """The prompts of a completions request (a string, strings, tokens or token lists)."""
    prompt = body.get("prompt")
    if prompt is None:
        raise _missing("prompt")
    if isinstance(prompt, str):
        return [prompt]
    if not isinstance(prompt, list):
        raise _invalid_type("prompt", "a string or an array", prompt)
    if not prompt:
        raise _BadRequest("Invalid 'prompt': empty array.", "prompt", "empty_array")
    if all(isinstance(item, int) and not isinstance(item, bool) for item in prompt):
        return [prompt]
    for index, item in enumerate(prompt):
        if not isinstance(item, (str, list)):
            raise _invalid_type(f"prompt[{index}]", "a string or an array", item)
    return prompt


def _check_completions(body: Mapping[str, Any]) -> _Plan:
    prompts = _prompts(body)
    _check_stream(body)
    answers.completions_logprobs_wanted(body)
    n = _int_param(body, "n", 1, 128) or 1
    max_tokens = _int_param(body, "max_tokens", 1, None)
    prompt_tokens = _estimate(_chars(prompts))
    cost = _generation_cost(prompt_tokens, max_tokens, n * len(prompts))
    return _Plan(cost, prompt_tokens, n, max_tokens)


def _embedding_inputs(body: Mapping[str, Any]) -> list[Any]:
    """The inputs of an embeddings request: one string or token list per vector."""
    value = body.get("input")
    if value is None:
        raise _missing("input")
    if isinstance(value, str):
        if not value:
            raise _BadRequest("Invalid 'input': empty string.", "input", "empty_string")
        return [value]
    if not isinstance(value, list):
        raise _invalid_type("input", "a string or an array", value)
    if not value:
        raise _BadRequest("Invalid 'input': empty array.", "input", "empty_array")
    if all(isinstance(item, int) and not isinstance(item, bool) for item in value):
        return [value]
    for index, item in enumerate(value):
        if not isinstance(item, (str, list)) or not item:
            raise _BadRequest(
                f"Invalid 'input[{index}]': expected a non-empty string or array of tokens.",
                f"input[{index}]",
                "invalid_value",
            )
    return value


def _check_embeddings(body: Mapping[str, Any]) -> _Plan:
    inputs = _embedding_inputs(body)
    _int_param(body, "dimensions", 1, _MAX_EMBEDDING_DIMENSIONS)
    encoding = body.get("encoding_format")
    if encoding is not None and encoding not in ("float", "base64"):
        raise _BadRequest(
            f"Invalid value for 'encoding_format': {encoding!r}. Supported values are: "
            "'float' and 'base64'.",
            "encoding_format",
            "invalid_value",
        )
    prompt_tokens = _estimate(_chars(inputs))
    return _Plan(prompt_tokens, prompt_tokens, 1, None)


def _moderation_inputs(body: Mapping[str, Any]) -> list[Any]:
    value = body.get("input")
    if value is None:
        raise _missing("input")
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list):
        raise _invalid_type("input", "a string or an array", value)
    if not value:
        raise _BadRequest("Invalid 'input': empty array.", "input", "empty_array")
    if any(isinstance(item, dict) for item in value):
        return [value]  # multi-modal parts: one result for all of them
    for index, item in enumerate(value):
        if not isinstance(item, str):
            raise _invalid_type(f"input[{index}]", "a string", item)
    return value


def _check_moderations(body: Mapping[str, Any]) -> _Plan:
    prompt_tokens = _estimate(_chars(_moderation_inputs(body)))
    return _Plan(prompt_tokens, prompt_tokens, 1, None)


def _check_responses(body: Mapping[str, Any]) -> _Plan:
    value = body.get("input")
    if value is None:
        raise _missing("input")
    if not isinstance(value, (str, list)):
        raise _invalid_type("input", "a string or an array", value)
    _check_stream(body)
    answers.tool_call(body, flat=True)
    text = body.get("text")
    if text is not None and not isinstance(text, dict):
        raise _invalid_type("text", "an object", text)
    answers.structured_text((text or {}).get("format"), "text.format", "")
    max_tokens = _int_param(body, "max_output_tokens", 1, None)
    prompt_tokens = _estimate(_chars(value) + _chars(body.get("instructions")))
    return _Plan(_generation_cost(prompt_tokens, max_tokens, 1), prompt_tokens, 1, max_tokens)


def _check_images(body: Mapping[str, Any]) -> _Plan:
    prompt = body.get("prompt")
    if prompt is None:
        raise _missing("prompt")
    if not isinstance(prompt, str):
        raise _invalid_type("prompt", "a string", prompt)
    if not prompt:
        raise _BadRequest("Invalid 'prompt': empty string.", "prompt", "empty_string")
    n = _int_param(body, "n", 1, 10) or 1
    response_format = body.get("response_format")
    if response_format is not None and response_format not in ("url", "b64_json"):
        raise _BadRequest(
            f"Invalid value for 'response_format': {response_format!r}. Supported values are: "
            "'url' and 'b64_json'.",
            "response_format",
            "invalid_value",
        )
    prompt_tokens = _estimate(len(prompt))
    return _Plan(prompt_tokens, prompt_tokens, n, None)


def _embedding_vector(item: object, dimensions: int) -> list[float]:
    """A deterministic unit vector derived from a hash of ``item``."""
    seed = item.encode() if isinstance(item, str) else _json.dumps(item)
    values: list[float] = []
    block = 0
    while len(values) < dimensions:
        digest = hashlib.sha256(seed + block.to_bytes(4, "little")).digest()
        values.extend(word / 2147483648.0 - 1.0 for word in struct.unpack("<8I", digest))
        block += 1
    del values[dimensions:]
    norm = math.sqrt(sum(value * value for value in values)) or 1.0
    return [value / norm for value in values]


def _float32_base64(values: list[float]) -> str:
    packed = array.array("f", values)
    if sys.byteorder != "little":  # pragma: no cover - big-endian hosts only
        packed.byteswap()
    return base64.b64encode(packed.tobytes()).decode("ascii")


@dataclass(frozen=True)
class _Endpoint:
    """One API operation: its name, how to validate a body, which model it defaults to."""

    name: str
    check: Callable[[Mapping[str, Any]], _Plan]
    default_model: str | None = None
    limited: bool = True


_CHAT = _Endpoint("chat.completions", _check_chat)
_COMPLETIONS = _Endpoint("completions", _check_completions)
_EMBEDDINGS = _Endpoint("embeddings", _check_embeddings)
_MODERATIONS = _Endpoint("moderations", _check_moderations, "omni-moderation-latest")
_RESPONSES = _Endpoint("responses", _check_responses)
_IMAGES = _Endpoint("images.generations", _check_images, "dall-e-2")

_OPENAI_ROUTES: Final = (
    ("chat/completions", _CHAT),
    ("completions", _COMPLETIONS),
    ("embeddings", _EMBEDDINGS),
    ("moderations", _MODERATIONS),
    ("responses", _RESPONSES),
    ("images/generations", _IMAGES),
)
# Azure's per-deployment form (the SDK's AzureOpenAI sends the first four there, and
# moderations and responses to /openai/{suffix}; both forms answer all of them).
_AZURE_ROUTES: Final = (
    ("chat/completions", _CHAT),
    ("completions", _COMPLETIONS),
    ("embeddings", _EMBEDDINGS),
    ("images/generations", _IMAGES),
    ("moderations", _MODERATIONS),
    ("responses", _RESPONSES),
)


def _error_body(
    message: str, error_type: str, param: str | None = None, code: str | None = None
) -> bytes:
    return _json.dumps(
        {"error": {"message": message, "type": error_type, "param": param, "code": code}}
    )


def _redact(key: str) -> str:
    if len(key) <= 8:
        return "*" * len(key)
    return f"{key[:3]}{'*' * (len(key) - 7)}{key[-4:]}"


_NO_KEY_BODY: Final = _error_body(
    "You didn't provide an API key. You need to provide your API key in an Authorization header "
    "using Bearer auth (i.e. Authorization: Bearer YOUR_KEY), or as the password field (with "
    "blank username) if you're accessing the API from your browser and are prompted for a "
    "username and password. You can obtain an API key from "
    "https://platform.openai.com/account/api-keys.",
    "invalid_request_error",
)
_NO_QUOTA_BODY: Final = _error_body(
    "You exceeded your current quota, please check your plan and billing details. For more "
    "information on this error, read the docs: "
    "https://platform.openai.com/docs/guides/error-codes/api-errors.",
    "insufficient_quota",
    None,
    "insufficient_quota",
)
_BAD_JSON_BODY: Final = _error_body(
    "We could not parse the JSON body of your request. (HINT: This likely means you aren't "
    "using your HTTP library correctly. The OpenAI API expects a JSON payload, but what was "
    "sent was not valid JSON.)",
    "invalid_request_error",
)
_NOT_OBJECT_BODY: Final = _error_body(
    "Invalid type for request body: expected an object.", "invalid_request_error", None, None
)
_FAULT_BODIES: Final = {
    500: (
        _error_body(
            "The server had an error while processing your request. Sorry about that!",
            "server_error",
        ),
        _JSON,
    ),
    502: (
        b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
        b"<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>cloudflare</center>\r\n"
        b"</body>\r\n</html>\r\n",
        "text/html",
    ),
    503: (
        _error_body(
            "That model is currently overloaded with other requests. You can retry your request.",
            "server_error",
        ),
        _JSON,
    ),
}


_STREAM_ERROR: Final = _error_body(
    "The server had an error while processing your request. Sorry about that!", "server_error"
)


def _stream_events(answer: dict[str, Any], include_usage: bool) -> list[bytes]:
    """The server-sent events that stream ``answer`` (chat, completions or responses)."""
    if answer.get("object") == "response":
        return response_events(answer)
    return completion_events(answer, include_usage)


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


def _abort(request: web.BaseRequest) -> None:
    """Drop the connection without a response; with SO_LINGER 0 the peer gets a TCP RST."""
    transport = request.transport
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


# --------------------------------------------------------------------------------------------
# The server
# --------------------------------------------------------------------------------------------

_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class MockOpenAIServer:
    """A local imitation of the OpenAI API; see the module docstring for what it imitates.

    Keys: with ``keys=None`` any non-empty key is valid and limited by ``default_limits``; with a
    mapping, only its keys are valid (each with its own limits), others get 401
    ``invalid_api_key``. ``invalid_keys`` always get 401, ``no_quota_keys`` 429
    ``insufficient_quota``. With ``require_key=False`` a request without a key is accepted as key
    ``""`` (with ``default_limits``).

    ``latency`` is fixed seconds or a ``(min, max)`` range drawn uniformly; latency and
    ``faults`` draw from one ``random.Random(seed)``, so a run is reproducible. ``clock``
    (monotonic seconds) drives the rate limiters; tests inject a fake one.

    Rate-limited (429) requests count against the limits, as at OpenAI: a client that keeps
    sending faster than a key's rate gets nothing through. ``count_rejected=False`` makes a
    more lenient server that charges only admitted requests.

    Embeddings have the model's real size (1536 for ``text-embedding-3-small`` and
    ``text-embedding-ada-002``, 3072 for ``text-embedding-3-large``, 1536 for other models), or
    ``embedding_dimensions`` for every model when given; a request's ``dimensions`` wins.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        keys: Mapping[str, KeyLimits] | None = None,
        default_limits: KeyLimits = KeyLimits(),  # frozen, so safe to share
        invalid_keys: Collection[str] = (),
        no_quota_keys: Collection[str] = (),
        require_key: bool = True,
        latency: float | tuple[float, float] = 0.0,
        faults: Faults | None = None,
        seed: int = 0,
        retry_after: bool = True,
        rate_limit_headers: bool = True,
        embedding_dimensions: int | None = None,
        clock: Callable[[], float] = time.monotonic,
        count_rejected: bool = True,
    ) -> None:
        if not isinstance(host, str) or not host:
            raise ValueError(f"host must be a non-empty string, not {host!r}")
        if not isinstance(port, int) or isinstance(port, bool) or not 0 <= port <= 65535:
            raise ValueError(f"port must be an integer in [0, 65535], not {port!r}")
        if keys is not None:
            for key, limits in keys.items():
                if not isinstance(key, str) or not key:
                    raise ValueError(f"keys: every key must be a non-empty string, not {key!r}")
                if not isinstance(limits, KeyLimits):
                    raise ValueError(f"keys[{_redact(key)!r}] must be a KeyLimits, not {limits!r}")
        if not isinstance(default_limits, KeyLimits):
            raise ValueError(f"default_limits must be a KeyLimits, not {default_limits!r}")
        if isinstance(invalid_keys, str) or isinstance(no_quota_keys, str):
            raise ValueError(
                "invalid_keys and no_quota_keys must be collections of keys, not a str"
            )
        self._latency_range: tuple[float, float] | None
        if isinstance(latency, tuple):
            if (
                len(latency) != 2
                or not all(_is_real(value) and math.isfinite(value) for value in latency)
                or not 0 <= latency[0] <= latency[1]
            ):
                raise ValueError(
                    f"latency must be seconds >= 0 or a (min, max) pair with 0 <= min <= max, "
                    f"not {latency!r}"
                )
            self._latency_range = (float(latency[0]), float(latency[1]))
            self._latency = 0.0
        else:
            if not _is_real(latency) or not 0 <= latency < math.inf:
                raise ValueError(
                    f"latency must be a finite number of seconds >= 0, not {latency!r}"
                )
            self._latency_range = None
            self._latency = float(latency)
        if faults is not None and not isinstance(faults, Faults):
            raise ValueError(f"faults must be a Faults or None, not {faults!r}")
        if not isinstance(seed, int) or isinstance(seed, bool):
            raise ValueError(f"seed must be an integer, not {seed!r}")
        if embedding_dimensions is not None and (
            not isinstance(embedding_dimensions, int)
            or isinstance(embedding_dimensions, bool)
            or not 1 <= embedding_dimensions <= _MAX_EMBEDDING_DIMENSIONS
        ):
            raise ValueError(
                f"embedding_dimensions must be an integer in [1, {_MAX_EMBEDDING_DIMENSIONS}], "
                f"not {embedding_dimensions!r}"
            )
        if not callable(clock):
            raise ValueError(f"clock must be a callable returning seconds, not {clock!r}")

        self.host = host
        self.port = port
        self._configured_port = port
        self._keys = dict(keys) if keys is not None else None
        self._default_limits = default_limits
        self._invalid_keys = frozenset(invalid_keys)
        self._no_quota_keys = frozenset(no_quota_keys)
        self._require_key = require_key
        self._faults = faults
        self._fault_rate = faults.rate if faults is not None else 0.0
        self._fault_kinds: list[str] = []
        self._fault_cumulative: list[float] = []
        if faults is not None:
            total = 0.0
            for kind, weight in faults.weights.items():
                if weight > 0:
                    total += weight
                    self._fault_kinds.append(kind)
                    self._fault_cumulative.append(total)
        self._random = random.Random(seed)
        self._retry_after = retry_after
        self._rate_limit_headers = rate_limit_headers
        self._embedding_dimensions = embedding_dimensions
        self._clock = clock
        self._count_rejected = count_rejected

        self._key_states: dict[str, _KeyState] = {}
        self._lock = threading.Lock()
        self._stats = ServerStats()
        self._answers: dict[str, int] = {}
        self._id_prefix = os.urandom(12).hex()
        self._sequence = itertools.count(1)

        self._runner: web.AppRunner | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closing = False
        self._waiters: set[asyncio.Future[None]] = set()
        self._thread: threading.Thread | None = None

    # ---------------------------------------------------------------- addresses and repr

    @property
    def url(self) -> str:
        """``http://HOST:PORT`` of the running server (a wildcard host shows as loopback)."""
        if self.port == 0:
            raise RuntimeError("the mock server has not been started, so it has no port yet")
        host = self.host
        if host in ("0.0.0.0", ""):
            host = "127.0.0.1"
        elif host == "::":
            host = "::1"
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}"

    @property
    def base_url(self) -> str:
        """The OpenAI base URL to give a client: ``http://HOST:PORT/v1``."""
        return f"{self.url}/v1"

    @property
    def running(self) -> bool:
        """Whether the server is accepting connections."""
        return self._runner is not None

    def __repr__(self) -> str:
        where = f"{self.host}:{self.port}" if self.port else "not started"
        return f"<MockOpenAIServer {where}{' running' if self.running else ''}>"

    # ---------------------------------------------------------------- lifecycle: current loop

    async def start(self) -> None:
        """Start serving in the running event loop; sets ``port``, ``url`` and ``base_url``."""
        if self._runner is not None:
            raise RuntimeError("the mock server is already running")
        self._loop = asyncio.get_running_loop()
        self._closing = False
        app = web.Application(client_max_size=64 * 1024 * 1024)
        self._add_routes(app.router)
        runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=5.0)
        await runner.setup()
        try:
            site = web.TCPSite(runner, self.host, self._configured_port, backlog=1024)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self.port = int(runner.addresses[0][1])
        logger.info("mock OpenAI server listening at %s", self.base_url)

    async def stop(self) -> None:
        """Stop serving: requests in latency or hanging are dropped at once, without an
        answer; connections are closed. Does nothing when not running."""
        runner = self._runner
        if runner is None:
            return
        if self._thread is not None and threading.current_thread() is not self._thread:
            raise RuntimeError("this server runs in its own thread: stop it with stop_in_thread()")
        self._closing = True
        for waiter in list(self._waiters):
            _wake(waiter)
        try:
            await runner.cleanup()
        finally:
            self._runner = None
            self._loop = None
            logger.info("mock OpenAI server at port %d stopped", self.port)

    async def __aenter__(self) -> MockOpenAIServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()

    # ---------------------------------------------------------------- lifecycle: own thread

    def start_in_thread(self, timeout: float = 10.0) -> None:
        """Start serving in a daemon thread with its own event loop; returns once it listens.

        For synchronous code, and for tests whose event loop must not host the server.
        """
        if self._runner is not None or self._thread is not None:
            raise RuntimeError("the mock server is already running")
        loop = asyncio.new_event_loop()
        started = threading.Event()
        failure: list[BaseException] = []

        def serve() -> None:
            asyncio.set_event_loop(loop)
            try:
                try:
                    loop.run_until_complete(self.start())
                except BaseException as exc:
                    failure.append(exc)
                    return
                finally:
                    started.set()
                loop.run_forever()
            finally:
                _close_loop(loop)

        thread = threading.Thread(target=serve, name=f"mock-openai-{id(self):x}", daemon=True)
        self._thread = thread
        thread.start()
        if not started.wait(timeout):
            raise RuntimeError(f"the mock server did not start within {timeout} s")
        if failure:
            thread.join(timeout)
            self._thread = None
            raise failure[0]

    def stop_in_thread(self, timeout: float = 10.0) -> None:
        """Stop a server started with :meth:`start_in_thread` and join its thread."""
        thread = self._thread
        loop = self._loop
        if thread is None:
            return
        try:
            if loop is not None and not loop.is_closed():
                future = asyncio.run_coroutine_threadsafe(self.stop(), loop)
                try:
                    future.result(timeout)
                finally:
                    loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout)
            if thread.is_alive():
                raise RuntimeError(f"the mock server's thread did not end within {timeout} s")
        finally:
            self._thread = None

    def __enter__(self) -> MockOpenAIServer:
        self.start_in_thread()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop_in_thread()

    # ---------------------------------------------------------------- accounting

    @property
    def stats(self) -> ServerStats:
        """A snapshot of the counters (safe to read from any thread)."""
        with self._lock:
            return self._stats.copy()

    @property
    def answer_counts(self) -> dict[str, int]:
        """A snapshot: :func:`canonical_hash` of a request body -> how many complete 200
        answers to it were sent.

        An answer counts once its whole body was handed to the connection without error (it is
        counted just before, so a client holding the answer always sees it counted); a
        truncated body (the ``malformed`` fault) or an answer to a client that had already
        disconnected does not count. Errors and faults never count.
        """
        with self._lock:
            return dict(self._answers)

    def times_answered(self, body: Mapping[str, Any]) -> int:
        """How many complete 200 answers to this request body were sent (key order does not
        matter; see :attr:`answer_counts`)."""
        digest = canonical_hash(body)
        with self._lock:
            return self._answers.get(digest, 0)

    def answered_more_than_once(self) -> int:
        """How many distinct request bodies were answered two or more times."""
        with self._lock:
            return sum(1 for count in self._answers.values() if count >= 2)

    def reset_stats(self) -> None:
        """Forget all counters and answer counts (rate-limit state is kept)."""
        with self._lock:
            self._stats = ServerStats()
            self._answers = {}

    def _count_arrival(self, key: str, endpoint: str) -> None:
        with self._lock:
            stats = self._stats
            stats.total_requests += 1
            stats.requests_by_key[key] = stats.requests_by_key.get(key, 0) + 1
            stats.requests_by_endpoint[endpoint] = stats.requests_by_endpoint.get(endpoint, 0) + 1

    def _count_status(
        self, status: int, *, fault: str | None = None, limited: str | None = None
    ) -> None:
        with self._lock:
            stats = self._stats
            stats.status_counts[status] = stats.status_counts.get(status, 0) + 1
            if fault is not None:
                stats.faults_by_kind[fault] = stats.faults_by_kind.get(fault, 0) + 1
            if limited is not None:
                stats.rate_limited_by_type[limited] = stats.rate_limited_by_type.get(limited, 0) + 1

    def _count_silent_fault(self, kind: str) -> None:
        with self._lock:
            faults = self._stats.faults_by_kind
            faults[kind] = faults.get(kind, 0) + 1

    def _count_answer(self, body: Mapping[str, Any]) -> str:
        digest = canonical_hash(body)
        with self._lock:
            self._stats.answered += 1
            self._answers[digest] = self._answers.get(digest, 0) + 1
        return digest

    def _uncount_answer(self, digest: str) -> None:
        with self._lock:
            count = self._answers.get(digest, 0)
            if count > 0:  # reset_stats() may have run meanwhile
                self._stats.answered -= 1
                if count == 1:
                    del self._answers[digest]
                else:
                    self._answers[digest] = count - 1

    # ---------------------------------------------------------------- routing

    def _add_routes(self, router: web.UrlDispatcher) -> None:
        for suffix, endpoint in _OPENAI_ROUTES:
            handler = self._handler(endpoint, azure=False)
            router.add_post(f"/v1/{suffix}", handler)
            router.add_post(f"/openai/v1/{suffix}", handler)  # Azure's newer v1 form
            router.add_post(f"/openai/{suffix}", handler)  # Azure, outside deployments
        for suffix, endpoint in _AZURE_ROUTES:
            router.add_post(
                f"/openai/deployments/{{deployment}}/{suffix}", self._handler(endpoint, azure=True)
            )
        for prefix in ("/v1", "/openai/v1", "/openai"):
            router.add_get(f"{prefix}/models", self._models)
            router.add_get(f"{prefix}/models/{{model}}", self._models)
        router.add_get("/mock/images/{name}", self._image_file)
        router.add_route("*", "/{tail:.*}", self._not_found)

    def _handler(self, endpoint: _Endpoint, *, azure: bool) -> _Handler:
        async def handle(request: web.Request) -> web.StreamResponse:
            deployment = request.match_info["deployment"] if azure else None
            return await self._serve(request, endpoint, deployment)

        return handle

    # ---------------------------------------------------------------- request handling

    def _next_ids(self) -> tuple[int, str]:
        sequence = next(self._sequence)
        return sequence, f"req_{self._id_prefix}{sequence:08x}"

    def _authenticate(self, request: web.BaseRequest) -> tuple[str, str | None]:
        """(key as presented, None when accepted, else the reason it is not)."""
        headers = request.headers
        authorization = headers.get("Authorization")
        key: str | None = None
        if authorization is not None:
            scheme, _, credentials = authorization.partition(" ")
            if scheme.lower() == "bearer":
                key = credentials.strip()
        if not key:
            key = headers.get("api-key") or None
        if key is None:
            return "", (None if not self._require_key else "missing")
        if key in self._invalid_keys:
            return key, "invalid"
        if key in self._no_quota_keys:
            return key, "no_quota"
        if self._keys is not None and key not in self._keys:
            return key, "invalid"
        return key, None

    def _state(self, key: str) -> _KeyState:
        state = self._key_states.get(key)
        if state is None:
            limits = self._default_limits
            if self._keys is not None:
                limits = self._keys.get(key, limits)
            state = self._key_states[key] = _KeyState(limits, self._clock())
        return state

    def _headers(
        self, request_id: str, state: _KeyState | None, content_type: str = _JSON
    ) -> dict[str, str]:
        headers = {"Content-Type": content_type, "x-request-id": request_id}
        if self._rate_limit_headers and state is not None:
            now = self._clock()
            for bucket, kind, unlimited in (
                (state.requests, "requests", _UNLIMITED_REQUEST_HEADERS),
                (state.tokens, "tokens", _UNLIMITED_TOKEN_HEADERS),
            ):
                if bucket is None:
                    headers.update(unlimited)
                else:
                    headers[f"x-ratelimit-limit-{kind}"] = bucket.limit_text
                    headers[f"x-ratelimit-remaining-{kind}"] = str(bucket.remaining(now))
                    headers[f"x-ratelimit-reset-{kind}"] = format_go_duration(
                        bucket.reset_after(now)
                    )
        return headers

    def _respond(
        self,
        status: int,
        body: bytes,
        request_id: str,
        state: _KeyState | None,
        *,
        extra: Mapping[str, str] | None = None,
        limited: str | None = None,
    ) -> web.Response:
        headers = self._headers(request_id, state)
        if extra:
            headers.update(extra)
        self._count_status(status, limited=limited)
        return web.Response(status=status, body=body, headers=headers)

    async def _serve(
        self, request: web.Request, endpoint: _Endpoint, deployment: str | None
    ) -> web.StreamResponse:
        sequence, request_id = self._next_ids()
        key, refusal = self._authenticate(request)
        self._count_arrival(key, endpoint.name)
        if refusal is not None:
            return self._refuse(refusal, key, request_id)
        state = self._state(key)

        try:
            body = _json.loads(await request.read())
        except (ValueError, RecursionError):
            return self._respond(400, _BAD_JSON_BODY, request_id, state)
        if not isinstance(body, dict):
            return self._respond(400, _NOT_OBJECT_BODY, request_id, state)
        try:
            model = (
                deployment if deployment is not None else _model_of(body, endpoint.default_model)
            )
            plan = endpoint.check(body)
        except _BadRequest as bad:
            error = _error_body(bad.message, "invalid_request_error", bad.param, bad.code)
            return self._respond(400, error, request_id, state)
        except RecursionError:
            error = _error_body("The request body is nested too deeply.", "invalid_request_error")
            return self._respond(400, error, request_id, state)

        if state.requests is not None or state.tokens is not None:
            refused = self._admit(state, plan.cost, model, request_id)
            if refused is not None:
                return refused

        delay = self._latency
        if self._latency_range is not None:
            delay = self._random.uniform(*self._latency_range)
        if delay > 0 and not await self._pause(delay):
            _abort(request)
            return web.Response(status=503)
        fault: str | None = None
        streamed = body.get("stream") is True
        if self._fault_rate > 0 and self._random.random() < self._fault_rate:
            fault = self._random.choices(self._fault_kinds, cum_weights=self._fault_cumulative)[0]
            if fault == "stream_error" and not streamed:
                return await self._fault(request, "500", request_id, state, label=fault)
            if fault not in _ANSWER_FAULTS:
                return await self._fault(request, fault, request_id, state)

        answer = self._answer(endpoint, body, model, plan, sequence)
        if state.tokens is not None:
            # Reserved at admission, settled at the answer: unused tokens are given back.
            usage = answer.get("usage")
            used = usage.get("total_tokens") if isinstance(usage, dict) else None
            if isinstance(used, int) and used < plan.cost:
                state.tokens.refund(plan.cost - used, self._clock())
        if streamed:
            return await self._stream(request, body, answer, fault, request_id, state)
        payload = _json.dumps(answer)
        headers = self._headers(request_id, state)
        if fault == "malformed":
            logger.debug("fault: malformed body for %s", request_id)
            self._count_status(200, fault="malformed")
            return web.Response(status=200, body=payload[: len(payload) // 2], headers=headers)
        if fault is not None:  # stream_cut, stream_stall: half the body
            return await self._cut(request, fault, payload, headers, content_length=len(payload))
        self._count_status(200)
        response = web.Response(status=200, body=payload, headers=headers)
        # Counted before the bytes leave, so a client that has its answer also sees it counted
        # (the server may run in another thread); taken back if the connection is gone.
        digest = self._count_answer(body)
        try:
            await response.prepare(request)
            await response.write_eof()
        except ConnectionError:
            self._uncount_answer(digest)
            logger.debug("client of %s disconnected before the answer was sent", request_id)
        return response

    def _refuse(self, refusal: str, key: str, request_id: str) -> web.Response:
        if refusal == "missing":
            return self._respond(401, _NO_KEY_BODY, request_id, None)
        if refusal == "no_quota":
            return self._respond(429, _NO_QUOTA_BODY, request_id, self._state(key))
        message = (
            f"Incorrect API key provided: {_redact(key)}. You can find your API key at "
            "https://platform.openai.com/account/api-keys."
        )
        body = _error_body(message, "invalid_request_error", None, "invalid_api_key")
        return self._respond(401, body, request_id, None)

    def _admit(
        self, state: _KeyState, cost: int, model: str, request_id: str
    ) -> web.Response | None:
        """Admit the request under the key's limits (None), or build its 429."""
        now = self._clock()
        requests, tokens = state.requests, state.tokens
        if tokens is not None and cost > tokens.limit:
            if requests is not None and self._count_rejected:
                requests.charge_rejected(1, now)
            message = (
                f"Request too large for {model} in organization {_ORGANIZATION} on tokens per "
                f"min (TPM): Limit {tokens.limit}, Requested {cost}. The input or output tokens "
                f"must be reduced in order to run successfully. {_RATE_LIMIT_DOCS}"
            )
            body = _error_body(message, "tokens", None, "rate_limit_exceeded")
            no_retry = {"x-should-retry": "false"}
            return self._respond(429, body, request_id, state, extra=no_retry, limited="tokens")
        wait_requests = requests.wait_time(1, now) if requests is not None else 0.0
        wait_tokens = tokens.wait_time(cost, now) if tokens is not None else 0.0
        if wait_requests <= 0 and wait_tokens <= 0:
            if requests is not None:
                requests.take(1, now)
            if tokens is not None:
                tokens.take(cost, now)
            return None

        if wait_requests > 0:
            assert requests is not None
            kind, bucket, requested, unit = "requests", requests, 1, "RPM"
        else:
            assert tokens is not None
            kind, bucket, requested, unit = "tokens", tokens, cost, "TPM"
        used = bucket.used(now)
        if self._count_rejected:
            if requests is not None:
                requests.charge_rejected(1, now)
            if tokens is not None:
                tokens.charge_rejected(cost, now)
        retry = max(
            requests.wait_time(1, now) if requests is not None else 0.0,
            tokens.wait_time(cost, now) if tokens is not None else 0.0,
        )
        message = (
            f"Rate limit reached for {model} in organization {_ORGANIZATION} on {kind} per min "
            f"({unit}): Limit {bucket.limit}, Used {used}, Requested {requested}. Please try "
            f"again in {format_go_duration(retry)}. {_RATE_LIMIT_DOCS}"
        )
        body = _error_body(message, kind, None, "rate_limit_exceeded")
        extra = None
        if self._retry_after:
            extra = {
                "retry-after-ms": str(max(1, math.ceil(retry * 1000.0 - 1e-6))),
                "retry-after": str(max(1, math.ceil(retry - 1e-9))),
            }
        return self._respond(429, body, request_id, state, extra=extra, limited=kind)

    async def _pause(self, seconds: float) -> bool:
        """Sleep unless the server stops first; True if it is still running afterwards."""
        if self._closing:
            return False
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        timer = loop.call_later(seconds, _wake, waiter)
        self._waiters.add(waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            self._waiters.discard(waiter)
        return not self._closing

    async def _fault(
        self,
        request: web.Request,
        kind: str,
        request_id: str,
        state: _KeyState,
        label: str | None = None,
    ) -> web.StreamResponse:
        logger.debug("fault: %s for %s", kind, request_id)
        if kind == "reset":
            self._count_silent_fault(kind)
            _abort(request)
            # aiohttp meets the closed transport while sending this and drops it quietly.
            return web.Response(status=503)
        if kind == "hang":
            self._count_silent_fault(kind)
            assert self._faults is not None
            await self._pause(self._faults.hang_seconds)
            _abort(request)
            return web.Response(status=503)
        status = int(kind)
        body, content_type = _FAULT_BODIES[status]
        headers = self._headers(request_id, state, content_type)
        self._count_status(status, fault=label or kind)
        return web.Response(status=status, body=body, headers=headers)

    async def _stream(
        self,
        request: web.Request,
        body: dict[str, Any],
        answer: dict[str, Any],
        fault: str | None,
        request_id: str,
        state: _KeyState,
    ) -> web.StreamResponse:
        """Send ``answer`` as server-sent events, or the fault planned for it."""
        options = body.get("stream_options")
        usage = isinstance(options, dict) and options.get("include_usage") is True
        events = _stream_events(answer, usage)
        headers = self._headers(request_id, state, "text/event-stream")
        headers["Cache-Control"] = "no-cache"
        half = len(events) // 2
        if fault in ("stream_cut", "stream_stall"):
            return await self._cut(request, fault, b"".join(events), headers)
        if fault == "malformed":
            events.insert(half, b'data: {"id": "chatcmpl-trunc\n\n')
        elif fault == "stream_error":
            events[half:] = [b"data: " + _STREAM_ERROR + b"\n\n"]
        logger.debug("streaming %d events for %s (fault: %s)", len(events), request_id, fault)
        self._count_status(200, fault=fault)
        response = web.StreamResponse(status=200, headers=headers)
        digest = self._count_answer(body) if fault is None else None
        try:
            await response.prepare(request)
            for piece in split(b"".join(events)):
                await response.write(piece)
            await response.write_eof()
        except ConnectionError:
            if digest is not None:
                self._uncount_answer(digest)
            logger.debug("client of %s disconnected mid-stream", request_id)
        return response

    async def _cut(
        self,
        request: web.Request,
        fault: str,
        payload: bytes,
        headers: Mapping[str, str],
        content_length: int | None = None,
    ) -> web.StreamResponse:
        """Send the headers and half of ``payload``; then, for ``stream_stall``, nothing for
        ``hang_seconds``; then drop the connection."""
        logger.debug("fault: %s after %d of %d bytes", fault, len(payload) // 2, len(payload))
        self._count_status(200, fault=fault)
        response = web.StreamResponse(status=200, headers=headers)
        if content_length is not None:
            response.content_length = content_length
        with contextlib.suppress(ConnectionError):
            await response.prepare(request)
            await response.write(payload[: len(payload) // 2])
            if fault == "stream_stall":
                assert self._faults is not None
                await self._pause(self._faults.hang_seconds)
        transport = request.transport
        if transport is not None:
            transport.close()  # what was written still arrives, then the end: a cut body
        return response

    # ---------------------------------------------------------------- answers

    def _answer(
        self, endpoint: _Endpoint, body: dict[str, Any], model: str, plan: _Plan, sequence: int
    ) -> dict[str, Any]:
        if endpoint is _CHAT:
            return self._chat_answer(body, model, plan, sequence)
        if endpoint is _COMPLETIONS:
            return self._completions_answer(body, model, plan, sequence)
        if endpoint is _EMBEDDINGS:
            return self._embeddings_answer(body, model, plan)
        if endpoint is _MODERATIONS:
            return self._moderations_answer(body, model, sequence)
        if endpoint is _RESPONSES:
            return self._responses_answer(body, model, plan, sequence)
        return self._images_answer(body, model, plan, sequence)

    def _object_id(self, prefix: str, sequence: int) -> str:
        return f"{prefix}{self._id_prefix[:16]}{sequence:08x}"

    def _chat_answer(
        self, body: dict[str, Any], model: str, plan: _Plan, sequence: int
    ) -> dict[str, Any]:
        text = _last_user_text(body["messages"])
        reply, tokens, truncated = _reply("Mock reply to: ", text, plan.max_tokens)
        structured = answers.structured_text(body.get("response_format"), "response_format", reply)
        if structured is not None:
            reply, tokens, truncated = _reply("", structured, plan.max_tokens, quote=False)
        finish = "length" if truncated else "stop"
        message: dict[str, Any] = {
            "role": "assistant",
            "content": reply,
            "refusal": None,
            "annotations": [],
        }
        call = answers.tool_call(body)
        if call is not None:
            finish = "tool_calls"
            tokens = max(1, _estimate(len(call.name) + len(call.arguments)))
            function = {"name": call.name, "arguments": call.arguments}
            call_id = self._object_id("call_", sequence)
            message.update(
                content=None, tool_calls=[{"id": call_id, "type": "function", "function": function}]
            )
        top = answers.chat_logprobs_wanted(body)
        logprobs = None
        if top is not None and message["content"] is not None:
            logprobs = answers.chat_logprobs(message["content"], top)
        choices: list[dict[str, Any]] = [
            {"index": index, "message": message, "logprobs": logprobs, "finish_reason": finish}
            for index in range(plan.n)
        ]
        completion_tokens = tokens * plan.n
        return {
            "id": self._object_id("chatcmpl-", sequence),
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": choices,
            "usage": {
                "prompt_tokens": plan.prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": plan.prompt_tokens + completion_tokens,
                "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
                "completion_tokens_details": {
                    "reasoning_tokens": 0,
                    "audio_tokens": 0,
                    "accepted_prediction_tokens": 0,
                    "rejected_prediction_tokens": 0,
                },
            },
            "service_tier": "default",
            "system_fingerprint": "fp_mock",
        }

    def _completions_answer(
        self, body: dict[str, Any], model: str, plan: _Plan, sequence: int
    ) -> dict[str, Any]:
        choices: list[dict[str, Any]] = []
        completion_tokens = 0
        top = answers.completions_logprobs_wanted(body)
        for prompt in _prompts(body):
            text = prompt if isinstance(prompt, str) else f"{len(prompt)} tokens"
            reply, tokens, truncated = _reply("Mock completion of: ", text, plan.max_tokens)
            logprobs = None if top is None else answers.completions_logprobs(reply, top)
            for _ in range(plan.n):
                choices.append(
                    {
                        "text": reply,
                        "index": len(choices),
                        "logprobs": logprobs,
                        "finish_reason": "length" if truncated else "stop",
                    }
                )
                completion_tokens += tokens
        return {
            "id": self._object_id("cmpl-", sequence),
            "object": "text_completion",
            "created": int(time.time()),
            "model": model,
            "choices": choices,
            "usage": {
                "prompt_tokens": plan.prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": plan.prompt_tokens + completion_tokens,
            },
            "system_fingerprint": "fp_mock",
        }

    def _embeddings_answer(self, body: dict[str, Any], model: str, plan: _Plan) -> dict[str, Any]:
        dimensions = body.get("dimensions") or self._embedding_dimensions
        if dimensions is None:
            dimensions = _EMBEDDING_SIZES.get(model, _DEFAULT_EMBEDDING_SIZE)
        as_base64 = body.get("encoding_format") == "base64"
        data: list[dict[str, Any]] = []
        for index, item in enumerate(_embedding_inputs(body)):
            vector = _embedding_vector(item, dimensions)
            data.append(
                {
                    "object": "embedding",
                    "index": index,
                    "embedding": _float32_base64(vector) if as_base64 else vector,
                }
            )
        return {
            "object": "list",
            "data": data,
            "model": model,
            "usage": {"prompt_tokens": plan.prompt_tokens, "total_tokens": plan.prompt_tokens},
        }

    def _moderations_answer(
        self, body: dict[str, Any], model: str, sequence: int
    ) -> dict[str, Any]:
        result = {
            "flagged": False,
            "categories": _MODERATION_FLAGS,
            "category_scores": _MODERATION_SCORES,
            "category_applied_input_types": _MODERATION_INPUT_TYPES,
        }
        return {
            "id": self._object_id("modr-", sequence),
            "model": model,
            "results": [result] * len(_moderation_inputs(body)),
        }

    def _responses_answer(
        self, body: dict[str, Any], model: str, plan: _Plan, sequence: int
    ) -> dict[str, Any]:
        value = body["input"]
        text = value if isinstance(value, str) else _last_user_text(value)
        reply, tokens, truncated = _reply("Mock reply to: ", text, plan.max_tokens)
        text_format = (body.get("text") or {}).get("format")
        structured = answers.structured_text(text_format, "text.format", reply)
        if structured is not None:
            reply, tokens, truncated = _reply("", structured, plan.max_tokens, quote=False)
        status = "incomplete" if truncated else "completed"
        item: dict[str, Any] = {
            "type": "message",
            "id": self._object_id("msg_", sequence),
            "status": status,
            "role": "assistant",
            "content": [{"type": "output_text", "text": reply, "annotations": [], "logprobs": []}],
        }
        call = answers.tool_call(body, flat=True)
        if call is not None:
            tokens = max(1, _estimate(len(call.name) + len(call.arguments)))
            item = {
                "type": "function_call",
                "id": self._object_id("fc_", sequence),
                "call_id": self._object_id("call_", sequence),
                "name": call.name,
                "arguments": call.arguments,
                "status": "completed",
            }
        now = int(time.time())
        temperature = body.get("temperature")
        top_p = body.get("top_p")
        return {
            "id": self._object_id("resp_", sequence),
            "object": "response",
            "created_at": now,
            "status": status,
            "background": False,
            "completed_at": None if truncated else now,
            "error": None,
            "incomplete_details": {"reason": "max_output_tokens"} if truncated else None,
            "instructions": body.get("instructions"),
            "max_output_tokens": plan.max_tokens,
            "model": model,
            "output": [item],
            "parallel_tool_calls": True,
            "previous_response_id": body.get("previous_response_id"),
            "reasoning": {"effort": None, "summary": None},
            "store": bool(body.get("store", True)),
            "temperature": temperature if _is_real(temperature) else 1.0,
            "text": {"format": text_format or {"type": "text"}},
            "tool_choice": body.get("tool_choice", "auto"),
            "tools": body.get("tools") or [],
            "top_p": top_p if _is_real(top_p) else 1.0,
            "truncation": "disabled",
            "usage": {
                "input_tokens": plan.prompt_tokens,
                "input_tokens_details": {"cached_tokens": 0},
                "output_tokens": tokens,
                "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": plan.prompt_tokens + tokens,
            },
            "user": None,
            "metadata": {},
        }

    def _images_answer(
        self, body: dict[str, Any], model: str, plan: _Plan, sequence: int
    ) -> dict[str, Any]:
        response_format = body.get("response_format")
        if response_format is None:
            response_format = "b64_json" if model.startswith("gpt-image") else "url"
        data: list[dict[str, Any]] = []
        for index in range(plan.n):
            if response_format == "b64_json":
                data.append({"b64_json": _PNG_B64})
            else:
                data.append({"url": f"{self.url}/mock/images/{sequence:08x}-{index}.png"})
        return {"created": int(time.time()), "data": data}

    # ---------------------------------------------------------------- other routes

    async def _models(self, request: web.Request) -> web.Response:
        """``GET /models`` (the list) and ``GET /models/{model}`` (any model: the mock serves
        every model name)."""
        _, request_id = self._next_ids()
        key, refusal = self._authenticate(request)
        self._count_arrival(key, "models")
        if refusal is not None:
            return self._refuse(refusal, key, request_id)
        wanted = request.match_info.get("model")
        models = [
            {"id": name, "object": "model", "created": 1_700_000_000, "owned_by": "openai"}
            for name in (_MODELS if wanted is None else (wanted,))
        ]
        if wanted is None:
            body = _json.dumps({"object": "list", "data": models})
        else:
            body = _json.dumps(models[0])
        return self._respond(200, body, request_id, self._state(key))

    async def _image_file(self, request: web.Request) -> web.Response:
        """The image behind every ``url`` the images endpoint returns (not counted in stats)."""
        _, request_id = self._next_ids()
        return web.Response(
            body=_PNG, headers={"Content-Type": "image/png", "x-request-id": request_id}
        )

    async def _not_found(self, request: web.Request) -> web.Response:
        _, request_id = self._next_ids()
        key, refusal = self._authenticate(request)
        self._count_arrival(key, "unknown")
        body = _error_body(
            f"Invalid URL ({request.method} {request.path})", "invalid_request_error"
        )
        return self._respond(404, body, request_id, None if refusal else self._state(key))


def _close_loop(loop: asyncio.AbstractEventLoop) -> None:
    """Finish a private event loop cleanly: cancel leftovers, shut generators and executor."""
    try:
        pending = [task for task in asyncio.all_tasks(loop) if not task.done()]
        for task in pending:
            task.cancel()
        if pending:
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.run_until_complete(loop.shutdown_default_executor())
    finally:
        asyncio.set_event_loop(None)
        loop.close()
