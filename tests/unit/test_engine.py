"""The engine on a mock transport and virtual time: every schedule is exact and instant."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import pytest

from openai_multi_client import (
    AsyncMultiClient,
    AuthenticationError,
    CallbackError,
    ClientClosedError,
    ConfigurationError,
    ConnectError,
    EndpointRemovedError,
    HTTPRequest,
    HTTPResponse,
    InternalServerError,
    InvalidResponseError,
    Key,
    NoUsableKeyError,
    Result,
    _json,
)
from openai_multi_client.testing import FakeClock, MockTransport, error_response, json_response

KEY = "sk-test-0123456789abcdef"


def chat_reply(request: HTTPRequest) -> HTTPResponse:
    body = _json.loads(request.content)
    text = body["messages"][-1]["content"]
    return json_response(
        200,
        {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": f"re: {text}"}}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
        },
        {"x-request-id": "req_1"},
    )


def make_client(handler: Callable[[HTTPRequest], Any], **options: Any) -> AsyncMultiClient:
    options.setdefault("api_key", KEY)
    options.setdefault("endpoint", "chats")
    options.setdefault("base_url", "http://mock.invalid/v1")
    return AsyncMultiClient(transport=MockTransport(handler), **options)


def message(text: str) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": text}]}


async def run_all(client: AsyncMultiClient, count: int) -> list[Result]:
    async def produce() -> None:
        for n in range(count):
            await client.request(message(str(n)), metadata={"n": n})
        client.close()

    producer = asyncio.ensure_future(produce())
    results = [result async for result in client]
    await producer
    return results


async def test_results_carry_the_seed_fields_and_more(fake_clock: FakeClock) -> None:
    seen: list[HTTPRequest] = []

    def handler(request: HTTPRequest) -> HTTPResponse:
        seen.append(request)
        return chat_reply(request)

    async with make_client(handler, data_template={"model": "gpt-x"}) as client:
        results = await run_all(client, 3)
    assert sorted(r.metadata["n"] for r in results) == [0, 1, 2]
    result = results[0]
    assert result.response["choices"][0]["message"]["content"].startswith("re: ")
    assert not result.failed
    assert result.error is None
    assert result.attempt == 1
    assert result.endpoint == "chats"
    assert result.data["model"] == "gpt-x"
    assert result.status_code == 200
    assert result.request_id == "req_1"
    assert result.usage == {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
    assert result.latency is not None
    assert result.key is not None
    assert KEY not in repr(result)
    assert KEY not in result.key
    request = seen[0]
    assert request.url == "http://mock.invalid/v1/chat/completions"
    assert request.headers["Authorization"] == f"Bearer {KEY}"
    assert KEY not in repr(request)


async def test_ordered_results_come_in_submission_order(fake_clock: FakeClock) -> None:
    async def handler(request: HTTPRequest) -> HTTPResponse:
        n = int(_json.loads(request.content)["messages"][0]["content"])
        await asyncio.sleep((n * 7919) % 13 / 10)  # finish in a scrambled order
        return chat_reply(request)

    async with make_client(handler, concurrency=8, ordered=True) as client:
        results = await run_all(client, 60)
    assert [r.metadata["n"] for r in results] == list(range(60))
    assert [r.index for r in results] == list(range(60))


async def test_concurrency_is_never_exceeded(fake_clock: FakeClock) -> None:
    in_flight = 0
    peak = 0

    async def handler(request: HTTPRequest) -> HTTPResponse:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(1.0)
        in_flight -= 1
        return chat_reply(request)

    async with make_client(handler, concurrency=5) as client:
        results = await run_all(client, 50)
    assert len(results) == 50
    assert peak == 5
    # The first request goes alone (its response would publish the key's limits); this server
    # publishes none, so adaptive concurrency starts slow: 2, then 4, then the 5 slots. That is
    # 7 requests in 3 s, then 43 more at 5 a second.
    assert fake_clock.now() == pytest.approx(12.0)


async def test_producer_waits_when_the_intake_is_full(fake_clock: FakeClock) -> None:
    release = asyncio.Event()

    async def handler(request: HTTPRequest) -> HTTPResponse:
        await release.wait()
        return chat_reply(request)

    async with make_client(handler, concurrency=2, queue_size=3) as client:
        accepted = 0

        async def produce() -> None:
            nonlocal accepted
            for n in range(20):
                await client.request(message(str(n)))
                accepted += 1

        producer = asyncio.ensure_future(produce())
        await asyncio.sleep(5)
        # 1 in flight (the key's first request goes alone, to learn its limits), 3 waiting in
        # the intake; the producer blocks on the 5th.
        assert accepted == 4
        assert client.statistics().queued == 3
        assert not producer.done()
        release.set()
        results = []
        async for result in client:
            results.append(result)
            if len(results) == 20:
                break
        await producer


async def test_a_producer_fills_every_free_place_while_nobody_consumes(
    fake_clock: FakeClock,
) -> None:
    # Backpressure is exact: a blocked producer goes on at the first free place in the intake,
    # not once a batch of places is free. Here nothing is consumed until the producer is done,
    # so the run needs every place: concurrency + queue_size admitted, queue_size waiting.
    async with make_client(chat_reply, concurrency=2, queue_size=4) as client:
        accepted = 0

        async def produce() -> None:
            nonlocal accepted
            for n in range(10):
                await client.request(message(str(n)))
                accepted += 1
            client.close()

        producer = asyncio.ensure_future(produce())
        await asyncio.sleep(5)
        assert accepted == 10
        await producer
        assert len([result async for result in client]) == 10


async def test_a_slow_head_fills_the_reorder_buffer_then_holds_the_intake(
    fake_clock: FakeClock,
) -> None:
    async def handler(request: HTTPRequest) -> HTTPResponse:
        n = int(_json.loads(request.content)["messages"][0]["content"])
        await asyncio.sleep(1000.0 if n == 1 else 0.01)  # (the first one probes the key)
        return chat_reply(request)

    concurrency, queue_size, reorder_buffer = 4, 6, 50
    async with make_client(
        handler,
        concurrency=concurrency,
        queue_size=queue_size,
        reorder_buffer=reorder_buffer,
        ordered=True,
    ) as client:

        async def produce() -> None:
            for n in range(200):
                await client.request(message(str(n)))
            client.close()

        producer = asyncio.ensure_future(produce())
        await asyncio.sleep(500.0)
        stats = client.statistics()
        # The run went on behind the hung head until the reorder buffer was full (not stopped
        # at concurrency + queue_size), and no further: the rest wait in the bounded intake.
        assert stats.succeeded == 1 + reorder_buffer  # request 0, then those held
        assert stats.in_flight == 1
        assert stats.submitted <= 1 + reorder_buffer + queue_size + 1
        results = [result async for result in client]
        await producer
    assert [r.index for r in results] == list(range(200))


async def test_a_slow_consumer_still_holds_the_ordered_intake(fake_clock: FakeClock) -> None:
    concurrency, queue_size = 4, 6
    async with make_client(
        chat_reply, concurrency=concurrency, queue_size=queue_size, ordered=True
    ) as client:

        async def produce() -> None:
            for n in range(200):
                await client.request(message(str(n)))
            client.close()

        producer = asyncio.ensure_future(produce())
        await asyncio.sleep(100.0)  # nobody iterates: finished results wait for the consumer
        stats = client.statistics()
        assert stats.succeeded == concurrency + queue_size
        assert stats.submitted <= concurrency + 2 * queue_size + 1
        results = [result async for result in client]
        await producer
    assert [r.index for r in results] == list(range(200))


async def test_retry_schedule_follows_retry_after(fake_clock: FakeClock) -> None:
    times: list[float] = []

    def handler(request: HTTPRequest) -> HTTPResponse:
        times.append(fake_clock.now())
        if len(times) < 3:
            return error_response(503, "busy", headers={"retry-after-ms": "2000"})
        return chat_reply(request)

    async with make_client(handler) as client:
        results = await run_all(client, 1)
    assert results[0].attempt == 3
    assert not results[0].failed
    assert 2.0 <= times[1] - times[0] <= 2.2
    assert 2.0 <= times[2] - times[1] <= 2.2


async def test_max_retries_counts_attempts_and_zero_is_honoured(fake_clock: FakeClock) -> None:
    transport_calls = 0

    def handler(request: HTTPRequest) -> HTTPResponse:
        nonlocal transport_calls
        transport_calls += 1
        return error_response(500, "boom")

    async with make_client(handler, max_retries=4, retry_multiplier=0.5, retry_max=2) as client:
        await client.request(message("a"))
        await client.request(message("b"), max_retries=0)
        await client.request(message("c"), max_retries=2, retry_multiplier=0)
        client.close()
        results = {r.data["messages"][0]["content"]: r async for r in client}
    assert results["a"].attempt == 4
    assert results["b"].attempt == 1
    assert results["c"].attempt == 2
    assert transport_calls == 7
    for result in results.values():
        assert result.failed
        assert isinstance(result.error, InternalServerError)
        assert result.status_code == 500
        assert result.response["error"]["message"] == "boom"


async def test_a_waiting_retry_holds_no_slot(fake_clock: FakeClock) -> None:
    finished: dict[str, float] = {}

    def handler(request: HTTPRequest) -> HTTPResponse:
        text = _json.loads(request.content)["messages"][0]["content"]
        if text == "slow" and "slow-1" not in finished:
            finished["slow-1"] = fake_clock.now()
            return error_response(503, "later", headers={"retry-after": "60"})
        finished[text] = fake_clock.now()
        return chat_reply(request)

    async with make_client(handler, concurrency=1, queue_size=10) as client:
        await client.request(message("slow"))
        for n in range(5):
            await client.request(message(f"fast-{n}"))
        client.close()
        results = [r async for r in client]
    assert len(results) == 6
    assert all(finished[f"fast-{n}"] < 1.0 for n in range(5))
    assert finished["slow"] >= 60.0


async def test_not_retried_statuses_fail_at_once(fake_clock: FakeClock) -> None:
    calls = 0

    def handler(request: HTTPRequest) -> HTTPResponse:
        nonlocal calls
        calls += 1
        return error_response(400, "bad param", "invalid_value", "invalid_request_error")

    async with make_client(handler) as client:
        results = await run_all(client, 3)
    assert calls == 3
    assert all(r.failed and r.attempt == 1 for r in results)


async def test_transport_errors_are_retried(fake_clock: FakeClock) -> None:
    calls = 0

    def handler(request: HTTPRequest) -> HTTPResponse:
        nonlocal calls
        calls += 1
        if calls % 2:
            raise ConnectError("refused")
        return chat_reply(request)

    async with make_client(handler) as client:
        results = await run_all(client, 10)
    assert all(not r.failed for r in results)
    assert calls == 20


async def test_retry_budget_limits_traffic_in_a_total_outage(fake_clock: FakeClock) -> None:
    calls = 0

    def handler(request: HTTPRequest) -> HTTPResponse:
        nonlocal calls
        calls += 1
        return error_response(503, "down")

    requests = 1000
    async with make_client(handler, concurrency=50, queue_size=50) as client:
        results = await run_all(client, requests)
    assert len(results) == requests
    assert all(r.failed for r in results)
    assert calls <= requests * 1.1  # at most capacity / cost = 100 retries
    assert calls >= requests + 90


async def test_invalid_key_fails_everything_at_once(fake_clock: FakeClock) -> None:
    calls = 0

    def handler(request: HTTPRequest) -> HTTPResponse:
        nonlocal calls
        calls += 1
        # A careless proxy echoes the key: it must not reach the caller.
        return error_response(401, f"Incorrect API key provided: {KEY}", "invalid_api_key")

    async with make_client(handler, concurrency=1) as client:
        results = await run_all(client, 30)
    assert calls == 1
    assert fake_clock.now() < 1.0
    assert isinstance(results[0].error, AuthenticationError)
    assert all(isinstance(r.error, NoUsableKeyError) for r in results[1:])
    for result in results:
        assert KEY not in str(result.error)
        assert KEY not in repr(result)


async def test_dead_key_moves_request_to_the_next_key(fake_clock: FakeClock) -> None:
    def handler(request: HTTPRequest) -> HTTPResponse:
        if request.headers["Authorization"].endswith("dead"):
            return error_response(429, "quota", "insufficient_quota", "insufficient_quota")
        return chat_reply(request)

    async with make_client(handler, api_key=["sk-dead", "sk-live"]) as client:
        results = await run_all(client, 10)
    assert all(not r.failed for r in results)
    assert all(r.attempt == 1 for r in results)  # the dead key cost no attempt


async def test_exception_in_async_callback_reaches_the_consumer(fake_clock: FakeClock) -> None:
    def callback(result: Result) -> None:
        if result.metadata["n"] == 1:
            raise RuntimeError("callback bug")

    async with make_client(chat_reply, ordered=True) as client:
        for n in range(3):
            await client.request(message(str(n)), metadata={"n": n}, callback=callback)
        client.close()
        first = await client.__anext__()
        with pytest.raises(CallbackError) as caught:
            await client.__anext__()
        assert caught.value.result.metadata["n"] == 1
        assert isinstance(caught.value.__cause__, RuntimeError)
        rest = [r async for r in client]
    assert first.metadata["n"] == 0
    assert [r.metadata["n"] for r in rest] == [2]


async def test_consumer_can_queue_follow_ups_without_deadlock(fake_clock: FakeClock) -> None:
    async with make_client(chat_reply, concurrency=1, queue_size=1) as client:
        await client.request(message("seed"), metadata={"depth": 0})
        seen = 0
        async for result in client:
            seen += 1
            depth = result.metadata["depth"]
            if depth < 3:
                for _ in range(3):  # more than queue_size: must not block this task
                    await client.request(message("child"), metadata={"depth": depth + 1})
            if seen == 1 + 3 + 9 + 27:
                break
    assert seen == 40


async def test_request_after_close_raises(fake_clock: FakeClock) -> None:
    async with make_client(chat_reply) as client:
        client.close()
        client.close()
        with pytest.raises(ClientClosedError):
            await client.request(message("late"))


async def test_custom_api_async_and_sync(fake_clock: FakeClock) -> None:
    async def async_api(request: Any) -> dict[str, Any]:
        if request.attempt == 1:
            raise ValueError("flaky")
        return {"echo": request.data["x"], "id": request.metadata["id"]}

    async with AsyncMultiClient(custom_api=async_api, endpoint="completions") as client:
        for n in range(5):
            await client.request({"x": n}, metadata={"id": n})
        client.close()
        results = [r async for r in client]
    assert sorted(r.response["echo"] for r in results) == list(range(5))
    assert all(r.attempt == 2 for r in results)


async def echo_api(request: Any) -> dict[str, Any]:
    return {"echo": request.data}


@pytest.mark.timeout(10)
@pytest.mark.parametrize("kind", [KeyError, KeyboardInterrupt, SystemExit])
async def test_a_failing_request_function_ends_async_iteration(
    fake_clock: FakeClock, kind: type[BaseException]
) -> None:
    raised = kind("producer died")
    async with AsyncMultiClient(custom_api=echo_api, endpoint="completions", ordered=True) as c:

        async def produce(count: int) -> None:
            for n in range(count):
                await c.request({"n": n})
            raise raised

        producer = c.run_request_function(produce, 5)
        seen: list[int] = []
        with pytest.raises(kind) as caught:
            async for result in c:
                seen.append(result.data["n"])
        assert caught.value is raised
        assert seen == list(range(5))  # the queued results first
        assert [r async for r in c] == []
        assert producer.done()
        assert producer.exception() is None  # handed over, not lost
        with pytest.raises(ClientClosedError):
            await c.request({"n": 99})


@pytest.mark.timeout(10)
async def test_request_functions_close_the_async_client_when_the_last_ends(
    fake_clock: FakeClock,
) -> None:
    release = asyncio.Event()
    async with AsyncMultiClient(custom_api=echo_api, endpoint="completions") as c:

        async def produce(first: int, count: int, wait: bool = False) -> None:
            if wait:
                await release.wait()
            for n in range(first, first + count):
                await c.request({"n": n})

        c.run_request_function(produce, 0, 3)
        c.run_request_function(produce(3, 4, wait=True))  # a coroutine works too
        seen = []
        async for result in c:
            seen.append(result.data["n"])
            if len(seen) == 3:
                release.set()  # the second has not ended yet: iteration goes on
        assert sorted(seen) == list(range(7))


@pytest.mark.timeout(10)
async def test_a_cancelled_request_function_ends_async_iteration(fake_clock: FakeClock) -> None:
    async with AsyncMultiClient(custom_api=echo_api, endpoint="completions") as c:

        async def produce() -> None:
            await c.request({"n": 0})
            await asyncio.Event().wait()

        producer = c.run_request_function(produce)
        results = []
        async for result in c:
            results.append(result)
            producer.cancel()
        assert len(results) == 1


async def test_async_run_request_function_arguments(fake_clock: FakeClock) -> None:
    def not_async() -> None:
        pass

    async def produce(n: int) -> None:
        pass

    async with AsyncMultiClient(custom_api=echo_api, endpoint="completions") as c:
        with pytest.raises(ConfigurationError, match="async function"):
            c.run_request_function(not_async)  # type: ignore[arg-type]
        with pytest.raises(ConfigurationError, match="coroutine and arguments"):
            c.run_request_function(produce(1), 2)
        hanging = c.run_request_function(asyncio.Event().wait)
    assert hanging.cancelled()  # owned by the client: shutting down cancels it
    with pytest.raises(ClientClosedError):
        c.run_request_function(produce, 1)


def test_sync_custom_api_runs_in_a_thread() -> None:
    import threading

    threads: set[str] = set()

    def sync_api(request: Any) -> dict[str, Any]:
        threads.add(threading.current_thread().name)
        return {"ok": request.data["x"]}

    async def main() -> list[Result]:
        async with AsyncMultiClient(custom_api=sync_api, endpoint="completions") as client:
            for n in range(5):
                await client.request({"x": n})
            client.close()
            return [r async for r in client]

    results = asyncio.run(main())
    assert sorted(r.response["ok"] for r in results) == list(range(5))
    assert all(name.startswith("omc-custom-api") for name in threads)


@pytest.mark.parametrize(
    ("options", "name"),
    [
        ({"concurrency": -1}, "concurrency"),
        ({"concurrency": 0}, "concurrency"),
        ({"concurrency": 2.5}, "concurrency"),
        ({"queue_size": 0}, "queue_size"),
        ({"reorder_buffer": 0}, "reorder_buffer"),
        ({"max_retries": -3}, "max_retries"),
        ({"retry_max": -1}, "retry_max"),
        ({"wait_interval": float("nan")}, "wait_interval"),
        ({"timeout": 0}, "timeout"),
        ({"connect_timeout": -1}, "connect_timeout"),
        ({"endpoint": "nonsense"}, "endpoint"),
        ({"data_template": [1, 2]}, "data_template"),
        ({"base_url": "ftp://x"}, "base_url"),
        ({"base_url": "https://user:pw@host/v1"}, "base_url"),
        ({"api_key": 42}, "api_key"),
        ({"retry_budget": "lots"}, "retry_budget"),
    ],
)
def test_bad_arguments_raise_at_once_naming_the_argument(
    options: dict[str, Any], name: str
) -> None:
    options.setdefault("api_key", KEY)
    with pytest.raises(ConfigurationError, match=name):
        AsyncMultiClient(**options)


async def test_bad_request_arguments_raise_at_once(fake_clock: FakeClock) -> None:
    async with make_client(chat_reply) as client:
        with pytest.raises(ConfigurationError, match="data must be a dict"):
            await client.request("hello")  # type: ignore[arg-type]
        with pytest.raises(ConfigurationError, match="metadata must be a dict"):
            await client.request({}, metadata=5)  # type: ignore[arg-type]
        with pytest.raises(EndpointRemovedError, match="chats"):
            await client.request({}, endpoint="edits")
        with pytest.raises(ConfigurationError, match="JSON"):
            await client.request({"x": {1, 2}})
        with pytest.raises(ConfigurationError, match="max_retries"):
            await client.request({}, max_retries=-1)
        with pytest.raises(ConfigurationError, match="callback"):
            await client.request({}, callback=3)  # type: ignore[arg-type]
        assert client.statistics().submitted == 0


def test_no_key_for_openai_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with pytest.raises(ConfigurationError, match="OPENAI_API_KEY"):
        AsyncMultiClient(endpoint="chats")


async def test_engine_bug_reaches_the_consumer(fake_clock: FakeClock) -> None:
    from openai_multi_client import KeyPool

    class BrokenPool(KeyPool):
        def reserve(self, tokens: int, now: float, model: str | None = None) -> None:
            raise RuntimeError("bug in key choice")

    async with make_client(chat_reply, api_key=BrokenPool([Key(KEY)])) as client:
        await client.request(message("x"))
        with pytest.raises(RuntimeError, match="bug in key choice"):
            async for _ in client:
                pass


async def test_keys_never_reach_logs(
    fake_clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="openai_multi_client")

    def handler(request: HTTPRequest) -> HTTPResponse:
        return error_response(401, f"bad key {KEY}", "invalid_api_key")

    async with make_client(handler) as client:
        await run_all(client, 2)
    assert caplog.records
    assert all(KEY not in record.getMessage() for record in caplog.records)


async def test_a_key_echoed_in_an_error_body_never_reaches_the_result(
    fake_clock: FakeClock,
) -> None:
    def handler(request: HTTPRequest) -> HTTPResponse:
        return error_response(400, f"bad request from {KEY}", "invalid_value")

    async with make_client(handler) as client:
        (result,) = await run_all(client, 1)
    assert KEY not in repr(result.response)
    assert KEY not in str(result.error)
    assert KEY not in repr(getattr(result.error, "body", None))


async def test_backoff_after_paced_429s_counts_only_real_failures(fake_clock: FakeClock) -> None:
    times: list[float] = []

    def handler(request: HTTPRequest) -> HTTPResponse:
        times.append(fake_clock.now())
        if len(times) <= 6:
            return error_response(
                429, "slow down", "rate_limit_exceeded", headers={"retry-after-ms": "10"}
            )
        if len(times) == 7:
            return error_response(500, "boom")
        return chat_reply(request)

    async with make_client(handler, retry_multiplier=0.05, retry_max=60) as client:
        (result,) = await run_all(client, 1)
    assert not result.failed
    # The retry after the one real failure waits at most multiplier * 2**0, not 2**6.
    assert times[7] - times[6] <= 0.05


async def test_cancelling_a_client_hands_its_keys_back(fake_clock: FakeClock) -> None:
    from openai_multi_client import KeyPool

    async def slow(request: HTTPRequest) -> HTTPResponse:
        await asyncio.sleep(100)
        return chat_reply(request)

    pool = KeyPool([Key(KEY)], concurrency=10)
    async with make_client(slow, api_key=pool) as client:
        await client.request(message("x"))
        await asyncio.sleep(1)
        assert pool.statistics(fake_clock.now()).keys[0].in_flight == 1
    assert pool.statistics(fake_clock.now()).keys[0].in_flight == 0
    # ...so the next client on the same pool is not stuck behind a phantom request.
    async with make_client(chat_reply, api_key=pool) as client:
        results = await run_all(client, 3)
    assert all(not r.failed for r in results)


async def test_clients_sharing_a_pool_wake_each_other(fake_clock: FakeClock) -> None:
    from openai_multi_client import KeyPool

    async def handler(request: HTTPRequest) -> HTTPResponse:
        await asyncio.sleep(0.5)
        return chat_reply(request)

    pool = KeyPool([Key(KEY)], concurrency=10)  # the first request probes alone
    async with (
        make_client(handler, api_key=pool) as first,
        make_client(handler, api_key=pool) as second,
    ):
        results = await asyncio.gather(run_all(first, 5), run_all(second, 5))
    assert all(not r.failed for batch in results for r in batch)


async def test_a_client_sharing_a_pool_sends_the_instant_another_releases(
    fake_clock: FakeClock,
) -> None:
    from openai_multi_client import KeyPool

    sent: list[float] = []

    async def handler(request: HTTPRequest) -> HTTPResponse:
        sent.append(fake_clock.now())
        await asyncio.sleep(0.512)
        return chat_reply(request)

    pool = KeyPool([Key(KEY)], concurrency=10)  # the first request probes the key alone
    async with (
        make_client(handler, api_key=pool) as first,
        make_client(handler, api_key=pool) as second,
    ):
        await asyncio.gather(run_all(first, 1), run_all(second, 1))
    # The waiting client is woken by the other's release, not by a poll some time later.
    assert sent == [0.0, 0.512]


async def test_a_release_on_another_thread_wakes_a_waiting_client(fake_clock: FakeClock) -> None:
    from openai_multi_client import KeyPool

    sent: list[float] = []
    was_sent = asyncio.Event()

    def handler(request: HTTPRequest) -> HTTPResponse:
        sent.append(fake_clock.now())
        was_sent.set()
        return chat_reply(request)

    pool = KeyPool([Key(KEY)], concurrency=10)
    probe = pool.reserve(0, fake_clock.now())  # someone else's first request holds the key
    assert probe is not None
    assert not isinstance(probe, float)
    async with make_client(handler, api_key=pool) as client:
        await client.request(message("x"))
        await asyncio.sleep(1.01)  # the client waits for the key: no timer of its own runs
        assert sent == []
        await asyncio.to_thread(pool.release, probe, fake_clock.now())
        await was_sent.wait()
        assert sent == [1.01]  # woken through its event loop at the release, not by a poll
        client.close()
        results = [result async for result in client]
    assert not results[0].failed


async def test_abandon_unsent_stops_retries_and_queued_requests(fake_clock: FakeClock) -> None:
    from openai_multi_client import AbandonedRequestError

    calls = 0

    async def failing(request: HTTPRequest) -> HTTPResponse:
        nonlocal calls
        calls += 1
        await asyncio.sleep(1.0)
        return error_response(500, "boom")

    async with make_client(
        failing, api_key=Key(KEY, requests_per_minute=6000), concurrency=3, queue_size=10
    ) as client:
        for n in range(10):
            await client.request(message(str(n)))
        await asyncio.sleep(0.5)  # some in flight, the rest queued
        in_flight = client.statistics().in_flight
        assert in_flight >= 1
        assert client.abandon_unsent() == 10 - in_flight
        results = [r async for r in client]
    assert len(results) == 10
    assert all(isinstance(r.error, AbandonedRequestError) for r in results)
    assert calls == in_flight  # the failed attempts in flight were not retried


async def test_statistics_name_the_last_error_retried(fake_clock: FakeClock) -> None:
    calls = 0

    def handler(request: HTTPRequest) -> HTTPResponse:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ConnectError(f"cannot connect to http://127.0.0.1:9 with {KEY}")
        return chat_reply(request)

    async with make_client(handler) as client:
        assert client.statistics().last_retry_error is None
        results = await run_all(client, 1)
        error = client.statistics().last_retry_error
    assert not results[0].failed
    assert error is not None
    assert error.startswith("ConnectError: cannot connect to http://127.0.0.1:9 with ")
    assert KEY not in error


async def test_an_empty_200_body_says_so(fake_clock: FakeClock) -> None:
    def handler(request: HTTPRequest) -> HTTPResponse:
        return HTTPResponse.build(200, {"content-type": "application/json"}, b"")

    async with make_client(handler, max_retries=1) as client:
        results = await run_all(client, 1)
    assert isinstance(results[0].error, InvalidResponseError)
    assert "empty body" in str(results[0].error)
