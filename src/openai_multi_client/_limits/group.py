"""Key groups: keys whose limits are one set of buckets.

OpenAI's limits belong to the organization and project, not to the key, so several keys of one
project share one set of buckets (and rejected requests count against it too). A
:class:`GroupLimits` is that set as the client paces it: the limiters, what was learned from
the headers, the probe, the adaptive concurrency and the cool-down after a 429. Every key starts
in a group of its own, or in the group the user named (``Key(group=...)``); keys are merged
into one group when the server says they share limits:

* their responses name the same ``openai-organization`` and ``openai-project``
  (:func:`identity`);
* one key's ``x-ratelimit-remaining-requests`` falls by what another key sent
  (:class:`ForeignUse`), unless the keys' limits are shared with other processes
  (:attr:`Groups.shared`): there others' use of every key is expected, and says nothing of
  which keys share buckets; nor when both groups are named, by the user or by the server's
  organization and project: the names already say they differ (another program using one
  of the keys would otherwise merge it with the next key that happens to be busy).

Keys of different groups stay independent. Pure state on an explicit ``now``; the pool's lock
guards it.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from typing import NamedTuple, Protocol

from .._headers import parse_float
from .adaptive import AdaptiveConcurrency
from .key import Key
from .window import RateLimiter

logger = logging.getLogger("openai_multi_client")

ORGANIZATION_HEADER = "openai-organization"
PROJECT_HEADER = "openai-project"


def identity(headers: Mapping[str, str]) -> str | None:
    """The organization (and project) that a response says the key belongs to, or ``None``
    when the server does not say (Azure, local servers)."""
    organization = headers.get(ORGANIZATION_HEADER, "").strip()
    if not organization:
        return None
    project = headers.get(PROJECT_HEADER, "").strip()
    return f"{organization}/{project}" if project else organization


class GroupLimits:
    """The limits that the keys of one group share, and the state of pacing by them."""

    __slots__ = (
        "adaptive",
        "cooling_until",
        "headers_seen",
        "in_flight",
        "limits_seen",
        "lowered",
        "name",
        "probing",
        "requests_limiter",
        "tokens_limiter",
    )

    def __init__(self, key: Key, concurrency: int | None) -> None:
        self.name = key.group
        self.requests_limiter = (
            RateLimiter(key.requests_per_minute) if key.requests_per_minute else None
        )
        self.tokens_limiter = RateLimiter(key.tokens_per_minute) if key.tokens_per_minute else None
        self.adaptive = AdaptiveConcurrency(concurrency) if concurrency else None
        # With no configured limit and a server to learn from, the first request goes alone:
        # its response headers tell the limits before a burst can overrun them.
        self.probing = concurrency is not None and not (
            key.requests_per_minute or key.tokens_per_minute
        )
        self.headers_seen = False
        self.limits_seen: tuple[str | None, str | None] = (None, None)
        self.lowered: set[str] = set()  # "requests", "tokens": configured limits the server lowered
        self.in_flight = 0  # of all the keys of the group
        self.cooling_until: float | None = None

    def absorb(self, other: GroupLimits, now: float) -> None:
        """Take ``other``'s keys' state into this group: the later cool-down, the limiters this
        group lacks, and what ``other``'s keys have in flight counted as sent just now."""
        if other.cooling_until is not None and (
            self.cooling_until is None or self.cooling_until < other.cooling_until
        ):
            self.cooling_until = other.cooling_until
        for kind in ("requests_limiter", "tokens_limiter"):
            mine: RateLimiter | None = getattr(self, kind)
            theirs: RateLimiter | None = getattr(other, kind)
            if mine is None:
                setattr(self, kind, theirs)
            elif theirs is not None and kind == "requests_limiter" and other.in_flight:
                mine.acquire(other.in_flight, now)
        if other.headers_seen and not self.headers_seen:
            self.headers_seen, self.limits_seen = True, other.limits_seen
            self.adaptive = None
        self.probing = self.probing and other.probing
        self.in_flight += other.in_flight
        self.lowered |= other.lowered
        if self.name is None:
            self.name = other.name


class ForeignUse:
    """What one key's ``x-ratelimit-remaining-requests`` says others took from its buckets.

    A response tells what remained just after its request was admitted. Between the admissions
    of two of a key's requests (their sends, in order), the bucket refilled at the published
    rate and lost the key's own requests sent in between; whatever else it lost, someone else
    sent. When that adds up, over a few seconds, to at least half of what another key sent in
    the same time, and the other way round, the two keys share a bucket (:func:`sharing`). A
    full bucket hides use, so this only ever merges keys, never splits them.
    """

    __slots__ = ("_at", "_foreign", "_mark", "_remaining", "_sequence", "sent_total")

    MEASURE_SECONDS = 2.0

    def __init__(self) -> None:
        self._remaining: float | None = None
        self._at = 0.0  # when the request of the last remaining seen was sent
        self._sequence = 0  # and its number among the key's requests
        self._foreign = 0.0  # others' requests seen since the measure began
        self.sent_total = 0  # own requests ever sent
        self._mark = 0  # sent_total when the measure began

    def sent(self) -> int:
        """Count one request sent; its number among the key's requests."""
        self.sent_total += 1
        return self.sent_total

    def observe(
        self, limit: float | None, remaining: float | None, sent_at: float, sequence: int
    ) -> None:
        """Take the ``limit`` and ``remaining`` requests in the answer to the key's request
        number ``sequence``, sent at ``sent_at``."""
        if remaining is None or limit is None or not limit > 0 or math.isinf(limit):
            return
        if sequence <= self._sequence:
            return  # an answer overtaken by a later request's: already accounted for
        if self._remaining is not None:
            refilled = min(limit, self._remaining + (sent_at - self._at) * limit / 60.0)
            own = sequence - self._sequence
            # Signed: rounding errors cancel out over a measure instead of adding up.
            self._foreign += refilled - own - remaining
        self._remaining, self._at, self._sequence = remaining, sent_at, sequence

    def take(self) -> tuple[float, int]:
        """Others' requests seen, and own requests sent, since the last call (which starts a
        new measure)."""
        foreign, self._foreign = self._foreign, 0.0
        sent, self._mark = self.sent_total - self._mark, self.sent_total
        return foreign, sent


class Measure(NamedTuple):
    """One key's measure for :func:`sharing`."""

    group: int  # which group the key is in now (an id)
    foreign: float  # others' requests its answers showed
    sent: int  # its own requests
    limit: float | None  # its published requests per minute


def sharing(measures: Sequence[Measure]) -> list[tuple[int, int]]:
    """The pairs of keys (indexes into ``measures``) that share a bucket, from one measure of
    each key. What a key's group-mates sent is not foreign to it. Two keys of different groups
    with the same published limit match when each saw at least half of what the other sent
    (and more than a couple of requests: noise stays below that); they are paired only when
    each is the other's only match, since keys sending alike cannot be told apart otherwise."""
    group_sent: dict[int, int] = {}
    for measure in measures:
        group_sent[measure.group] = group_sent.get(measure.group, 0) + measure.sent
    foreign = [m.foreign - (group_sent[m.group] - m.sent) for m in measures]
    busy = [
        index
        for index, m in enumerate(measures)
        if foreign[index] > 2 and m.sent > 0 and m.limit is not None
    ]
    matches: dict[int, list[int]] = {index: [] for index in busy}
    for position, first in enumerate(busy):
        a = measures[first]
        for second in busy[position + 1 :]:
            b = measures[second]
            if (
                a.group != b.group
                and a.limit == b.limit
                and foreign[first] >= b.sent / 2
                and foreign[second] >= a.sent / 2
            ):
                matches[first].append(second)
                matches[second].append(first)
    return [
        (first, found[0])
        for first, found in matches.items()
        if len(found) == 1 and first < found[0] and matches[found[0]] == [first]
    ]


class Member(Protocol):
    """What :class:`Groups` needs of a key at run time (the pool's per-key state)."""

    key: Key
    group: GroupLimits
    foreign: ForeignUse


class Groups:
    """The groups of a pool's keys: those the user configured from the start, then merged as
    the responses show (by name when they name an organization and project, by foreign use
    otherwise). Called under the pool's lock."""

    def __init__(self, members: Sequence[Member]) -> None:
        self._members = members
        self._named: dict[str, GroupLimits] = {}  # configured or organization/project names
        self._measured_at = 0.0  # when the keys last compared what others took from them
        # The keys' limits are shared with other processes (leases, or a fixed share below 1):
        # they send on every key too, so a remaining that falls by more than this process sent
        # is no sign that two keys share a bucket (read so, two keys used alike by several
        # processes would be merged and paced at one key's rate). Never turned back off.
        self.shared = False
        for member in members:
            if member.key.group is not None:
                known = self._named.setdefault(member.key.group, member.group)
                self._join(member, known, 0.0)

    def find(
        self,
        member: Member,
        sent_at: float,
        sequence: int,
        headers: Mapping[str, str],
        now: float,
    ) -> bool:
        """Learn from the answer to ``member``'s request number ``sequence`` (sent at
        ``sent_at``) which keys share its limits; whether groups were merged."""
        if len(self._members) < 2:  # nothing to share limits with: only name the key's group
            if member.group.name is None:
                member.group.name = identity(headers)
            return False
        merged = False
        name = identity(headers)
        if name is not None:
            known = self._named.get(name)
            if known is None:
                self._named[name] = member.group
                if member.group.name is None:
                    member.group.name = name
            elif known is not member.group:
                merged = self._join(member, known, now)
        if self.shared:
            return merged
        member.foreign.observe(
            parse_float(headers.get("x-ratelimit-limit-requests")),
            parse_float(headers.get("x-ratelimit-remaining-requests")),
            sent_at,
            sequence,
        )
        if now - self._measured_at >= ForeignUse.MEASURE_SECONDS:
            self._measured_at = now
            merged = self._measure(now) or merged
        return merged

    def _measure(self, now: float) -> bool:
        members = self._members
        measures = []
        for other in members:
            foreign, sent = other.foreign.take()
            limiter = other.group.requests_limiter
            limit = None if limiter is None else limiter.limit_per_minute
            measures.append(Measure(id(other.group), foreign, sent, limit))
        merged = False
        named = {id(group) for group in self._named.values()}
        for first, second in sharing(measures):
            group, joining = members[first].group, members[second].group
            if group is not joining and not (id(group) in named and id(joining) in named):
                if group.name is None:
                    group.name = f"shared with {members[first].key.id}"
                merged = self._join(members[second], group, now) or merged
        return merged

    def _join(self, member: Member, group: GroupLimits, now: float) -> bool:
        """Merge ``member``'s group into ``group``: from now on their keys are paced as one."""
        old = member.group
        if old is group:
            return False
        group.absorb(old, now)
        for other in self._members:
            if other.group is old:
                other.group = group
        for name, known in self._named.items():
            if known is old:
                self._named[name] = group
        if now > 0:  # found at run time, not configured
            logger.info(
                "API key %s shares its limits with %s: pacing them as one",
                member.key.id,
                group.name or "another key",
            )
        return True
