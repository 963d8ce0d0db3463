"""A server for bench_ordered.py, in its own process: prints its base URL, serves until killed.

python bench/_ordered_server.py faults SEED   # the mock server, 15 % faults of which 1 %
                                              # of requests hang (60 s), latency 0.2-0.6 s
python bench/_ordered_server.py hung-head     # chat answers at once, but a request whose
                                              # text contains HANG never gets one
"""

from __future__ import annotations

import asyncio
import json
import sys

from aiohttp import web

from openai_multi_client.testing import Faults, MockOpenAIServer

# 15 % of requests meet a fault; "hang" weighs 1 of 15, so 1 % of requests hang.
FAULTS = Faults(
    rate=0.15,
    kinds={"500": 3.5, "502": 3.5, "503": 3.5, "reset": 3.5, "hang": 1.0},
    hang_seconds=60.0,
)
ANSWER = "A typical short classification answer with a sentence of explanation. " * 6


async def chat(request: web.Request) -> web.Response:
    body = await request.json()
    text = body["messages"][-1]["content"]
    if "HANG" in text:
        await asyncio.sleep(3600)
    answer = {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": 1700000000,
        "model": body.get("model", "gpt-4o-mini"),
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": ANSWER + text},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 20, "completion_tokens": 90, "total_tokens": 110},
    }
    return web.json_response(answer, dumps=json.dumps)


async def serve(kind: str, seed: int) -> None:
    if kind == "faults":
        server = MockOpenAIServer(latency=(0.2, 0.6), faults=FAULTS, seed=seed)
        await server.start()
        print(server.base_url, flush=True)
        await asyncio.Event().wait()
    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    print(f"http://127.0.0.1:{port}/v1", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(serve(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 0))
