"""Limits: API keys, the pool that hands them out within their rate limits, and the limits
shared among processes. One concept per module, no import circles (leaves first):

* ``window``: the per-minute window limiter (pure, on an explicit ``now``);
* ``adaptive``: adaptive concurrency (AIMD) for servers that publish no limits;
* ``headers``: what ``x-ratelimit-*`` headers say;
* ``key``: :class:`Key`, one API key's configuration;
* ``group``: key groups, the limits that the keys of one organization or project share;
* ``lease``: the lease algorithm, the :class:`LimitsBackend` protocol, :class:`InMemoryLimits`;
* ``keeper``: the :class:`LeaseKeeper` that renews one client's leases;
* ``redis``: :class:`RedisLimits`, the lease algorithm in Redis;
* ``pool``: :class:`KeyPool`, the keys at run time;
* ``admission``: :class:`KeyAdmission`, all the dispatcher sees of a pool.
"""

from __future__ import annotations

from .adaptive import AdaptiveConcurrency
from .admission import KeyAdmission, admit, loop_listener
from .headers import RateLimitHeaders
from .keeper import LeaseKeeper, SharedLimitsStatistics
from .key import Key, as_keys, check_secret, redacted_id
from .lease import Claim, Grant, InMemoryLimits, LimitsBackend, allocate, fair_level
from .pool import KeyPool, KeyStatistics, PoolStatistics, Reservation
from .redis import RedisLimits
from .window import RateLimiter

__all__ = [
    "AdaptiveConcurrency",
    "Claim",
    "Grant",
    "InMemoryLimits",
    "Key",
    "KeyAdmission",
    "KeyPool",
    "KeyStatistics",
    "LeaseKeeper",
    "LimitsBackend",
    "PoolStatistics",
    "RateLimitHeaders",
    "RateLimiter",
    "RedisLimits",
    "Reservation",
    "SharedLimitsStatistics",
    "admit",
    "allocate",
    "as_keys",
    "check_secret",
    "fair_level",
    "loop_listener",
    "redacted_id",
]
