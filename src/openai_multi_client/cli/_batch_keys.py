"""The keys of ``omc run --batch``: one Batch API client per key, and which key a chunk uses.

The rule (crash-safe): a chunk is given a key just before its file is uploaded, and the key's
redacted id is committed with the chunk before the upload; every later call for that chunk
(create, adopt, poll, download, cancel) uses that same key, because a file uploaded with one
organization's key is not visible to another's. A chunk goes to the key whose queue (its group,
else the key itself, and the chunk's model) holds the fewest enqueued tokens, so batches spread
over the organizations, each with its own enqueued-token limit. A key refused with 401/403
retires for the run: its chunks not yet created go to another key; its created batches cannot
be seen without it, so they are reported and left for a run that has it again.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from .._batches import AsyncBatchClient
from .._limits import Key
from ._batch_journal import ChunkRow
from ._config import RunConfig

__all__ = ["BatchKeys", "batch_keys"]


class BatchKeys:
    """The run's clients by redacted key id, in the order the keys were given."""

    def __init__(self, clients: list[AsyncBatchClient]) -> None:
        if not clients:
            raise ValueError("at least one client")
        self._clients = {client.key.id: client for client in clients}
        self.retired: dict[str, str] = {}  # key id -> why

    @property
    def first(self) -> str:
        """The first key's id: the key of chunks journalled before keys were recorded."""
        return next(iter(self._clients))

    def usable(self) -> list[str]:
        """The ids of the keys not retired, in the order given."""
        return [key_id for key_id in self._clients if key_id not in self.retired]

    def client(self, key_id: str) -> AsyncBatchClient | None:
        """The client of a usable key (``None``: not given to this run, or retired)."""
        return None if key_id in self.retired else self._clients.get(key_id)

    def key_of(self, chunk: ChunkRow) -> str | None:
        """The id of the key ``chunk`` goes through (``None``: not given one yet)."""
        if chunk.key_id is not None:
            return chunk.key_id
        return self.first if chunk.file_id or chunk.batch_id else None

    def client_of(self, chunk: ChunkRow) -> AsyncBatchClient | None:
        """The client of ``chunk``'s key, if it has one and it is usable."""
        key_id = self.key_of(chunk)
        return None if key_id is None else self.client(key_id)

    def why_not(self, key_id: str) -> str:
        """Why a key's batches cannot be looked at."""
        if key_id in self.retired:
            return f"was refused ({self.retired[key_id]})"
        return "is not among the keys given to this run"

    def group(self, key_id: str) -> str:
        """The queue the key's batches count in: its group, else the key itself (a key not
        given to this run is its own)."""
        client = self._clients.get(key_id)
        group = client.key.group if client is not None else None
        return f"group {group}" if group else key_id

    def retire(self, key_id: str, reason: str) -> None:
        self.retired.setdefault(key_id, reason)

    def redact(self, data: bytes) -> bytes:
        """``data`` with every key's secret replaced by its redacted id."""
        for client in self._clients.values():
            if client.key.secret:
                data = client.key.redact_bytes(data)
        return data


@contextlib.asynccontextmanager
async def batch_keys(config: RunConfig, folder: Path) -> AsyncIterator[BatchKeys]:
    """A client for each of the run's keys (one found as the SDK does when none is given)."""
    given: list[str | Key | None] = [*config.keys] or [None]
    clients: list[AsyncBatchClient] = []
    try:
        for key in given:
            clients.append(
                AsyncBatchClient(
                    key,
                    base_url=config.base_url,
                    poll_interval=config.poll_interval,
                    max_attempts=max(1, config.max_retries),
                    workdir=folder,
                )
            )
        yield BatchKeys(clients)
    finally:
        for client in clients:
            await client.aclose()
