"""Parsing of the response headers that steer retries and limits.

All parsers are pure and total: garbage in gives ``None`` out, never an exception, never a
negative, infinite or NaN duration.
"""

from __future__ import annotations

import email.utils
import math
import re
from collections.abc import Mapping

_GO_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_GO_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "μs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
_TRY_AGAIN = re.compile(r"try again in (\d+(?:\.\d+)?)\s*(ms|s)\b", re.IGNORECASE)
# Longest duration we accept from a header: anything longer is treated as garbage.
_MAX_SANE_SECONDS = 7 * 24 * 3600.0
# LiteLLM's proxy passes the upstream provider's headers on under this prefix
# (``llm_provider-retry-after``, ``llm_provider-x-ratelimit-reset-requests``, ...); its own
# headers keep their plain names and win when both are there.
PROVIDER_PREFIX = "llm_provider-"
_PREFIXES = ("", PROVIDER_PREFIX)


def _sane(seconds: float) -> float | None:
    if math.isnan(seconds) or seconds < 0 or seconds > _MAX_SANE_SECONDS:
        return None
    return seconds


def parse_go_duration(value: str | None) -> float | None:
    """Parse a Go duration such as ``120ms``, ``1s``, ``6m0s`` or ``2m59.56s`` into seconds.

    A bare number is taken as seconds (some proxies send that).
    """
    if value is None:
        return None
    text = value.strip()
    if not text or len(text) > 64:
        return None
    try:
        return _sane(float(text))
    except ValueError:
        pass
    total = 0.0
    position = 0
    for match in _GO_DURATION.finditer(text):
        if match.start() != position:
            return None
        total += float(match.group(1)) * _GO_UNITS[match.group(2)]
        position = match.end()
    if position != len(text) or position == 0:
        return None
    return _sane(total)


def parse_retry_after(headers: Mapping[str, str]) -> float | None:
    """The server's requested wait in seconds, from ``retry-after-ms`` (preferred) or
    ``retry-after`` (seconds, or an HTTP date measured against the response's own ``date``
    header, so no wall clock is read); failing both, from LiteLLM's ``llm_provider-`` copies
    of them (the upstream's own answer, passed on by the proxy)."""
    for prefix in _PREFIXES:
        milliseconds = parse_float(headers.get(prefix + "retry-after-ms"))
        if milliseconds is not None:
            return _sane(milliseconds / 1000.0)
        value = headers.get(prefix + "retry-after")
        if value is None:
            continue
        seconds = parse_float(value)
        if seconds is not None:
            return _sane(seconds)
        delta = _http_date_delta(value, headers.get("date"))
        if delta is not None:
            return delta
    return None


def parse_try_again_message(message: str | None) -> float | None:
    """OpenAI's 429 messages say e.g. ``Please try again in 1.2s``; return that delay."""
    if not message:
        return None
    match = _TRY_AGAIN.search(message)
    if match is None:
        return None
    scale = 0.001 if match.group(2).lower() == "ms" else 1.0
    return _sane(float(match.group(1)) * scale)


def parse_should_retry(headers: Mapping[str, str]) -> bool | None:
    """``x-should-retry: true|false``; anything else is ``None`` (no opinion)."""
    value = headers.get("x-should-retry")
    if value is None:
        return None
    text = value.strip().lower()
    if text == "true":
        return True
    if text == "false":
        return False
    return None


def parse_rate_limit_reset(headers: Mapping[str, str]) -> float | None:
    """How long until an exhausted bucket takes one more request, from the ``x-ratelimit-*``
    headers.

    ``x-ratelimit-reset-*`` is the time until the bucket is *full* again, up to a minute; one
    more unit is back after ``reset / (limit - remaining)`` of that. Only buckets with nothing
    remaining count (either, when neither says); the longer wait wins. LiteLLM's
    ``llm_provider-x-ratelimit-*`` copies (the upstream's buckets) count as well.
    """
    waits: list[float] = []
    for prefix in _PREFIXES:
        for kind in ("requests", "tokens"):
            name = f"{prefix}x-ratelimit-%s-{kind}"
            reset = parse_go_duration(headers.get(name % "reset"))
            if reset is None:
                continue
            remaining = parse_float(headers.get(name % "remaining"))
            if remaining is not None and remaining > 0:
                continue
            limit = parse_float(headers.get(name % "limit"))
            if limit is not None and limit >= 1:
                reset = reset / limit
            waits.append(reset)
    return max(waits) if waits else None


def response_request_id(headers: Mapping[str, str]) -> str | None:
    """The server's id of this request: ``x-request-id``; without it, LiteLLM's
    ``x-litellm-call-id`` (on every answer of the proxy, where its ``request-id`` is the
    upstream's, absent when no upstream answered), else ``request-id`` (the name Anthropic's
    API and gateways modelled on it use)."""
    return (
        headers.get("x-request-id") or headers.get("x-litellm-call-id") or headers.get("request-id")
    )


def parse_float(value: str | None) -> float | None:
    """A finite float from a header value, or ``None``."""
    if value is None:
        return None
    try:
        number = float(value.strip())
    except ValueError:
        return None
    if math.isnan(number) or math.isinf(number):
        return None
    return number


def _http_date_delta(value: str, date_header: str | None) -> float | None:
    if date_header is None:
        return None
    try:
        target = email.utils.parsedate_to_datetime(value)
        reference = email.utils.parsedate_to_datetime(date_header)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if target.tzinfo is None or reference.tzinfo is None:
        return None
    return _sane(max(0.0, (target - reference).total_seconds()))
