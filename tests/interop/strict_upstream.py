"""An upstream for the LiteLLM proxy whose 429s carry their wait only in headers, as Azure
OpenAI's do (``retry-after``, ``retry-after-ms``; the message says "Please retry after N
seconds", not OpenAI's "try again in"). Behind LiteLLM the client sees that wait only in the
renamed ``llm_provider-retry-after(-ms)`` headers: issue 16, item 5.

Our MockOpenAIServer cannot show this: its 429 message says "Please try again in 1s", which
LiteLLM passes on and the client already reads. A real aiohttp server on 127.0.0.1, run in a
thread of its own, since the proxy (a subprocess) calls it while the test's loop is busy."""

from __future__ import annotations

import json
import math
import threading
import time

from aiohttp import web

from openai_multi_client.testing._mock.background import LoopThread


class StrictUpstream:
    """Chat completions at ``requests_per_minute``, one request every ``60 / rpm`` seconds and
    no burst; a request that comes early gets a 429 saying how long until the next slot."""

    def __init__(self, requests_per_minute: int) -> None:
        self.interval = 60.0 / requests_per_minute
        self.answered = 0
        self.refused = 0
        self._next_free = 0.0
        self._lock = threading.Lock()
        self._background = LoopThread("strict-upstream")
        self._runner: web.AppRunner | None = None
        self.base_url = ""

    def _admit(self) -> float:
        """0 when a request may pass now, else the seconds until it may."""
        with self._lock:
            now = time.monotonic()
            if now >= self._next_free:
                self._next_free = now + self.interval
                self.answered += 1
                return 0.0
            self.refused += 1
            return self._next_free - now

    async def _chat(self, request: web.Request) -> web.Response:
        body = await request.json()
        wait = self._admit()
        if wait > 0:
            seconds = math.ceil(wait)
            message = (
                "Requests to the ChatCompletions_Create Operation have exceeded call rate limit "
                f"of your current pricing tier. Please retry after {seconds} seconds."
            )
            error = {"error": {"code": "429", "message": message}}
            headers = {"retry-after": str(seconds), "retry-after-ms": str(math.ceil(wait * 1e3))}
            return web.json_response(error, status=429, headers=headers)
        answer = {
            "id": f"chatcmpl-strict-{self.answered}",
            "object": "chat.completion",
            "created": 0,
            "model": body.get("model", "gpt-4o-mini"),
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "strict answer"},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7},
        }
        return web.Response(text=json.dumps(answer), content_type="application/json")

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        self._runner = runner
        port = runner.addresses[0][1]
        self.base_url = f"http://127.0.0.1:{port}/v1"

    async def _stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def start_in_thread(self) -> None:
        self._background.start(self._start, 10.0)

    def stop_in_thread(self) -> None:
        self._background.stop(self._stop, 10.0)
