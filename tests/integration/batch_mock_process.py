"""A mock OpenAI server with the Batch API set up by JSON, in its own process, for tests that
kill ``omc run --batch``: prints its base URL, serves until SIGTERM, then writes what it saw
(answers per request body, every batch and uploaded file) to the report file.

    python batch_mock_process.py REPORT.json '{"lines_per_second": 300, ...}'
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path
from typing import Any

from openai_multi_client.testing import BatchOptions, MockOpenAIServer


def report(server: MockOpenAIServer) -> dict[str, Any]:
    routes = server._handler.batch_routes
    batches = [
        {
            "id": batch.id,
            "metadata": batch.metadata,
            "created": batch.created,
            "times": batch.times,
            "status": batch.status,
            "input_file_id": batch.input_file_id,
            "lines": len(batch.lines),
        }
        for batch in routes.batches.all()
    ]
    files = [
        {"id": stored.id, "filename": stored.filename, "created_at": stored.created_at}
        for stored in routes.files.listing(None)
    ]
    return {"answer_counts": server.answer_counts, "batches": batches, "files": files}


async def main(path: str, options: dict[str, Any], seed: int) -> None:
    server = MockOpenAIServer(batches=BatchOptions(**options), seed=seed)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    await server.start()
    print(server.base_url, flush=True)
    try:
        await stop.wait()
        await asyncio.to_thread(Path(path).write_text, json.dumps(report(server)), "utf-8")
    finally:
        await server.stop()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3])))
