"""What a response says of a key's limits: its ``x-ratelimit-*`` headers, parsed."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from .._headers import parse_float


@dataclass(frozen=True, slots=True)
class RateLimitHeaders:
    """The limits and what remains of them, from one response's ``x-ratelimit-*`` headers
    (``None`` where absent or garbage). The reset durations are read only when a 429 needs a
    wait (:func:`~openai_multi_client._headers.parse_rate_limit_reset`)."""

    limit_requests: float | None
    remaining_requests: float | None
    limit_tokens: float | None
    remaining_tokens: float | None

    @property
    def present(self) -> bool:
        return self.limit_requests is not None or self.limit_tokens is not None

    @classmethod
    def parse(cls, headers: Mapping[str, str]) -> RateLimitHeaders:
        return cls(
            _limit(headers.get("x-ratelimit-limit-requests")),
            _number(headers.get("x-ratelimit-remaining-requests")),
            _limit(headers.get("x-ratelimit-limit-tokens")),
            _number(headers.get("x-ratelimit-remaining-tokens")),
        )


def _number(value: str | None) -> float | None:
    number = parse_float(value)
    return None if number is None or number < 0 else number


def _limit(value: str | None) -> float | None:
    """A per-minute limit is at least 1: ``0`` or ``1e-300`` is garbage (it would stop the key
    for ever), not a limit."""
    number = parse_float(value)
    return None if number is None or number < 1 else number
