"""The pool that hands API keys out within their limits.

A :class:`~openai_multi_client._limits.key.Key` is configuration; a :class:`KeyPool` is the
run-time side: for each key, its limiters (requests and tokens per minute, configured or learned
from the ``x-ratelimit-*`` headers), its adaptive concurrency for servers without such headers,
its cool-down after a 429, its retirement, and its counters. Pools are thread-safe, so one pool
(a :class:`~openai_multi_client.KeyManager`) can be shared by several clients and threads, which
then share the keys' limits. A release (and anything else that can give capacity back) calls the
pool's listeners, so clients on other event loops or threads that wait for capacity are woken at
once instead of polling.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from .._errors import ConfigurationError
from .._headers import parse_float
from .._logfields import log_fields
from .group import ForeignUse, GroupLimits, Groups
from .headers import RateLimitHeaders
from .health import ModelHealth, Scope
from .key import Key
from .lease import Claim, Grant, demand_for
from .window import Admission, RateLimiter

logger = logging.getLogger("openai_multi_client")

Listener = Callable[[], None]


@dataclass(slots=True, eq=False)  # not frozen: one is made per attempt, and frozen ones cost
class Reservation:
    """Capacity taken on one key for one attempt; hand it back with :meth:`KeyPool.release`."""

    key: Key
    tokens: int
    admission: Admission | None = None
    at: float = 0.0  # when it was taken
    sequence: int = 0  # its number among the key's reservations
    model: str | None = None


@dataclass(frozen=True, slots=True)
class KeyStatistics:
    """A snapshot of one key. ``state`` is ``active``, ``cooling`` (until ``cooling_until``,
    on the pool's clock) or ``retired`` (``retired_reason`` says why). ``share`` is the
    fraction of the key's limits this process may use (below 1.0 only with shared limits).
    ``group`` names the keys that share one set of limits (configured, or the organization and
    project the server named), or is ``None`` for a key with limits of its own."""

    key: str
    state: str
    requests: int
    tokens: int
    rate_limited: int
    failures: int
    in_flight: int
    requests_per_minute: float | None
    tokens_per_minute: float | None
    limits_learned: bool
    concurrency_limit: int | None
    cooling_until: float | None
    retired_reason: str | None
    share: float = 1.0
    group: str | None = None
    configured_requests_per_minute: float | None = None
    configured_tokens_per_minute: float | None = None
    requests_remaining: float | None = None
    """Requests the key's limiter admits now (within its one-second window); ``None``
    without a requests limit."""
    tokens_remaining: float | None = None
    """Tokens the key's limiter admits now (within its one-second window)."""


@dataclass(frozen=True, slots=True)
class PoolStatistics:
    keys: tuple[KeyStatistics, ...]
    active: int
    cooling: int
    retired: int
    requests: int
    tokens: int
    rate_limited: int


class _KeyState:
    __slots__ = (
        "demand",
        "failures",
        "foreign",
        "group",
        "health",
        "in_flight",
        "key",
        "leased_requests",
        "leased_tokens",
        "rate_limited",
        "requests",
        "retired_reason",
        "share",
        "tokens",
    )

    def __init__(self, key: Key, concurrency: int | None) -> None:
        self.key = key
        self.group = GroupLimits(key, concurrency)
        self.foreign = ForeignUse()
        self.in_flight = 0
        self.retired_reason: str | None = None
        # Health per model, for keys that answer some models and not others (a proxy's key
        # whose upstream for one model group is dead).
        self.health = ModelHealth()
        self.requests = 0
        self.tokens = 0
        self.rate_limited = 0
        self.failures = 0
        self.share = 1.0  # of the key's limits (shared limits lower it)
        self.demand = 1.0  # of a share, as last claimed
        self.leased_requests = 0  # self.requests at the last lease renewal
        self.leased_tokens = 0

    def set_share(self, share: float) -> None:
        self.share = share
        if share > 0:
            for limiter in (self.group.requests_limiter, self.group.tokens_limiter):
                if limiter is not None:
                    limiter.set_share(share)

    def slots(self) -> int:
        """Whole requests one window of the key holds (its shares are granted in such units;
        1,000 when the limits are not known, or huge)."""
        if self.group.requests_limiter is not None:
            limiter = self.group.requests_limiter
            return max(1, min(1000, math.floor(limiter.limit_per_minute / 60 * limiter.window)))
        return 1000

    def used_since_lease(self, interval: float) -> float | None:
        """The fraction of the key's limits used since the last renewal (None: limits unknown)."""
        used: float | None = None
        for limiter, count in (
            (self.group.requests_limiter, self.requests - self.leased_requests),
            (self.group.tokens_limiter, self.tokens - self.leased_tokens),
        ):
            if limiter is not None:
                fraction = count / (limiter.limit_per_minute / 60.0 * interval)
                used = fraction if used is None else max(used, fraction)
        self.leased_requests, self.leased_tokens = self.requests, self.tokens
        return used

    def used_in_window(self, now: float) -> float | None:
        """The fraction of the key admitted within the last window, the most of its requests
        and tokens (None: limits unknown)."""
        used: float | None = None
        for limiter in (self.group.requests_limiter, self.group.tokens_limiter):
            if limiter is not None:
                fraction = limiter.used_of_whole(now)
                used = fraction if used is None else max(used, fraction)
        return used

    def clamp_share(self, used: float) -> None:
        """Admit no more than ``used`` of the key in any window (never more than the share):
        a share whose window holds less than one request is none, as a request larger than
        the window would pass once the window is empty."""
        clamp = min(self.share, used)
        limiter = self.group.requests_limiter
        if (
            clamp < self.share
            and limiter is not None
            and clamp * limiter.limit_per_minute / 60.0 * limiter.window < 1.0
        ):
            clamp = 0.0
        self.set_share(clamp)

    def delay(self, tokens: int, now: float) -> float:
        """Seconds until this key could take a request of ``tokens`` (inf: not by time)."""
        if self.group.cooling_until is not None:
            if self.group.cooling_until > now:
                return self.group.cooling_until - now
            self.group.cooling_until = None
        if self.share <= 0:
            return math.inf  # no share of the key yet: wait for a lease renewal
        group = self.group
        if group.in_flight and (
            group.probing
            or (group.adaptive is not None and group.in_flight >= group.adaptive.allowed)
        ):
            return math.inf  # wait for a release, not for time
        delay = 0.0
        if self.group.requests_limiter is not None:
            delay = self.group.requests_limiter.delay(1, now)
        if self.group.tokens_limiter is not None and tokens:
            delay = max(delay, self.group.tokens_limiter.delay(tokens, now))
        return delay

    def headroom(self, now: float) -> float:
        room = 1.0
        if self.group.requests_limiter is not None:
            room = min(room, self.group.requests_limiter.headroom(now))
        if self.group.tokens_limiter is not None:
            room = min(room, self.group.tokens_limiter.headroom(now))
        if self.group.adaptive is not None:
            room = min(room, 1.0 - self.group.in_flight / self.group.adaptive.allowed)
        return room * self.key.weight

    def fits_ever(self, tokens: int) -> bool:
        return self.group.tokens_limiter is None or self.group.tokens_limiter.fits_ever(tokens)


def _below_configured(state: _KeyState, kind: str, published: float | None) -> float | None:
    """The limit to pace a key by when the user configured one: the server's when it publishes
    a lower one (a configured limit above the server's real one only earns 429s), otherwise the
    configured one. Says so in the log the first time, for each of requests and tokens."""
    configured = (
        state.key.requests_per_minute if kind == "requests" else state.key.tokens_per_minute
    )
    if published is None or configured is None:
        return None
    if published >= configured:
        return configured
    if kind not in state.group.lowered:
        state.group.lowered.add(kind)
        logger.warning(
            "API key %s: the server allows %g %s per minute, fewer than the %g configured; "
            "pacing to the server's limit",
            state.key.id,
            published,
            kind,
            configured,
            extra=log_fields("key_limit_lowered", key_id=state.key.id),
        )
    return published


class KeyPool:
    """The keys of a run: picks the key with the most headroom for each request, paces every
    key to its limits, cools down a key that got a 429, retires dead keys.

    ``concurrency`` (the client's) turns on learning: a key without configured limits first
    sends one request alone, then paces by the limits its response headers publish, or, when the
    server publishes none, by adaptive concurrency (AIMD) up to ``concurrency``. ``None`` turns
    learning off (for ``custom_api``). All methods are thread-safe.
    """

    def __init__(self, keys: Sequence[Key], concurrency: int | None = None) -> None:
        if not keys:
            raise ConfigurationError("a key pool needs at least one key")
        self._states = [_KeyState(key, concurrency) for key in keys]
        self._groups = Groups(self._states)
        self._by_key = {id(state.key): state for state in self._states}
        self._by_id = {state.key.id: state for state in self._states}
        self._lock = threading.Lock()
        self._turn = 0
        # A reserve() found no room since the last lease renewal (at first: nothing is known
        # yet, so a client asks for whole keys).
        self._waited = True
        # A reserve() found no room since the last release told the listeners: only then may
        # somebody be waiting for one (so most releases tell nobody).
        self._blocked = False
        self._measured_at = -math.inf  # when lease_claims() last measured the use of the keys
        # Key id -> its share before lease_claims() clamped it, until the renewal's end.
        self._unclamped: dict[str, float] = {}
        self._largest_cost: float | None = None  # cached; reset when limits change
        # Called (on whatever thread) when capacity may have come back; copied on write so
        # that a release reads it without the lock.
        self._listeners: tuple[Listener, ...] = ()

    def add_listener(self, listener: Listener) -> None:
        """Call ``listener()`` whenever capacity may have come back (a release, new shares, a
        retirement), from the thread that caused it. It must be quick and must not block: a
        client waiting on another event loop schedules its wake-up there."""
        with self._lock:
            self._listeners = (*self._listeners, listener)

    def remove_listener(self, listener: Listener) -> None:
        with self._lock:
            listeners = list(self._listeners)
            if listener in listeners:
                listeners.remove(listener)
            self._listeners = tuple(listeners)

    def _changed(self) -> None:
        """Tell the listeners (called outside the lock)."""
        for listener in self._listeners:
            listener()

    @property
    def key_ids(self) -> Sequence[str]:
        return tuple(state.key.id for state in self._states)

    @property
    def keys(self) -> Sequence[Key]:
        return tuple(state.key for state in self._states)

    @property
    def exhausted(self) -> bool:
        """Every key is retired."""
        return all(state.retired_reason is not None for state in self._states)

    def largest_cost(self) -> float:
        """The largest token cost any usable key could ever admit (inf when unknown)."""
        largest = self._largest_cost
        if largest is None:
            with self._lock:
                limits = [
                    math.inf
                    if state.group.tokens_limiter is None
                    else state.group.tokens_limiter.limit_per_minute
                    for state in self._states
                    if state.retired_reason is None
                ]
            largest = self._largest_cost = max(limits, default=math.inf)
        return largest

    def reserve(
        self, tokens: int, now: float, model: str | None = None
    ) -> Reservation | float | None:
        """Take capacity for one request of ``tokens`` (for ``model``, if known) on the usable
        key with the most headroom.

        Returns the :class:`Reservation`; or, when no key can take it now, the time (on the
        same clock as ``now``) worth trying again at, ``math.inf`` meaning "after a release";
        or ``None`` when every key is retired or refused ``model`` (:meth:`refuse`).
        """
        with self._lock:
            best: _KeyState | None = None
            best_room = -1.0
            soonest = math.inf
            usable = False
            count = len(self._states)
            for offset in range(count):
                # Rotate the starting point so equal keys share the load.
                state = self._states[(self._turn + offset) % count]
                if state.retired_reason is not None or not state.fits_ever(tokens):
                    continue
                if model is not None and model in state.health.refused:
                    continue
                usable = True
                delay = state.delay(tokens, now)
                if delay > 0:
                    soonest = min(soonest, now + delay)
                    continue
                if best is None:
                    best = state  # headroom only matters when there is a choice
                    continue
                if best_room < 0:
                    best_room = best.headroom(now)
                room = state.headroom(now)
                if room > best_room:
                    best, best_room = state, room
            if not usable:
                return None
            if best is None:
                self._blocked = True
                if not self._unclamped:  # (a renewal's clamp is no sign of wanting more)
                    self._waited = True
                return soonest
            self._turn = (self._turn + 1) % count
            if best.group.requests_limiter is not None:
                best.group.requests_limiter.acquire(1, now)
            admission = None
            if best.group.tokens_limiter is not None and tokens:
                admission = best.group.tokens_limiter.acquire(tokens, now)
            best.in_flight += 1
            best.group.in_flight += 1
            best.requests += 1
            best.tokens += tokens
            return Reservation(best.key, tokens, admission, now, best.foreign.sent(), model)

    def release(
        self,
        reservation: Reservation,
        now: float,
        *,
        headers: Mapping[str, str] | None = None,
        used_tokens: int | None = None,
        overloaded: bool = False,
        failed: bool = False,
    ) -> None:
        """Hand back a reservation after the attempt: learn from the response ``headers``,
        refund tokens reserved beyond ``used_tokens``, and feed the adaptive concurrency
        (``overloaded``: a 429, 503 or timeout)."""
        with self._lock:
            state = self._by_key[id(reservation.key)]
            state.in_flight -= 1
            state.group.in_flight -= 1
            state.group.probing = False
            if failed:
                state.failures += 1
            if headers is not None:
                spent = reservation.tokens if used_tokens is None else used_tokens
                self._learn(state, headers, spent, now)
                if self._groups.find(state, reservation.at, reservation.sequence, headers, now):
                    self._largest_cost = None
            if used_tokens is not None and used_tokens < reservation.tokens:
                refund = reservation.tokens - used_tokens
                state.tokens -= refund
                if state.group.tokens_limiter is not None and reservation.admission is not None:
                    state.group.tokens_limiter.refund(reservation.admission, refund, now)
            model = reservation.model
            if not failed and model is not None:
                state.health.answered(model)
            if state.group.adaptive is not None:
                if overloaded:
                    state.group.adaptive.on_overload(now)
                elif not failed:
                    state.group.adaptive.on_success()
            blocked, self._blocked = self._blocked, False
        if blocked:
            self._changed()

    def _learn(
        self, state: _KeyState, headers: Mapping[str, str], used_tokens: int, now: float
    ) -> None:
        limits = (
            headers.get("x-ratelimit-limit-requests"),
            headers.get("x-ratelimit-limit-tokens"),
        )
        if limits == state.group.limits_seen:  # the usual case: only what remains can have changed
            requests, tokens = state.group.requests_limiter, state.group.tokens_limiter
            # (observe() learns nothing from a count at or above a window's capacity: the usual
            # per-minute count. Checked here, once per answer, to skip the call.)
            if requests is not None:
                remaining = parse_float(headers.get("x-ratelimit-remaining-requests"))
                if remaining is not None and remaining < requests.capacity:
                    requests.observe(None, remaining, now)
            if tokens is not None:
                remaining = parse_float(headers.get("x-ratelimit-remaining-tokens"))
                if remaining is not None and remaining < tokens.capacity:
                    tokens.observe(None, remaining, now)
            return
        state.group.limits_seen = limits
        seen = RateLimitHeaders.parse(headers)
        if not seen.present:
            return
        if not state.group.headers_seen:
            self._largest_cost = None
            state.group.headers_seen = True
            state.group.adaptive = None  # the server publishes its limits: pace by them instead
        key = state.key
        if seen.limit_requests is not None and key.requests_per_minute is None:
            if state.group.requests_limiter is None:
                state.group.requests_limiter = RateLimiter(seen.limit_requests)
                state.set_share(state.share)  # a shared key's share applies to it too
                # What went out before the limit was known counts as sent just now.
                state.group.requests_limiter.acquire(state.group.in_flight + 1, now)
            state.group.requests_limiter.observe(seen.limit_requests, seen.remaining_requests, now)
        elif state.group.requests_limiter is not None:
            limit = _below_configured(state, "requests", seen.limit_requests)
            state.group.requests_limiter.observe(limit, seen.remaining_requests, now)
        if seen.limit_tokens is not None and key.tokens_per_minute is None:
            if state.group.tokens_limiter is None:
                state.group.tokens_limiter = RateLimiter(seen.limit_tokens)
                state.set_share(state.share)
                state.group.tokens_limiter.acquire(used_tokens, now)
            state.group.tokens_limiter.observe(seen.limit_tokens, seen.remaining_tokens, now)
        elif state.group.tokens_limiter is not None:
            limit = _below_configured(state, "tokens", seen.limit_tokens)
            state.group.tokens_limiter.observe(limit, seen.remaining_tokens, now)

    def cool_down(self, key: Key, until: float) -> None:
        """Skip ``key`` until ``until``: a 429 told us it is over its limit. Other keys go on."""
        with self._lock:
            state = self._by_key[id(key)]
            state.rate_limited += 1
            if state.retired_reason is None and (
                state.group.cooling_until is None or state.group.cooling_until < until
            ):
                state.group.cooling_until = until

    def retire(self, key: Key, reason: str) -> None:
        """Stop using ``key`` for the rest of the run (warns once, with the redacted id)."""
        with self._lock:
            state = self._by_key[id(key)]
            if state.retired_reason is not None:
                return
            state.retired_reason = key.redact(reason)
            state.group.cooling_until = None
            self._largest_cost = None
            left = sum(1 for other in self._states if other.retired_reason is None)
        logger.warning(
            "retired API key %s for this run: %s (%d of %d keys left)",
            key.id,
            state.retired_reason,
            left,
            len(self._states),
            extra=log_fields("key_retired", key_id=key.id),
        )
        self._changed()  # those waiting learn when no key is left

    def refuse(self, key: Key, model: str, reason: str, scope: Scope = Scope.KEY) -> bool:
        """A 401/403 (or exhausted quota) from ``key`` for ``model``: stop using the key for
        ``model`` only (warns once) and return True when its answers allow it (``health.py``
        weighs them with the answer's ``scope``); else return False: the caller retires it."""
        with self._lock:
            state = self._by_key[id(key)]
            if state.retired_reason is not None:
                return False
            if model in state.health.refused:
                return True
            if not state.health.refuse(model, key.redact(reason), scope):
                return False
            self._largest_cost = None
            proven = state.health.proven()
        logger.warning(
            "API key %s refused model %r (%s)%s; only that model's requests stop using it",
            key.id,
            model,
            state.health.refused[model],
            " while it answers other models" if proven else "",
            extra=log_fields("model_refused", key_id=key.id),
        )
        self._changed()
        return True

    def refusals(self, model: str) -> dict[str, str]:
        """Redacted key id -> why that key refused ``model`` (:meth:`refuse`)."""
        with self._lock:
            return {
                state.key.id: state.health.refused[model]
                for state in self._states
                if model in state.health.refused
            }

    def lease_claims(self, now: float, interval: float) -> dict[str, Claim]:
        """Each usable key's claim for a share (:mod:`~openai_multi_client._limits.lease`):
        all of it when requests waited for capacity since the last call; else the fraction
        used since the last measure, with a margin, measured over at least half of the renewal
        ``interval`` (a renewal sooner than that repeats the last demand: a few milliseconds
        without a request say nothing).

        Each claim also carries ``used``, the fraction of the key admitted within the last
        window, and the key's share is clamped to it (never raised) until :meth:`apply_grants`
        or :meth:`unclamp`: a shrinking lease then holds no more than that at the backend.
        While a failed renewal's clamp stands (until :meth:`unclamp`), no key is clamped again:
        each claims ``used`` 1.0 (hold the whole old share), and unclamp() restores the first."""
        with self._lock:
            clamped = bool(self._unclamped)  # a failed renewal's clamp stands
            waited, self._waited = self._waited, False
            elapsed = now - self._measured_at
            measure = elapsed >= interval / 2
            if measure:
                self._measured_at = now
            claims: dict[str, Claim] = {}
            for state in self._states:
                if state.retired_reason is None:
                    if measure:
                        used = state.used_since_lease(elapsed)
                        state.demand = demand_for(used if used is not None else 1.0, waited)
                    elif waited:
                        state.demand = 1.0
                    in_window = None if clamped else state.used_in_window(now)
                    if in_window is None:  # limits unknown or clamped: hold the whole old share
                        claims[state.key.id] = Claim(state.demand, state.slots())
                        continue
                    self._unclamped[state.key.id] = state.share
                    state.clamp_share(in_window)
                    claims[state.key.id] = Claim(state.demand, state.slots(), in_window)
            return claims

    def unclamp(self) -> None:
        """Give the keys back the shares :meth:`lease_claims` clamped (a renewal failed)."""
        with self._lock:
            unclamped, self._unclamped = self._unclamped, {}
            for key_id, share in unclamped.items():
                self._by_id[key_id].set_share(share)
        self._changed()

    def set_shares(self, share: float) -> None:
        """Give every key the same share: 0.0 before the first lease, 1.0 to run alone."""
        with self._lock:
            self._unclamped = {}
            if share < 1.0:
                self._groups.shared = True  # other processes use the keys too
            for state in self._states:
                state.set_share(share)
        self._changed()

    def apply_grants(self, grants: Mapping[str, Grant], now: float) -> None:
        """Take the shares, cool-downs and retirements a lease renewal brought."""
        retired: list[tuple[Key, str]] = []
        with self._lock:
            unclamped, self._unclamped = self._unclamped, {}
            for key_id in unclamped.keys() - grants.keys():  # not renewed: as if it failed
                self._by_id[key_id].set_share(unclamped[key_id])
            self._groups.shared = True  # leased: other processes use the keys too
            for key_id, grant in grants.items():
                state = self._by_id.get(key_id)
                if state is None or state.retired_reason is not None:
                    continue
                if grant.retired is not None:
                    retired.append((state.key, grant.retired))
                    continue
                if grant.cooling_for > 0:
                    until = now + grant.cooling_for
                    if state.group.cooling_until is None or state.group.cooling_until < until:
                        state.group.cooling_until = until
                state.set_share(grant.share)
        for key, reason in retired:
            self.retire(key, f"retired by another process: {reason}")
        self._changed()

    def retired_reasons(self) -> dict[str, str]:
        """Redacted key id -> why it was retired."""
        with self._lock:
            return {
                state.key.id: state.retired_reason
                for state in self._states
                if state.retired_reason is not None
            }

    def redact(self, text: str) -> str:
        """``text`` with every key's secret replaced by its redacted id."""
        for state in self._states:
            text = state.key.redact(text)
        return text

    def statistics(self, now: float) -> PoolStatistics:
        """Counters and state of every key, and their totals."""
        with self._lock:
            keys = tuple(_key_statistics(state, now) for state in self._states)
        return PoolStatistics(
            keys=keys,
            active=sum(1 for k in keys if k.state == "active"),
            cooling=sum(1 for k in keys if k.state == "cooling"),
            retired=sum(1 for k in keys if k.state == "retired"),
            requests=sum(k.requests for k in keys),
            tokens=sum(k.tokens for k in keys),
            rate_limited=sum(k.rate_limited for k in keys),
        )

    def __repr__(self) -> str:
        retired = sum(1 for state in self._states if state.retired_reason is not None)
        return f"KeyPool(keys={len(self._states)}, retired={retired})"


def _key_statistics(state: _KeyState, now: float) -> KeyStatistics:
    if state.retired_reason is not None:
        status = "retired"
    elif state.group.cooling_until is not None and state.group.cooling_until > now:
        status = "cooling"
    else:
        status = "active"
    requests_limiter, tokens_limiter = state.group.requests_limiter, state.group.tokens_limiter
    requests_per_minute = None if requests_limiter is None else requests_limiter.limit_per_minute
    tokens_per_minute = None if tokens_limiter is None else tokens_limiter.limit_per_minute
    return KeyStatistics(
        key=state.key.id,
        state=status,
        requests=state.requests,
        tokens=state.tokens,
        rate_limited=state.rate_limited,
        failures=state.failures,
        in_flight=state.in_flight,
        requests_per_minute=requests_per_minute,
        tokens_per_minute=tokens_per_minute,
        limits_learned=state.group.headers_seen,
        concurrency_limit=None if state.group.adaptive is None else state.group.adaptive.allowed,
        cooling_until=state.group.cooling_until if status == "cooling" else None,
        retired_reason=state.retired_reason,
        share=state.share,
        group=state.group.name,
        configured_requests_per_minute=state.key.requests_per_minute,
        configured_tokens_per_minute=state.key.tokens_per_minute,
        requests_remaining=None if requests_limiter is None else requests_limiter.available(now),
        tokens_remaining=None if tokens_limiter is None else tokens_limiter.available(now),
    )
