"""The mock server's per-key rate limits: token buckets, the ``x-ratelimit-*`` headers, and
admission with OpenAI's 429 ``rate_limit_exceeded`` when a key is over its limits."""

from __future__ import annotations

import hashlib
import math
from typing import Final, NamedTuple

from .errors import error_body
from .options import ServerOptions

__all__ = ["KeyState", "RateLimits", "Refusal", "TokenBucket", "format_go_duration"]

_ORGANIZATION: Final = "org-mock"  # of the requests that carry no key
_PROJECT: Final = "proj_default"
_RATE_LIMIT_DOCS: Final = "Visit https://platform.openai.com/account/rate-limits to learn more."
# What an unlimited key reports in its x-ratelimit-* headers.
_UNLIMITED: Final = {"requests": str(1_000_000_000), "tokens": str(1_000_000_000_000)}


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


class KeyState:
    """The buckets of one key (``None``: that dimension is unlimited), shared by the keys of
    its organization, and the organization and project its responses name."""

    __slots__ = ("organization", "project", "requests", "tokens")

    def __init__(
        self,
        requests: TokenBucket | None,
        tokens: TokenBucket | None,
        organization: str = _ORGANIZATION,
        project: str = _PROJECT,
    ) -> None:
        self.requests = requests
        self.tokens = tokens
        self.organization = organization
        self.project = project

    @property
    def limited(self) -> bool:
        return self.requests is not None or self.tokens is not None


class Refusal(NamedTuple):
    """A 429 ``rate_limit_exceeded``: the limit type, the body and the headers to add."""

    kind: str
    body: bytes
    headers: dict[str, str]


class RateLimits:
    """The buckets of every key seen, created on first use from the key's :class:`KeyLimits`;
    time comes from ``options.clock``."""

    def __init__(self, options: ServerOptions) -> None:
        self._options = options
        self._clock = options.clock
        self._states: dict[str, KeyState] = {}
        self._organizations: dict[str, KeyState] = {}  # the buckets of each organization

    def state(self, key: str) -> KeyState:
        """The buckets of ``key`` (as presented; ``""`` for none)."""
        state = self._states.get(key)
        if state is None:
            limits = self._options.limits_of(key)
            organization = limits.organization
            if organization is None:
                organization = (
                    "org-" + hashlib.sha256(key.encode()).hexdigest()[:12] if key else _ORGANIZATION
                )
                shared = None
            else:
                shared = self._organizations.get(organization)
            project = limits.project or _PROJECT
            if shared is None:
                rpm, tpm = limits.requests_per_minute, limits.tokens_per_minute
                now = self._clock.now()
                requests = TokenBucket(rpm, now) if rpm is not None else None
                tokens = TokenBucket(tpm, now) if tpm is not None else None
            else:
                requests, tokens = shared.requests, shared.tokens
            state = self._states[key] = KeyState(requests, tokens, organization, project)
            if limits.organization is not None and shared is None:
                self._organizations[organization] = state
        return state

    def headers(self, state: KeyState) -> dict[str, str]:
        """The six ``x-ratelimit-*`` headers of a key (none when the option is off)."""
        headers = {"openai-organization": state.organization, "openai-project": state.project}
        if not self._options.rate_limit_headers:
            return headers
        now = self._clock.now()
        for bucket, kind in ((state.requests, "requests"), (state.tokens, "tokens")):
            if bucket is None:
                limit, remaining, reset = _UNLIMITED[kind], _UNLIMITED[kind], "0s"
            else:
                limit, remaining = bucket.limit_text, str(bucket.remaining(now))
                reset = format_go_duration(bucket.reset_after(now))
            headers[f"x-ratelimit-limit-{kind}"] = limit
            headers[f"x-ratelimit-remaining-{kind}"] = remaining
            headers[f"x-ratelimit-reset-{kind}"] = reset
        return headers

    def refund(self, state: KeyState, reserved: int, used: object) -> None:
        """Settle the tokens reserved at admission with those the answer ``used``."""
        if state.tokens is not None and isinstance(used, int) and used < reserved:
            state.tokens.refund(reserved - used, self._clock.now())

    def admit(self, state: KeyState, cost: int, model: str) -> Refusal | None:
        """Charge a request of ``cost`` tokens to the key (None), or say why it is refused."""
        now = self._clock.now()
        requests, tokens = state.requests, state.tokens
        if tokens is not None and cost > tokens.limit:
            if requests is not None and self._options.count_rejected:
                requests.charge_rejected(1, now)
            return _too_large(model, state.organization, tokens.limit, cost)
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
        if self._options.count_rejected:
            if requests is not None:
                requests.charge_rejected(1, now)
            if tokens is not None:
                tokens.charge_rejected(cost, now)
        retry = max(
            requests.wait_time(1, now) if requests is not None else 0.0,
            tokens.wait_time(cost, now) if tokens is not None else 0.0,
        )
        message = (
            f"Rate limit reached for {model} in organization {state.organization} on {kind} "
            f"per min ({unit}): Limit {bucket.limit}, Used {used}, Requested {requested}. "
            f"Please try again in {format_go_duration(retry)}. {_RATE_LIMIT_DOCS}"
        )
        headers = _retry_after(retry) if self._options.retry_after else {}
        return Refusal(kind, error_body(message, kind, None, "rate_limit_exceeded"), headers)


def _too_large(model: str, organization: str, limit: int, cost: int) -> Refusal:
    """The 429 of a request larger than the key's tokens per minute: it never gets through."""
    message = (
        f"Request too large for {model} in organization {organization} on tokens per "
        f"min (TPM): Limit {limit}, Requested {cost}. The input or output tokens "
        f"must be reduced in order to run successfully. {_RATE_LIMIT_DOCS}"
    )
    body = error_body(message, "tokens", None, "rate_limit_exceeded")
    return Refusal("tokens", body, {"x-should-retry": "false"})


def _retry_after(seconds: float) -> dict[str, str]:
    return {
        "retry-after-ms": str(max(1, math.ceil(seconds * 1000.0 - 1e-6))),
        "retry-after": str(max(1, math.ceil(seconds - 1e-9))),
    }
