"""A throwaway redis-server for tests and benchmarks of shared limits.

::

    with RedisServer() as redis:
        client = AsyncMultiClient(..., shared_limits=redis.url)

Starts the ``redis-server`` binary (Debian's package ``redis-server``) on a free port of
127.0.0.1, with no persistence, in a temporary directory; waits until it answers; stops it on
exit. Nothing else is needed: no Python Redis client is used to start or stop it.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType


class RedisServerError(RuntimeError):
    """redis-server is not installed, or did not start."""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """A redis-server on 127.0.0.1, started on enter (or :meth:`start`), stopped on exit."""

    def __init__(self, binary: str = "redis-server", startup_timeout: float = 10.0) -> None:
        self._binary = binary
        self._startup_timeout = startup_timeout
        self._process: subprocess.Popen[bytes] | None = None
        self._directory: tempfile.TemporaryDirectory[str] | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        path = shutil.which(self._binary)
        if path is None:
            raise RedisServerError(
                f"{self._binary} is not installed (Debian: apt-get install redis-server)"
            )
        self._directory = tempfile.TemporaryDirectory(prefix="omc-redis-")
        for _ in range(3):  # another process may take the free port first
            self.port = _free_port()
            log = Path(self._directory.name) / "redis.log"
            arguments = ["--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
            arguments += ["--appendonly", "no", "--dir", self._directory.name]
            self._process = subprocess.Popen(
                [path, *arguments, "--logfile", str(log)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            deadline = time.monotonic() + self._startup_timeout
            while time.monotonic() < deadline and self._process.poll() is None:
                if _ping(self.port):
                    return self
                time.sleep(0.02)
            self._kill()
        self.stop()
        raise RedisServerError(f"redis-server did not start on 127.0.0.1 (see {log})")

    def _kill(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def stop(self) -> None:
        self._kill()
        if self._directory is not None:
            self._directory.cleanup()
            self._directory = None

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self._process is not None else "stopped"
        return f"RedisServer({state}, port={self.port})"
