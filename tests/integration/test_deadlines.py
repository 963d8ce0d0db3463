"""The transport's total-time limit, kept by one sweeping task (``_deadlines``): a real
aiohttp transport over loopback against a server that accepts and never answers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from openai_multi_client import RequestTimeoutError
from openai_multi_client._deadlines import SUPPORTED, Deadlines
from openai_multi_client._transport import AiohttpTransport, HTTPRequest, Timeout

pytestmark = pytest.mark.skipif(not SUPPORTED, reason="Python < 3.11 uses aiohttp's own timer")


@pytest.fixture
async def silent_url() -> AsyncIterator[str]:
    """A server that reads whatever comes and never answers."""

    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await reader.read(65536):
            pass
        writer.close()

    server = await asyncio.start_server(swallow, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/v1/chat/completions"
    finally:
        server.close()


@pytest.fixture
async def transport() -> AsyncIterator[AiohttpTransport]:
    transport = AiohttpTransport()
    try:
        yield transport
    finally:
        await transport.aclose()


def _deadlines(transport: AiohttpTransport) -> Deadlines:
    deadlines = transport._deadlines
    assert deadlines is not None
    return deadlines


def _request(url: str, total: float) -> HTTPRequest:
    return HTTPRequest("POST", url, {"Content-Type": "application/json"}, b"{}", Timeout(total))


async def test_an_exchange_past_its_total_limit_raises_a_timeout(
    silent_url: str, transport: AiohttpTransport
) -> None:
    started = asyncio.get_running_loop().time()
    with pytest.raises(RequestTimeoutError, match=r"within 0\.2 s"):
        await transport.handle(_request(silent_url, 0.2))
    assert asyncio.get_running_loop().time() - started >= 0.2
    assert not _deadlines(transport).due


async def test_many_exchanges_each_time_out_once(
    silent_url: str, transport: AiohttpTransport
) -> None:
    outcomes = await asyncio.gather(
        *(transport.handle(_request(silent_url, 0.2)) for _ in range(20)),
        return_exceptions=True,
    )
    assert all(isinstance(outcome, RequestTimeoutError) for outcome in outcomes)


async def test_a_cancellation_of_its_own_is_not_a_timeout(
    silent_url: str, transport: AiohttpTransport
) -> None:
    task = asyncio.create_task(transport.handle(_request(silent_url, 30)))
    await asyncio.sleep(0.1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_cancellation_at_the_deadline_stays_a_cancellation(
    silent_url: str, transport: AiohttpTransport
) -> None:
    """Cancelled by its owner in the same turn as the deadline fires: the owner's
    cancellation wins (the task must end cancelled, not with a timeout it could retry)."""
    deadlines = _deadlines(transport)
    task = asyncio.create_task(transport.handle(_request(silent_url, 30)))
    await asyncio.sleep(0.1)
    deadlines.cancel_overdue(deadlines.due[task])  # its deadline has come
    task.cancel()  # and its owner cancels it too, before it has run again
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_the_sweeper_stops_when_nothing_is_watched(
    silent_url: str, transport: AiohttpTransport
) -> None:
    deadlines = _deadlines(transport)
    with pytest.raises(RequestTimeoutError):
        await transport.handle(_request(silent_url, 0.1))
    await asyncio.sleep(deadlines.tick * 3)
    assert deadlines.sweeper is None


async def test_closing_with_exchanges_in_flight_stops_the_sweeper(
    silent_url: str, transport: AiohttpTransport
) -> None:
    deadlines = _deadlines(transport)
    task = asyncio.create_task(transport.handle(_request(silent_url, 30)))
    await asyncio.sleep(0.1)
    sweeper = deadlines.sweeper
    assert sweeper is not None
    task.cancel()  # as a shutdown does: the attempt first, then the transport
    with pytest.raises(asyncio.CancelledError):
        await task
    await transport.aclose()
    await asyncio.sleep(0)
    assert sweeper.cancelled()
    assert deadlines.sweeper is None
