"""Shared limits in Redis: the lease algorithm of :mod:`~openai_multi_client._limits.lease`,
run atomically by Lua scripts in the Redis server (needs the ``redis`` extra).

Layout, for each key id (a redacted id or the key's name; never a secret), all under one hash
tag so that a Redis Cluster keeps them in one slot:

* ``{namespace}:lease:<key>``: a hash, lease holder -> ``share held held_until expires demand``
  (times in milliseconds of the Redis server's clock, so machines need not agree on the time);
* ``{namespace}:cool:<key>``: present while the key rests after a 429 (its TTL is the rest);
* ``{namespace}:retired:<key>``: why the key was retired (kept ``retire_for`` seconds).
"""

from __future__ import annotations

import contextlib
import importlib
import re
from collections.abc import Mapping, Sequence
from typing import Any

from .._clock import Clock
from .._errors import ConfigurationError, SharedLimitsError
from .._validate import check_seconds
from .lease import (
    DEFAULT_HOLD,
    DEFAULT_RENEW_INTERVAL,
    DEFAULT_TTL,
    Claim,
    Grant,
    OnUnavailable,
    check_lease_timing,
    check_on_unavailable,
)

# Both scripts time leases by ARGV[2] in ms, or by the Redis server's clock when it is ''.
_NOW = """
local now
if ARGV[2] == '' then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
else
  now = tonumber(ARGV[2])
end
"""

# One renewal of every key of one lease holder; mirrors lease._renew.
# KEYS: per key, its lease hash, cool-down and retirement keys.
# ARGV: holder, now in ms ('' for the server's clock), ttl ms, hold ms, then per key its
# demand, slots and used (a Claim).
# Returns per key: share, fair share (as strings), cool-down left in ms, retirement reason (''),
# ms until the first other lease expires (-1: none).
_LEASE = (
    _NOW
    + """
local client = ARGV[1]
local ttl, hold = tonumber(ARGV[3]), tonumber(ARGV[4])
local out = {}
for k = 1, #KEYS / 3 do
  local hash = KEYS[3 * k - 2]
  local demand, slots = tonumber(ARGV[2 + 3 * k]), tonumber(ARGV[3 + 3 * k])
  local used = tonumber(ARGV[4 + 3 * k])
  local raw = redis.call('HGETALL', hash)
  local claims, held_by_others, mine, expiry = {}, 0, nil, nil
  for i = 1, #raw, 2 do
    local s, h, hu, exp, d = string.match(raw[i + 1], '(%S+) (%S+) (%S+) (%S+) (%S+)')
    s, h, hu, exp, d = tonumber(s), tonumber(h), tonumber(hu), tonumber(exp), tonumber(d)
    local holding = s
    if hu > now and h > s then holding = h end
    if exp <= now then
      redis.call('HDEL', hash, raw[i])
    elseif raw[i] == client then
      mine = {share = s, held = h, held_until = hu, holding = holding}
    else
      claims[#claims + 1] = {name = raw[i], demand = d, share = s}
      held_by_others = held_by_others + holding
      if expiry == nil or exp < expiry then expiry = exp end
    end
  end
  claims[#claims + 1] = {name = client, demand = demand, share = mine and mine.share or 0}
  -- allocate(): max-min fair whole slots, units left by rounding to the biggest holders
  local wants = {}
  for i, c in ipairs(claims) do
    c.want = math.ceil(c.demand * slots - 1e-9)
    wants[i] = c.want / slots
  end
  table.sort(wants)
  local left, level = 1.0, nil
  for i = 1, #wants do
    local even = left / (#wants - i + 1)
    if wants[i] > even then
      level = even
      break
    end
    left = left - wants[i]
  end
  local cap = slots
  if level then cap = math.floor(level * slots + 1e-9) end
  local units = slots
  for _, c in ipairs(claims) do
    c.units = math.min(c.want, cap)
    units = units - c.units
  end
  table.sort(claims, function(a, b)
    if a.share ~= b.share then return a.share > b.share end
    return a.name < b.name
  end)
  local fair = 0
  for _, c in ipairs(claims) do
    if units > 0 and c.units < c.want then
      c.units = c.units + 1
      units = units - 1
    end
    if c.name == client then fair = c.units end
  end
  local free = math.max(0, math.floor((1.0 - held_by_others) * slots + 1e-9))
  local share = math.min(fair, free) / slots
  local held, held_until = 0, 0
  if mine ~= nil then
    if share < mine.share then
      held, held_until = math.max(share, math.min(mine.holding, used)), now + hold
    elseif mine.held_until > now then
      held, held_until = mine.held, mine.held_until
    end
  end
  redis.call('HSET', hash, client,
    string.format('%.17g %.17g %d %d %.17g', share, held, held_until, now + ttl, demand))
  if redis.call('PTTL', hash) < ttl + hold then
    redis.call('PEXPIRE', hash, ttl + hold)
  end
  local cooling = redis.call('PTTL', KEYS[3 * k - 1])
  if cooling < 0 then cooling = 0 end
  local retired = redis.call('GET', KEYS[3 * k]) or ''
  out[5 * k - 4] = string.format('%.17g', share)
  out[5 * k - 3] = string.format('%.17g', fair / slots)
  out[5 * k - 2] = cooling
  out[5 * k - 1] = retired
  if expiry == nil then out[5 * k] = -1 else out[5 * k] = expiry - now end
end
return out
"""
)

# Give leases back: each stays held for `hold` ms, then expires. KEYS: lease hashes.
# ARGV: holder, now in ms ('' for the server's clock), hold ms.
_RELEASE = (
    _NOW
    + """
local hold = tonumber(ARGV[3])
for k = 1, #KEYS do
  local raw = redis.call('HGET', KEYS[k], ARGV[1])
  if raw then
    local s, h, hu = string.match(raw, '(%S+) (%S+) (%S+)')
    s, h, hu = tonumber(s), tonumber(h), tonumber(hu)
    local holding = s
    if hu > now and h > s then holding = h end
    redis.call('HSET', KEYS[k], ARGV[1],
      string.format('0 %.17g %d %d 0', holding, now + hold, now + hold))
  end
end
return 0
"""
)

# Cool a key down for ARGV[1] ms unless it already rests longer. KEYS[1]: its cool-down key.
_COOL_DOWN = """
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[1]) then
  redis.call('SET', KEYS[1], '1', 'PX', ARGV[1])
end
return 0
"""

# Retire a key for ARGV[2] seconds, keeping the first reason. KEYS[1]: its retirement key.
_RETIRE = """
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2], 'NX')
return 0
"""

#: The commands the scripts run inside Redis (a benchmark counting round trips leaves them out).
SCRIPT_COMMANDS = frozenset(
    {"time", "hgetall", "hdel", "hset", "hget", "pttl", "pexpire", "get", "set"}
)

_PASSWORD = re.compile(r"(?<=://)([^/@]*)@")


def redact_url(url: str) -> str:
    """``url`` without its user name and password."""
    return _PASSWORD.sub("***@", url)


def _import_redis() -> Any:
    try:
        return importlib.import_module("redis.asyncio")
    except ImportError:
        raise ConfigurationError(
            "shared limits through Redis need the redis extra: "
            "pip install 'openai-multi-client[redis]'"
        ) from None


class RedisLimits:
    """Shares the keys' limits, cool-downs and retirements among processes and machines
    through the Redis server at ``url`` (``redis://[:password@]host:port/db``, ``rediss://``
    for TLS, ``unix://``).

    Every client with the same ``namespace`` shares the keys it has in common (keys are
    matched by id: the redacted hash of the secret, or the name given to :class:`Key`). Each
    client talks to Redis once per ``renew_interval`` seconds; a client that dies gives its
    share back within ``ttl`` seconds. ``on_unavailable`` says what a client does when Redis
    cannot be reached at its start: ``"fail"`` (the default) raises
    :class:`SharedLimitsError`; ``"local"`` warns and paces every key to its whole limit.
    A key retired by one client stays retired for the others for ``retire_for`` seconds.
    ``clock`` (tests only) replaces the Redis server's clock, which times leases by default
    (so machines need not agree on the time).
    """

    def __init__(
        self,
        url: str,
        *,
        namespace: str = "omc",
        renew_interval: float = DEFAULT_RENEW_INTERVAL,
        ttl: float = DEFAULT_TTL,
        hold: float = DEFAULT_HOLD,
        on_unavailable: OnUnavailable = "fail",
        retire_for: float = 3600.0,
        timeout: float = 2.0,
        clock: Clock | None = None,
    ) -> None:
        if not isinstance(url, str) or not url.startswith(("redis://", "rediss://", "unix://")):
            raise ConfigurationError(
                "the Redis URL must start with redis://, rediss:// or unix://, got "
                f"{redact_url(str(url))!r}"
            )
        if not isinstance(namespace, str) or not namespace or "}" in namespace:
            raise ConfigurationError(
                f"namespace must be a non-empty string without '}}', got {namespace!r}"
            )
        check_lease_timing(renew_interval, ttl, hold)
        check_seconds("retire_for", retire_for)
        check_seconds("timeout", timeout)
        self.on_unavailable = check_on_unavailable(on_unavailable)
        self.renew_interval = float(renew_interval)
        self.ttl = float(ttl)
        self.hold = float(hold)
        self.namespace = namespace
        self._retire_for = max(1, round(retire_for))
        if clock is not None and not isinstance(clock, Clock):
            raise ConfigurationError(f"clock must be a Clock (now() and sleep()), got {clock!r}")
        self._clock = clock
        self._url = redact_url(url)
        redis = _import_redis()
        self._redis = redis.Redis.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=timeout, decode_responses=True
        )
        self._lease = self._redis.register_script(_LEASE)
        self._release = self._redis.register_script(_RELEASE)
        self._cool_down = self._redis.register_script(_COOL_DOWN)
        self._retire = self._redis.register_script(_RETIRE)
        self._errors: tuple[type[BaseException], ...] = (
            importlib.import_module("redis.exceptions").RedisError,
            OSError,
            TimeoutError,
        )

    def _key(self, kind: str, key: str) -> str:
        return f"{{{self.namespace}}}:{kind}:{key}"

    def _now_ms(self) -> str:
        return "" if self._clock is None else str(round(self._clock.now() * 1000))

    def _failed(self, exc: BaseException) -> SharedLimitsError:
        return SharedLimitsError(
            f"shared limits: Redis at {self._url} failed: {type(exc).__name__}: {exc}"
        )

    async def lease(self, client: str, claims: Mapping[str, Claim]) -> dict[str, Grant]:
        keys = list(claims)
        redis_keys = [
            name
            for key in keys
            for name in (self._key("lease", key), self._key("cool", key), self._key("retired", key))
        ]
        argv = [
            client,
            self._now_ms(),
            round(self.ttl * 1000),
            round(self.hold * 1000),
            *(
                value
                for key in keys
                for value in (repr(claims[key].demand), claims[key].slots, repr(claims[key].used))
            ),
        ]
        try:
            reply = await self._lease(keys=redis_keys, args=argv)
        except self._errors as exc:
            raise self._failed(exc) from None
        grants: dict[str, Grant] = {}
        for position, key in enumerate(keys):
            share, fair, cooling, retired, expiry = reply[5 * position : 5 * position + 5]
            grants[key] = Grant(
                float(share),
                float(fair),
                int(cooling) / 1000.0,
                retired or None,
                None if int(expiry) < 0 else int(expiry) / 1000.0,
            )
        return grants

    async def release(self, client: str, keys: Sequence[str]) -> None:
        argv = [client, self._now_ms(), round(self.hold * 1000)]
        try:
            await self._release(keys=[self._key("lease", key) for key in keys], args=argv)
        except self._errors as exc:
            raise self._failed(exc) from None

    async def cool_down(self, key: str, seconds: float) -> None:
        milliseconds = max(1, round(seconds * 1000))
        try:
            await self._cool_down(keys=[self._key("cool", key)], args=[milliseconds])
        except self._errors as exc:
            raise self._failed(exc) from None

    async def retire(self, key: str, reason: str) -> None:
        try:
            await self._retire(keys=[self._key("retired", key)], args=[reason, self._retire_for])
        except self._errors as exc:
            raise self._failed(exc) from None

    async def aclose(self) -> None:
        with contextlib.suppress(*self._errors):  # a connection already gone
            await self._redis.aclose()

    def __repr__(self) -> str:
        return f"RedisLimits({self._url!r}, namespace={self.namespace!r})"
