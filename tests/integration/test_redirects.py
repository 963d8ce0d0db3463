"""Redirects over real HTTP: credentials never follow one to another origin.

An origin server on 127.0.0.1 answers every request with a redirect; recording servers listen
wherever the redirect points (another host on the same port, another port). The client must
not follow any redirect, must send the key to the configured origin only, and must fail the
request with a :class:`RedirectError` naming where the server pointed, without the key.
"""

from __future__ import annotations

import asyncio
import json
import os
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiohttp import web

from openai_multi_client import Key, RedirectError, Result, arun_requests

from .recorder import Recorder, serve

AZURE_SECRET = "azure-secret-0123456789"
OPENAI_SECRET = "sk-plain-0123456789"
CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}


@dataclass
class Servers:
    origin: Recorder
    origin_port: int
    elsewhere: Recorder  # on 127.0.0.2:origin_port and on 127.0.0.1:elsewhere_port
    elsewhere_port: int


@pytest.fixture
async def servers() -> AsyncIterator[Servers]:
    def redirect(request: web.Request) -> web.StreamResponse:
        raise AssertionError("set by the test")

    origin = Recorder(redirect)
    elsewhere = Recorder(lambda request: web.json_response({"stolen": True}))
    runners = []
    try:
        runner, origin_port = await serve(origin, "127.0.0.1")
        runners.append(runner)
        runner, _ = await serve(elsewhere, "127.0.0.2", origin_port)  # same port, other host
        runners.append(runner)
        runner, elsewhere_port = await serve(elsewhere, "127.0.0.1")  # same host, other port
        runners.append(runner)
        yield Servers(origin, origin_port, elsewhere, elsewhere_port)
    finally:
        for runner in runners:
            await runner.cleanup()


# Where the redirect points, and the origin it really names ({o}: origin port, {e}: other).
TARGETS = {
    "other host": ("http://127.0.0.2:{o}/v1/chat/completions", "http://127.0.0.2:{o}"),
    "localhost": ("http://localhost:{o}/v1/chat/completions", "http://localhost:{o}"),
    "other port": ("http://127.0.0.1:{e}/v1/chat/completions", "http://127.0.0.1:{e}"),
    "userinfo": ("http://127.0.0.1:{o}@127.0.0.1:{e}/v1/chat/completions", "http://127.0.0.1:{e}"),
    "scheme-relative": ("//127.0.0.2:{o}/v1/chat/completions", "http://127.0.0.2:{o}"),
}


def keys(port: int) -> dict[str, tuple[Key | str, str, str]]:
    """Key, base URL and the header that carries the key."""
    azure = Key(AZURE_SECRET, azure=True, api_version="2024-10-21")
    deployment = f"http://127.0.0.1:{port}/openai/deployments/gpt-4o-mini"
    return {
        "azure": (azure, deployment, "api-key"),
        "openai": (OPENAI_SECRET, f"http://127.0.0.1:{port}/v1", "Authorization"),
    }


def check_refused(result: Result, status: int, target: str) -> None:
    error = result.error
    assert isinstance(error, RedirectError), error
    assert error.status_code == status
    assert result.attempt == 1  # not retried: it would redirect again
    assert error.target_origin == target
    assert not error.same_origin
    message = str(error)
    assert f"HTTP {status}" in message
    assert target in message
    assert "redirect" in message
    assert AZURE_SECRET not in message
    assert OPENAI_SECRET not in message


@pytest.mark.parametrize("key_kind", ["azure", "openai"])
@pytest.mark.parametrize("target_kind", list(TARGETS))
@pytest.mark.parametrize("status", [301, 302, 307, 308])
async def test_redirect_is_not_followed(
    servers: Servers, status: int, target_kind: str, key_kind: str
) -> None:
    location, target = (
        text.format(o=servers.origin_port, e=servers.elsewhere_port)
        for text in TARGETS[target_kind]
    )
    servers.origin.reply = lambda request: web.Response(
        status=status, headers={"Location": location}
    )
    key, base_url, header = keys(servers.origin_port)[key_kind]
    (result,) = [r async for r in arun_requests([CHAT], api_key=key, base_url=base_url)]
    check_refused(result, status, target)
    # The key went to the configured origin, once, and nowhere else.
    assert servers.elsewhere.seen == []
    ((method, path, headers),) = servers.origin.seen
    assert method == "POST"
    secret = AZURE_SECRET if key_kind == "azure" else f"Bearer {OPENAI_SECRET}"
    assert headers[header] == secret
    if key_kind == "azure":
        assert path == "/openai/deployments/gpt-4o-mini/chat/completions?api-version=2024-10-21"
        assert "Authorization" not in headers
    else:
        assert path == "/v1/chat/completions"
        assert "api-key" not in headers


async def test_a_key_echoed_in_the_location_is_not_kept(servers: Servers) -> None:
    location = f"http://127.0.0.1:{servers.elsewhere_port}/v1?key={OPENAI_SECRET}"
    servers.origin.reply = lambda request: web.Response(status=307, headers={"Location": location})
    base_url = f"http://127.0.0.1:{servers.origin_port}/v1"
    (result,) = [r async for r in arun_requests([CHAT], api_key=OPENAI_SECRET, base_url=base_url)]
    assert isinstance(result.error, RedirectError)
    assert result.error.location is not None
    assert OPENAI_SECRET not in result.error.location
    assert servers.elsewhere.seen == []


async def test_same_origin_unusable_and_missing_location(servers: Servers) -> None:
    base_url = f"http://127.0.0.1:{servers.origin_port}/v1"
    replies = iter(
        [
            web.Response(status=308, headers={"Location": "/v2/chat/completions"}),
            web.Response(status=301, headers={"Location": "http://[::1/x"}),
            web.Response(status=302),
        ]
    )
    servers.origin.reply = lambda request: next(replies)
    results = [
        r
        async for r in arun_requests(
            [CHAT] * 3, concurrency=1, api_key=OPENAI_SECRET, base_url=base_url
        )
    ]
    moved, broken, bare = (r.error for r in results)
    assert isinstance(moved, RedirectError)
    assert moved.same_origin
    assert "same origin" in str(moved)
    assert moved.location == f"{base_url.removesuffix('/v1')}/v2/chat/completions"
    assert isinstance(broken, RedirectError)
    assert "without a usable Location" in str(broken)
    assert isinstance(bare, RedirectError)
    assert "without a Location header" in str(bare)
    assert len(servers.origin.seen) == 3


CLIENT = """
import json, sys
from openai_multi_client import run_requests
chat = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
results = run_requests([chat, chat], concurrency=1, api_key=sys.argv[2], base_url=sys.argv[1])
print(json.dumps([
    [type(r.error).__name__, r.error.target_origin, r.error.same_origin, str(r.error)]
    for r in results
]))
"""


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-keyout", str(key), "-out", str(cert),
            "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )  # fmt: skip
    return cert, key


async def test_https_to_http_downgrade_is_not_followed(
    servers: Servers, certificate: tuple[Path, Path]
) -> None:
    # An https origin (self-signed; the client, in a subprocess, trusts it via SSL_CERT_FILE)
    # redirects to plain http: on the same port, then to the recording server's port.
    cert, key = certificate
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    origin = Recorder(lambda request: web.Response(status=500))
    runner, port = await serve(origin, "127.0.0.1", ssl_context=context)
    try:
        locations = iter(
            [f"http://127.0.0.1:{port}/v1/x", f"http://127.0.0.1:{servers.elsewhere_port}/v1/x"]
        )
        origin.reply = lambda request: web.Response(
            status=307, headers={"Location": next(locations)}
        )
        client = await asyncio.create_subprocess_exec(
            sys.executable, "-c", CLIENT, f"https://127.0.0.1:{port}/v1", OPENAI_SECRET,
            env={**os.environ, "SSL_CERT_FILE": str(cert), "PYTHONWARNINGS": "error"},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        stdout, stderr = await asyncio.wait_for(client.communicate(), 60)
    finally:
        await runner.cleanup()
    assert client.returncode == 0, stderr.decode()
    same_port, other_port = json.loads(stdout)
    assert same_port[:3] == ["RedirectError", f"http://127.0.0.1:{port}", False]
    assert other_port[:3] == ["RedirectError", f"http://127.0.0.1:{servers.elsewhere_port}", False]
    assert all(OPENAI_SECRET not in message for *_, message in (same_port, other_port))
    assert len(origin.seen) == 2
    assert all(headers["Authorization"] == f"Bearer {OPENAI_SECRET}" for *_, headers in origin.seen)
    assert servers.elsewhere.seen == []
