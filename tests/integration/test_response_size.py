"""``max_response_bytes`` against a real server on 127.0.0.1: a body over the cap fails with
:class:`ResponseTooLargeError` and is not read to its end (the server's writes see the reset)."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiohttp import web

from openai_multi_client import AsyncMultiClient, ResponseTooLargeError, Result

from .recorder import Recorder, serve

PIECE = 64 * 1024
TOTAL = 64 * 1024 * 1024  # what the server would send if it were read to the end
SMALL = b'{"id":"c","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}]}'  # noqa: E501


@dataclass
class BigServer:
    """``big``: an endless-looking chunked JSON body; ``sized``: 4 MiB with a Content-Length;
    ``stream``: server-sent events that go on; anything else: a small answer."""

    hits: Counter[str] = field(default_factory=Counter)
    written: dict[str, int] = field(default_factory=dict)  # bytes the server managed to write
    cut_off: dict[str, bool] = field(default_factory=dict)  # its writes met a closed connection
    done: asyncio.Event = field(default_factory=asyncio.Event)

    def reply(self, request: web.Request) -> web.StreamResponse:
        raise AssertionError("replies are async")  # pragma: no cover

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        name = body["messages"][0]["content"]
        self.hits[name] += 1
        if name == "sized":
            return web.Response(body=b" " * (4 << 20), content_type="application/json")
        if name not in ("big", "stream"):
            return web.Response(body=SMALL, content_type="application/json")
        response = web.StreamResponse()
        response.content_type = "text/event-stream" if name == "stream" else "application/json"
        await response.prepare(request)
        piece = b'data: {"choices":[]}\n\n' * (PIECE // 22) if name == "stream" else b" " * PIECE
        written = 0
        try:
            await response.write(b"{" if name == "big" else b"")
            while written < TOTAL:
                await response.write(piece)
                written += len(piece)
        except ConnectionError:
            self.cut_off[name] = True
        finally:
            self.written[name] = written
            self.done.set()
        return response


@pytest.fixture
async def big_server() -> AsyncIterator[tuple[BigServer, str]]:
    server = BigServer()
    recorder = Recorder(server.reply)
    recorder.handle = server.handle  # type: ignore[method-assign]
    runner, port = await serve(recorder, "127.0.0.1")
    try:
        yield server, f"http://127.0.0.1:{port}/v1"
    finally:
        await runner.cleanup()


async def ask(base_url: str, names: list[str], cap: int) -> dict[str, Result]:
    results = {}
    async with AsyncMultiClient(
        max_retries=3, endpoint="chats", api_key="sk-test", base_url=base_url,
        max_response_bytes=cap,
    ) as client:  # fmt: skip
        for name in names:
            stream = {"stream": True} if name == "stream" else {}
            await client.request({"messages": [{"role": "user", "content": name}], **stream})
        client.close()
        async for result in client:
            results[result.data["messages"][0]["content"]] = result
    return results


@pytest.mark.parametrize("name", ["big", "stream"])
async def test_a_body_over_the_cap_is_not_read_to_its_end(
    name: str, big_server: tuple[BigServer, str]
) -> None:
    server, base_url = big_server
    results = await ask(base_url, [name, "small"], cap=256 * 1024)
    error = results[name].error
    assert isinstance(error, ResponseTooLargeError), results[name]
    assert "262,144 bytes (max_response_bytes)" in str(error)
    assert results[name].attempt == 1  # not retried
    assert results["small"].error is None
    assert server.hits == {name: 1, "small": 1}
    await asyncio.wait_for(server.done.wait(), timeout=20)
    assert server.cut_off.get(name), server.written  # the client closed the connection
    assert server.written[name] < TOTAL // 4  # far from all of it was sent


async def test_a_body_announced_over_the_cap_fails_before_reading(
    big_server: tuple[BigServer, str],
) -> None:
    _, base_url = big_server
    results = await ask(base_url, ["sized", "small"], cap=64 * 1024)
    error = results["sized"].error
    assert isinstance(error, ResponseTooLargeError)
    assert "announced as 4,194,304 bytes" in str(error)
    assert results["small"].error is None
    results = await ask(base_url, ["sized"], cap=4 << 20)  # at the cap: read (not JSON, though)
    assert not isinstance(results["sized"].error, ResponseTooLargeError)


async def test_omc_run_records_a_too_large_answer_as_that_requests_failure(
    big_server: tuple[BigServer, str], tmp_path: Path
) -> None:
    server, base_url = big_server
    source = tmp_path / "in.jsonl"
    lines = [
        {"custom_id": f"req-{n}", "method": "POST", "url": "/v1/chat/completions",
         "body": {"model": "m", "messages": [{"role": "user", "content": name}]}}
        for n, name in enumerate(["small", "big", "small2"])
    ]  # fmt: skip
    source.write_text("".join(json.dumps(line) + "\n" for line in lines))
    out = tmp_path / "out.jsonl"
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "openai_multi_client", "run", str(source), "-o", str(out),
        "--base-url", base_url, "--key", "sk-test", "--max-response-bytes", "100000",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONWARNINGS": "error"},
    )  # fmt: skip
    _, stderr = await asyncio.wait_for(process.communicate(), timeout=50)
    assert process.returncode == 1, stderr.decode()  # one request failed; the run went on
    records = {r["custom_id"]: r for r in map(json.loads, out.read_text().splitlines())}
    assert records["req-0"]["error"] is None
    assert records["req-2"]["error"] is None
    error = records["req-1"]["error"]
    assert error["code"] == "ResponseTooLargeError"
    assert "100,000 bytes" in error["message"]
    assert server.hits["big"] == 1
