"""The engine's stop at once (abandon_in_flight) and its on_unbilled hook."""

from __future__ import annotations

import asyncio

import pytest

from openai_multi_client import (
    AbandonedRequestError,
    ConnectError,
    ConnectionClosedError,
    HTTPRequest,
    HTTPResponse,
    Key,
    Request,
    RequestTimeoutError,
)
from openai_multi_client.testing import FakeClock, error_response

from .test_engine import KEY, chat_reply, make_client, message


async def test_abandon_in_flight_ends_hung_attempts_at_once(fake_clock: FakeClock) -> None:
    started = 0

    async def hangs(request: HTTPRequest) -> HTTPResponse:
        nonlocal started
        started += 1
        await asyncio.sleep(3600)  # a server that never answers
        return chat_reply(request)

    async with make_client(
        hangs, api_key=Key(KEY, requests_per_minute=6000), concurrency=3, queue_size=10
    ) as client:
        for n in range(8):
            await client.request(message(str(n)))
        await asyncio.sleep(0.5)
        in_flight = client.statistics().in_flight
        assert in_flight >= 1
        assert client.abandon_in_flight() == in_flight
        results = [r async for r in client]
        assert client.statistics().in_flight == 0
    assert len(results) == 8
    assert all(isinstance(r.error, AbandonedRequestError) for r in results)
    assert started == in_flight  # the queued ones were never sent
    assert fake_clock.now() < 10  # nobody waited for the hung requests


async def test_a_stop_at_once_while_nothing_is_in_flight_is_harmless(
    fake_clock: FakeClock,
) -> None:
    async with make_client(chat_reply) as client:
        await client.request(message("a"))
        first = [await client.__anext__()]
        assert client.abandon_in_flight() == 0
        rest = [r async for r in client]
    assert not first[0].failed
    assert rest == []


@pytest.mark.parametrize(
    ("failure", "unbilled"),
    [
        (lambda: error_response(500, "boom"), True),
        (lambda: error_response(429, "slow down"), True),
        (lambda: error_response(503, "overloaded"), True),
        (ConnectError("refused"), True),
        (RequestTimeoutError("no answer within 5 s"), False),
        (ConnectionClosedError("reset by peer"), False),
    ],
)
async def test_on_unbilled_names_attempts_known_not_to_be_billed(
    fake_clock: FakeClock, failure: object, unbilled: bool
) -> None:
    calls = 0
    seen: list[tuple[int, int]] = []

    def handler(request: HTTPRequest) -> HTTPResponse:
        nonlocal calls
        calls += 1
        if calls == 1:
            if isinstance(failure, Exception):
                raise failure
            return failure()  # type: ignore[operator,no-any-return]
        return chat_reply(request)

    def on_unbilled(request: Request) -> None:
        seen.append((request.index, request.attempt))

    async with make_client(handler, on_unbilled=on_unbilled) as client:
        await client.request(message("a"))
        client.close()
        results = [r async for r in client]
    assert not results[0].failed
    assert calls == 2
    assert seen == ([(0, 1)] if unbilled else [])


async def test_aclose_waits_for_an_abandoned_attempt_to_end(fake_clock: FakeClock) -> None:
    # A transport that takes a while to clean up when cancelled: aclose() returns after it.
    cleaned = 0

    async def slow_to_cancel(request: HTTPRequest) -> HTTPResponse:
        nonlocal cleaned
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            await asyncio.sleep(0.2)  # closing a connection, say
            cleaned += 1
            raise
        return chat_reply(request)

    async with make_client(
        slow_to_cancel, api_key=Key(KEY, requests_per_minute=6000), concurrency=2
    ) as client:
        for n in range(2):
            await client.request(message(str(n)))
        await asyncio.sleep(0.5)
        abandoned = client.abandon_in_flight()
    assert abandoned >= 1
    assert cleaned == abandoned


@pytest.mark.parametrize("raised", [SystemExit, KeyboardInterrupt])
async def test_on_send_raising_a_base_exception_fails_the_client_with_it(
    fake_clock: FakeClock, raised: type[BaseException]
) -> None:
    calls = 0

    def on_send(request: Request) -> None:
        nonlocal calls
        calls += 1
        if calls == 3:
            raise raised("stop")

    async with make_client(chat_reply, on_send=on_send) as client:
        for n in range(6):
            await client.request(message(str(n)))
        client.close()
        with pytest.raises(raised):
            async for _ in client:
                pass
