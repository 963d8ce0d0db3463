"""The committer of ``omc run``: outcomes go to the journal, and reach the output files only
after the journal's commit, so an output line always has a durable journal row behind it.

Committing every result alone would cost one fsync-free SQLite commit each; waiting for many
delays the output. :class:`CommitPolicy` decides: commit when ``every`` results wait, or when
the oldest has waited ``seconds`` on the injected clock (checked on each new result and on the
display's timer, so a lone result is not held back when no other comes).
"""

from __future__ import annotations

from collections.abc import Callable

from .._clock import Clock
from .._request import Request
from ._files import Outputs
from ._journal import Journal, RetryMode
from ._progress import RunProgress

__all__ = [
    "COMMIT_EVERY",
    "COMMIT_SECONDS",
    "CommitPolicy",
    "Committer",
    "sent_marker",
    "unbilled_marker",
]

COMMIT_EVERY = 256
"""Results committed per journal transaction at most."""
COMMIT_SECONDS = 0.2
"""The longest a result waits for its commit, in seconds (when the run is busy)."""


class CommitPolicy:
    """ "``every`` results or ``seconds`` seconds", on ``clock``."""

    __slots__ = ("_clock", "_last", "every", "seconds")

    def __init__(
        self, clock: Clock, *, every: int = COMMIT_EVERY, seconds: float = COMMIT_SECONDS
    ) -> None:
        if every < 1 or not seconds >= 0:
            raise ValueError(f"every must be >= 1 and seconds >= 0, got {every}, {seconds}")
        self._clock = clock
        self.every = every
        self.seconds = seconds
        self._last = clock.now()

    def due(self, waiting: int) -> bool:
        """Whether to commit now, with ``waiting`` results not yet committed."""
        if waiting <= 0:
            return False
        return waiting >= self.every or self._clock.now() - self._last > self.seconds

    def committed(self) -> None:
        """A commit happened: the time limit counts from now."""
        self._last = self._clock.now()


class Committer:
    """Records outcomes in ``journal`` and writes them to ``outputs`` after each commit that
    ``policy`` calls for."""

    def __init__(self, journal: Journal, outputs: Outputs, policy: CommitPolicy) -> None:
        self._journal = journal
        self._outputs = outputs
        self._policy = policy
        self._pending: list[tuple[bytes, bool]] = []

    def record(
        self,
        custom_id: str,
        line: int,
        data: bytes,
        digest: bytes,
        *,
        failed: bool,
        retryable: bool,
    ) -> None:
        """Record one outcome; it reaches the outputs at the next commit."""
        self._journal.record(
            custom_id, line, data, failed=failed, retryable=retryable, digest=digest
        )
        self._pending.append((data, failed))
        if self._policy.due(len(self._pending)):
            self.flush()

    def tick(self) -> None:
        """Commit if results have waited too long (call it from a timer)."""
        if self._policy.due(len(self._pending)):
            self.flush()

    def flush(self) -> None:
        """Commit what waits, then write it to the outputs."""
        self._journal.commit()
        try:
            self._outputs.write(self._pending)
        finally:
            self._pending.clear()  # committed: a failed write loses nothing the journal lacks
            self._policy.committed()

    def finish(self, retry: RetryMode | None) -> None:
        """At the end of the run: commit what waits, and write the recorded failures that
        ``--retry-failed`` (``retry``) left out of the outputs but this run did not send."""
        self.flush()
        self._outputs.write(self._journal.not_retried(retry))

    def close_outputs(self) -> None:
        """Close the output files (:class:`~openai_multi_client._errors.OutputFileError` if the
        last lines cannot be written)."""
        self._outputs.close()


def sent_marker(journal: Journal, progress: RunProgress) -> Callable[[Request], None]:
    """The engine's ``on_send`` hook: before each attempt of a request leaves, commit it as
    *sent* in the journal (so a crash leaves it "outcome unknown", never "not sent"); a retry
    after an unbilled attempt (:func:`unbilled_marker`) makes it *sent* again."""

    def on_send(request: Request) -> None:
        metadata = request.metadata
        journal.mark_sent(metadata["custom_id"], metadata["line"], metadata["digest"])
        if request.attempt == 1:
            progress.started()

    return on_send


def unbilled_marker(journal: Journal) -> Callable[[Request], None]:
    """The engine's ``on_unbilled`` hook: an attempt ended with an answer known not to be
    billed, so the request is not of unknown outcome (until its next attempt leaves)."""

    def on_unbilled(request: Request) -> None:
        journal.mark_unbilled(request.metadata["custom_id"])

    return on_unbilled
