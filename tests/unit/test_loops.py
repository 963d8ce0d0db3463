"""Which event loop the library makes for itself (``_loops``): uvloop's when installed, unless
asked not to or a caller's clock drives time."""

from __future__ import annotations

import asyncio
import importlib.util
from collections.abc import Callable

import pytest

from openai_multi_client import BatchClient, OpenAIMultiClient
from openai_multi_client._loops import LOOP_VARIABLE, new_event_loop, run
from openai_multi_client.testing import FakeClock

UVLOOP = importlib.util.find_spec("uvloop") is not None


def kind(loop: asyncio.AbstractEventLoop) -> str:
    return "uvloop" if type(loop).__module__.startswith("uvloop") else "asyncio"


def test_the_default_loop_is_uvloops_when_installed() -> None:
    loop = new_event_loop()
    try:
        assert kind(loop) == ("uvloop" if UVLOOP else "asyncio")
    finally:
        loop.close()


def test_asyncios_loop_when_not_fast_or_when_the_environment_says_so(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    loop = new_event_loop(fast=False)
    assert kind(loop) == "asyncio"
    loop.close()
    monkeypatch.setenv(LOOP_VARIABLE, "asyncio")
    loop = new_event_loop()
    assert kind(loop) == "asyncio"
    loop.close()

    async def which() -> str:
        return kind(asyncio.get_running_loop())

    assert run(which()) == "asyncio"


def test_run_uses_the_same_loop_as_new_event_loop() -> None:
    async def which() -> str:
        return kind(asyncio.get_running_loop())

    assert run(which()) == ("uvloop" if UVLOOP else "asyncio")


def sync_client(clock: FakeClock | None) -> OpenAIMultiClient:
    return OpenAIMultiClient(endpoint="chats", api_key="sk-loops", clock=clock)


def batch_client(clock: FakeClock | None) -> BatchClient:
    return BatchClient(api_key="sk-loops", base_url="http://127.0.0.1:9/v1", clock=clock)


@pytest.mark.parametrize("make", [sync_client, batch_client])
def test_a_client_with_a_clock_of_its_own_runs_on_asyncios_loop(
    make: Callable[[FakeClock | None], OpenAIMultiClient | BatchClient],
) -> None:
    # A FakeClock patches the selector of an asyncio loop: the client's loop must be one.
    clients = [make(None), make(FakeClock())]
    try:
        kinds = [kind(client._portal._loop) for client in clients]
    finally:
        for client in clients:
            client.close()
            if isinstance(client, OpenAIMultiClient):
                list(client)
    assert kinds == ["uvloop" if UVLOOP else "asyncio", "asyncio"]
