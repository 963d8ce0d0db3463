"""Third-party OpenAI-compatible servers for the interop suite: installed by
scripts/interop-servers.sh into their own venvs under .interop/ (never into ours), started here
as subprocesses on a free loopback port, and stopped after."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import IO, Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / ".interop"
INSTALL_SCRIPT = ROOT / "scripts" / "interop-servers.sh"


def server_bin(name: str, program: str) -> Path:
    """``program`` of the server ``name``'s venv, installed (once) when missing. When the
    install fails the test skips, saying why, or fails when CI is set."""
    venv = CACHE / f"{name}-venv"
    result = subprocess.run(
        ["bash", str(INSTALL_SCRIPT), name],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    path = venv / "bin" / program
    if result.returncode != 0 or not path.exists():
        reason = (
            f"interop server {name!r} could not be installed by {INSTALL_SCRIPT.name} "
            f"(exit {result.returncode}): {result.stderr.strip()[-600:]}"
        )
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class ServerProcess:
    """One server subprocess, its output in ``log`` (read it when something went wrong)."""

    def __init__(
        self,
        name: str,
        argv: list[str],
        port: int,
        log: Path,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.name = name
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log = log
        self._output: IO[bytes] = log.open("wb")
        self._process = subprocess.Popen(
            argv,
            stdout=self._output,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            cwd=cwd,
        )

    def wait_ready(self, path: str, timeout: float) -> float:
        """Poll ``GET path`` until it answers; the seconds it took."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if self._process.poll() is not None:
                break
            try:
                with urllib.request.urlopen(self.url + path, timeout=2):
                    return time.monotonic() - started
            except (OSError, urllib.error.URLError):
                time.sleep(0.1)
        self.stop()
        tail = self.log.read_text(errors="replace")[-2000:]
        pytest.fail(f"{self.name} did not start within {timeout:g} s on {self.url}:\n{tail}")

    def stop(self) -> None:
        if self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(timeout=15)
        self._output.close()


def http_json(method: str, url: str, body: Any = None, token: str | None = None) -> Any:
    """A small JSON request to a server's admin API (stdlib only, synchronous)."""
    data = None if body is None else json.dumps(body).encode()
    headers = {"content-type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read() or b"null")
