"""A canary key never leaks: not into logs (any level, any logger), results, errors (their
messages, reprs and causes), reprs, statistics, nor any file or output of ``omc run``.

Driven through the real paths: the library over HTTP to the mock server (faults, timeouts,
401, 429), to a server that echoes the key back in every answer, to a closed port, through the
sync seed clients, and ``omc run`` with ``--keys-file`` and with ``OPENAI_API_KEY``."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import pty
import socket
import subprocess
import sys
import threading
import traceback
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from openai_multi_client import (
    AsyncMultiClient,
    AuthenticationError,
    Key,
    KeyManager,
    OpenAIMultiClient,
    OpenAIMultiOrderedClient,
    Result,
    stable,
)
from openai_multi_client._transport import AiohttpTransport, HTTPRequest, HTTPResponse
from openai_multi_client.cli._logs import JSONFormatter
from openai_multi_client.testing import Faults, KeyLimits, MockOpenAIServer

from . import otel_sdk

Factory = Callable[..., MockOpenAIServer]

CANARY = "sk-canary-7d41e0c2b9a84f3e9c15a6b2d8f04e71"
_CORE = CANARY.removeprefix("sk-canary-")
# Any 12 characters of the secret part: more than OpenAI's own redaction (sk-abc***wxyz) shows.
_WINDOWS = [_CORE[start : start + 12] for start in range(len(_CORE) - 11)]


def leaks(text: str | bytes) -> list[str]:
    if isinstance(text, bytes):
        text = text.decode("latin-1")
    return [window for window in _WINDOWS if window in text]


def assert_no_leak(what: str, text: str | bytes) -> None:
    assert not leaks(text), f"the key leaked into {what}: {text!r}"


def assert_no_leak_in_metrics(client: Any) -> None:
    """The client's Prometheus metrics (when prometheus-client is installed) show no key."""
    try:
        from prometheus_client import CollectorRegistry, generate_latest
    except ImportError:
        return
    from openai_multi_client.metrics import PrometheusCollector

    registry = CollectorRegistry(auto_describe=False)
    registry.register(PrometheusCollector(client))
    assert_no_leak("the metrics", generate_latest(registry))


def chat(text: str) -> dict[str, Any]:
    return {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}]}


def exception_texts(error: BaseException) -> Iterator[str]:
    """Every text an exception shows: str, repr and traceback of it and of everything it
    chains to, and the body and headers an API error carries."""
    yield "".join(traceback.format_exception(error))
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield str(current)
        yield repr(current)
        yield repr(current.args)
        for name in ("body", "headers", "result"):
            yield repr(getattr(current, name, None))
        yield from (repr(note) for note in getattr(current, "__notes__", ()))
        current = current.__cause__ or current.__context__


def check_results(results: list[Result]) -> None:
    for result in results:
        assert_no_leak("a result", repr(result))
        assert_no_leak("a response", repr(result.response))
        assert_no_leak("a key id", repr(result.key))
        if result.error is not None:
            for text in exception_texts(result.error):
                assert_no_leak(f"a {type(result.error).__name__}", text)


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> Iterator[Callable[[], None]]:
    """Capture every log record at DEBUG (ours, aiohttp's, asyncio's); call to check them."""
    for name in (None, "openai_multi_client", "aiohttp", "aiohttp.client", "aiohttp.server",
                 "aiohttp.internal", "aiohttp.web", "asyncio"):  # fmt: skip
        caplog.set_level(logging.DEBUG, logger=name)
    formatter = logging.Formatter("%(levelname)s %(name)s %(message)s")
    structured = JSONFormatter()  # with every field the record carries (omc --log-format json)

    def check() -> None:
        for record in caplog.records:
            assert_no_leak(f"log record {record.name}", formatter.format(record))
            assert_no_leak(f"log record {record.name} as JSON", structured.format(record))
            assert_no_leak(f"log record {record.name} args", repr(record.args))

    yield check
    check()


# ------------------------------------------------------------------ a server that echoes keys


class _EchoHandler(BaseHTTPRequestHandler):
    """Answers as the request's message says, quoting the Authorization header back (as a
    careless proxy or server might) in every body, and in a redirect's location."""

    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", 0))
        mode = json.loads(self.rfile.read(length))["messages"][0]["content"]
        echo = self.headers.get("Authorization", "")
        if mode.startswith("partial"):  # "partial12-401": the key's first 12 characters, a 401
            length, mode = mode.removeprefix("partial").split("-", 1)
            echo = "partial " + echo.removeprefix("Bearer ")[: int(length)]
        if mode == "garbage":  # not HTTP at all: aiohttp fails to parse the status line
            self.wfile.write(b"NOT HTTP " + echo.encode() + b"\r\n\r\n")
            self.close_connection = True
            return
        headers = {"Content-Type": "application/json", "x-should-retry": "false"}
        error = {"message": f"Incorrect API key provided: {echo}.", "type": "error",
                 "code": "invalid_api_key", "param": None}  # fmt: skip
        status = 200
        body: dict[str, Any] = {"error": error}
        if mode == "200":
            body = {"choices": [{"message": {"role": "assistant", "content": f"key {echo}"}}]}
        elif mode == "malformed":
            body = {"you sent": echo, "and": "the rest"}  # cut short after the key
        elif mode == "quota":
            status, error["code"] = 429, "insufficient_quota"
        elif mode == "307":
            status = 307
            headers["Location"] = f"http://127.0.0.1:1/?key={echo}"
        else:
            status = int(mode)
        content = json.dumps(body).encode()
        if mode == "malformed":
            content = content[:-3]
        elif mode == "502":
            headers["Content-Type"] = "text/html"
            content = f"<html><body>502 Bad Gateway for {echo}</body></html>".encode()
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(content)))
        self.end_headers()
        self.wfile.write(content)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def echo_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _EchoHandler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


ECHO_MODES = ["200", "malformed", "400", "401", "403", "404", "409", "422", "429", "quota",
              "500", "502", "503", "307", "garbage"]  # fmt: skip


# ------------------------------------------------------------------ the library


async def test_no_leak_from_a_server_that_echoes_the_key(
    echo_server: str, logs: Callable[[], None]
) -> None:
    sent: list[str] = []

    class Recording(AiohttpTransport):
        async def handle(self, request: HTTPRequest) -> HTTPResponse:
            sent.append(repr(request))
            return await super().handle(request)

    transport = Recording()  # passed in, so ours to close
    for mode in ECHO_MODES:
        key = Key(CANARY)
        async with AsyncMultiClient(
            endpoint="chats",
            api_key=key,
            base_url=echo_server,
            max_retries=1,
            transport=transport,
            on_send=lambda request: sent.append(repr(request)),
        ) as client:
            await client.request(chat(mode))
            client.close()
            results = [result async for result in client]
            check_results(results)
            assert results[0].failed == (mode != "200"), (mode, results[0].error)
            assert_no_leak("the client", repr(client))
            assert_no_leak("statistics", repr(client.statistics()))
            assert_no_leak_in_metrics(client)
        assert_no_leak("the key", repr(key) + str(key) + key.id)
    await transport.aclose()
    assert len(sent) == 2 * len(ECHO_MODES)
    for text in sent:
        assert_no_leak("a request", text)
    logs()


async def test_no_leak_into_spans_and_metrics(echo_server: str) -> None:
    otel_sdk.install()
    otel_sdk.EXPORTER.clear()
    for mode in [*ECHO_MODES, *PARTIAL_MODES]:
        async with AsyncMultiClient(
            endpoint="chats",
            api_key=CANARY,
            base_url=echo_server,
            max_retries=1,
            capture_message_content=True,  # the answers echo the key: still never in a span
        ) as client:
            await client.request(chat(mode), metadata={"custom_id": mode})
            client.close()
            check_results([result async for result in client])
    spans = otel_sdk.EXPORTER.get_finished_spans()
    ids = {(span.attributes or {}).get("openai_multi_client.custom_id") for span in spans}
    assert ids >= set(ECHO_MODES)
    assert any(span.status.description for span in spans)
    assert any("gen_ai.output.messages" in (span.attributes or {}) for span in spans)
    for span in spans:
        assert_no_leak(f"span {span.name}", span.to_json())
    metrics = otel_sdk.READER.get_metrics_data()
    assert metrics is not None
    assert_no_leak("the metrics", metrics.to_json())


PARTIAL_MODES = ["partial11-200", "partial12-401", "partial12-malformed", "partial20-500",
                 "partial30-502", "partial12-307", "partial16-quota"]  # fmt: skip


async def test_no_leak_of_the_start_of_the_key(echo_server: str, logs: Callable[[], None]) -> None:
    """A server quoting the key's first characters (``partial sk-canary-7d``): from the type
    prefix and 8 characters on, that is redacted too; the rest of the message is kept."""
    start = CANARY[: len("sk-") + 8]  # "sk-canary-7": the shortest start that is redacted
    key = Key(CANARY)
    texts: list[str] = []
    for mode in PARTIAL_MODES:
        async with AsyncMultiClient(
            endpoint="chats", api_key=key, base_url=echo_server, max_retries=1
        ) as client:
            await client.request(chat(mode))
            client.close()
            (result,) = [result async for result in client]
        texts += [repr(result), repr(result.response), repr(client.statistics())]
        if result.error is not None:
            texts += list(exception_texts(result.error))
        if mode == "partial11-200":
            content = result.response["choices"][0]["message"]["content"]
            assert content == f"key partial {key.id}"
        if mode == "partial12-401":
            assert f"Incorrect API key provided: partial {key.id}." in str(result.error)
    for text in texts:
        assert start not in text, text
    logs()


def test_no_leak_over_http_to_the_mock_server(
    mock_openai_factory: Factory, logs: Callable[[], None]
) -> None:
    faults = Faults(rate=0.5, kinds={"500": 1, "502": 1, "503": 1, "reset": 1, "malformed": 1,
                                     "hang": 1})  # fmt: skip
    server = mock_openai_factory(
        keys={CANARY: KeyLimits(requests_per_minute=600), "sk-other": KeyLimits()},
        rate_limit_headers=False,  # so the client cannot learn the limit: it meets 429s
        faults=faults,
        seed=4,
    )
    seen: set[str] = set()
    for client_class in (OpenAIMultiClient, OpenAIMultiOrderedClient):
        with client_class(
            20,
            max_retries=1,  # every fault ends a request: each kind of error is checked
            retry_multiplier=0.01,
            endpoint="chats",
            api_key=CANARY,
            base_url=server.base_url,
            timeout=0.5,
        ) as api:
            for n in range(60):
                api.request(chat(f"question {n}"))
            api.close()
            results = list(api)
            check_results(results)
            assert_no_leak("the sync client", repr(api))
            assert_no_leak("statistics", repr(api.statistics()))
            assert_no_leak_in_metrics(api)
        seen |= {type(r.error).__name__ for r in results}
    assert seen >= {"NoneType", "InternalServerError", "ConnectionClosedError",
                    "InvalidResponseError", "RequestTimeoutError"}, seen  # fmt: skip
    stats = server.stats
    assert stats.status_counts.get(429, 0) > 0, stats  # each error path was met
    assert stats.faults_by_kind.get("hang", 0) > 0, stats

    # 401 (OpenAI's message shows sk-***...xyz), 429 insufficient_quota, a closed port.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{sock.getsockname()[1]}/v1"
    for base_url, server_options in (
        (None, {"invalid_keys": {CANARY}}),
        (None, {"no_quota_keys": {CANARY}}),
        (closed, {}),
    ):
        mock = mock_openai_factory(**server_options)
        manager = KeyManager([CANARY, "sk-other"])
        with OpenAIMultiOrderedClient(
            endpoint="chats",
            api_key=[CANARY],
            base_url=base_url or mock.base_url,
            max_retries=2,
            retry_multiplier=0.01,
        ) as api:
            api.request(chat("x"))
            api.close()
            results = list(api)
            check_results(results)
            assert results[0].failed
            assert_no_leak("statistics", repr(api.statistics()))
            assert_no_leak_in_metrics(api)
        assert_no_leak("the key manager", repr(manager) + repr(manager.keys))
    logs()


def test_no_leak_from_stable_and_the_key_manager(logs: Callable[[], None]) -> None:
    manager = KeyManager([CANARY, "sk-other"], retry_multiplier=0.01)

    @stable(manager=manager)
    def call(api_key: str) -> str:
        if api_key == CANARY:  # a server that quotes the key it refuses
            raise AuthenticationError(f"HTTP 401: bad key {api_key}", status_code=401)
        return "ok"

    assert [call() for _ in range(3)] == ["ok"] * 3
    statistics = manager.statistics(0.0)
    assert statistics.retired == 1
    assert_no_leak("pool statistics", repr(statistics))
    assert_no_leak("the key manager", repr(manager) + repr(manager.keys))
    assert_no_leak("retired reasons", repr(manager.retired_reasons()))
    logs()


# ------------------------------------------------------------------ omc run


def batch_line(n: int, text: str) -> str:
    return json.dumps(
        {"custom_id": f"req-{n}", "method": "POST", "url": "/v1/chat/completions",
         "body": chat(text)}
    )  # fmt: skip


def omc(*args: str, env: dict[str, str] | None = None, tty: bool = False) -> tuple[int, str]:
    """Run ``omc -vv ARGS`` (debug logging on); its exit code and everything it printed.
    With ``tty``, standard error is a terminal, so the live progress line is drawn."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")}
    environment.update(env or {}, PYTHONWARNINGS="error")
    command = [sys.executable, "-m", "openai_multi_client", "-vv", *args]
    if not tty:
        done = subprocess.run(
            command, env=environment, capture_output=True, text=True, timeout=60, check=False
        )
        return done.returncode, done.stdout + done.stderr
    controller, terminal = pty.openpty()
    chunks: list[bytes] = []

    def read() -> None:
        with contextlib.suppress(OSError):  # EIO once the child has closed the terminal
            while chunk := os.read(controller, 65536):
                chunks.append(chunk)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    with subprocess.Popen(
        command, env=environment, stdout=subprocess.PIPE, stderr=terminal, text=True
    ) as process:
        os.close(terminal)
        stdout, _ = process.communicate(timeout=60)
    reader.join(10)
    os.close(controller)
    return process.returncode, stdout + b"".join(chunks).decode(errors="replace")


def test_no_leak_from_omc_run(
    tmp_path: Path, mock_openai_factory: Factory, echo_server: str
) -> None:
    faults = Faults(rate=0.3, kinds={"500": 1, "503": 1, "reset": 1, "malformed": 1, "hang": 1})
    server = mock_openai_factory(keys={CANARY: KeyLimits()}, faults=faults, seed=6)
    keys_file = tmp_path / "keys.txt"
    keys_file.write_text(CANARY + "\n")
    source = tmp_path / "in.jsonl"
    source.write_text("".join(batch_line(n, f"q{n}") + "\n" for n in range(150)))
    common = ("--base-url", server.base_url, "--timeout", "0.5", "-c", "20")
    printed: list[str] = [omc("run", "--help")[1]]

    code, text = omc(
        "run", str(source), "-o", str(tmp_path / "a.jsonl"), "--errors",
        str(tmp_path / "a.errors.jsonl"), "--keys-file", str(keys_file), *common, tty=True,
    )  # fmt: skip
    assert code in (0, 1), text
    assert "\r" in text  # the live progress line was drawn
    printed.append(text)
    code, text = omc(
        "run", str(source), "-o", str(tmp_path / "b.jsonl"), *common,
        env={"OPENAI_API_KEY": CANARY},
    )  # fmt: skip
    assert code in (0, 1), text
    printed.append(text)
    assert server.stats.requests_by_key == {CANARY: server.stats.total_requests}
    assert server.stats.faults_by_kind.get("hang", 0) > 0

    # A server that quotes the key in every answer: each kind of failure, then a 401.
    modes = [mode for mode in ECHO_MODES if mode not in ("401", "403", "quota")]
    echoed = tmp_path / "echo.jsonl"
    echoed.write_text("".join(batch_line(n, mode) + "\n" for n, mode in enumerate(modes)))
    code, text = omc(
        "run", str(echoed), "-o", str(tmp_path / "c.jsonl"), "--errors",
        str(tmp_path / "c.errors.jsonl"), "--keys-file", str(keys_file),
        "--base-url", echo_server, "--max-retries", "1", "--log-format", "json",
    )  # fmt: skip
    assert code == 1, text
    assert '"event": "request_failed"' in text  # the JSON log lines are checked below
    printed.append(text)
    assert len((tmp_path / "c.jsonl").read_text().splitlines()) == len(modes)
    refused = tmp_path / "refused.jsonl"
    refused.write_text(batch_line(0, "401") + "\n")
    code, text = omc(
        "run", str(refused), "-o", str(tmp_path / "d.jsonl"), "--base-url", echo_server,
        env={"OPENAI_API_KEY": CANARY},
    )  # fmt: skip
    assert code == 1
    assert "fix the keys" in text
    printed.append(text)

    for name in ("a", "b", "c", "d"):
        printed.append(omc("status", str(tmp_path / f"{name}.jsonl.journal"))[1])
    for text in printed:
        assert_no_leak("what omc printed", text)
    files = [path for path in tmp_path.iterdir() if path != keys_file]
    assert {path.name for path in files} >= {"a.jsonl.journal", "a.errors.jsonl", "d.jsonl"}
    for path in files:
        assert_no_leak(str(path), path.read_bytes())
