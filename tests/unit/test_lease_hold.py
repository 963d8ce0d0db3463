"""A shrinking lease holds what its client used in the last window, not its whole old share: the
backend's rule, the client's clamp to its measured use during a renewal's round trip, a failed
renewal, and the safety of the two together on virtual time."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Mapping, Sequence

import pytest

from openai_multi_client import InMemoryLimits, Key, SharedLimitsError
from openai_multi_client._limits import Claim, Grant, KeyPool, Reservation
from openai_multi_client._limits.keeper import LeaseKeeper
from openai_multi_client._limits.lease import DEFAULT_HOLD, OnUnavailable
from openai_multi_client.testing import FakeClock


def share_of(pool: KeyPool, now: float) -> float:
    return pool.statistics(now).keys[0].share


def admit(pool: KeyPool, now: float, most: int = 1000) -> int:
    """Reserve as many requests as the pool admits at ``now`` (at most ``most``)."""
    count = 0
    while count < most and isinstance(pool.reserve(0, now), Reservation):
        count += 1
    return count


def in_window(pool: KeyPool, now: float) -> float:
    """The fraction of the key this pool admitted within the last window."""
    limiter = pool._states[0].group.requests_limiter
    assert limiter is not None
    return limiter.used_of_whole(now)


async def test_the_others_get_shares_at_once_when_the_first_used_less_than_its_share() -> None:
    """The start of a run: the first client leased the whole key; two more join; the first
    renews, shrinks to its fair share and holds only what it used in the last window (0.3),
    so the others get their shares at once, not a hold later."""
    time = FakeClock(1000.0)
    backend = InMemoryLimits(clock=time)
    assert (await backend.lease("a", {"k": Claim(1.0, 10)}))["k"].share == 1.0
    time.advance(0.5)
    assert (await backend.lease("b", {"k": Claim(1.0, 10)}))["k"].share == 0.0
    assert (await backend.lease("c", {"k": Claim(1.0, 10)}))["k"].share == 0.0
    time.advance(0.5)
    first = (await backend.lease("a", {"k": Claim(1.0, 10, used=0.3)}))["k"]
    assert first.share == 0.4  # the odd slot stays with the biggest holder
    assert backend.held("k") == pytest.approx(0.4)
    time.advance(0.01)
    assert (await backend.lease("b", {"k": Claim(1.0, 10)}))["k"].share == 0.3
    assert (await backend.lease("c", {"k": Claim(1.0, 10)}))["k"].share == 0.3
    assert backend.held("k") == pytest.approx(1.0)


async def test_a_shrink_holds_at_most_the_old_share_and_at_least_the_new_one() -> None:
    time = FakeClock(1000.0)
    backend = InMemoryLimits(clock=time)
    await backend.lease("a", {"k": Claim(0.5, 10)})
    await backend.lease("b", {"k": Claim(0.2, 10)})
    time.advance(0.5)
    # Used more than its share (the window may hold what an earlier share admitted): it
    # holds its old share, as before.
    assert (await backend.lease("a", {"k": Claim(0.2, 10, used=0.9)}))["k"].share == 0.2
    assert backend.held("k") == pytest.approx(0.5 + 0.2)
    time.advance(0.5)
    # Used less than the new share: holds the new share, nothing more.
    await backend.lease("b", {"k": Claim(0.1, 10, used=0.05)})
    assert backend.held("k") == pytest.approx(0.5 + 0.1)
    # The old callers' Claim (no used): the whole old share, as before.
    assert (await backend.lease("c", {"k": Claim(0.3, 10)}))["k"].share == 0.3
    time.advance(0.2)
    await backend.lease("c", {"k": Claim(0.1, 10)})
    assert backend.held("k") == pytest.approx(0.5 + 0.1 + 0.3)


def test_a_claim_carries_the_use_of_the_last_window_and_clamps_the_share_to_it() -> None:
    """From the claim until the grant, the client admits no more than the claim's ``used``
    within its window (old admissions leaving make room for as many new ones), never more
    than its share; the grant then sets the share."""
    pool = KeyPool([Key("sk-a", requests_per_minute=600)])  # 10 a second
    assert admit(pool, 0.0, 3) == 3
    claims = pool.lease_claims(0.5, 1.0)
    (claim,) = claims.values()
    assert claim.used == pytest.approx(0.3)
    assert share_of(pool, 0.5) == pytest.approx(0.3)
    assert admit(pool, 0.5) == 0  # the window holds what it used: no room
    assert admit(pool, 1.0) == 3  # the three left the window: three more, no more
    assert in_window(pool, 1.0) <= claim.used + 1e-9
    pool.apply_grants({key: Grant(0.5, 0.5) for key in claims}, 1.05)
    assert share_of(pool, 1.05) == 0.5
    assert admit(pool, 1.05) == 2


def test_the_clamp_never_raises_a_share() -> None:
    pool = KeyPool([Key("sk-a", requests_per_minute=600)])
    assert admit(pool, 0.0) == 10  # the whole key
    key_id = pool.key_ids[0]
    pool.apply_grants({key_id: Grant(0.2, 0.2)}, 0.1)  # shrunk: the window holds more
    (claim,) = pool.lease_claims(0.2, 1.0).values()
    assert claim.used == pytest.approx(1.0)
    assert share_of(pool, 0.2) == 0.2
    # A window holding less than one request is no room at all (a request larger than the
    # window would otherwise pass once it is empty).
    pool.apply_grants({key_id: Grant(1.0, 1.0)}, 1.2)
    (claim,) = pool.lease_claims(1.3, 1.0).values()
    assert claim.used == 0.0
    assert share_of(pool, 1.3) == 0.0
    assert admit(pool, 1.3) == 0


class _Failing:
    """A backend that cannot be reached; records the shares the pool had during the call."""

    renew_interval = 1.0
    ttl = 3.0
    on_unavailable: OnUnavailable = "fail"

    def __init__(self, pool: KeyPool) -> None:
        self.pool = pool
        self.shares: list[float] = []

    async def lease(self, client: str, claims: Mapping[str, Claim]) -> dict[str, Grant]:
        self.shares.append(share_of(self.pool, 0.5))
        raise SharedLimitsError("shared limits: down")

    async def release(self, client: str, keys: Sequence[str]) -> None:
        raise SharedLimitsError("shared limits: down")

    async def cool_down(self, key: str, seconds: float) -> None:
        return None

    async def retire(self, key: str, reason: str) -> None:
        return None

    async def aclose(self) -> None:
        return None


async def test_a_failed_renewal_gives_the_shares_back_as_they_were() -> None:
    time = FakeClock(0.0)
    pool = KeyPool([Key("sk-a", requests_per_minute=600)])
    keeper = LeaseKeeper(pool, InMemoryLimits(clock=time), time)
    await keeper.start()
    assert share_of(pool, 0.0) == 1.0
    assert admit(pool, 0.0, 2) == 2
    time.advance(0.5)
    failing = _Failing(pool)
    keeper._backend = failing  # the backend goes away mid-run
    with pytest.raises(SharedLimitsError):
        await keeper._renew()
    assert failing.shares == [pytest.approx(0.2)]  # clamped to its use during the call
    time.advance(DEFAULT_HOLD - 0.01)
    keeper._unclamp_if_due()
    assert share_of(pool, time.now()) == pytest.approx(0.2)  # for the backend's hold
    time.advance(0.01)
    keeper._unclamp_if_due()
    assert share_of(pool, time.now()) == 1.0  # then as it was: neither grown nor clamped
    assert admit(pool, time.now()) == 10


class _LostAnswers(InMemoryLimits):
    """Applies every renewal but, once ``lose`` is set, loses the answers (a timeout);
    records when it did."""

    def __init__(self, *, clock: FakeClock, hold: float = DEFAULT_HOLD) -> None:
        super().__init__(hold=hold, clock=clock)
        self.lose = False
        self.lost_at: list[float] = []

    async def lease(self, client: str, claims: Mapping[str, Claim]) -> dict[str, Grant]:
        grants = await super().lease(client, claims)
        if not self.lose:
            return grants
        self.lost_at.append(self._clock.now())
        raise SharedLimitsError("shared limits: timed out")


async def test_after_a_lost_answer_the_shares_stay_clamped_for_the_backends_hold(
    fake_clock: FakeClock,
) -> None:
    """The backend applied the renewal (a shrink holding only what the client used) but its
    answer was lost: for the backend's hold the client stays within its clamp, so that it
    never uses what the backend may grant others; then it gets its old share back. Renewals
    failing meanwhile neither clamp again nor move the end of the clamp."""
    backend = _LostAnswers(hold=1.5, clock=fake_clock)
    pool = KeyPool([Key("sk-a", requests_per_minute=600)])
    keeper = LeaseKeeper(pool, backend, fake_clock)
    await keeper.start()
    renewals = asyncio.ensure_future(keeper.run())
    try:
        assert share_of(pool, fake_clock.now()) == 1.0
        await asyncio.sleep(0.5)
        assert admit(pool, fake_clock.now(), 2) == 2
        await backend.lease("other", {pool.key_ids[0]: Claim(1.0, 10)})  # wants it all: none yet
        backend.lose = True
        await asyncio.sleep(0.6)  # the renewal at 1.0 was applied; its answer was lost
        lost = backend.lost_at[0]
        key = pool.key_ids[0]
        grants = await InMemoryLimits.lease(backend, "other", {key: Claim(1.0, 10)})
        assert grants[key].share == pytest.approx(0.7)  # it holds 0.3 for this client now
        await asyncio.sleep(lost + 1.5 - 0.01 - fake_clock.now())
        assert len(backend.lost_at) == 2  # another lost at 2.0: it moved nothing
        assert share_of(pool, fake_clock.now()) == pytest.approx(0.2)  # 0.2 + 0.7 <= 1
        await asyncio.sleep(0.02)
        assert share_of(pool, fake_clock.now()) == 1.0
    finally:
        keeper.close()
        renewals.cancel()
        await asyncio.gather(renewals, return_exceptions=True)


async def test_an_answer_within_the_hold_ends_the_clamp_with_its_grants(
    fake_clock: FakeClock,
) -> None:
    backend = _LostAnswers(clock=fake_clock)
    pool = KeyPool([Key("sk-a", requests_per_minute=600)])
    keeper = LeaseKeeper(pool, backend, fake_clock)
    await keeper.start()
    renewals = asyncio.ensure_future(keeper.run())
    try:
        await asyncio.sleep(0.5)
        assert admit(pool, fake_clock.now(), 2) == 2
        backend.lose = True
        await asyncio.sleep(0.6)  # the renewal at 1.0 lost its answer
        assert backend.lost_at == [pytest.approx(1.0)]
        backend.lose = False
        await backend.lease("other", {pool.key_ids[0]: Claim(0.5, 10)})
        await asyncio.sleep(0.4)
        assert admit(pool, fake_clock.now()) == 2  # within the clamp
        await asyncio.sleep(0.6)  # the renewal at 2.0 answers: its grant ends the clamp
        leases = backend._leases[pool.key_ids[0]]
        assert 0.2 < share_of(pool, fake_clock.now()) == leases[keeper.client].share < 1.0
        await asyncio.sleep(0.5)  # past when the lost answer's clamp would have ended (2.1)
        assert share_of(pool, fake_clock.now()) == leases[keeper.client].share < 1.0
    finally:
        keeper.close()
        renewals.cancel()
        await asyncio.gather(renewals, return_exceptions=True)


Pending = list[tuple[float, int, "dict[str, Claim] | dict[str, Grant]"]]


async def _round_trips(
    pools: list[KeyPool], backend: InMemoryLimits, pending: Pending, now: float, rng: random.Random
) -> None:
    """Move the renewals whose time came one step on: claims reach the backend, whose grants
    reach their pool later."""
    due = [entry for entry in pending if entry[0] <= now + 1e-9]
    for entry in due:
        pending.remove(entry)
        _, holder, payload = entry
        claims = {key: value for key, value in payload.items() if isinstance(value, Claim)}
        if claims:
            grants = await backend.lease(f"h{holder}", claims)
            pending.append((now + rng.choice([0.0, 0.05, 0.1]), holder, grants))
        else:
            grants = {key: value for key, value in payload.items() if isinstance(value, Grant)}
            pools[holder].apply_grants(grants, now)


async def test_holders_never_have_more_than_the_key_in_their_windows() -> None:
    """Three clients on one key of 10 requests a second, each busy or idle by turns, renewing
    about every second with a round trip of up to 0.1 s each way: at every instant, what each
    may have in its window (what it holds, or what its share lets it fill) adds up to at most
    the whole key."""
    rng = random.Random(7)
    time = FakeClock(0.0)
    backend = InMemoryLimits(clock=time)
    pools = [KeyPool([Key("sk-a", requests_per_minute=600)]) for _ in range(3)]
    for pool in pools:
        pool.set_shares(0.0)
    pending: Pending = []
    next_renewal = [0.0, 0.3, 0.6]
    busy = [True, True, True]
    tick = 0.01
    for step in range(3000):
        now = round(step * tick, 6)
        time.advance(now - time.now())
        for holder, pool in enumerate(pools):
            if rng.random() < 0.01:
                busy[holder] = not busy[holder]
            if now >= next_renewal[holder] - 1e-9:
                claims = pool.lease_claims(now, 1.0)
                there = now + rng.choice([0.0, 0.02, 0.1])
                pending.append((there, holder, dict(claims)))
                next_renewal[holder] = now + rng.choice([0.25, 0.5, 1.0])
            if busy[holder]:
                admit(pool, now, rng.choice([1, 2, 10]))
        await _round_trips(pools, backend, pending, now, rng)
        may = sum(max(in_window(pool, now), share_of(pool, now)) for pool in pools)
        assert may <= 1.0 + 1e-9, f"{may} at {now}"
