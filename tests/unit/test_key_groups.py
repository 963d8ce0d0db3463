"""Key groups: keys whose limits are one set of buckets are paced, and cool down, as one; keys
of different groups stay independent. On explicit time (the pool takes ``now``)."""

from __future__ import annotations

import math

import pytest

from openai_multi_client import ConfigurationError, Key
from openai_multi_client._limits import KeyPool, Reservation
from openai_multi_client._limits.group import ForeignUse, Measure, identity, sharing


def reserve_all(pool: KeyPool, now: float, most: int = 100) -> list[Reservation]:
    """Everything the pool lets go at ``now``."""
    taken: list[Reservation] = []
    for _ in range(most):
        reservation = pool.reserve(0, now)
        if not isinstance(reservation, Reservation):
            break
        taken.append(reservation)
    return taken


def test_keys_of_a_configured_group_share_its_limits() -> None:
    keys = [
        Key("sk-a1", group="org-a", requests_per_minute=600),
        Key("sk-a2", group="org-a", requests_per_minute=600),
        Key("sk-b1", requests_per_minute=600),
    ]
    pool = KeyPool(keys)
    taken = reserve_all(pool, 0.0)
    by_key = [r.key.id for r in taken]
    # One second's burst for the group (10), one for the lone key (10).
    assert len(taken) == 20
    assert by_key.count(keys[2].id) == 10
    assert by_key.count(keys[0].id) + by_key.count(keys[1].id) == 10
    assert by_key.count(keys[0].id) >= 2  # both keys are used
    assert by_key.count(keys[1].id) >= 2
    assert pool.reserve(0, 0.0) == pytest.approx(1.0)
    groups = {stats.key: stats.group for stats in pool.statistics(0.0).keys}
    assert groups == {keys[0].id: "org-a", keys[1].id: "org-a", keys[2].id: None}


def test_a_group_cools_down_as_one() -> None:
    keys = [Key("sk-a1", group="g"), Key("sk-a2", group="g"), Key("sk-b1")]
    pool = KeyPool(keys)
    pool.cool_down(keys[0], 5.0)
    taken = reserve_all(pool, 1.0, most=3)
    assert {r.key.id for r in taken} == {keys[2].id}
    states = {stats.key: stats.state for stats in pool.statistics(1.0).keys}
    assert states == {keys[0].id: "cooling", keys[1].id: "cooling", keys[2].id: "active"}
    assert {r.key.id for r in reserve_all(pool, 5.0, most=6)} == {k.id for k in keys}


def test_a_group_name_is_checked() -> None:
    with pytest.raises(ConfigurationError, match="group must be a non-empty string"):
        Key("sk-a1", group="")
    with pytest.raises(ConfigurationError, match="must not contain its secret"):
        Key("sk-secret-1", group="team sk-secret-1")


def headers(organization: str, remaining: int, project: str = "proj_1") -> dict[str, str]:
    return {
        "x-ratelimit-limit-requests": "600",
        "x-ratelimit-remaining-requests": str(remaining),
        "openai-organization": organization,
        "openai-project": project,
    }


def test_keys_the_server_names_in_one_organization_are_grouped() -> None:
    keys = [Key("sk-a1"), Key("sk-a2"), Key("sk-b1"), Key("sk-b2")]
    pool = KeyPool(keys, concurrency=64)
    probes = reserve_all(pool, 0.0)
    assert len(probes) == 4  # each key probes alone: nothing is known yet
    for probe, organization in zip(probes, ["org-a", "org-a", "org-b", "org-b"], strict=True):
        pool.release(probe, 0.5, headers=headers(organization, 599))
    groups = {stats.key: stats.group for stats in pool.statistics(0.5).keys}
    assert groups == {
        keys[0].id: "org-a/proj_1",
        keys[1].id: "org-a/proj_1",
        keys[2].id: "org-b/proj_1",
        keys[3].id: "org-b/proj_1",
    }
    # Two groups of 600 a minute: two bursts of a second's worth, minus what went out already.
    taken = reserve_all(pool, 0.5)
    assert 14 <= len(taken) <= 20
    per_group = [
        sum(1 for r in taken if r.key in keys[:2]),
        sum(1 for r in taken if r.key in keys[2:]),
    ]
    assert all(count <= 10 for count in per_group)
    assert math.isfinite(pool.reserve(0, 0.5))  # type: ignore[arg-type]


def test_the_identity_of_a_response() -> None:
    assert identity({"openai-organization": "org-a", "openai-project": "proj_1"}) == "org-a/proj_1"
    assert identity({"openai-organization": "org-a"}) == "org-a"
    assert identity({"openai-project": "proj_1"}) is None
    assert identity({}) is None


class SharedBucket:
    """A server's per-minute view of one bucket: refills at 10 a second up to 600."""

    def __init__(self) -> None:
        self.level, self.at = 600.0, 0.0

    def take(self, now: float) -> int:
        self.level = min(600.0, self.level + (now - self.at) * 10.0) - 1
        self.at = now
        return int(self.level)


def drive(
    pool: KeyPool,
    buckets: dict[str, SharedBucket],
    until: float,
    start: float = 0.0,
    organizations: dict[str, str] | None = None,
) -> dict[str, int]:
    """Every 10 ms, send what the pool lets go; answers come back 0.3 s later with the
    remaining requests of the bucket each key draws from (and the key's organization, when
    ``organizations`` names it)."""
    sent: dict[str, int] = {}
    pending: list[tuple[float, Reservation, int]] = []
    now = start
    while now < until:
        for reservation in reserve_all(pool, now):
            bucket = buckets[reservation.key.id]
            pending.append((now + 0.3, reservation, bucket.take(now)))
            sent[reservation.key.id] = sent.get(reservation.key.id, 0) + 1
        due = [item for item in pending if item[0] <= now]
        pending = [item for item in pending if item[0] > now]
        for _, reservation, remaining in due:
            limits = {
                "x-ratelimit-limit-requests": "600",
                "x-ratelimit-remaining-requests": str(remaining),
            }
            if organizations:
                limits["openai-organization"] = organizations[reservation.key.id]
            pool.release(reservation, now, headers=limits)
        now = round(now + 0.01, 6)
    return sent


def test_keys_whose_remaining_falls_when_another_sends_are_grouped() -> None:
    keys = [Key("sk-a1"), Key("sk-a2"), Key("sk-b1")]
    shared = SharedBucket()
    buckets = {keys[0].id: shared, keys[1].id: shared, keys[2].id: SharedBucket()}
    pool = KeyPool(keys, concurrency=64)
    drive(pool, buckets, 6.0)
    groups = {stats.key: stats.group for stats in pool.statistics(6.0).keys}
    assert groups[keys[0].id] is not None
    assert groups[keys[0].id] == groups[keys[1].id]
    assert groups[keys[2].id] is None
    # From then on the two keys together get one key's rate, the third its own.
    later = drive(pool, buckets, 16.0, start=6.0)
    assert later[keys[0].id] + later[keys[1].id] <= 10 * 10 + 10
    assert later[keys[2].id] >= 10 * 10 - 10


def test_two_organizations_of_two_keys_stay_two_groups() -> None:
    keys = [Key("sk-a1"), Key("sk-a2"), Key("sk-b1"), Key("sk-b2")]
    first, second = SharedBucket(), SharedBucket()
    buckets = {keys[0].id: first, keys[1].id: first, keys[2].id: second, keys[3].id: second}
    names = {key.id: organization for key, organization in zip(keys, "aabb", strict=True)}
    pool = KeyPool(keys, concurrency=64)
    sent = drive(pool, buckets, 10.0, organizations=names)
    groups = [stats.group for stats in pool.statistics(10.0).keys]
    assert groups == ["a", "a", "b", "b"]
    assert 90 <= sent[keys[0].id] + sent[keys[1].id] <= 110
    assert 90 <= sent[keys[2].id] + sent[keys[3].id] <= 110


class BucketSharedWithAnotherProcess(SharedBucket):
    """One key's bucket that another process also draws from, at 5 requests a second, and
    that was half drained before (a full bucket would hide the others' use)."""

    def __init__(self) -> None:
        super().__init__()
        self.level = 300.0

    def take(self, now: float) -> int:
        self.level -= (now - self.at) * 5.0
        return super().take(now)


def test_keys_whose_limits_are_shared_with_other_processes_are_not_grouped() -> None:
    # Several processes share both keys (a lease, or a fixed share): each key's remaining falls
    # by what the others send, about as much as this process sends on the other key. That is
    # not a sign that the two keys share a bucket (the Ray stage's actors were paced at one
    # key's rate by it).
    keys = [Key("sk-a1"), Key("sk-a2")]
    buckets: dict[str, SharedBucket] = {key.id: BucketSharedWithAnotherProcess() for key in keys}
    pool = KeyPool(keys, concurrency=64)
    pool.set_shares(0.5)
    drive(pool, buckets, 12.0)
    assert all(stats.group is None for stats in pool.statistics(12.0).keys)
    later = drive(pool, buckets, 22.0, start=12.0)
    assert all(count >= 5 * 10 - 5 for count in later.values()), later


def test_keys_named_in_different_organizations_are_not_grouped_by_foreign_use() -> None:
    # Another program uses both keys (their remaining falls by more than this process sends,
    # as it would if they shared a bucket), but the server names each key's organization, and
    # they differ: the keys stay independent, each at its own rate.
    keys = [Key("sk-a1"), Key("sk-b1")]
    buckets: dict[str, SharedBucket] = {key.id: BucketSharedWithAnotherProcess() for key in keys}
    names = {keys[0].id: "org-a", keys[1].id: "org-b"}
    pool = KeyPool(keys, concurrency=64)
    drive(pool, buckets, 12.0, organizations=names)
    assert [stats.group for stats in pool.statistics(12.0).keys] == ["org-a", "org-b"]
    later = drive(pool, buckets, 22.0, start=12.0, organizations=names)
    assert all(count >= 5 * 10 - 5 for count in later.values()), later


def test_independent_keys_at_their_rate_are_not_grouped() -> None:
    keys = [Key("sk-a1"), Key("sk-a2"), Key("sk-a3")]
    buckets = {key.id: SharedBucket() for key in keys}
    pool = KeyPool(keys, concurrency=64)
    sent = drive(pool, buckets, 10.0)
    assert all(stats.group is None for stats in pool.statistics(10.0).keys)
    assert all(count >= 95 for count in sent.values())


def test_sharing_needs_use_seen_both_ways() -> None:
    # Key 0 saw 20 foreign requests, key 1 sent 20 and saw 20: they share.
    assert sharing([Measure(0, 20.0, 20, 600.0), Measure(1, 20.0, 20, 600.0)]) == [(0, 1)]
    # Key 1 saw nothing of key 0's 20: someone else took them.
    assert sharing([Measure(0, 20.0, 20, 600.0), Measure(1, 0.0, 20, 600.0)]) == []
    # Different published limits: not one bucket.
    assert sharing([Measure(0, 20.0, 20, 600.0), Measure(1, 20.0, 20, 6000.0)]) == []
    # What a group-mate sent is not foreign: groups 0 and 1 each see only their own.
    mates = [Measure(0, 20.0, 20, 600.0), Measure(0, 20.0, 20, 600.0)]
    others = [Measure(1, 20.0, 20, 600.0), Measure(1, 20.0, 20, 600.0)]
    assert sharing(mates + others) == []
    # Two pairs sending alike, nothing known: any key could be any other's partner.
    alike = [Measure(n, 20.0, 20, 600.0) for n in range(4)]
    assert sharing(alike) == []
    use = ForeignUse()
    use.observe(600.0, 599.0, 0.0, use.sent())
    for _ in range(3):
        use.sent()
    # Requests 2 to 4 went out within 0.1 s (1 refilled), the answer to 4 came first
    use.observe(600.0, 590.0, 0.1, 4)
    use.observe(600.0, 592.0, 0.05, 3)  # overtaken: says nothing new
    foreign, sent = use.take()
    assert foreign == pytest.approx(7.0)  # 599 + 1 refilled - 3 own - 590
    assert sent == 4
