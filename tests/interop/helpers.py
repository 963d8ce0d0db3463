"""What the interop tests share: running the library and ``omc run`` against a server."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from openai_multi_client import AsyncMultiClient, Result


def chat(text: str, model: str = "gpt-4o-mini", **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": text}], **extra}


async def run_all(
    client: AsyncMultiClient,
    bodies: Sequence[tuple[str, dict[str, Any]]],
    deadline: float = 45.0,
) -> list[Result]:
    """Send ``(endpoint, body)`` pairs and collect every result; a run that has not finished
    after ``deadline`` seconds is abandoned and reported, never left to hang the suite."""

    async def produce() -> None:
        for index, (endpoint, body) in enumerate(bodies):
            await client.request(body, endpoint=endpoint, metadata={"n": index})
        client.close()

    async def consume() -> list[Result]:
        return [result async for result in client]

    producer = asyncio.ensure_future(produce())
    try:
        results = await asyncio.wait_for(consume(), deadline)
    except asyncio.TimeoutError:
        producer.cancel()
        client.abandon_unsent()
        raise AssertionError(
            f"the run did not finish within {deadline:g} s: {client.statistics()}"
        ) from None
    finally:
        if not producer.cancelled():
            await asyncio.gather(producer, return_exceptions=True)
    return sorted(results, key=lambda result: result.metadata["n"])


def batch_line(n: int, model: str, text: str | None = None) -> str:
    return json.dumps(
        {
            "custom_id": f"req-{n}",
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": chat(text or f"question {n}", model, max_tokens=10),
        }
    )


def omc_run(
    tmp_path: Path, lines: Sequence[str], base_url: str, key: str, *options: str
) -> tuple[subprocess.CompletedProcess[str], list[dict[str, Any]]]:
    """``omc run`` as a subprocess on ``lines``; the process and the records of the output
    and of the errors file."""
    source, output, errors = tmp_path / "in.jsonl", tmp_path / "out.jsonl", tmp_path / "err.jsonl"
    source.write_text("\n".join(lines) + "\n")
    process = subprocess.run(
        [
            *(sys.executable, "-m", "openai_multi_client", "run", str(source)),
            *("-o", str(output), "--errors", str(errors), "--base-url", base_url, *options),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONWARNINGS": "error", "OPENAI_API_KEY": key},
        check=False,
    )
    records = [
        json.loads(line)
        for path in (output, errors)
        if path.exists()
        for line in path.read_text().splitlines()
    ]
    return process, records
