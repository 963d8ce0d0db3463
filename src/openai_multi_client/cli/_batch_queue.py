"""The enqueued-token queues of ``omc run --batch``: which new chunk may be created now, and
through which key.

OpenAI limits the input tokens enqueued at once per organization and *per model*, so a queue
is a key's group (or the key alone) and a model, and each is counted on its own:
``--batch-max-tokens`` caps each queue's estimated tokens, and a ``token_limit_exceeded``
holds back only the chunks of the queue it came from, until that queue's running batches end.
A chunk of one queue never waits for another's.
"""

from __future__ import annotations

from collections.abc import Iterable

from ._batch_journal import ChunkRow
from ._batch_keys import BatchKeys

__all__ = ["Queue", "QueueGate"]

Queue = tuple[str, str | None]
"""A queue: a key's group (or the key alone) and a model."""


class QueueGate:
    """Per queue: the estimated tokens and the number of its live batches, whether it is held
    (after a ``token_limit_exceeded``), and ``cap`` (``--batch-max-tokens``; ``None``: no
    cap)."""

    def __init__(self, cap: int | None, keys: BatchKeys) -> None:
        self.cap = cap
        self.held: set[Queue] = set()
        self._keys = keys
        self._enqueued: dict[Queue, tuple[int, int]] = {}

    def queue(self, chunk: ChunkRow, key_id: str | None = None) -> Queue:
        """The queue ``chunk``'s batch counts in, through ``key_id`` (default: its own)."""
        key_id = key_id or self._keys.key_of(chunk) or self._keys.first
        return self._keys.group(key_id), chunk.model

    def start(self, chunks: Iterable[ChunkRow]) -> None:
        """Count the live ``chunks``; a held queue with nothing live any more is let go."""
        self._enqueued = {}
        for chunk in chunks:
            if chunk.live:
                self.add(chunk)
        self.held &= set(self._enqueued)

    def admits(self, chunk: ChunkRow, key_id: str) -> bool:
        """Whether ``chunk`` may be created now through ``key_id``: its queue is not held
        and, with a cap, it fits beside what the queue holds (an empty queue takes any)."""
        queue = self.queue(chunk, key_id)
        if queue in self.held:
            return False
        enqueued = self._enqueued.get(queue, (0, 0))[0]
        return self.cap is None or not enqueued or enqueued + chunk.tokens <= self.cap

    def load(self, chunk: ChunkRow, key_id: str) -> tuple[int, int]:
        """What ``chunk``'s queue through ``key_id`` holds: (tokens, batches)."""
        return self._enqueued.get(self.queue(chunk, key_id), (0, 0))

    def add(self, chunk: ChunkRow, key_id: str | None = None) -> None:
        """``chunk``'s batch is created (through ``key_id``): it counts in its queue."""
        queue = self.queue(chunk, key_id)
        tokens, count = self._enqueued.get(queue, (0, 0))
        self._enqueued[queue] = (tokens + chunk.tokens, count + 1)

    def hold(self, chunk: ChunkRow) -> None:
        """``chunk`` was refused for the limit: create nothing more in its queue while its
        queue's batches run."""
        self.held.add(self.queue(chunk))

    def choose(self, chunk: ChunkRow) -> str | None:
        """The key to create ``chunk``'s batch through now (``None``: wait). A chunk whose file
        was uploaded keeps its key while the key is usable; otherwise the usable key whose
        queue admits it and holds the least (tokens, then batches), the first given on a tie."""
        keys = self._keys
        current = keys.key_of(chunk)
        if current is not None and chunk.file_id is not None and keys.client(current):
            return current if self.admits(chunk, current) else None
        open_keys = [key_id for key_id in keys.usable() if self.admits(chunk, key_id)]
        if not open_keys:
            return None
        return min(open_keys, key=lambda key_id: self.load(chunk, key_id))
