"""Shared limits in one process: the lease algorithm (InMemoryLimits), its invariants, and
several clients sharing keys through it on virtual time. The same contract is run against
Redis in tests/integration/test_redis_limits.py."""

from __future__ import annotations

import asyncio
import logging
import math
from collections import defaultdict
from collections.abc import Mapping
from time import monotonic

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from openai_multi_client import (
    AsyncMultiClient,
    ConfigurationError,
    HTTPRequest,
    HTTPResponse,
    InMemoryLimits,
    Key,
    LimitsBackend,
    Result,
    _json,
)
from openai_multi_client._limits import Claim, Grant, KeyPool, allocate, fair_level
from openai_multi_client._limits.keeper import LeaseKeeper
from openai_multi_client.testing import FakeClock, MockTransport, error_response, json_response


def test_fair_level_is_max_min_fair() -> None:
    assert fair_level([1.0]) == float("inf")  # a lone client gets all it asks for
    assert fair_level([1.0, 1.0, 1.0]) == pytest.approx(1 / 3)
    assert fair_level([0.2, 1.0, 1.0]) == pytest.approx(0.4)
    assert fair_level([0.1, 0.2]) == float("inf")  # everyone gets what they ask for


def test_allocate_splits_whole_slots_and_keeps_the_odd_one_where_it_is() -> None:
    assert allocate([("a", 1.0, 0.0), ("b", 1.0, 0.0), ("c", 1.0, 0.0)], 10) == {
        "a": 4, "b": 3, "c": 3,
    }  # fmt: skip
    # The unit left by rounding stays with whoever holds the most already.
    assert allocate([("a", 1.0, 0.3), ("b", 1.0, 0.3), ("c", 1.0, 0.4)], 10)["c"] == 4
    assert allocate([("a", 0.05, 0.0), ("b", 1.0, 0.0)], 10) == {"a": 1, "b": 9}
    assert allocate([("a", 0.0, 0.5), ("b", 0.2, 0.0)], 10) == {"a": 0, "b": 2}


@settings(max_examples=200, deadline=None, derandomize=True)
@given(
    st.lists(
        st.tuples(
            st.sampled_from("abcd"),  # which client
            st.sampled_from(["lease", "lease", "lease", "release"]),
            st.floats(0.0, 1.0),  # its demand
            st.floats(0.0, 2.0),  # time passing before
        ),
        max_size=60,
    )
)
def test_leases_never_hand_out_more_than_the_key(
    steps: list[tuple[str, str, float, float]],
) -> None:
    """Whatever the clients do, what the live leases hold adds up to at most the whole key,
    nobody gets more than it asked for, and a share granted is at most the fair share."""
    time = FakeClock(1000.0)
    backend = InMemoryLimits(clock=time)

    async def play() -> None:
        for client, operation, demand, elapsed in steps:
            time.advance(elapsed)
            if operation == "release":
                await backend.release(client, ["k"])
            else:
                grant = (await backend.lease(client, {"k": Claim(demand, 10)}))["k"]
                assert grant.share <= math.ceil(demand * 10 - 1e-9) / 10 + 1e-12
                assert grant.share * 10 == round(grant.share * 10)  # whole slots
                assert grant.share <= grant.fair_share + 1e-12
            assert backend.held("k") <= 1.0 + 1e-9

    asyncio.run(play())


async def test_a_share_grows_only_after_the_shrinking_lease_stops_holding_it() -> None:
    time = FakeClock(1000.0)
    backend = InMemoryLimits(clock=time)  # renew 1 s, hold 1.1 s, ttl 3 s
    assert (await backend.lease("a", {"k": Claim(1.0, 10)}))["k"].share == 1.0
    second = (await backend.lease("b", {"k": Claim(1.0, 10)}))["k"]
    assert (second.share, second.fair_share) == (0.0, 0.5)
    time.advance(1.0)
    assert (await backend.lease("a", {"k": Claim(1.0, 10)}))["k"].share == 0.5  # shrinks, holds 1.0
    time.advance(1.0)
    assert (await backend.lease("b", {"k": Claim(1.0, 10)}))["k"].share == 0.0  # still held
    time.advance(0.2)
    assert (await backend.lease("b", {"k": Claim(1.0, 10)}))["k"].share == 0.5


async def test_a_lease_not_renewed_expires_within_ttl() -> None:
    time = FakeClock(1000.0)
    backend = InMemoryLimits(clock=time)
    await backend.lease("dies", {"k": Claim(1.0, 10)})
    time.advance(backend.ttl - 0.01)
    assert (await backend.lease("lives", {"k": Claim(1.0, 10)}))["k"].share == 0.0
    time.advance(0.01)
    assert (await backend.lease("lives", {"k": Claim(1.0, 10)}))["k"].share == 1.0


async def test_cool_downs_and_retirements_reach_every_client() -> None:
    time = FakeClock(1000.0)
    backend = InMemoryLimits(clock=time)
    await backend.cool_down("k", 2.0)
    await backend.retire("j", "invalid key (401)")
    grants = await backend.lease("other", {"k": Claim(1.0, 10), "j": Claim(1.0, 10)})
    assert grants["k"].cooling_for == 2.0
    assert grants["j"].retired == "invalid key (401)"
    time.advance(2.5)
    assert (await backend.lease("other", {"k": Claim(1.0, 10)}))["k"].cooling_for == 0.0


def test_in_memory_limits_take_a_clock() -> None:
    with pytest.raises(ConfigurationError, match="Clock"):
        InMemoryLimits(clock=monotonic)  # type: ignore[arg-type]


async def test_in_memory_limits_run_on_the_loops_clock_by_default(fake_clock: FakeClock) -> None:
    backend = InMemoryLimits()  # like the clients: virtual time here
    await backend.lease("dies", {"k": Claim(1.0, 10)})
    assert backend.held("k") == 1.0
    await asyncio.sleep(backend.ttl)
    assert backend.held("k") == 0.0
    assert (await backend.lease("lives", {"k": Claim(1.0, 10)}))["k"].share == 1.0


def test_lease_timing_is_checked() -> None:
    with pytest.raises(ConfigurationError, match="ttl"):
        InMemoryLimits(renew_interval=1.0, ttl=1.5, hold=1.0)
    with pytest.raises(ConfigurationError, match="renew_interval"):
        InMemoryLimits(renew_interval=0)
    with pytest.raises(ConfigurationError, match="shared_limits"):
        AsyncMultiClient(api_key="sk-x", shared_limits=42)  # type: ignore[arg-type]
    assert isinstance(InMemoryLimits(), LimitsBackend)


def key_of(request: HTTPRequest) -> str:
    return request.headers["Authorization"].removeprefix("Bearer ")


def max_in_any_second(times: list[float]) -> int:
    times = sorted(times)
    return max(sum(1 for t in times if start <= t < start + 1.0) for start in times)


def reply() -> HTTPResponse:
    body = {
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 5, "total_tokens": 10},
    }
    return json_response(200, body)


async def run_worker(client: AsyncMultiClient, count: int) -> int:
    async def produce() -> None:
        for n in range(count):
            await client.request({"messages": [{"role": "user", "content": f"q{n}"}]})
        client.close()

    producer = asyncio.ensure_future(produce())
    failed = sum([result.failed async for result in client])
    await producer
    return failed


def worker(
    transport: MockTransport,
    shared: InMemoryLimits,
    clock: FakeClock,
    keys: list[Key] | None = None,
) -> AsyncMultiClient:
    keys = keys or [Key(secret, requests_per_minute=600) for secret in ("sk-s1", "sk-s2")]
    return AsyncMultiClient(
        32, endpoint="chats", api_key=keys, base_url="http://mock.invalid/v1",
        transport=transport, shared_limits=shared, clock=clock,
    )  # fmt: skip


async def test_three_clients_sharing_two_keys_stay_within_their_limits(
    fake_clock: FakeClock,
) -> None:
    """Three clients, each with its own pool of the same two keys of 600 requests/min: together
    they never send more than 10 requests in any second on a key, and finish close to the
    ideal time (600 requests at 20 a second)."""
    sent: dict[str, list[float]] = defaultdict(list)

    async def handler(request: HTTPRequest) -> HTTPResponse:
        sent[key_of(request)].append(fake_clock.now())
        await asyncio.sleep(0.3)
        return reply()

    transport = MockTransport(handler)
    shared = InMemoryLimits(clock=fake_clock)
    clients = [worker(transport, shared, fake_clock) for _ in range(3)]
    failed = await asyncio.gather(*(run_worker(client, 200) for client in clients))
    finished = fake_clock.now()
    for client in clients:
        await client.aclose()
    assert failed == [0, 0, 0]
    assert sorted(len(times) for times in sent.values()) == [300, 300]
    for times in sent.values():
        assert max_in_any_second(times) <= 10
    ideal = 600 / 20
    assert finished <= ideal * 1.1
    # Without sharing, the same three clients send three times the limit.
    sent.clear()
    alone = [
        AsyncMultiClient(
            32,
            endpoint="chats",
            base_url="http://mock.invalid/v1",
            transport=transport,
            api_key=[Key(s, requests_per_minute=600) for s in ("sk-s1", "sk-s2")],
        )
        for _ in range(3)
    ]
    await asyncio.gather(*(run_worker(client, 60) for client in alone))
    for client in alone:
        await client.aclose()
    assert max(max_in_any_second(times) for times in sent.values()) == 30


async def test_a_client_that_leaves_gives_its_share_to_the_others(fake_clock: FakeClock) -> None:
    sent: list[float] = []

    async def handler(request: HTTPRequest) -> HTTPResponse:
        sent.append(fake_clock.now())
        return reply()

    transport = MockTransport(handler)
    shared = InMemoryLimits(clock=fake_clock)
    keys = [Key("sk-s1", requests_per_minute=600)]
    short, long = (worker(transport, shared, fake_clock, keys) for _ in range(2))
    shares: list[float] = []

    async def sample() -> None:
        while True:
            shares.append(long.statistics().keys.keys[0].share)
            await asyncio.sleep(0.5)

    sampler = asyncio.ensure_future(sample())
    await asyncio.gather(run_worker(short, 20), run_worker(long, 200))
    sampler.cancel()
    await short.aclose()
    statistics = long.statistics()
    await long.aclose()
    assert shares[-1] == 1.0  # the whole key once the other was done
    assert statistics.keys.keys[0].share == 0.0  # and nothing once it was done itself
    assert statistics.shared_limits is not None
    assert statistics.shared_limits.round_trips < 220 / 2
    assert max_in_any_second(sent) <= 10
    assert fake_clock.now() <= 220 / 10 * 1.15


async def test_a_client_with_nothing_to_send_gives_its_share_up_at_once(
    fake_clock: FakeClock,
) -> None:
    """A client whose requests are all sent, but which stays open for more (a Ray actor at the
    end of its dataset), gives its share to the client with work after a tenth of the renewal
    interval and the lease's hold, not after renewals that measure its use falling; and asks
    for a share again at once when work comes."""
    sent: dict[str, list[float]] = defaultdict(list)

    async def handler(request: HTTPRequest) -> HTTPResponse:
        text = _json.loads(request.content)["messages"][0]["content"]
        sent[text[0]].append(fake_clock.now())
        await asyncio.sleep(0.3)
        return reply()

    transport = MockTransport(handler)
    shared = InMemoryLimits(clock=fake_clock)
    keys = [Key("sk-s1", requests_per_minute=600)]
    short, long = (worker(transport, shared, fake_clock, keys) for _ in range(2))
    shares: dict[float, float] = {}
    results: dict[str, list[Result]] = defaultdict(list)

    async def sample() -> None:
        while True:
            shares[round(fake_clock.now(), 2)] = long.statistics().keys.keys[0].share
            await asyncio.sleep(0.05)

    have = {"s": asyncio.Event()}  # set when short's results reach wanted["s"]
    wanted = {"s": 30}

    async def read(client: AsyncMultiClient, name: str) -> None:
        async for result in client:
            results[name].append(result)
            if name in have and len(results[name]) == wanted[name]:
                have[name].set()

    async def send(client: AsyncMultiClient, prefix: str, count: int) -> None:
        for n in range(count):
            await client.request({"messages": [{"role": "user", "content": f"{prefix}{n}"}]})

    tasks = [asyncio.ensure_future(job) for job in (sample(), read(short, "s"), read(long, "l"))]
    await asyncio.gather(send(short, "s", 30), send(long, "l", 60))  # short stays open
    await have["s"].wait()
    dry = max(sent["s"])  # its last request went out
    await send(long, "l", 100)
    await asyncio.sleep(3.0)
    taken = min(at for at, share in shares.items() if at > dry and share == 1.0)
    # A tenth of renew_interval, the hold (1.1 s), then the other's catch-up renewal (0.25 s).
    assert taken - dry <= 0.1 + 1.1 + 0.25 + 0.05
    # Work again: the quiet client asks for a share back at once, without waiting for a
    # regular renewal; it gets one once the other's next renewal shrank it and the hold passed
    # (whenever in the other's renewal interval the work came).
    renewals: list[tuple[str, float]] = []
    lease = shared.lease

    async def logged(client: str, claims: Mapping[str, Claim]) -> dict[str, Grant]:
        renewals.append((client, fake_clock.now()))
        return await lease(client, claims)

    shared.lease = logged  # type: ignore[method-assign]
    quiet = short.statistics().shared_limits
    assert quiet is not None
    again = fake_clock.now()
    have["s"].clear()
    wanted["s"] = 35
    await send(short, "t", 5)
    await have["s"].wait()
    asked = min(at for client, at in renewals if client == quiet.client)
    assert asked - again <= 0.01
    assert min(sent["t"]) - again <= 1.0 + 1.1 + 0.25 + 0.05
    short.close()
    long.close()
    await asyncio.gather(*tasks[1:])
    tasks[0].cancel()
    await short.aclose()
    await long.aclose()
    assert not any(result.failed for name in "sl" for result in results[name])
    assert max_in_any_second(sent["s"] + sent["l"] + sent["t"]) <= 10


async def test_a_key_retired_or_cooled_by_one_client_rests_in_the_others(
    fake_clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    by_key: dict[str, int] = defaultdict(int)

    async def handler(request: HTTPRequest) -> HTTPResponse:
        key = key_of(request)
        by_key[key] += 1
        if key == "sk-dead":
            return error_response(401, "Incorrect API key provided", "invalid_api_key")
        return reply()

    transport = MockTransport(handler)
    shared = InMemoryLimits(clock=fake_clock)
    keys = [Key("sk-dead", requests_per_minute=600), Key("sk-good", requests_per_minute=600)]
    first, second = (
        AsyncMultiClient(
            4,
            endpoint="chats",
            api_key=keys,
            base_url="http://mock.invalid/v1",
            transport=transport,
            shared_limits=shared,
            clock=fake_clock,
        )
        for _ in range(2)
    )
    with caplog.at_level(logging.WARNING, logger="openai_multi_client"):
        assert await run_worker(first, 10) == 0
        await asyncio.sleep(1.0)  # one renewal of the second client's lease
        assert await run_worker(second, 10) == 0
    await first.aclose()
    await second.aclose()
    assert by_key["sk-dead"] == 1  # the second client never tried it
    assert "retired by another process" in caplog.text
    assert "sk-dead" not in caplog.text


async def test_the_share_of_a_worker_that_died_is_taken_over_when_its_lease_expires(
    fake_clock: FakeClock,
) -> None:
    """A lease nobody renews (its worker died) expires ttl after its last renewal; a client
    that wants more takes the share over right then, not at its next regular renewal."""

    async def handler(request: HTTPRequest) -> HTTPResponse:
        await asyncio.sleep(0.05)
        return reply()

    shared = InMemoryLimits(clock=fake_clock)
    client = worker(
        MockTransport(handler), shared, fake_clock, [Key("sk-s1", requests_per_minute=600)]
    )
    shares: dict[float, float] = {}

    async def sample() -> None:
        await asyncio.sleep(0.5)
        await shared.lease("dead-worker", {"key-7ec34b1c": Claim(0.5, 10)})  # then never again
        for _ in range(100):
            shares[round(fake_clock.now(), 2)] = client.statistics().keys.keys[0].share
            await asyncio.sleep(0.05)

    sampler = asyncio.ensure_future(sample())
    await run_worker(client, 60)
    await sampler
    await client.aclose()
    assert shares[3.45] == 0.5  # the dead worker's lease (taken at 0.5 s) still stands
    assert shares[3.55] == 1.0  # expired at 3.5 s: taken over at once (next renewal: 4 s)


async def test_a_cool_down_capped_by_a_whole_number_is_shared(fake_clock: FakeClock) -> None:
    """max_server_delay given as an int makes the pause an int: it is written through like any
    other (it once failed an assertion in the keeper and stopped the run)."""
    answers = iter(
        [error_response(429, "slow down", "rate_limit_exceeded", headers={"retry-after": "500"})]
    )

    async def handler(request: HTTPRequest) -> HTTPResponse:
        return next(answers, reply())

    shared = InMemoryLimits(clock=fake_clock)
    client = AsyncMultiClient(
        endpoint="chats", api_key="sk-s1", base_url="http://mock.invalid/v1",
        transport=MockTransport(handler), shared_limits=shared, clock=fake_clock,
        max_server_delay=30,
    )  # fmt: skip
    assert await run_worker(client, 3) == 0
    statistics = client.statistics().shared_limits
    await client.aclose()
    assert statistics is not None
    assert statistics.failures == 0
    assert shared._cooling_until  # the key's rest reached the shared limits


async def test_work_during_the_renewal_that_gave_the_shares_up_asks_again_at_once(
    fake_clock: FakeClock,
) -> None:
    """drained(), a renewal asking for nothing, and busy() while that renewal is on its way:
    the keeper renews again at once, asking for the whole key, not a renew_interval later."""

    class Slow(InMemoryLimits):
        async def lease(self, client: str, claims: Mapping[str, Claim]) -> dict[str, Grant]:
            await asyncio.sleep(0.05)  # a round trip
            return await super().lease(client, claims)

    pool = KeyPool([Key("sk-s1", requests_per_minute=600)])
    keeper = LeaseKeeper(pool, Slow(clock=fake_clock), fake_clock)
    await keeper.start()
    renewals = asyncio.ensure_future(keeper.run())
    assert pool.statistics(fake_clock.now()).keys[0].share == 1.0
    keeper.drained()
    await asyncio.sleep(0.12)  # at 0.05 + 0.1 the renewal went out, for 0.05 s ...
    keeper.busy()  # ... and work came while it was on its way (0.17)
    await asyncio.sleep(0.04)
    assert pool.statistics(fake_clock.now()).keys[0].share == 0.0  # it asked for nothing
    await asyncio.sleep(0.05)  # the next renewal went at once, asking for the whole key
    assert pool.statistics(fake_clock.now()).keys[0].share == 1.0
    keeper.close()
    renewals.cancel()
    await asyncio.gather(renewals, return_exceptions=True)
