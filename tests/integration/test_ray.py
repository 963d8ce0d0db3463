"""openai_multi_client.ray on a real local Ray cluster (started once for the session, on the
machine's 2 CPUs), against the mock server over loopback and a real redis-server.

Marked ``ray``: scripts/test.sh runs them once, in its pass with the extras. Without the ray
extra they skip (in CI, where ``CI`` is set,
test_ray_installed.py fails instead)."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from openai_multi_client import Key, KeyPool
from openai_multi_client.testing import KeyLimits, MockOpenAIServer, RedisServer

if importlib.util.find_spec("ray") is None:  # pragma: no cover - depends on the environment
    # In CI, test_ray_installed.py (also marked ray) fails instead: a skip there would hide it.
    pytest.skip("the ray extra is not installed: pip install -e '.[ray]'", allow_module_level=True)

import ray
import ray.data

from openai_multi_client.ray import RESULT_COLUMNS, OpenAIStage, build_processor

pytestmark = [
    pytest.mark.ray,
    pytest.mark.timeout(120),
    # Ray Data (2.60) warns about its own deprecated defaults when it makes its DataContext
    # (use_push_based_shuffle, use_polars, ...): not ours, and only from that module.
    pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.data.context"),
]

ROOT = Path(__file__).resolve().parents[2]
GOOD = "sk-ray-good-0123456789"
OTHER = "sk-ray-other-0123456789"
BAD = "sk-ray-invalid-0123456789"
MODEL = "gpt-4o-mini"


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[str]:
    """A local Ray cluster for the whole session; yields its address (for subprocesses)."""
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        configure_logging=False,
        # The workers import this test module (its preprocess functions) from the checkout.
        runtime_env={"env_vars": {"PYTHONPATH": str(ROOT)}},
    )
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


def redis_url(server: RedisServer, database: int) -> str:
    """A database of its own per test: Redis keeps retirements for an hour."""
    return f"redis://127.0.0.1:{server.port}/{database}"


def ask(row: dict[str, Any]) -> dict[str, Any]:
    return {"model": MODEL, "messages": [{"role": "user", "content": f"row {row['n']}"}]}


def numbers(count: int) -> ray.data.Dataset:
    return ray.data.range(count).map(lambda row: {"n": row["id"], "tag": f"t{row['id']}"})


def answered_text(row: dict[str, Any]) -> str:
    content: str = json.loads(row["response"])["choices"][0]["message"]["content"]
    return content


def check_every_row_once_in_its_own_row(rows: list[dict[str, Any]], count: int) -> None:
    assert sorted(row["n"] for row in rows) == list(range(count))
    for row in rows:
        assert row["error"] is None, row
        assert row["status_code"] == 200
        assert row["tag"] == f"t{row['n']}"  # the input's columns are kept
        assert answered_text(row) == f"Mock reply to: row {row['n']}"
        assert row["usage"]["total_tokens"] > 0
        assert row["latency"] > 0


def test_two_actors_share_two_keys_through_redis(
    ray_cluster: str, redis_server: RedisServer
) -> None:
    limits = KeyLimits(requests_per_minute=1200)
    with MockOpenAIServer(keys={GOOD: limits, OTHER: limits}, latency=(0.02, 0.1)) as server:
        process = build_processor(
            ask,
            workers=2,
            batch_size=20,
            endpoint="chats",
            api_key=[GOOD, OTHER],
            base_url=server.base_url,
            concurrency=16,
            shared_limits=redis_url(redis_server, 1),
        )
        rows = process(numbers(240)).take_all()
        stats = server.stats
    check_every_row_once_in_its_own_row(rows, 240)
    # Each actor alone may send each key's whole limit: only the shares keep them under it.
    assert stats.rate_limited_by_type == {}
    assert stats.status_counts == {200: 240}
    assert stats.requests_by_key[GOOD] > 60
    assert stats.requests_by_key[OTHER] > 60
    assert server.answered_more_than_once() == 0


class InFlightServer:
    """A chat-completions server on loopback, in a thread of its own, that counts the requests
    in flight and holds each until ``together`` are (or ``hold`` seconds have passed). The
    first is answered at once: to a server that publishes no limits, a client sends one request
    at first, and more with each success (adaptive concurrency)."""

    def __init__(self, together: int, hold: float = 5.0) -> None:
        self.together = together
        self.hold = hold
        self.answered = 0
        self.most_in_flight = 0
        self._in_flight = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None
        self._met: asyncio.Event | None = None
        self.port = 0

    async def _handle(self, request: web.Request) -> web.Response:
        assert self._met is not None
        self.answered += 1
        if self.answered > 1:
            self._in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self._in_flight)
            if self._in_flight >= self.together:
                self._met.set()
            try:
                await asyncio.wait_for(self._met.wait(), self.hold)
            except asyncio.TimeoutError:
                pass  # answered anyway: the test then sees too few in flight
            finally:
                self._in_flight -= 1
        content = {"role": "assistant", "content": "ok"}
        return web.json_response(
            {
                "id": "c",
                "object": "chat.completion",
                "model": MODEL,
                "choices": [{"index": 0, "message": content, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
            }
        )

    async def _start(self) -> None:
        self._met = asyncio.Event()
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]

    def __enter__(self) -> InFlightServer:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()


def test_one_actor_runs_several_of_rays_tasks_at_once(ray_cluster: str) -> None:
    """Ray runs one task (a bundle of blocks) at a time on an actor unless told otherwise: the
    actor's client would drain at every task's end and a task queued behind a busy actor would
    wait while another idles. Three one-row blocks on one actor: once the first is answered,
    the other two are in flight together (the server holds each until the other comes)."""
    with InFlightServer(together=2) as server:
        process = build_processor(
            ask,
            workers=1,
            batch_size=1,
            endpoint="chats",
            api_key=GOOD,
            base_url=f"http://127.0.0.1:{server.port}/v1",
            concurrency=4,
        )
        dataset = ray.data.from_items([{"n": n} for n in range(3)], override_num_blocks=3)
        rows = process(dataset).take_all()
    assert sorted(row["n"] for row in rows) == [0, 1, 2]
    assert all(row["error"] is None for row in rows)
    assert server.most_in_flight == 2


def ask_and_name_the_actor(row: dict[str, Any]) -> dict[str, Any]:
    """The mock's answer repeats the message: it tells which actor (process) sent the row."""
    content = f"row {row['id']} from {os.getpid()}"
    return {"model": MODEL, "messages": [{"role": "user", "content": content}]}


def test_one_big_input_block_is_shared_by_every_actor(ray_cluster: str) -> None:
    """Ray gives a whole block to one actor: 4 blocks for 3 actors left one actor twice the
    work, to finish alone at the end (its share of the keys idle in the others' hands). The
    processor cuts the input into blocks of one batch, and Ray queues none on a busy actor, so
    the actors take work as they free up and finish together."""
    with MockOpenAIServer(latency=(0.05, 0.1)) as server:
        with pytest.warns(UserWarning, match="shared_limits"):
            process = build_processor(
                ask_and_name_the_actor,
                workers=2,
                batch_size=10,
                endpoint="chats",
                api_key=GOOD,
                base_url=server.base_url,
                concurrency=4,
            )
        rows = process(ray.data.range(80, override_num_blocks=1)).take_all()
    assert sorted(row["id"] for row in rows) == list(range(80))
    senders = {answered_text(row).rsplit(" ", 1)[1] for row in rows}
    assert len(senders) == 2, senders


def test_without_redis_each_actor_is_given_half_of_each_key(ray_cluster: str) -> None:
    limits = KeyLimits(requests_per_minute=1200)
    with MockOpenAIServer(keys={GOOD: limits, OTHER: limits}, latency=(0.02, 0.1)) as server:
        with pytest.warns(UserWarning, match=r"1/2 of every key's limits.*shared_limits"):
            process = build_processor(
                ask,
                workers=2,
                batch_size=20,
                endpoint="chats",
                # One key's limits configured, the other's learned from the headers.
                api_key=KeyPool([Key(GOOD, requests_per_minute=1200), Key(OTHER)]),
                base_url=server.base_url,
                concurrency=16,
            )
        rows = process(numbers(160)).take_all()
        stats = server.stats
    check_every_row_once_in_its_own_row(rows, 160)
    assert stats.rate_limited_by_type == {}


def test_an_invalid_key_is_retired_for_every_actor(
    ray_cluster: str, redis_server: RedisServer
) -> None:
    limits = KeyLimits(requests_per_minute=6000)
    with MockOpenAIServer(
        keys={GOOD: limits, BAD: limits}, invalid_keys={BAD}, latency=(0.02, 0.05)
    ) as server:
        options: dict[str, Any] = {
            "workers": 2,
            "batch_size": 10,
            "endpoint": "chats",
            "api_key": [BAD, GOOD],
            "base_url": server.base_url,
            "concurrency": 4,
            "shared_limits": redis_url(redis_server, 2),
        }
        first = build_processor(ask, **options)(numbers(60)).take_all()
        check_every_row_once_in_its_own_row(first, 60)
        # Before the first 401 reached Redis, each actor may have tried the key (first alone).
        assert server.stats.status_counts.get(401, 0) <= 2
        server.reset_stats()
        # New actors read the retirement from Redis: the dead key is never tried again.
        second = build_processor(ask, **options)(numbers(60)).take_all()
        check_every_row_once_in_its_own_row(second, 60)
        assert server.stats.requests_by_key == {GOOD: 60}


def bad_rows(row: dict[str, Any]) -> Any:
    kind = row["n"] % 4
    if kind == 1:
        return ["not", "a", "dict"]
    if kind == 2:
        raise ValueError(f"cannot make a body for row {row['n']}")
    if kind == 3:
        return {"model": MODEL}  # no messages: the server says 400
    return ask(row)


def test_bad_rows_are_rows_with_their_error(ray_cluster: str) -> None:
    with MockOpenAIServer(keys={GOOD: KeyLimits()}) as server:
        process = build_processor(
            bad_rows, endpoint="chats", api_key=GOOD, base_url=server.base_url, batch_size=8
        )
        rows = process(numbers(24)).take_all()
    assert sorted(row["n"] for row in rows) == list(range(24))
    assert set(rows[0]) == {"n", "tag", *RESULT_COLUMNS}
    for row in rows:
        kind = row["n"] % 4
        if kind == 0:
            assert row["error"] is None
            assert answered_text(row) == f"Mock reply to: row {row['n']}"
        elif kind == 1:
            assert row["error"] == (
                "ConfigurationError: preprocess must return a request body (a dict), got list"
            )
            assert (row["response"], row["status_code"], row["usage"]) == (None, None, None)
        elif kind == 2:
            assert row["error"] == f"ValueError: cannot make a body for row {row['n']}"
        else:
            assert row["error"].startswith("BadRequestError: ")
            assert row["status_code"] == 400
            assert "error" in json.loads(row["response"])  # the error body is kept


def die_once(marker: str) -> Any:
    def preprocess(row: dict[str, Any]) -> dict[str, Any]:
        if row["n"] == 17 and not os.path.exists(marker):
            Path(marker).touch()
            os._exit(1)  # the actor dies mid-batch, as a node lost would take it
        return ask(row)

    return preprocess


def test_an_actor_that_dies_has_its_batch_retried_and_every_row_comes_once(
    ray_cluster: str, redis_server: RedisServer, tmp_path: Path
) -> None:
    marker = tmp_path / "died"
    with MockOpenAIServer(keys={GOOD: KeyLimits(requests_per_minute=3000)}) as server:
        process = build_processor(
            die_once(str(marker)),
            workers=2,
            batch_size=10,
            endpoint="chats",
            api_key=GOOD,
            base_url=server.base_url,
            shared_limits=redis_url(redis_server, 3),
        )
        rows = process(numbers(60)).take_all()
    assert marker.exists()
    check_every_row_once_in_its_own_row(rows, 60)


def test_the_stage_in_map_batches_with_postprocess_free_rows(ray_cluster: str) -> None:
    """Direct use: ``map_batches(OpenAIStage, ...)`` with another batch format; the stage's
    output is plain Arrow, so any later stage reads it."""
    with MockOpenAIServer(keys={GOOD: KeyLimits()}) as server:
        results = ray.data.from_items(
            [{"body": {"model": MODEL, "input": f"text {n}"}, "n": n} for n in range(12)]
        ).map_batches(
            OpenAIStage,
            fn_constructor_kwargs={
                "endpoint": "embeddings",
                "api_key": Key(GOOD),
                "base_url": server.base_url,
            },
            concurrency=1,
            batch_size=5,
            batch_format="pandas",
            num_cpus=0.25,
        )
        rows = results.take_all()
    assert sorted(row["n"] for row in rows) == list(range(12))
    for row in rows:
        assert row["error"] is None
        assert len(json.loads(row["response"])["data"][0]["embedding"]) == 1536
        assert row["usage"]["prompt_tokens"] > 0
        assert row["usage"]["completion_tokens"] is None


def test_postprocess_sees_the_parsed_response(ray_cluster: str) -> None:
    with MockOpenAIServer(keys={GOOD: KeyLimits()}) as server:
        process = build_processor(
            ask,
            lambda row: {
                "n": row["n"],
                "text": row["response"]["choices"][0]["message"]["content"],
            },
            endpoint="chats",
            api_key=GOOD,
            base_url=server.base_url,
        )
        rows = process(numbers(5)).take_all()
    assert sorted(rows, key=lambda row: row["n"]) == [
        {"n": n, "text": f"Mock reply to: row {n}"} for n in range(5)
    ]


def test_the_example_runs_against_the_mock_server(ray_cluster: str) -> None:
    if shutil.which("redis-server") is None:
        pytest.skip("the example needs redis-server (Debian's package)")
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "ray_pipeline.py")],
        cwd=ROOT,
        # On this session's cluster: starting another costs seconds and memory.
        env={
            **os.environ,
            "RAY_ADDRESS": ray_cluster,
            "PYTHONWARNINGS": "error,ignore::DeprecationWarning:ray.data.context",
        },
        capture_output=True,
        text=True,
        timeout=110,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "0 Mock reply to: What is 0 * 0?" in done.stdout
    assert "120 rows, 0 failed, 120 requests" in done.stdout


def test_keys_stay_out_of_reprs_and_of_rays_logs(ray_cluster: str) -> None:
    secret = "sk-ray-canary-5f3e2d1c0b"
    with MockOpenAIServer(keys={secret: KeyLimits()}) as server:
        process = build_processor(
            ask, endpoint="chats", api_key=secret, base_url=server.base_url, workers=1
        )
        results = process(numbers(8))
        rows = results.take_all()
        shown = [repr(process), str(results), results.stats(), repr(rows)]
    assert all(secret not in text for text in shown)
    assert all(row["error"] is None for row in rows)
    node = ray._private.worker.global_worker.node  # where this session writes its logs
    logs = Path(node.get_session_dir_path()) / "logs"
    assert any(logs.rglob("*worker*"))  # the actors' logs are there to search
    found = [
        path for path in logs.rglob("*") if path.is_file() and secret.encode() in path.read_bytes()
    ]
    assert found == []


def test_wrong_arguments_fail_on_the_driver_and_name_themselves() -> None:
    from openai_multi_client import ConfigurationError

    with pytest.raises(ConfigurationError, match="'ordered' is not an argument"):
        build_processor(ask, ordered=True)
    with pytest.raises(ConfigurationError, match="workers must be a whole number"):
        build_processor(ask, workers=0)
    with pytest.raises(ConfigurationError, match="api_key entry 1 must be a string or a Key"):
        build_processor(ask, api_key=[GOOD, 3])
    with pytest.raises(ConfigurationError, match="concurrency must be"):
        build_processor(ask, concurrency=0)
    with pytest.raises(ConfigurationError, match="preprocess must be a function"):
        OpenAIStage("body")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="max_concurrent_batches must be a whole number"):
        build_processor(ask, max_concurrent_batches=0)
