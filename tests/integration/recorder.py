"""A recording HTTP server on loopback for integration tests."""

from __future__ import annotations

import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from aiohttp import web


@dataclass
class Recorder:
    """An aiohttp app that records every request's method, path and headers."""

    reply: Callable[[web.Request], web.StreamResponse]
    seen: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    times: list[float] = field(default_factory=list)  # time.monotonic() of each arrival

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.seen.append((request.method, request.path_qs, dict(request.headers)))
        self.times.append(time.monotonic())
        return self.reply(request)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        return app


async def serve(
    recorder: Recorder, host: str, port: int = 0, ssl_context: ssl.SSLContext | None = None
) -> tuple[web.AppRunner, int]:
    """Start serving ``recorder`` on ``host:port``; return the runner (to clean up) and the
    port."""
    runner = web.AppRunner(recorder.app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port, ssl_context=ssl_context)
    await site.start()
    assert runner.addresses
    return runner, runner.addresses[0][1]
