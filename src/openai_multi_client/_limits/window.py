"""The window limiters: one per-minute limit (requests or tokens) of one key.

Algorithm: a sliding-window log over one second. OpenAI enforces per-minute limits over short
periods ("60,000 RPM may be enforced as 1,000 per second"), so a limit of ``L`` per minute
admits at most ``L / 60`` units in *any* window of one second (``window`` seconds in general):
each admission is logged with its cost and gives its capacity back exactly one window later.
That is a burst of one second's worth, then the steady rate, and it is the strictest reading of
"per second": a server enforcing a token bucket of one second's size, a sliding window or a
fixed window accepts every pattern it admits. (A token bucket or GCRA with one second of burst
can admit twice the per-second amount within one second, right after an idle spell.) A cost
larger than the window's capacity is admitted when the window is empty and then holds the
window for ``cost / rate`` seconds, so big requests still pass, at the average rate. Only a
cost above the whole per-minute limit can never pass.

Every method takes ``now`` explicitly, so the limiters are pure state machines: tests drive them
with any clock, and the engine passes its :class:`~openai_multi_client.Clock`'s time.
"""

from __future__ import annotations

import math
from collections import deque

from .._errors import ConfigurationError

WINDOW_SECONDS = 1.0


class Admission:
    """One logged admission: ``cost`` units held until ``until``. Refunds shrink ``cost``."""

    __slots__ = ("cost", "until")

    def __init__(self, until: float, cost: float) -> None:
        self.until = until
        self.cost = cost


class RateLimiter:
    """One per-minute limit (requests or tokens) of one key: a sliding-window log, at most
    ``limit / 60 * window`` units in any ``window`` seconds."""

    __slots__ = ("_log", "_used", "capacity", "limit_per_minute", "rate", "share", "window")

    def __init__(self, limit_per_minute: float, window: float = WINDOW_SECONDS) -> None:
        if not limit_per_minute > 0 or math.isinf(limit_per_minute):
            raise ConfigurationError(
                f"a per-minute limit must be a positive number, got {limit_per_minute!r}"
            )
        if not window > 0:
            raise ConfigurationError(f"window must be > 0 seconds, got {window!r}")
        self.window = float(window)
        self.share = 1.0
        self._set_limit(limit_per_minute)
        self._log: deque[Admission] = deque()
        self._used = 0.0

    def _set_limit(self, limit_per_minute: float) -> None:
        self.limit_per_minute = float(limit_per_minute)
        self.rate = self.limit_per_minute * self.share / 60.0  # units per second
        self.capacity = self.rate * self.window  # units one window holds

    def set_share(self, share: float) -> None:
        """Use only ``share`` (0 < share <= 1) of the limit: the part of a key that the shared
        limits granted this process (:mod:`~openai_multi_client._limits.lease`)."""
        if not 0 < share <= 1:
            raise ValueError(f"a share must be in (0, 1], got {share!r}")
        if share != self.share:
            self.share = share
            self._set_limit(self.limit_per_minute)

    def fits_ever(self, cost: float) -> bool:
        """Whether ``cost`` can ever be admitted (not above the per-minute limit)."""
        return cost <= self.limit_per_minute

    def _expire(self, now: float) -> None:
        log = self._log
        while log and log[0].until <= now:
            self._used -= log.popleft().cost
        if not log:
            self._used = 0.0  # no float drift across long runs

    def delay(self, cost: float, now: float) -> float:
        """Seconds from ``now`` until ``cost`` would be admitted (0.0: now)."""
        self._expire(now)
        capacity = self.capacity
        if cost > capacity:
            # Larger than a window: wait until the window is empty.
            return self._log[-1].until - now if self._log else 0.0
        excess = self._used + cost - capacity
        if excess <= 1e-9:
            return 0.0
        # Log entries expire in order of admission, each giving its cost back.
        for admission in self._log:
            excess -= admission.cost
            if excess <= 1e-9:
                return admission.until - now
        return self._log[-1].until - now  # pragma: no cover - excess < the log's total

    def acquire(self, cost: float, now: float) -> Admission:
        """Log ``cost`` (the caller checked :meth:`delay` is 0); the admission can be refunded."""
        until = now + max(self.window, cost / self.rate)
        log = self._log
        if log and log[-1].until > until:  # the log stays ordered by expiry: an admission
            until = log[-1].until  # never returns before an earlier one
        admission = Admission(until, cost)
        log.append(admission)
        self._used += cost
        return admission

    def refund(self, admission: Admission, amount: float, now: float) -> None:
        """Give back ``amount`` of an admission that used less than it reserved."""
        amount = min(amount, admission.cost)
        if amount > 0 and admission.until > now:  # still in the window
            admission.cost -= amount
            self._used -= amount

    def headroom(self, now: float) -> float:
        """The fraction of the window available at ``now``, from 0.0 (full) to 1.0 (empty)."""
        self._expire(now)
        return max(0.0, 1.0 - self._used / self.capacity)

    def used_of_whole(self, now: float) -> float:
        """The units admitted within the last window, as a fraction of what one window of the
        whole limit (share 1) holds."""
        self._expire(now)
        return self._used / (self.limit_per_minute / 60.0 * self.window)

    def available(self, now: float) -> float:
        """Units available at ``now``."""
        return self.headroom(now) * self.capacity

    def observe(self, limit: float | None, remaining: float | None, now: float) -> None:
        """Learn from the server: adopt its per-minute ``limit``; if it reports fewer units
        ``remaining`` than this window has free (others use the key too), log the difference
        as used for one window."""
        usable = limit is not None and limit > 0 and not math.isinf(limit)
        if usable and limit != self.limit_per_minute:
            assert limit is not None
            self._set_limit(limit)
        # Nothing to learn from a count at or above what one window holds (the usual answer:
        # a per-minute count, far above a second's capacity), so skip the window's upkeep.
        if remaining is not None and 0 <= remaining < self.capacity:
            missing = self.available(now) - remaining
            if missing > 0:
                self.acquire(missing, now)  # missing <= capacity: held for one window

    def __repr__(self) -> str:
        share = "" if self.share == 1 else f", share {self.share:.3g}"
        return f"RateLimiter({self.limit_per_minute:g}/min over {self.window:g} s{share})"
