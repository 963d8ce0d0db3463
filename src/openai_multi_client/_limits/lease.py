"""Limits shared by several processes or machines: each process leases a share of every key.

Without sharing, every process paces each key to the key's whole limit, so N workers on the same
keys together send N times too much and drown in 429s. With a :class:`LimitsBackend`, each
client holds a *lease* on a share of every key: a fraction of its requests and tokens per
minute. The client's own limiters (:class:`~openai_multi_client._limits.window.RateLimiter`)
pace it to that fraction, so the backend is never on the path of a request: a client talks to it
once per ``renew_interval`` (one round trip for all its keys), and when it must tell the others
something at once (a key cooled down after a 429, a key retired).

The algorithm (after Google's Doorman, simplified to fractions of a key):

* at each renewal a client reports its *demand* for each key, a fraction in [0, 1]: 1 when its
  requests waited for capacity since the last renewal, otherwise the fraction it used, with a
  margin to grow; and the key's *slots*, the whole requests one limiter window holds;
* shares are granted in whole slots (a share of 3.3 requests a second would let a sliding
  window through only 3), and a slot left over by rounding stays where it is;
* the backend splits each key among the live leases by max-min fairness (water-filling): nobody
  gets more than it asks for, and the rest is split evenly among those who ask for more;
* a share is granted only out of what the other leases do not hold. A lease that shrinks keeps
  holding, for ``hold`` seconds (one limiter window), what it may still have in the server's
  window: its old share at most, and no more than the ``used`` its claim reports (the fraction
  of the key its client admitted within the last window; the client admits no more than that
  until it has applied the answer);
* a lease not renewed within ``ttl`` seconds expires, so a process that died gives its share back
  within ``ttl``. ``ttl >= renew_interval + hold``: by the time a lease expires, its owner's
  last sends have left the server's window.

Cool-downs and retirements are written through to the backend at once and read back at every
renewal, so a key that one process found dead or over its limit rests everywhere.

:class:`InMemoryLimits` runs this algorithm in the process's memory (to share keys among clients
that do not share a :class:`~openai_multi_client.KeyPool`, and as the reference the Redis backend
is tested against); :class:`~openai_multi_client.RedisLimits` runs it in Redis, atomically, in
Lua. :class:`~openai_multi_client._limits.keeper.LeaseKeeper` is the client's side: the task
that renews and applies the leases. This module is a leaf: it knows nothing of the key pool.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

from .._clock import Clock, LoopClock
from .._errors import ConfigurationError
from .._validate import check_seconds

DEFAULT_RENEW_INTERVAL = 1.0
DEFAULT_HOLD = 1.1  # one limiter window (window.WINDOW_SECONDS), and time to apply a shrink
DEFAULT_TTL = 3.0
# Demand when requests did not wait: the fraction used, times this. A client with nothing to
# do asks for nothing; when work comes, its requests wait, and the next renewal asks for all.
_DEMAND_MARGIN = 1.5

OnUnavailable = Literal["fail", "local"]


@dataclass(frozen=True, slots=True)
class Grant:
    """What a renewal says of one key: the ``share`` this client may use now, the
    ``fair_share`` it will get once the others shrink to theirs, how many seconds the key must
    still rest (``cooling_for``; 0.0 when it need not), and why it was retired, if another
    client retired it. ``others_expire_in``: seconds until the first of the other leases
    expires unless renewed (``None``: there is none), when a client that wants more should
    look again."""

    share: float
    fair_share: float
    cooling_for: float = 0.0
    retired: str | None = None
    others_expire_in: float | None = None


@dataclass(frozen=True, slots=True)
class Claim:
    """What a client asks of one key at a renewal: its ``demand`` (a fraction of the key, 0 to
    1) and the key's ``slots``, the whole requests one limiter window holds (shares are
    granted in such whole units, so that no process is left with a fraction of a request).
    ``used``: the fraction of the key the client admitted within the last limiter window when
    it made the claim, and will not exceed until it applies the answer; a shrinking lease holds
    no more than that (default 1.0: its whole old share)."""

    demand: float
    slots: int
    used: float = 1.0


@runtime_checkable
class LimitsBackend(Protocol):
    """Where the leases live. Key ids are redacted ids (never secrets); ``client`` names one
    lease holder (one :class:`LeaseKeeper`)."""

    renew_interval: float
    ttl: float
    on_unavailable: OnUnavailable

    async def lease(self, client: str, claims: Mapping[str, Claim]) -> dict[str, Grant]:
        """Renew (or take) ``client``'s lease on each key; one round trip."""
        ...

    async def release(self, client: str, keys: Sequence[str]) -> None:
        """Give the leases back (they stay held for ``hold`` seconds, then are free)."""
        ...

    async def cool_down(self, key: str, seconds: float) -> None:
        """Tell every client that ``key`` must rest for ``seconds``."""
        ...

    async def retire(self, key: str, reason: str) -> None:
        """Tell every client that ``key`` is dead (``reason`` is already redacted)."""
        ...

    async def aclose(self) -> None: ...


def check_lease_timing(renew_interval: float, ttl: float, hold: float) -> None:
    check_seconds("renew_interval", renew_interval)
    check_seconds("ttl", ttl)
    check_seconds("hold", hold)
    if not renew_interval > 0:
        raise ConfigurationError(f"renew_interval must be > 0 seconds, got {renew_interval!r}")
    if ttl < renew_interval + hold:
        raise ConfigurationError(
            f"ttl ({ttl:g} s) must be at least renew_interval + hold "
            f"({renew_interval:g} + {hold:g} s): a lease must outlive its owner's last sends"
        )


def check_on_unavailable(value: str) -> OnUnavailable:
    if value == "fail":
        return "fail"
    if value == "local":
        return "local"
    raise ConfigurationError(f"on_unavailable must be 'fail' or 'local', got {value!r}")


def fair_level(demands: Sequence[float]) -> float:
    """The water level of a max-min fair split of 1.0 among ``demands``: each gets
    ``min(demand, level)`` (``inf`` when every demand fits)."""
    left = 1.0
    ordered = sorted(demands)
    for position, demand in enumerate(ordered):
        even = left / (len(ordered) - position)
        if demand > even:
            return even
        left -= demand
    return math.inf


@dataclass(slots=True)
class _Lease:
    share: float
    held: float  # the share before a shrink, still counted until held_until
    held_until: float
    expires: float
    demand: float

    def holding(self, now: float) -> float:
        return max(self.share, self.held) if self.held_until > now else self.share


def allocate(claims: Sequence[tuple[str, float, float]], slots: int) -> dict[str, int]:
    """Split a key's ``slots`` (whole requests per window) among ``(holder, demand, current
    share)`` claims, max-min fairly: each gets its demand rounded up, at most the water level
    rounded down; the units left by rounding go one each to those already holding the most
    (then by name), so that an allocation does not move while nothing changes."""
    wants = {name: math.ceil(demand * slots - 1e-9) for name, demand, _ in claims}
    level = fair_level([want / slots for want in wants.values()])
    cap = slots if math.isinf(level) else math.floor(level * slots + 1e-9)
    units = {name: min(want, cap) for name, want in wants.items()}
    left = slots - sum(units.values())
    for name, _, _ in sorted(claims, key=lambda claim: (-claim[2], claim[0])):
        if left <= 0:
            break
        if units[name] < wants[name]:
            units[name] += 1
            left -= 1
    return units


def _renew(
    leases: dict[str, _Lease],
    client: str,
    claim: Claim,
    now: float,
    ttl: float,
    hold: float,
) -> tuple[float, float, float | None]:
    """One key's lease table, one renewal: drop expired leases, grant ``client`` its fair share
    out of what the others do not hold. Returns ``(share, fair share, seconds until the first
    other lease expires)``. Mirrored line by line
    by the Lua script of :mod:`~openai_multi_client._limits.redis`."""
    for name in [name for name, lease in leases.items() if lease.expires <= now]:
        del leases[name]
    mine = leases.get(client)
    others = {name: lease for name, lease in leases.items() if name != client}
    slots = claim.slots
    claims = [(name, lease.demand, lease.share) for name, lease in others.items()]
    claims.append((client, claim.demand, 0.0 if mine is None else mine.share))
    fair = allocate(claims, slots)[client]
    held_by_others = sum(lease.holding(now) for lease in others.values())
    free = max(0, math.floor((1.0 - held_by_others) * slots + 1e-9))
    share = min(fair, free) / slots
    held, held_until = 0.0, 0.0
    if mine is not None:
        if share < mine.share:  # a shrink: what it has in the window counts for `hold` seconds
            held, held_until = max(share, min(mine.holding(now), claim.used)), now + hold
        elif mine.held_until > now:  # an earlier shrink's hold runs its course
            held, held_until = mine.held, mine.held_until
    leases[client] = _Lease(share, held, held_until, now + ttl, claim.demand)
    expiry = min((lease.expires for lease in others.values()), default=None)
    # In whole milliseconds, as Redis counts.
    return share, fair / slots, None if expiry is None else round((expiry - now) * 1000) / 1000


def _release(leases: dict[str, _Lease], client: str, now: float, hold: float) -> None:
    mine = leases.get(client)
    if mine is not None:
        leases[client] = _Lease(0.0, mine.holding(now), now + hold, now + hold, 0.0)


class InMemoryLimits:
    """The lease algorithm in this process's memory: shares keys among clients in one process
    (each client with its own key list is one lease holder). ``clock`` is the
    :class:`~openai_multi_client.Clock` that times the leases (default: the event loop's)."""

    def __init__(
        self,
        *,
        renew_interval: float = DEFAULT_RENEW_INTERVAL,
        ttl: float = DEFAULT_TTL,
        hold: float = DEFAULT_HOLD,
        clock: Clock | None = None,
    ) -> None:
        check_lease_timing(renew_interval, ttl, hold)
        self.renew_interval = float(renew_interval)
        self.ttl = float(ttl)
        self.hold = float(hold)
        self.on_unavailable: OnUnavailable = "fail"
        if clock is not None and not isinstance(clock, Clock):
            raise ConfigurationError(
                f"clock must be a Clock (with now() and sleep()), got {type(clock).__name__}"
            )
        self._clock: Clock = clock or LoopClock()
        self._leases: dict[str, dict[str, _Lease]] = {}
        self._cooling_until: dict[str, float] = {}
        self._retired: dict[str, str] = {}

    async def lease(self, client: str, claims: Mapping[str, Claim]) -> dict[str, Grant]:
        now = self._clock.now()
        grants: dict[str, Grant] = {}
        for key, claim in claims.items():
            leases = self._leases.setdefault(key, {})
            share, fair, expiry = _renew(leases, client, claim, now, self.ttl, self.hold)
            cooling_for = max(0.0, self._cooling_until.get(key, now) - now)
            grants[key] = Grant(share, fair, cooling_for, self._retired.get(key), expiry)
        return grants

    async def release(self, client: str, keys: Sequence[str]) -> None:
        now = self._clock.now()
        for key in keys:
            _release(self._leases.get(key, {}), client, now, self.hold)

    async def cool_down(self, key: str, seconds: float) -> None:
        until = self._clock.now() + seconds
        if until > self._cooling_until.get(key, -math.inf):
            self._cooling_until[key] = until

    async def retire(self, key: str, reason: str) -> None:
        self._retired.setdefault(key, reason)

    async def aclose(self) -> None:
        return None

    def held(self, key: str) -> float:
        """The fraction of ``key`` the live leases hold now (a shrunk lease counts what it held
        until its hold ends): never above 1.0."""
        now = self._clock.now()
        leases = self._leases.get(key, {})
        return sum(lease.holding(now) for lease in leases.values() if lease.expires > now)

    def __repr__(self) -> str:
        return f"InMemoryLimits(keys={len(self._leases)}, renew_interval={self.renew_interval:g})"


def demand_for(used: float, waited: bool) -> float:
    """A key's demand: all of it if requests waited, else the fraction ``used``, with margin."""
    return 1.0 if waited else min(1.0, used * _DEMAND_MARGIN)
