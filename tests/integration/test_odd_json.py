"""Answers that are not strict JSON (NaN, Infinity, -Infinity, lone surrogates), from a server
on 127.0.0.1 sending them as raw bytes: through the library and a real ``omc run``, with and
without orjson. One odd answer is one odd result, never the end of the run."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import math
import os
import sys
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from openai_multi_client import AsyncMultiClient
from openai_multi_client import _json as codec

from .recorder import Recorder, serve

CODECS = ["stdlib", "orjson"]


def chat_answer(content: bytes, logprob: bytes) -> bytes:
    return (
        b'{"id":"chatcmpl-1","object":"chat.completion","model":"m","choices":[{"index":0,'
        b'"message":{"role":"assistant","content":"' + content + b'"},"logprobs":{"content":'
        b'[{"token":"x","logprob":' + logprob + b',"bytes":[120],"top_logprobs":[]}]},'
        b'"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":1,'
        b'"total_tokens":4}}'
    )


ANSWERS = {
    "plain": chat_answer(b"fine", b"-0.5"),
    "nan": chat_answer(b"odd", b"NaN"),
    "neg-inf": chat_answer(b"odd", b"-Infinity"),
    "inf": chat_answer(b"odd", b"Infinity"),
    "surrogate": chat_answer(b"a\\ud800b", b"-1.5"),
}


class OddServer:
    """Answers a chat request whose message is one of ``ANSWERS``' names with those bytes."""

    def __init__(self) -> None:
        self.hits: Counter[str] = Counter()
        self.recorder = Recorder(self.reply)

    def reply(self, request: web.Request) -> web.StreamResponse:
        raise AssertionError("replies are async")  # pragma: no cover

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        name = body["messages"][0]["content"]
        self.hits[name] += 1
        return web.Response(body=ANSWERS[name], content_type="application/json")


@pytest.fixture
async def odd_server() -> AsyncIterator[tuple[OddServer, str]]:
    server = OddServer()
    server.recorder.handle = server.handle  # type: ignore[method-assign]
    runner, port = await serve(server.recorder, "127.0.0.1")
    try:
        yield server, f"http://127.0.0.1:{port}/v1"
    finally:
        await runner.cleanup()


def use_codec(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    if name == "orjson":
        if importlib.util.find_spec("orjson") is None:
            pytest.skip("the speed extra (orjson) is not installed")
        monkeypatch.setattr(codec, "_orjson", importlib.import_module("orjson"))
    else:
        monkeypatch.setattr(codec, "_orjson", None)


def strict_loads(text: str) -> Any:
    def refuse(constant: str) -> Any:
        raise AssertionError(f"not strict JSON: {constant}")

    return json.loads(text, parse_constant=refuse)


@pytest.mark.parametrize("json_codec", CODECS)
async def test_the_library_returns_odd_answers_once_each(
    json_codec: str, odd_server: tuple[OddServer, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    use_codec(json_codec, monkeypatch)
    server, base_url = odd_server
    results = {}
    async with AsyncMultiClient(
        max_retries=3, endpoint="chats", api_key="sk-test", base_url=base_url
    ) as client:
        for name in ANSWERS:
            await client.request({"model": "m", "messages": [{"role": "user", "content": name}]})
        client.close()
        async for result in client:
            results[result.data["messages"][0]["content"]] = result
    assert all(not result.failed for result in results.values()), results
    assert all(result.attempt == 1 for result in results.values())  # none called malformed
    assert server.hits == dict.fromkeys(ANSWERS, 1)

    def logprob(name: str) -> float:
        value: float = results[name].response["choices"][0]["logprobs"]["content"][0]["logprob"]
        return value

    assert math.isnan(logprob("nan"))
    assert logprob("neg-inf") == -math.inf
    assert logprob("inf") == math.inf
    assert results["surrogate"].response["choices"][0]["message"]["content"] == "a\ud800b"


def batch_line(custom_id: str, name: str) -> str:
    # "user" makes every body unique, so the cache never answers instead of the server
    body = {"model": "m", "messages": [{"role": "user", "content": name}], "user": custom_id}
    return json.dumps({"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions",
                       "body": body})  # fmt: skip


async def omc_run(json_codec: str, *args: str) -> tuple[int, str]:
    """``omc`` in a subprocess (this loop keeps serving meanwhile); with ``stdlib``, orjson is
    made unimportable in the child."""
    hide = "sys.modules['orjson'] = None; " if json_codec == "stdlib" else ""
    code = f"import sys, runpy; {hide}runpy.run_module('openai_multi_client', run_name='__main__')"
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", code, *args,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONWARNINGS": "error"},
    )  # fmt: skip
    _, stderr = await asyncio.wait_for(process.communicate(), timeout=50)
    assert process.returncode is not None
    return process.returncode, stderr.decode()


@pytest.mark.parametrize("json_codec", CODECS)
async def test_omc_run_writes_odd_answers_as_strict_json_and_resumes_without_resending(
    json_codec: str, odd_server: tuple[OddServer, str], tmp_path: Path
) -> None:
    if json_codec == "orjson" and importlib.util.find_spec("orjson") is None:
        pytest.skip("the speed extra (orjson) is not installed")
    server, base_url = odd_server
    names = [*ANSWERS, *ANSWERS]  # each kind twice, odd ones between plain ones
    source = tmp_path / "in.jsonl"
    source.write_text("".join(batch_line(f"req-{n}", name) + "\n" for n, name in enumerate(names)))
    out = tmp_path / "out.jsonl"
    args = ("run", str(source), "-o", str(out), "--base-url", base_url, "--key", "sk-test",
            "--cache", str(tmp_path / "cache.sqlite"))  # fmt: skip

    code, stderr = await omc_run(json_codec, *args)
    assert code == 0, stderr
    assert server.hits == dict.fromkeys(ANSWERS, 2)  # each sent once: nothing retried
    records = {}
    for line in out.read_text(encoding="utf-8").splitlines():  # strict UTF-8 too
        record = strict_loads(line)
        records[record["custom_id"]] = record
    assert sorted(records) == sorted(f"req-{n}" for n in range(len(names)))

    def answer(n: int) -> Any:
        assert records[f"req-{n}"]["error"] is None
        choice = records[f"req-{n}"]["response"]["body"]["choices"][0]
        return choice["logprobs"]["content"][0]["logprob"], choice["message"]["content"]

    assert [answer(n) for n in range(len(ANSWERS))] == [
        (-0.5, "fine"), ("NaN", "odd"), ("-Infinity", "odd"), ("Infinity", "odd"),
        (-1.5, "a\ufffdb"),
    ]  # fmt: skip

    written = out.read_bytes()
    code, stderr = await omc_run(json_codec, *args)  # a resume: all are done
    assert code == 0, stderr
    assert server.hits == dict.fromkeys(ANSWERS, 2)  # nothing sent again
    assert sorted(out.read_bytes().splitlines()) == sorted(written.splitlines())
