"""The enqueued-token queues of ``omc run --batch``: which new chunk may be created now.

OpenAI limits the input tokens enqueued at once *per model* (and per organization: see
:func:`queue_of`), so each queue is counted on its own: ``--batch-max-tokens`` caps each
queue's estimated tokens, and a ``token_limit_exceeded`` holds back only the chunks of the
queue it came from, until that queue's running batches end. A chunk of one queue never waits
for another's.
"""

from __future__ import annotations

from collections.abc import Iterable

from ._batch_journal import ChunkRow

__all__ = ["Queue", "QueueGate", "queue_of"]

Queue = str | None
"""A queue: the model of a chunk."""


def queue_of(chunk: ChunkRow) -> Queue:
    """The queue whose limit ``chunk``'s batch counts against."""
    return chunk.model


class QueueGate:
    """Per queue: the estimated tokens of its live batches, whether it is held (after a
    ``token_limit_exceeded``), and ``cap`` (``--batch-max-tokens``; ``None``: no cap)."""

    def __init__(self, cap: int | None) -> None:
        self.cap = cap
        self.held: set[Queue] = set()
        self._enqueued: dict[Queue, int] = {}

    def start(self, chunks: Iterable[ChunkRow]) -> None:
        """Count the live ``chunks``; a held queue with nothing live any more is let go."""
        self._enqueued = {}
        for chunk in chunks:
            if chunk.live:
                queue = queue_of(chunk)
                self._enqueued[queue] = self._enqueued.get(queue, 0) + chunk.tokens
        self.held &= set(self._enqueued)

    def admits(self, chunk: ChunkRow) -> bool:
        """Whether ``chunk`` may be created now: its queue is not held and, with a cap, it
        fits beside what its queue holds (a queue holding nothing takes any chunk)."""
        queue = queue_of(chunk)
        if queue in self.held:
            return False
        enqueued = self._enqueued.get(queue, 0)
        return self.cap is None or not enqueued or enqueued + chunk.tokens <= self.cap

    def add(self, chunk: ChunkRow) -> None:
        """``chunk``'s batch is created: its tokens count in its queue."""
        queue = queue_of(chunk)
        self._enqueued[queue] = self._enqueued.get(queue, 0) + chunk.tokens

    def hold(self, chunk: ChunkRow) -> None:
        """``chunk`` was refused for the limit: create nothing more in its queue while its
        queue's batches run."""
        self.held.add(queue_of(chunk))
