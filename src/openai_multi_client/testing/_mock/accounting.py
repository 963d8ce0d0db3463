"""What the mock server counts: statuses, keys, endpoints, faults, and each answer sent.

A :class:`Ledger` is shared by the server's handlers (in its loop) and the test reading it (in
any thread), so every access takes its lock and readers get snapshots.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Ledger", "ServerStats", "canonical_hash"]


def canonical_hash(body: Mapping[str, Any]) -> str:
    """The key of ``MockOpenAIServer.answer_counts``: sha256 of the body as JSON with sorted
    keys, so the same request hashes the same however its keys were ordered."""
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass
class ServerStats:
    """What the server has seen since it was created or since :meth:`~MockOpenAIServer.reset_stats`.

    ``total_requests`` counts every request on arrival (image downloads excepted);
    ``status_counts`` the status codes sent (a connection reset or a hang sends none);
    ``requests_by_key`` requests per API key as presented (``""`` when none);
    ``requests_by_endpoint`` requests per endpoint (``"chat.completions"``, ``"embeddings"``,
    ..., ``"models"``, ``"unknown"``); ``faults_by_kind`` injected faults; ``rate_limited_by_type``
    429 ``rate_limit_exceeded`` responses per type (``"requests"`` or ``"tokens"``);
    ``answered`` complete 200 answers sent (see ``MockOpenAIServer.answer_counts``).
    """

    total_requests: int = 0
    answered: int = 0
    status_counts: dict[int, int] = field(default_factory=dict)
    requests_by_key: dict[str, int] = field(default_factory=dict)
    requests_by_endpoint: dict[str, int] = field(default_factory=dict)
    faults_by_kind: dict[str, int] = field(default_factory=dict)
    rate_limited_by_type: dict[str, int] = field(default_factory=dict)

    def copy(self) -> ServerStats:
        """An independent snapshot."""
        return ServerStats(
            total_requests=self.total_requests,
            answered=self.answered,
            status_counts=dict(self.status_counts),
            requests_by_key=dict(self.requests_by_key),
            requests_by_endpoint=dict(self.requests_by_endpoint),
            faults_by_kind=dict(self.faults_by_kind),
            rate_limited_by_type=dict(self.rate_limited_by_type),
        )


def _bump(counts: dict[Any, int], name: object) -> None:
    counts[name] = counts.get(name, 0) + 1


class Ledger:
    """The counters of one server and the answer count of each distinct request body."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._stats = ServerStats()
        self._answers: dict[str, int] = {}

    def stats(self) -> ServerStats:
        with self._lock:
            return self._stats.copy()

    def answer_counts(self) -> dict[str, int]:
        with self._lock:
            return dict(self._answers)

    def times_answered(self, body: Mapping[str, Any]) -> int:
        digest = canonical_hash(body)
        with self._lock:
            return self._answers.get(digest, 0)

    def answered_more_than_once(self) -> int:
        with self._lock:
            return sum(1 for count in self._answers.values() if count >= 2)

    def reset(self) -> None:
        with self._lock:
            self._stats = ServerStats()
            self._answers = {}

    def arrival(self, key: str, endpoint: str) -> None:
        """A request arrived, with ``key`` (as presented) for ``endpoint``."""
        with self._lock:
            self._stats.total_requests += 1
            _bump(self._stats.requests_by_key, key)
            _bump(self._stats.requests_by_endpoint, endpoint)

    def status(self, status: int, *, fault: str | None = None, limited: str | None = None) -> None:
        """A response with ``status`` was sent (with the fault or the 429's limit type)."""
        with self._lock:
            _bump(self._stats.status_counts, status)
            if fault is not None:
                _bump(self._stats.faults_by_kind, fault)
            if limited is not None:
                _bump(self._stats.rate_limited_by_type, limited)

    def silent_fault(self, kind: str) -> None:
        """A fault that sends no status (a reset or a hang)."""
        with self._lock:
            _bump(self._stats.faults_by_kind, kind)

    def answer(self, body: Mapping[str, Any]) -> str:
        """Count a complete answer to ``body``; returns the digest to take it back with."""
        digest = canonical_hash(body)
        with self._lock:
            self._stats.answered += 1
            _bump(self._answers, digest)
        return digest

    def take_back(self, digest: str) -> None:
        """Uncount an answer the client never got (it had disconnected)."""
        with self._lock:
            count = self._answers.get(digest, 0)
            if count > 0:  # reset() may have run meanwhile
                self._stats.answered -= 1
                if count == 1:
                    del self._answers[digest]
                else:
                    self._answers[digest] = count - 1
