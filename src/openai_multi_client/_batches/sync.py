""":class:`BatchClient`: the Batch API from synchronous code, a portal onto one event loop
thread running an :class:`~.client.AsyncBatchClient` (not a second implementation)."""

from __future__ import annotations

from collections.abc import Iterator
from types import TracebackType
from typing import Any

from .._clock import LoopClock
from .._portal import Portal
from .client import AsyncBatchClient, Source
from .job import BatchJob
from .outcome import BatchResult
from .records import BatchInfo


class SyncBatchJob:
    """A submission's batches, from synchronous code (see :class:`~.job.BatchJob`)."""

    def __init__(self, portal: Portal, job: BatchJob) -> None:
        self._portal = portal
        self.job = job

    @property
    def run_token(self) -> str:
        return self.job.run_token

    def wait(self) -> None:
        """Block until every line has its final outcome."""
        self._portal.call(self.job.wait)

    def results(self) -> Iterator[BatchResult]:
        """Wait, then yield every line's outcome, read from disk."""
        self.wait()
        return self.job.iter_results()

    def cancel(self) -> None:
        self._portal.call(self.job.cancel)

    def __repr__(self) -> str:
        return repr(self.job)


class BatchClient:
    """The OpenAI Batch API (half the online price) from synchronous code; takes the same
    arguments as :class:`AsyncBatchClient`. Close it (or use ``with``) to stop its loop."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._client = AsyncBatchClient(*args, **kwargs)
        # uvloop's loop when installed, unless a clock of the caller's drives time (._loops).
        fast = type(self._client.clock) is LoopClock
        self._portal = Portal("omc-batch-loop", fast=fast)

    @property
    def client(self) -> AsyncBatchClient:
        """The async client underneath (its steps are awaitable in the portal's loop)."""
        return self._client

    def submit(self, source: Source, *, run_token: str | None = None) -> SyncBatchJob:
        """Split, upload and create; returns the job to wait on (see
        :meth:`AsyncBatchClient.submit`)."""

        async def submit() -> BatchJob:
            return await self._client.submit(source, run_token=run_token)

        return SyncBatchJob(self._portal, self._portal.call(submit))

    def retrieve(self, batch_id: str) -> BatchInfo:
        return self._portal.call(self._client.retrieve, batch_id)

    def cancel(self, batch_id: str) -> BatchInfo:
        return self._portal.call(self._client.cancel, batch_id)

    def find(self, run_token: str, chunk: str | None = None) -> list[BatchInfo]:
        return self._portal.call(self._client.find, run_token, chunk)

    def close(self) -> None:
        self._portal.shut_down(self._client.aclose, 10.0)

    def __enter__(self) -> BatchClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"BatchClient({self._client.base_url!r}, key={self._client.key.id!r})"
