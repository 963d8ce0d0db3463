"""A mock OpenAI server in its own process, for tests and benchmarks that SIGKILL ``omc run``:
prints its base URL, serves until SIGTERM, then writes to the report file every attempt it saw
(the request's ``custom_id``-free question text, when it arrived and ended, and how it ended, on
this process's monotonic clock, which on Linux is the machine's) and the answer counts.

    python run_mock_process.py REPORT.json '{"latency": [0.05, 0.15], "fault_rate": 0.1}' SEED

How an attempt ended: an HTTP status (``200`` a complete answer; ``500``, ``503``, ``429``: an
error the client knows was not billed) or ``"gone"`` (no answer reached a client: a reset or
hang the mock chose, or the client disconnected first, as when it is killed).
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
from pathlib import Path
from typing import Any

from aiohttp import web

from openai_multi_client.testing import Faults, KeyLimits, MockOpenAIServer


class AttemptLog:
    """Wraps the mock's request handler to log each attempt on the chat completions route."""

    def __init__(self, server: MockOpenAIServer) -> None:
        self.attempts: list[dict[str, Any]] = []
        handler = server._handler
        self._serve = handler.serve
        self._validate = handler._validate
        self._bodies: dict[int, dict[str, Any]] = {}
        handler.serve = self.serve  # type: ignore[method-assign,assignment]
        handler._validate = self.validate  # type: ignore[method-assign,assignment]

    async def validate(self, request: web.Request, *args: Any) -> Any:
        valid = await self._validate(request, *args)
        if isinstance(valid, tuple):
            self._bodies[id(request)] = valid[0]
        return valid

    async def serve(self, request: web.Request, *args: Any) -> web.StreamResponse:
        attempt: dict[str, Any] = {"arrived": time.monotonic(), "ended": None, "how": "gone"}
        self.attempts.append(attempt)
        try:
            response = await self._serve(request, *args)
        finally:
            attempt["ended"] = time.monotonic()
            body = self._bodies.pop(id(request), None)
            if body is not None:
                attempt["question"] = body["messages"][0]["content"]
        if attempt["how"] == "gone":
            attempt["how"] = _how(request, response)
        return response


def _how(request: web.Request, response: web.StreamResponse) -> str | int:
    transport = request.transport
    if transport is None or transport.is_closing():
        return "gone"  # dropped by the mock, or the client left: nothing reached a client
    return response.status


async def main(path: str, options: dict[str, Any], seed: int) -> None:
    faults = Faults(rate=options["fault_rate"], kinds=options["fault_kinds"])
    limits = KeyLimits(requests_per_minute=options.get("rpm"))
    server = MockOpenAIServer(
        latency=tuple(options["latency"]), faults=faults, default_limits=limits, seed=seed
    )
    log = AttemptLog(server)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await server.start()
    print(server.base_url, flush=True)
    try:
        await stop.wait()
        report = {"attempts": log.attempts, "answer_counts": server.answer_counts}
        await asyncio.to_thread(Path(path).write_text, json.dumps(report), "utf-8")
    finally:
        await server.stop()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3])))
