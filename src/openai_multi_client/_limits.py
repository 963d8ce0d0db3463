"""Per-key rate limiters: requests per minute and tokens per minute, and adaptive concurrency for
servers that publish no limits.

Algorithm: GCRA (the generic cell rate algorithm, a token bucket kept as one timestamp). A limit
of ``L`` per minute admits ``L / 60`` units per second with a burst tolerance of
``burst_seconds`` (default 1 s), because OpenAI enforces per-minute limits over about one second
(600 RPM behaves as 10 per second). The state is the *theoretical arrival time* ``tat``: the
moment the bucket would be full again. A cost ``c`` is admitted at ``now`` when
``max(tat, now) + c / rate - now <= burst_seconds``; a cost larger than the burst is admitted
when the bucket is full and leaves it in debt (so large requests still pass, at the average
rate). Only a cost above the whole per-minute limit can never pass.

Every method takes ``now`` explicitly, so the limiters are pure state machines: tests drive them
with any clock, and the engine passes its :class:`~openai_multi_client.Clock`'s time.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from ._errors import ConfigurationError
from ._headers import parse_go_duration

BURST_SECONDS = 1.0


class RateLimiter:
    """One per-minute limit (requests or tokens) of one key, as GCRA with ~1 s of burst."""

    __slots__ = ("_interval", "_tat", "burst_seconds", "limit_per_minute")

    def __init__(self, limit_per_minute: float, burst_seconds: float = BURST_SECONDS) -> None:
        if not limit_per_minute > 0 or math.isinf(limit_per_minute):
            raise ConfigurationError(
                f"a per-minute limit must be a positive number, got {limit_per_minute!r}"
            )
        if not burst_seconds > 0:
            raise ConfigurationError(f"burst_seconds must be > 0, got {burst_seconds!r}")
        self.limit_per_minute = float(limit_per_minute)
        self.burst_seconds = float(burst_seconds)
        self._interval = 60.0 / self.limit_per_minute  # seconds per unit
        self._tat = -math.inf

    @property
    def rate(self) -> float:
        """Units per second."""
        return self.limit_per_minute / 60.0

    @property
    def capacity(self) -> float:
        """Units the full bucket holds (the burst)."""
        return self.burst_seconds * self.rate

    def fits_ever(self, cost: float) -> bool:
        """Whether ``cost`` can ever be admitted (not above the per-minute limit)."""
        return cost <= self.limit_per_minute

    def delay(self, cost: float, now: float) -> float:
        """Seconds from ``now`` until ``cost`` would be admitted (0.0: now)."""
        tat = max(self._tat, now)
        if cost * self._interval > self.burst_seconds:
            # Larger than the burst: wait for a full bucket, then go into debt.
            return max(0.0, tat - now)
        return max(0.0, tat + cost * self._interval - now - self.burst_seconds)

    def acquire(self, cost: float, now: float) -> None:
        """Take ``cost`` (the caller checked :meth:`delay` is 0)."""
        self._tat = max(self._tat, now) + cost * self._interval

    def refund(self, amount: float, now: float) -> None:
        """Give back ``amount`` reserved but not used (never more than the bucket can hold)."""
        if amount > 0:
            self._tat = max(now, self._tat - amount * self._interval)

    def headroom(self, now: float) -> float:
        """The fraction of the burst available at ``now``, from 0.0 (empty) to 1.0 (full)."""
        used = max(0.0, self._tat - now)
        return max(0.0, 1.0 - used / self.burst_seconds)

    def available(self, now: float) -> float:
        """Units available at ``now``."""
        return self.headroom(now) * self.capacity

    def observe(self, limit: float | None, remaining: float | None, now: float) -> None:
        """Learn from the server: adopt its per-minute ``limit``; if it reports fewer
        ``remaining`` than we think are available (other clients share the key), believe it."""
        if (
            limit is not None
            and limit > 0
            and not math.isinf(limit)
            and limit != self.limit_per_minute
        ):
            used = max(0.0, self._tat - now) / self._interval  # units in the bucket
            self.limit_per_minute = float(limit)
            self._interval = 60.0 / self.limit_per_minute
            self._tat = now + used * self._interval if used else self._tat
        if remaining is not None and remaining >= 0 and remaining < self.available(now):
            self._tat = now + self.burst_seconds - remaining * self._interval

    def block_until(self, when: float) -> None:
        """Admit nothing before ``when`` (the server said the bucket is empty until then)."""
        self._tat = max(self._tat, when + self.burst_seconds - self._interval)

    def __repr__(self) -> str:
        return f"RateLimiter({self.limit_per_minute:g}/min, burst {self.burst_seconds:g} s)"


class AdaptiveConcurrency:
    """Concurrency found by AIMD for servers that publish no limits (vLLM, Ollama, ...).

    Starts at ``maximum``; each success adds ``1 / limit`` (about +1 per round trip of a full
    window); a 429, 503 or timeout halves the limit, at most once per ``cooldown`` seconds so a
    burst of failures from one overload counts once. Never below 1.
    """

    __slots__ = ("_last_decrease", "cooldown", "limit", "maximum")

    def __init__(self, maximum: int, cooldown: float = 1.0) -> None:
        self.maximum = maximum
        self.limit = float(maximum)
        self.cooldown = cooldown
        self._last_decrease = -math.inf

    @property
    def allowed(self) -> int:
        return max(1, int(self.limit))

    def on_success(self) -> None:
        self.limit = min(float(self.maximum), self.limit + 1.0 / max(1.0, self.limit))

    def on_overload(self, now: float) -> None:
        if now - self._last_decrease >= self.cooldown:
            self.limit = max(1.0, self.limit / 2.0)
            self._last_decrease = now

    def __repr__(self) -> str:
        return f"AdaptiveConcurrency({self.limit:.1f} of {self.maximum})"


@dataclass(frozen=True, slots=True)
class RateLimitHeaders:
    """The six ``x-ratelimit-*`` values of one response (``None`` where absent or garbage)."""

    limit_requests: float | None
    remaining_requests: float | None
    reset_requests: float | None
    limit_tokens: float | None
    remaining_tokens: float | None
    reset_tokens: float | None

    @property
    def present(self) -> bool:
        return self.limit_requests is not None or self.limit_tokens is not None

    @classmethod
    def parse(cls, headers: Mapping[str, str]) -> RateLimitHeaders:
        return cls(
            _number(headers.get("x-ratelimit-limit-requests")),
            _number(headers.get("x-ratelimit-remaining-requests")),
            parse_go_duration(headers.get("x-ratelimit-reset-requests")),
            _number(headers.get("x-ratelimit-limit-tokens")),
            _number(headers.get("x-ratelimit-remaining-tokens")),
            parse_go_duration(headers.get("x-ratelimit-reset-tokens")),
        )


def _number(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        number = float(value.strip())
    except ValueError:
        return None
    if math.isnan(number) or math.isinf(number) or number < 0:
        return None
    return number
