"""The client's side of shared limits: the :class:`LeaseKeeper` task that renews a key pool's
leases with a :class:`~openai_multi_client._limits.lease.LimitsBackend`, applies the grants, and
writes the pool's cool-downs and retirements through. It sees the pool only as a
:class:`LeaseHolder`."""

from __future__ import annotations

import asyncio
import logging
import math
import os
import socket
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from functools import partial
from typing import Protocol

from .._clock import Clock, wait_event
from .._errors import SharedLimitsError
from .._logfields import log_fields
from .lease import DEFAULT_HOLD, Claim, Grant, LimitsBackend

logger = logging.getLogger("openai_multi_client")

# A client whose share is below its fair share renews this much sooner, to catch up quickly.
_CATCH_UP = 0.25
# A client wanting more looks again this long after another lease would expire.
_AFTER_EXPIRY = 0.01
# A client with nothing to send gives its shares up after this long (of renew_interval) without
# work: at once would cost a round trip at every short gap between a producer's requests.
_DRAINED_AFTER = 0.1


class LeaseHolder(Protocol):
    """What the keeper needs of a key pool."""

    @property
    def key_ids(self) -> Sequence[str]:
        """The redacted ids of every key."""
        ...

    def lease_claims(self, now: float, interval: float) -> dict[str, Claim]:
        """The claims of a renewal; clamps each key's share to its ``used`` until
        :meth:`apply_grants` or :meth:`unclamp` (not again while a clamp stands)."""
        ...

    def unclamp(self) -> None:
        """Restore the shares from before the clamp."""
        ...

    def set_shares(self, share: float) -> None: ...

    def apply_grants(self, grants: Mapping[str, Grant], now: float) -> None: ...


@dataclass(frozen=True, slots=True)
class SharedLimitsStatistics:
    """The client's side of the shared limits: the lease holder's ``client`` name, round trips
    to the backend, failed ones, and whether the client runs on local limits because the
    backend could not be reached."""

    client: str
    round_trips: int
    failures: int
    local_fallback: bool


class LeaseKeeper:
    """Renews a key pool's leases with a :class:`LimitsBackend` and applies the grants
    to the pool; writes the pool's cool-downs and retirements through to the backend.

    ``start()`` takes the first leases (the pool sends nothing before); then ``run()`` renews
    every ``renew_interval`` (sooner while a share is catching up with its fair share) until
    cancelled; ``stop()`` gives the leases back. When the backend fails at start,
    ``on_unavailable`` decides: ``"fail"`` raises :class:`SharedLimitsError`, ``"local"`` warns
    and runs on the whole of every key. When it fails later, the pool keeps its last shares
    (never growing them), warns once, and the keeper tries again every ``renew_interval``.

    A renewal clamps the pool's shares to their use (see :meth:`LeaseHolder.lease_claims`).
    When it fails, the backend may have applied it and only the answer was lost: the shares
    stay clamped for the backend's ``hold`` (what the backend then holds for this client),
    and only then return to what they were before (never growing), unless a renewal answers
    first.
    """

    def __init__(
        self,
        pool: LeaseHolder,
        backend: LimitsBackend,
        clock: Clock,
    ) -> None:
        self._pool = pool
        pool.set_shares(0.0)  # nothing is sent before the first lease
        self._backend = backend
        self._clock = clock
        self.client = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._cool_downs: list[tuple[str, float]] = []  # to write through: key id, seconds
        self._retirements: list[tuple[str, str]] = []  # key id, redacted reason
        self._event = asyncio.Event()
        self._next_renewal = 0.0
        self._unclamp_at = math.inf  # when a failed renewal's clamp ends
        self._failing = False
        self._local = False
        self._idle = False
        self._drained = False  # nothing to send for now (drained(); until busy())
        self._gave_up = False  # a renewal asked for nothing while drained
        self._wanting = False  # busy() after giving up: the next renewal asks for everything
        self._closing = False
        self._round_trips = 0
        self._failures = 0

    def statistics(self) -> SharedLimitsStatistics:
        return SharedLimitsStatistics(self.client, self._round_trips, self._failures, self._local)

    async def start(self) -> None:
        try:
            await self._renew()
        except SharedLimitsError as exc:
            if self._backend.on_unavailable == "fail":
                raise
            self._local = True
            self._unclamp_at = math.inf
            self._pool.set_shares(1.0)
            logger.warning(
                "%s; running on local limits: processes sharing these keys may together "
                "exceed their limits",
                exc,
                extra=log_fields("shared_limits_local", error=exc),
            )
            self._next_renewal = self._clock.now() + self._backend.renew_interval

    async def run(self) -> None:
        clock = self._clock
        # Until close(): a backend may swallow the task's cancellation (a Redis client caught
        # mid-command has been seen to), so the loop does not rely on it alone.
        while not self._closing:
            delay = min(self._next_renewal, self._unclamp_at) - clock.now()
            if delay > 0 and not (self._cool_downs or self._retirements):
                await self._wait(delay)
            self._unclamp_if_due()
            await self._send_events()
            if clock.now() >= self._next_renewal:
                try:
                    await self._renew()
                except SharedLimitsError as exc:
                    self._next_renewal = clock.now() + self._backend.renew_interval
                    if not self._failing:
                        self._failing = True
                        logger.warning(
                            "%s; keeping the current shares of the keys until it answers",
                            exc,
                            extra=log_fields("shared_limits_unavailable", error=exc),
                        )

    async def _wait(self, delay: float) -> None:
        self._event.clear()
        await wait_event(self._event, self._clock, delay)

    async def _renew(self) -> None:
        backend = self._backend
        claims = self._pool.lease_claims(self._clock.now(), backend.renew_interval)
        if self._idle or self._drained:
            claims = {key: replace(claim, demand=0.0) for key, claim in claims.items()}
            self._gave_up = True
        elif self._wanting:
            claims = {key: replace(claim, demand=1.0) for key, claim in claims.items()}
        self._wanting = False
        if not claims:  # every key is retired
            self._next_renewal = math.inf
            return
        self._round_trips += 1
        try:
            grants = await backend.lease(self.client, claims)
        except BaseException as exc:
            # The backend may have applied it: keep the clamp while the backend's hold of it
            # lasts (a renewal while it stands does not clamp again, nor move this).
            hold = float(getattr(backend, "hold", DEFAULT_HOLD))
            self._unclamp_at = min(self._unclamp_at, self._clock.now() + hold)
            if isinstance(exc, SharedLimitsError):
                self._failures += 1
            raise
        self._unclamp_at = math.inf  # the grants replace any clamp
        if self._failing or self._local:
            logger.warning(
                "shared limits are back: %r answers again",
                backend,
                extra=log_fields("shared_limits_back"),
            )
            self._failing = self._local = False
        now = self._clock.now()
        self._pool.apply_grants(grants, now)
        # (busy() during the round trip: ask again at once.)
        self._next_renewal = now if self._wanting else now + self._renew_in(claims, grants)

    def _unclamp_if_due(self) -> None:
        """Give the pool its shares from before a failed renewal once its hold has run out."""
        if self._clock.now() >= self._unclamp_at:
            self._unclamp_at = math.inf
            self._pool.unclamp()

    def _renew_in(self, claims: Mapping[str, Claim], grants: Mapping[str, Grant]) -> float:
        """Seconds to the next renewal: the interval; a quarter of it while a share is below
        its fair share; just after another lease expires if this client wants more (a dead
        worker's share is taken over as soon as it is free)."""
        interval = self._backend.renew_interval
        delay = interval
        for key, grant in grants.items():
            if grant.share < grant.fair_share - 1e-9:
                delay = min(delay, interval * _CATCH_UP)
            if grant.others_expire_in is not None and grant.share < claims[key].demand - 1e-9:
                delay = min(delay, grant.others_expire_in + _AFTER_EXPIRY)
        return max(0.0, delay)

    def close(self) -> None:
        """Stop :meth:`run` at its next turn (the engine also cancels it)."""
        self._closing = True
        self._event.set()

    def idle(self) -> None:
        """This client has nothing left to send: give its shares up now (ask for nothing)."""
        if not self._idle:
            self._idle = True
            self._next_renewal = self._clock.now()
            self._event.set()

    def drained(self) -> None:
        """This client has nothing to send for now: unless work comes within a tenth of the
        renewal interval, renew asking for nothing, so that its shares go to the clients with
        work at once instead of after a renewal or two that measure its use falling."""
        if not self._drained and not self._idle:
            self._drained = True
            soon = self._clock.now() + self._backend.renew_interval * _DRAINED_AFTER
            if soon < self._next_renewal:
                self._next_renewal = soon
                self._event.set()

    def busy(self) -> None:
        """Work came after :meth:`drained`: if the shares were given up, renew at once asking
        for the whole keys (as a client whose requests wait does)."""
        if self._drained:
            self._drained = False
            if self._gave_up:
                self._gave_up = False
                self._wanting = True
                self._next_renewal = self._clock.now()
                self._event.set()

    def cooled_down(self, key: str, seconds: float) -> None:
        self._cool_downs.append((key, float(seconds)))
        self._event.set()

    def retired(self, key: str, reason: str) -> None:
        self._retirements.append((key, reason))
        self._event.set()

    async def _send_events(self) -> None:
        """Write the cool-downs and retirements noted since the last turn through to the
        backend (one round trip each)."""
        cool_downs, self._cool_downs = self._cool_downs, []
        retirements, self._retirements = self._retirements, []
        backend = self._backend
        sends = [("cool-down", key, partial(backend.cool_down, key, s)) for key, s in cool_downs]
        sends += [("retirement", key, partial(backend.retire, key, r)) for key, r in retirements]
        for kind, key, send in sends:
            self._round_trips += 1
            try:
                await send()
            except SharedLimitsError as exc:
                self._failures += 1
                logger.warning(
                    "could not share a %s of key %s: %s",
                    kind,
                    key,
                    exc,
                    extra=log_fields("shared_limits_write_failed", key_id=str(key), error=exc),
                )

    async def stop(self) -> None:
        """Give the leases back (best effort: a lease not given back expires within ttl)."""
        if self._local:
            return
        keys = list(self._pool.key_ids)
        self._pool.set_shares(0.0)
        self._round_trips += 1
        try:
            await asyncio.wait_for(self._backend.release(self.client, keys), timeout=2.0)
        except (SharedLimitsError, asyncio.TimeoutError) as exc:
            self._failures += 1
            logger.debug("could not give the leases back (they expire on their own): %r", exc)

    def __repr__(self) -> str:
        return f"LeaseKeeper({self.client!r}, {self._backend!r})"
