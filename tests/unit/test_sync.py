"""The seed's synchronous clients: none of these may hang (each test has a timeout)."""

from __future__ import annotations

import asyncio
import gc
import os
import random
import signal
import subprocess
import sys
import textwrap
import threading
import time
from typing import Any

import pytest

from openai_multi_client import (
    CallbackError,
    ClientClosedError,
    ConfigurationError,
    OpenAIMultiClient,
    OpenAIMultiOrderedClient,
    Payload,
    Request,
    Result,
    run_requests,
)
from openai_multi_client.testing import MockOpenAIServer

pytestmark = pytest.mark.timeout(20)


async def echo(payload: Payload) -> dict[str, Any]:
    return {"echo": payload.data, "id": payload.metadata.get("id")}


def test_seed_style_usage_ordered_and_unordered() -> None:
    for cls in (OpenAIMultiClient, OpenAIMultiOrderedClient):
        api = cls(custom_api=echo, max_retries=3, retry_multiplier=2, endpoint="completions")

        def put_data(api: OpenAIMultiClient = api) -> None:
            for pid in range(1, 101):
                api.request({"prompt": f"test {pid}"}, metadata={"id": pid})

        api.run_request_function(put_data)
        ids = [result.metadata["id"] for result in api]
        assert sorted(ids) == list(range(1, 101))
        if cls is OpenAIMultiOrderedClient:
            assert ids == list(range(1, 101))


def test_request_from_the_iterating_thread_does_not_deadlock() -> None:
    api = OpenAIMultiClient(custom_api=echo, endpoint="completions", concurrency=2, queue_size=1)
    api.request({"n": 0}, metadata={"id": 0})
    seen = 0
    for result in api:
        seen += 1
        if result.metadata["id"] < 5:
            for _ in range(2):  # more than the intake holds
                api.request({}, metadata={"id": result.metadata["id"] + 1})
        if seen == 63:  # a binary tree of depth 5
            api.close()
    assert seen == 63


def test_exception_in_request_function_reaches_the_iterating_thread() -> None:
    api = OpenAIMultiClient(custom_api=echo, endpoint="completions")

    def make_requests() -> None:
        for n in range(5):
            api.request({"n": n})
        raise KeyError("database went away")

    api.run_request_function(make_requests)
    results: list[Result] = []
    with pytest.raises(KeyError, match="database went away"):
        for result in api:
            results.append(result)
    assert len(results) == 5  # nothing already done is lost
    assert list(api) == []
    with pytest.raises(ClientClosedError):
        api.request({"n": 99})


class _Custom(BaseException):
    """A BaseException that is neither an interrupt nor an exit."""


@pytest.mark.parametrize("kind", [KeyboardInterrupt, SystemExit, _Custom])
def test_base_exception_in_request_function_reaches_the_iterating_thread(
    kind: type[BaseException],
) -> None:
    before = threading.active_count()
    api = OpenAIMultiOrderedClient(custom_api=echo, endpoint="completions")
    raised = kind("producer stopped")

    def make_requests() -> None:
        for n in range(5):
            api.request({"n": n}, metadata={"id": n})
        raise raised

    api.run_request_function(make_requests)
    ids: list[int] = []
    with pytest.raises(kind) as caught:
        for result in api:
            ids.append(result.metadata["id"])
    assert caught.value is raised
    assert ids == list(range(5))  # the queued results came first
    assert list(api) == []
    with pytest.raises(ClientClosedError):
        api.request({"n": 99})
    _wait_for_threads(before)


def _wait_for_threads(count: int) -> None:
    """Threads end when the client shuts down; the request-function thread a moment after."""
    for thread in threading.enumerate():
        if thread.name.startswith("omc-"):
            thread.join(5)
    assert threading.active_count() == count, threading.enumerate()


def test_exception_in_callback_keeps_the_result_and_iteration_goes_on() -> None:
    def callback(result: Result) -> None:
        if result.metadata["id"] == 2:
            raise ValueError("callback bug")

    api = OpenAIMultiOrderedClient(custom_api=echo, endpoint="completions")

    def make_requests() -> None:
        for n in range(4):
            api.request({}, metadata={"id": n}, callback=callback)

    api.run_request_function(make_requests)
    ids = []
    with pytest.raises(CallbackError) as caught:
        for result in api:
            ids.append(result.metadata["id"])
    assert ids == [0, 1]
    assert caught.value.result.metadata["id"] == 2
    assert [r.metadata["id"] for r in api] == [3]


def test_unpicklable_callback_and_response_are_fine() -> None:
    lock = threading.Lock()
    calls: list[int] = []

    async def api_returning_a_lock(request: Request) -> dict[str, Any]:
        return {"lock": lock, "n": request.data["n"]}

    api = OpenAIMultiClient(custom_api=api_returning_a_lock, endpoint="completions")

    def make_requests() -> None:
        for n in range(10):
            api.request({"n": n}, callback=lambda result: calls.append(result.response["n"]))

    api.run_request_function(make_requests)
    api.pull_all()
    assert sorted(calls) == list(range(10))


def test_close_twice_and_iterate_twice() -> None:
    api = OpenAIMultiClient(custom_api=echo, endpoint="completions")
    for n in range(3):
        api.request({"n": n})
    api.close()
    api.close()
    assert len(list(api)) == 3
    assert list(api) == []
    api.close()


def test_several_producer_threads_feed_the_ordered_client() -> None:
    api = OpenAIMultiOrderedClient(
        custom_api=echo, endpoint="completions", concurrency=7, queue_size=3
    )
    threads = 6
    per_thread = 150

    def produce(thread_id: int) -> None:
        for i in range(per_thread):
            api.request({}, metadata={"thread": thread_id, "i": i})

    producers = [threading.Thread(target=produce, args=(t,)) for t in range(threads)]

    def run_producers() -> None:
        for thread in producers:
            thread.start()
        for thread in producers:
            thread.join()

    api.run_request_function(run_producers)
    results = list(api)
    assert len(results) == threads * per_thread
    assert [r.index for r in results] == list(range(threads * per_thread))
    for thread_id in range(threads):
        mine = [r.metadata["i"] for r in results if r.metadata["thread"] == thread_id]
        assert mine == list(range(per_thread))


def test_works_when_the_calling_thread_runs_an_event_loop() -> None:
    async def notebook_cell() -> list[int]:
        api = OpenAIMultiOrderedClient(custom_api=echo, endpoint="completions")
        for n in range(5):
            api.request({}, metadata={"id": n})
        api.close()
        return [r.metadata["id"] for r in api]

    assert asyncio.run(notebook_cell()) == list(range(5))


def test_with_block_releases_everything() -> None:
    before = threading.active_count()
    with OpenAIMultiClient(custom_api=echo, endpoint="completions") as api:
        api.request({})
        api.close()
        assert len(list(api)) == 1
    deadline = time.monotonic() + 5
    while threading.active_count() > before and time.monotonic() < deadline:
        time.sleep(0.01)
    assert threading.active_count() == before


CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _wait_for_fds(count: int) -> None:
    """The mock server (in this process) closes its side of a connection when it sees the
    client's side close: wait for it, boundedly."""
    deadline = time.monotonic() + 5
    while _open_fds() > count and time.monotonic() < deadline:
        time.sleep(0.01)
    assert _open_fds() == count


def test_taking_the_last_result_shuts_the_client_down(mock_openai: MockOpenAIServer) -> None:
    threads, fds = threading.active_count(), _open_fds()
    clients = []
    for _ in range(30):
        api = OpenAIMultiClient(endpoint="chats", api_key="sk-test", base_url=mock_openai.base_url)
        api.request(CHAT)
        api.close()
        assert not next(iter(api)).failed  # the last result: no StopIteration needed
        clients.append(api)  # still referenced: it is the shutdown, not the collector
    assert threading.active_count() == threads
    _wait_for_fds(fds)
    for api in clients:
        assert list(api) == []
        with pytest.raises(ClientClosedError):
            api.request(CHAT)
    del clients, api
    gc.collect()
    assert threading.active_count() == threads


def test_a_request_function_failing_after_the_shutdown_is_still_heard() -> None:
    api = OpenAIMultiClient(custom_api=echo, endpoint="completions")
    go_on = threading.Event()

    def make_requests() -> None:
        api.request({"n": 0})
        go_on.wait(10)
        raise KeyError("late failure")

    producer = api.run_request_function(make_requests, stop_at_end=False)
    result = next(iter(api))
    api.close()
    assert list(api) == []  # the client shut down
    go_on.set()
    producer.join(10)
    assert result.response["echo"] == {"n": 0}
    with pytest.raises(KeyError, match="late failure"):
        next(api)
    assert list(api) == []


@pytest.mark.parametrize("taken", [0, 1])
def test_a_dropped_client_releases_everything(mock_openai: MockOpenAIServer, taken: int) -> None:
    threads, fds = threading.active_count(), _open_fds()
    for _ in range(30):
        api = OpenAIMultiClient(endpoint="chats", api_key="sk-test", base_url=mock_openai.base_url)
        for _ in range(3):
            api.request(CHAT)
        if taken:
            api.close()
            next(iter(api))  # results are left unread
        del api
    gc.collect()  # warnings are errors: an unclosed session or a pending task fails the test
    assert threading.active_count() == threads, threading.enumerate()
    _wait_for_fds(fds)


def test_leaving_early_cancels_the_rest() -> None:
    async def slow(request: Request) -> dict[str, Any]:
        await asyncio.sleep(0.01 if request.data["n"] < 3 else 3600)
        return {}

    with OpenAIMultiOrderedClient(custom_api=slow, endpoint="completions") as api:
        for n in range(6):
            api.request({"n": n})
        api.close()
        for result in api:
            if result.data["n"] == 2:
                break
    with pytest.raises(ClientClosedError):
        api.request({"n": 7})


def test_bad_arguments_raise_in_the_callers_thread() -> None:
    with pytest.raises(ConfigurationError, match="concurrency"):
        OpenAIMultiClient(concurrency=-1, custom_api=echo)
    api = OpenAIMultiClient(api_key="sk-test", base_url="http://127.0.0.1:9/v1")
    with pytest.raises(ConfigurationError, match="no endpoint"):
        api.request({})
    with pytest.raises(ConfigurationError, match="endpoint"):
        api.request({}, endpoint="chat")
    api.close()
    assert list(api) == []


def test_custom_api_needs_no_endpoint_as_in_the_seed() -> None:
    """The seed's mock_test.py shape: custom_api, no endpoint, prompts with ids."""
    seen: list[str | None] = []

    async def mock_api(payload: Payload) -> dict[str, Any]:
        seen.append(payload.endpoint)
        return {"choices": [{"text": f"mock answer to {payload.data['prompt']}"}]}

    api = OpenAIMultiOrderedClient(custom_api=mock_api, max_retries=3, retry_multiplier=2)

    def put_data() -> None:
        for pid in range(1, 21):
            api.request({"prompt": f"test {pid}"}, metadata={"id": pid})

    api.run_request_function(put_data)
    results = list(api)
    assert [r.metadata["id"] for r in results] == list(range(1, 21))
    assert results[0].response["choices"][0]["text"] == "mock answer to test 1"
    assert not any(r.failed for r in results)
    assert {r.endpoint for r in results} == {None}
    assert set(seen) == {None}


def test_run_requests_one_call_form() -> None:
    bodies = ({"n": n} for n in range(50))
    results = list(run_requests(bodies, endpoint="completions", custom_api=echo, concurrency=4))
    assert [r.response["echo"]["n"] for r in results] == list(range(50))


def _run_script(code: str, timeout: float = 15) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONWARNINGS": "error"},
        check=False,
    )


def test_a_script_that_never_closes_exits() -> None:
    done = _run_script(
        """
        import asyncio
        from openai_multi_client import OpenAIMultiClient

        async def hang(payload):
            await asyncio.sleep(3600)

        api = OpenAIMultiClient(custom_api=hang, endpoint="completions")
        for n in range(5):
            api.request({"n": n})
        print("queued")
        """
    )
    assert done.returncode == 0, done.stderr
    assert "queued" in done.stdout
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    "hang",
    [
        "async def hang(payload):\n    await asyncio.sleep(3600)",
        "def hang(payload):\n    time.sleep(3600)",  # blocking, in a worker thread
    ],
    ids=["async", "sync"],
)
def test_ctrl_c_while_iterating_exits_quickly(hang: str) -> None:
    code = textwrap.dedent(
        """
        import asyncio, sys, time
        from openai_multi_client import OpenAIMultiClient

        HANG

        api = OpenAIMultiClient(custom_api=hang, endpoint="completions")
        api.request({})
        print("iterating", flush=True)
        try:
            for result in api:
                pass
        except KeyboardInterrupt:
            print("interrupted", flush=True)
            sys.exit(130)
        """
    ).replace("HANG", hang.replace("\n", "\n        "))
    process = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "iterating"
    time.sleep(0.2)
    sent = time.monotonic()
    process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=2)
    finally:
        process.kill()
    elapsed = time.monotonic() - sent
    out, err = process.communicate()
    assert process.returncode == 130, err
    assert "interrupted" in out
    assert elapsed < 2


def test_several_request_functions_close_only_when_the_last_ends() -> None:
    api = OpenAIMultiClient(custom_api=echo, endpoint="completions")
    both_started = threading.Event()  # else the first may end before the second starts

    def feed(count: int) -> None:
        both_started.wait()
        for n in range(count):
            api.request({"n": n})

    api.run_request_function(feed, 5)
    api.run_request_function(feed, 50)
    both_started.set()
    assert len(list(api)) == 55


def test_a_blocking_sync_custom_api_does_not_hold_up_exit_or_ctrl_c() -> None:
    done = _run_script(
        """
        import time
        from openai_multi_client import OpenAIMultiClient

        def blocking(payload):
            time.sleep(60)

        api = OpenAIMultiClient(custom_api=blocking, endpoint="completions")
        api.request({})
        time.sleep(0.3)
        print("leaving", flush=True)
        """
    )
    assert done.returncode == 0, done.stderr
    assert "leaving" in done.stdout


def test_the_sync_face_takes_on_send_rng_and_max_server_delay() -> None:
    """Options the sync face once lacked: they reach the one engine behind the portal."""
    sent: list[tuple[int, int]] = []
    failures = iter([True, True, False])

    async def flaky(payload: Payload) -> dict[str, Any]:
        if next(failures):
            raise ValueError("flaky")
        return {"ok": True}

    with OpenAIMultiClient(
        custom_api=flaky,
        retry_multiplier=0,  # no waiting: the retries come at once
        on_send=lambda request: sent.append((request.index, request.attempt)),
        rng=random.Random(0),
        max_server_delay=5.0,
    ) as api:
        api.request({})
        api.close()
        (result,) = list(api)
    assert not result.failed
    assert result.attempt == 3
    assert sent == [(0, 1), (0, 2), (0, 3)]


def _hold_loop(api: OpenAIMultiClient) -> threading.Event:
    """Block the client's loop thread until the returned event is set."""
    release = threading.Event()
    api._portal.call_soon(release.wait)
    return release


def test_requests_cross_to_the_loop_in_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    api = OpenAIMultiClient(custom_api=echo, endpoint="completions", queue_size=50)
    portal = api._portal
    release = _hold_loop(api)
    hand_overs: list[object] = []
    schedule = portal.call_soon

    def counted(function: Any, *args: Any) -> None:
        hand_overs.append(function)
        schedule(function, *args)

    def blocking_call(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a blocking portal call for one request")

    monkeypatch.setattr(portal, "call_soon", counted)
    monkeypatch.setattr(portal, "call", blocking_call)
    try:
        for n in range(50):  # the loop is held: every request waits in one batch
            api.request({"n": n}, metadata={"id": n})
        assert len(hand_overs) == 1
    finally:
        release.set()
    monkeypatch.undo()
    api.close()
    assert sorted(result.metadata["id"] for result in api) == list(range(50))


def test_backpressure_is_exact_and_order_kept_across_batches() -> None:
    api = OpenAIMultiOrderedClient(custom_api=echo, endpoint="completions", queue_size=5)
    release = _hold_loop(api)
    done = threading.Event()

    def produce() -> None:
        for n in range(40):
            api.request({"n": n}, metadata={"id": n})
        done.set()

    api.run_request_function(produce)
    inbox = api._inbox
    while not inbox._waiting:  # the producer blocks once the intake is full
        time.sleep(0.001)
    assert len(inbox._items) == 5
    assert not done.is_set()
    release.set()
    assert [result.metadata["id"] for result in api] == list(range(40))
    assert done.is_set()
