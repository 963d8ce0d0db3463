"""The input of ``omc run``: its fingerprint, and its items in batches, read by a thread so a
slow standard input never blocks the event loop.

The reader parses lines with :func:`~._batch.read_batch` (bad lines become :class:`~._batch.
BadLine` items, in order with the requests); the ids seen for the duplicate check are kept on
disk (:class:`~._seen.DiskSeenIds`), so memory stays flat whatever the input's size.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

from .._errors import OpenAIMultiClientError
from ._batch import BadLine, BatchRequest, read_batch
from ._seen import DiskSeenIds

__all__ = ["READ_BATCH", "InputReader", "Item", "scan_input"]

READ_BATCH = 256
"""Input items handed to the producer at once (one journal lookup each)."""

Item = BatchRequest | BadLine


def scan_input(path: str, shaping: dict[str, Any]) -> tuple[str | None, int | None]:
    """The fingerprint of the input's bytes and of the options that shape requests
    (``shaping``), and the number of input lines that are not blank (the reader skips those);
    ``(None, None)`` for stdin (``-``), which cannot be read twice."""
    if path == "-":
        return None, None
    digest = hashlib.sha256()
    lines = 0
    blank = True  # the line read so far is only whitespace
    with open(path, "rb") as file:
        while part := file.readline(1 << 20):  # in parts: a line may be huge
            digest.update(part)
            blank = blank and part.isspace()
            if part.endswith(b"\n"):
                lines += not blank
                blank = True
    lines += not blank
    digest.update(json.dumps(shaping, sort_keys=True).encode())
    return digest.hexdigest(), lines


class InputReader:
    """The items of the input at ``path`` (``-``: standard input), ``size`` at a time."""

    def __init__(self, path: str, *, max_line_bytes: int, size: int = READ_BATCH) -> None:
        self._path = path
        self._max_line_bytes = max_line_bytes
        self._size = size

    async def batches(self) -> AsyncIterator[list[Item]]:
        """The input's items in batches. An unreadable input raises
        :class:`~openai_multi_client.OpenAIMultiClientError` saying why."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[list[Item] | BaseException | None] = asyncio.Queue(maxsize=4)
        stop = threading.Event()

        def put(item: list[Item] | BaseException | None) -> None:
            putting = queue.put(item)
            try:
                future = asyncio.run_coroutine_threadsafe(putting, loop)
            except RuntimeError:  # the loop is closed: the run is over
                putting.close()
                raise
            future.result()

        def reader() -> None:
            try:
                for batch in self._batches():
                    if stop.is_set():
                        return
                    put(batch)
                put(None)
            except BaseException as exc:  # an unreadable input: the run stops and says why
                if not stop.is_set():  # else the run is over (and its loop may be gone)
                    with contextlib.suppress(BaseException):
                        put(exc)

        thread = threading.Thread(target=reader, name="omc-reader", daemon=True)
        thread.start()
        try:
            while True:
                batch = await queue.get()
                if batch is None:
                    return
                if isinstance(batch, BaseException):
                    raise OpenAIMultiClientError(f"cannot read the input: {batch}") from batch
                yield batch
        finally:
            stop.set()

    def _batches(self) -> Iterator[list[Item]]:
        batch: list[Item] = []
        for item in self._items():
            batch.append(item)
            if len(batch) >= self._size:
                yield batch
                batch = []
        if batch:
            yield batch

    def _items(self) -> Iterator[Item]:
        seen = DiskSeenIds()
        try:
            if self._path == "-":
                yield from read_batch(
                    sys.stdin.buffer, max_line_bytes=self._max_line_bytes, seen=seen
                )
                return
            with open(self._path, "rb") as file:
                yield from read_batch(file, max_line_bytes=self._max_line_bytes, seen=seen)
        finally:
            seen.close()
