"""Shared limits through a real redis-server (Debian's package, started on a free port): the
lease contract run against both backends, the Lua script checked against the reference
algorithm step by step, and clients over HTTP to the mock server sharing keys through Redis."""

from __future__ import annotations

import asyncio
import logging
import random
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from openai_multi_client import (
    AsyncMultiClient,
    ConfigurationError,
    InMemoryLimits,
    LimitsBackend,
    OpenAIMultiClient,
    RedisLimits,
    SharedLimitsError,
)
from openai_multi_client._limits import Claim
from openai_multi_client._limits.redis import redact_url
from openai_multi_client.testing import FakeClock, KeyLimits, MockOpenAIServer, RedisServer

from .test_omc_run import omc, output_ids, write_input

Factory = Callable[[FakeClock], Awaitable[LimitsBackend]]


@pytest.fixture(params=["memory", "redis"])
async def make_backend(request: pytest.FixtureRequest) -> AsyncIterator[Factory]:
    made: list[LimitsBackend] = []

    async def make(time: FakeClock) -> LimitsBackend:
        backend: LimitsBackend
        if request.param == "memory":
            backend = InMemoryLimits(clock=time)
        else:
            server: RedisServer = request.getfixturevalue("redis_server")
            backend = RedisLimits(server.url, namespace=uuid.uuid4().hex, clock=time)
        made.append(backend)
        return backend

    yield make
    for backend in made:
        await backend.aclose()


def claim(demand: float = 1.0) -> dict[str, Claim]:
    return {"k": Claim(demand, 10)}


async def share(backend: LimitsBackend, client: str, demand: float = 1.0) -> float:
    return (await backend.lease(client, claim(demand)))["k"].share


async def test_a_lone_client_gets_the_whole_key(make_backend: Factory) -> None:
    backend = await make_backend(FakeClock(1_800_000_000.0))
    grant = (await backend.lease("a", claim()))["k"]
    assert (grant.share, grant.fair_share, grant.cooling_for, grant.retired) == (1.0, 1.0, 0, None)


async def test_clients_split_a_key_once_the_shrunk_share_is_no_longer_held(
    make_backend: Factory,
) -> None:
    time = FakeClock(1_800_000_000.0)
    backend = await make_backend(time)
    assert await share(backend, "a") == 1.0
    assert await share(backend, "b") == 0.0  # a holds it all until it renews
    time.advance(1.0)
    assert await share(backend, "a") == 0.5  # shrinks, and holds 1.0 for 1.1 s more
    time.advance(1.0)
    assert await share(backend, "b") == 0.0
    time.advance(0.2)
    assert await share(backend, "b") == 0.5


async def test_shares_are_max_min_fair_in_whole_slots(make_backend: Factory) -> None:
    time = FakeClock(1_800_000_000.0)
    backend = await make_backend(time)
    demands = {"a": 0.2, "b": 1.0, "c": 1.0}
    shares: dict[str, float] = {}
    for _ in range(4):
        for client, demand in demands.items():
            shares[client] = await share(backend, client, demand)
        time.advance(1.2)
    assert shares == {"a": 0.2, "b": 0.4, "c": 0.4}


async def test_a_shrink_holds_only_what_its_client_used(make_backend: Factory) -> None:
    time = FakeClock(1_800_000_000.0)
    backend = await make_backend(time)
    assert await share(backend, "a") == 1.0
    assert await share(backend, "b") == 0.0
    time.advance(1.0)
    grant = (await backend.lease("a", {"k": Claim(1.0, 10, used=0.3)}))["k"]
    assert grant.share == 0.5
    time.advance(0.01)
    assert await share(backend, "b") == 0.5  # not a hold later: "a" used only 0.3


async def test_a_lease_not_renewed_expires_within_ttl(make_backend: Factory) -> None:
    time = FakeClock(1_800_000_000.0)
    backend = await make_backend(time)
    await share(backend, "dies")
    time.advance(backend.ttl - 0.01)
    assert await share(backend, "lives") == 0.0
    time.advance(0.01)
    assert await share(backend, "lives") == 1.0


async def test_a_released_lease_is_free_after_the_hold(make_backend: Factory) -> None:
    time = FakeClock(1_800_000_000.0)
    backend = await make_backend(time)
    await share(backend, "a")
    await backend.release("a", ["k"])
    assert await share(backend, "b") == 0.0
    time.advance(1.1)
    assert await share(backend, "b") == 1.0


async def test_cool_downs_and_retirements_reach_every_client(make_backend: Factory) -> None:
    backend = await make_backend(FakeClock(1_800_000_000.0))
    await backend.cool_down("k", 2.0)
    await backend.retire("j", "invalid key (401)")
    await backend.retire("j", "a later reason is not kept")
    grants = await backend.lease("other", {"k": Claim(1.0, 10), "j": Claim(1.0, 10)})
    assert 1.0 < grants["k"].cooling_for <= 2.0  # Redis counts the rest in real time
    assert grants["j"].retired == "invalid key (401)"
    await backend.cool_down("k", 0.5)  # a shorter rest does not cut the longer one
    assert (await backend.lease("other", claim()))["k"].cooling_for > 1.0


async def test_the_lua_script_agrees_with_the_reference_algorithm(
    redis_server: RedisServer,
) -> None:
    """The same random sequence of renewals and releases, on both backends: the same grants."""
    rng = random.Random(5)
    time = FakeClock(1_800_000_000.0)
    memory = InMemoryLimits(clock=time)
    redis = RedisLimits(redis_server.url, namespace=uuid.uuid4().hex, clock=time)
    try:
        for _ in range(400):
            # Steps exact in binary: a float sum of tenths can land an expiry a hair after
            # "now" where Redis, in whole milliseconds, finds them equal.
            time.advance(rng.choice([0.0, 0.125, 0.5, 1.0, 1.25, 3.5]))
            client = rng.choice("abcde")
            if rng.random() < 0.1:
                await memory.release(client, ["k", "j"])
                await redis.release(client, ["k", "j"])
                continue
            claims = {
                "k": Claim(rng.choice([0.0, 0.05, 0.3, 1.0]), 10, rng.choice([0.0, 0.2, 1.0])),
                "j": Claim(rng.random(), rng.choice([1, 7, 1000]), rng.random() * 1.2),
            }
            if rng.random() < 0.2:  # an old caller's claim (used: the whole old share)
                claims["k"] = Claim(claims["k"].demand, 10)
            assert await redis.lease(client, claims) == await memory.lease(client, claims)
    finally:
        await redis.aclose()


async def test_an_unreachable_redis_is_a_clear_error_or_a_warned_fallback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    pytest.importorskip("redis")
    url = "redis://:hunter2@127.0.0.1:1/0"  # nothing listens on port 1
    with MockOpenAIServer() as mock:
        client = AsyncMultiClient(
            endpoint="chats", api_key="sk-x", base_url=mock.base_url,
            shared_limits=RedisLimits(url, timeout=1.0),
        )  # fmt: skip
        async with client:
            await client.request({"model": "m", "messages": [{"role": "user", "content": "hi"}]})
            client.close()
            with pytest.raises(SharedLimitsError, match=r"127\.0\.0\.1:1") as raised:
                [result async for result in client]
        assert "hunter2" not in str(raised.value)
        client = AsyncMultiClient(
            endpoint="chats", api_key="sk-x", base_url=mock.base_url,
            shared_limits=RedisLimits(url, timeout=1.0, on_unavailable="local"),
        )  # fmt: skip
        with caplog.at_level(logging.WARNING, logger="openai_multi_client"):
            async with client:
                await client.request(
                    {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
                )
                client.close()
                results = [result async for result in client]
                statistics = client.statistics().shared_limits
    assert not results[0].failed
    assert statistics is not None
    assert statistics.local_fallback
    assert "running on local limits" in caplog.text
    assert "hunter2" not in caplog.text


def test_the_redis_extra_is_named_when_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "redis.asyncio", None)  # import fails as if not installed
    with pytest.raises(ConfigurationError, match=r"pip install 'openai-multi-client\[redis\]'"):
        RedisLimits("redis://127.0.0.1:6379/0")
    with pytest.raises(ConfigurationError, match=r"openai-multi-client\[redis\]"):
        AsyncMultiClient(api_key="sk-x", shared_limits="redis://127.0.0.1:6379/0")


def test_redis_settings_are_checked() -> None:
    with pytest.raises(ConfigurationError, match="must start with redis://"):
        RedisLimits("http://:secret@127.0.0.1:6379")
    with pytest.raises(ConfigurationError, match="ttl"):
        RedisLimits("redis://127.0.0.1:6379", ttl=1.0)
    with pytest.raises(ConfigurationError, match="on_unavailable"):
        RedisLimits("redis://127.0.0.1:6379", on_unavailable="ignore")  # type: ignore[arg-type]
    assert redact_url("redis://user:pw@host:1/0") == "redis://***@host:1/0"


async def test_workers_share_two_keys_through_redis_over_http(redis_server: RedisServer) -> None:
    """Three clients, each with its own list of the same two keys (limits learned from the
    server's headers, and a third that is invalid) share them through Redis: every request
    succeeds, the shares of a key never add up to more than the key, 429s stay under 1 % of
    attempts, Redis is asked far less than once per request, and no key is written to it."""
    secrets = [f"sk-canary-{uuid.uuid4().hex}" for _ in range(3)]  # the last one is invalid
    limits = {key: KeyLimits(requests_per_minute=3000) for key in secrets[:2]}
    namespace = uuid.uuid4().hex
    with MockOpenAIServer(keys=limits, invalid_keys={secrets[2]}, latency=0.01) as mock:
        backends = [RedisLimits(redis_server.url, namespace=namespace) for _ in range(3)]
        clients = [
            AsyncMultiClient(
                16,
                endpoint="chats",
                api_key=secrets,
                base_url=mock.base_url,
                shared_limits=backend,
            )
            for backend in backends
        ]
        samples: list[list[tuple[float, float]]] = []

        async def sample() -> None:
            while True:
                samples.append(
                    [tuple(k.share for k in c.statistics().keys.keys) for c in clients]  # type: ignore[misc]
                )
                await asyncio.sleep(0.05)

        async def work(client: AsyncMultiClient, count: int) -> int:
            async def produce() -> None:
                for n in range(count):
                    await client.request(
                        {"model": "m", "messages": [{"role": "user", "content": f"{n}"}]}
                    )
                client.close()

            async with client:
                producer = asyncio.ensure_future(produce())
                failed = sum([result.failed async for result in client])
                await producer
                return failed

        sampler = asyncio.ensure_future(sample())
        failed = await asyncio.gather(*(work(client, 150) for client in clients))
        sampler.cancel()
        round_trips = 0
        for client, backend in zip(clients, backends, strict=True):
            statistics = client.statistics().shared_limits
            assert statistics is not None
            round_trips += statistics.round_trips
            await backend.aclose()
        stats = mock.stats
    assert failed == [0, 0, 0]
    assert stats.answered == 450
    for moment in samples:
        for key in range(2):
            assert sum(shares[key] for shares in moment) <= 1.0 + 1e-9
    assert sum(stats.rate_limited_by_type.values()) <= stats.total_requests / 100
    assert round_trips < 450 / 2
    # What Redis holds: ids, shares, the (redacted) reason the invalid key was retired; no key.
    import redis

    with redis.Redis.from_url(redis_server.url, decode_responses=True) as connection:
        stored = []
        for name in connection.scan_iter(f"{{{namespace}}}:*"):
            kind = connection.type(name)
            value = connection.hgetall(name) if kind == "hash" else connection.get(name)
            stored.append(f"{name} {value}")
    assert any(":retired:" in entry for entry in stored)
    for secret in secrets:
        assert not any(secret in entry for entry in stored)


def test_two_omc_runs_share_a_key_through_redis(
    tmp_path: Path, redis_server: RedisServer, mock_openai_factory: Callable[..., MockOpenAIServer]
) -> None:
    """`omc run --redis` in two processes at once: both finish every line, within the key's
    limit, and an unreachable Redis is a one-line error (with --redis-unavailable local: a
    warning and a finished run)."""
    server = mock_openai_factory(keys={"sk-one": KeyLimits(requests_per_minute=3000)})
    source = write_input(tmp_path / "in.jsonl", 100)
    runs = [
        subprocess.Popen(
            [sys.executable, "-m", "openai_multi_client", "run", str(source), "-o",
             str(tmp_path / f"out{n}.jsonl"), "--base-url", server.base_url, "--key", "sk-one",
             "--redis", redis_server.url, "--redis-namespace", "omc-test"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for n in range(2)
    ]  # fmt: skip
    for run in runs:
        _, stderr = run.communicate(timeout=120)
        assert run.returncode == 0, stderr
    for n in range(2):
        assert len(output_ids(tmp_path / f"out{n}.jsonl")) == 100
    stats = server.stats
    assert sum(stats.rate_limited_by_type.values()) <= stats.total_requests / 100
    unreachable = "redis://:hunter2@127.0.0.1:1/0"
    base = ("run", str(source), "-o", str(tmp_path / "other.jsonl"), "--mock")
    failed = omc(*base, "--redis", unreachable)
    assert failed.returncode == 2
    assert "Redis at redis://***@127.0.0.1:1/0 failed" in failed.stderr
    assert "Traceback" not in failed.stderr
    assert "hunter2" not in failed.stderr
    local = omc(*base, "--redis", unreachable, "--redis-unavailable", "local")
    assert local.returncode == 0, local.stderr
    assert "running on local limits" in local.stderr
    assert len(output_ids(tmp_path / "other.jsonl")) == 100


def test_the_sync_client_takes_shared_limits(redis_server: RedisServer) -> None:
    with MockOpenAIServer() as mock:
        api = OpenAIMultiClient(
            endpoint="chats", api_key="sk-sync", base_url=mock.base_url,
            shared_limits=redis_server.url,
        )  # fmt: skip

        def feed() -> None:
            for n in range(20):
                api.request({"model": "m", "messages": [{"role": "user", "content": f"{n}"}]})

        api.run_request_function(feed)
        results = list(api)
        statistics = api.statistics()
        api.close()
    assert [r.failed for r in results] == [False] * 20
    assert statistics.shared_limits is not None
    assert statistics.shared_limits.round_trips >= 1
    assert statistics.keys.keys[0].share == 0.0  # given back when the run ended
