""":class:`BatchJob`: the batches of one submission, polled to the end, their lines matched by
``custom_id``; lines worth another try go into new batches (at most ``max_attempts`` in all per
line); final outcomes are appended to a results file on disk, so memory stays flat."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Protocol

from .. import _json
from .._clock import Clock
from .._errors import BatchFailedError
from .outcome import BatchResult, classify
from .prices import batch_cost
from .records import BatchChunk, BatchInfo, UploadedFile

if TYPE_CHECKING:
    from .._prices import Price


class BatchSteps(Protocol):
    """What a job needs of its client (:class:`~.client.AsyncBatchClient`): the steps, and
    how often and how many times to try."""

    clock: Clock
    poll_interval: float
    max_attempts: int

    async def upload(self, chunk: BatchChunk) -> UploadedFile: ...

    async def create(
        self, file_id: str, endpoint: str, *, run_token: str | None = None, chunk: str = ""
    ) -> BatchInfo: ...

    async def retrieve(self, batch_id: str) -> BatchInfo: ...

    async def cancel(self, batch_id: str) -> BatchInfo: ...

    async def download(self, file_id: str, path: str | Path) -> Path: ...

    def read_results(self, path: str | Path, attempts: int = 1) -> Iterator[BatchResult]: ...


logger = logging.getLogger("openai_multi_client")

_TOKEN_LIMIT = "token_limit_exceeded"


@dataclass
class Submission:
    """One chunk in one batch: the attempt it is for its lines, and the batch as last seen."""

    chunk: BatchChunk
    attempt: int
    info: BatchInfo


def explain(info: BatchInfo, chunk: BatchChunk) -> BatchFailedError:
    """The error of a batch that failed validation, naming the code and the input line."""
    problem = info.problems[0] if info.problems else None
    if problem is None:
        return BatchFailedError(f"batch {info.id} failed without a reason", batch_id=info.id)
    where = ""
    if problem.line is not None:
        line = chunk.input_line(problem.line)
        where = f" at input line {line}" if line is not None else f" at line {problem.line}"
    more = f" (and {len(info.problems) - 1} more)" if len(info.problems) > 1 else ""
    told = f": {problem.message}" if problem.message else ""
    message = f"batch {info.id} failed: {problem.code}{where}{told}{more}"
    return BatchFailedError(message, batch_id=info.id, problems=info.problems)


class BatchJob:
    """A submission's batches; made by :meth:`AsyncBatchClient.submit`."""

    def __init__(self, client: BatchSteps, run_token: str, directory: Path) -> None:
        self._client = client
        self.run_token = run_token
        self._directory = directory
        self._queue: list[tuple[BatchChunk, int]] = []  # to create
        self._held: list[tuple[BatchChunk, int]] = []  # over the enqueued-token limit
        self.live: dict[str, Submission] = {}
        self.finished: list[BatchInfo] = []
        self._results_path = directory / "results.jsonl"
        self._results_path.touch()
        self._cancelled = False
        self._serial = 0
        self.succeeded = 0
        self.failed = 0
        self.spent: list[tuple[str | None, Mapping[str, Any] | None]] = []

    def __repr__(self) -> str:
        return (
            f"<BatchJob {self.run_token} live={len(self.live)} "
            f"succeeded={self.succeeded} failed={self.failed}>"
        )

    @property
    def done(self) -> bool:
        return not (self._queue or self._held or self.live)

    async def start(self, chunks: list[BatchChunk]) -> None:
        self._queue.extend((chunk, 1) for chunk in chunks)
        await self._create_queued()

    async def _create_queued(self) -> None:
        while self._queue:
            chunk, attempt = self._queue.pop(0)
            self._serial += 1
            uploaded = await self._client.upload(chunk)
            info = await self._client.create(
                uploaded.id, chunk.endpoint, run_token=self.run_token, chunk=str(self._serial)
            )
            self.live[info.id] = Submission(chunk, attempt, info)

    async def poll(self) -> None:
        """Look at every live batch once; collect those that ended."""
        for batch_id, submission in list(self.live.items()):
            info = await self._client.retrieve(batch_id)
            submission.info = info
            if info.done:
                del self.live[batch_id]
                self.finished.append(info)
                self.spent.append((submission.chunk.model, info.raw.get("usage")))
                await self._collect(submission)
        if not self.live and self._held:
            self._release_held()
        await self._create_queued()

    async def wait(self) -> None:
        """Poll until every line has its final outcome (raises :class:`BatchFailedError` for
        a batch whose input was refused)."""
        while not self.done:
            if self.live:
                await self._client.clock.sleep(self._client.poll_interval)
            await self.poll()

    async def cancel(self) -> None:
        """Cancel the live batches; their partial results are collected by :meth:`wait`, and
        the lines they did not run are not sent again."""
        self._cancelled = True
        self._queue.clear()
        self._held.clear()
        for batch_id, submission in self.live.items():
            if submission.info.status in ("validating", "in_progress"):
                submission.info = await self._client.cancel(batch_id)

    def _release_held(self) -> None:
        """Resubmit chunks refused for the token limit; one refused while nothing else ran is
        over the limit alone, so it goes in halves."""
        for chunk, attempt in self._held:
            self._queue.append((chunk, attempt))
        self._held.clear()

    async def _collect(self, submission: Submission) -> None:
        info, chunk = submission.info, submission.chunk
        if info.status == "failed":
            over_limit = info.problems and info.problems[0].code == _TOKEN_LIMIT
            if not over_limit or self._cancelled or (chunk.line_count == 1 and not self.live):
                raise explain(info, chunk)
            self._hold(chunk, submission.attempt)
            return
        seen: set[str] = set()
        retry: set[str] = set()
        with self._results_path.open("ab") as out:
            for file_id in (info.output_file_id, info.error_file_id):
                if file_id is not None:
                    await self._read_file(file_id, submission.attempt, out, seen, retry)
            missing = [custom_id for custom_id in chunk.custom_ids if custom_id not in seen]
            if missing and (self._cancelled or submission.attempt >= self._client.max_attempts):
                for custom_id in missing:  # neither file mentions them, and no tries are left
                    self._record(classify(_missing(custom_id), submission.attempt), out)
            else:
                retry.update(missing)
        if retry:
            self._queue.append((self._subset(chunk, retry), submission.attempt + 1))

    async def _read_file(
        self, file_id: str, attempt: int, out: IO[bytes], seen: set[str], retry: set[str]
    ) -> None:
        path = await self._client.download(file_id, self._directory / f"{file_id}.jsonl")
        for result in self._client.read_results(path, attempt):
            seen.add(result.custom_id)
            again = result.retryable and not self._cancelled
            if again and attempt < self._client.max_attempts:
                retry.add(result.custom_id)
            else:
                self._record(result, out)
        path.unlink()

    def _hold(self, chunk: BatchChunk, attempt: int) -> None:
        if self.live or chunk.line_count == 1:
            self._held.append((chunk, attempt))
            return
        half = chunk.line_count // 2
        self._held.append((self._subset(chunk, set(chunk.custom_ids[:half])), attempt))
        self._held.append((self._subset(chunk, set(chunk.custom_ids[half:])), attempt))

    def _subset(self, chunk: BatchChunk, ids: set[str]) -> BatchChunk:
        self._serial += 1
        path = self._directory / f"chunk-{self._serial:05d}.jsonl"
        kept_ids: list[str] = []
        numbers: list[int] = []
        size = 0
        with chunk.path.open("rb") as source, path.open("wb") as target:
            for line, custom_id, number in zip(
                source, chunk.custom_ids, chunk.line_numbers, strict=False
            ):
                if custom_id in ids:
                    target.write(line)
                    kept_ids.append(custom_id)
                    numbers.append(number)
                    size += len(line)
        return BatchChunk(path, chunk.endpoint, chunk.model, tuple(kept_ids), tuple(numbers), size)

    def _record(self, result: BatchResult, out: IO[bytes]) -> None:
        out.write(_json.dumps({"attempts": result.attempts, "record": result.record}) + b"\n")
        if result.failed:
            self.failed += 1
        else:
            self.succeeded += 1

    def estimated_cost(self, prices: Mapping[str, Price] | None = None) -> float | None:
        """US dollars for the batches finished so far, from their ``usage``, at batch prices
        (default: half the built-in online table; see :func:`~.prices.batch_prices`)."""
        return batch_cost(self.spent, prices)

    # ---------------------------------------------------------------- results

    def iter_results(self) -> Iterator[BatchResult]:
        """Every final outcome so far, read from disk (in the order they were collected)."""
        with self._results_path.open("rb") as file:
            for line in file:
                entry = _json.loads(line)
                yield classify(entry["record"], entry["attempts"])

    async def results(self) -> AsyncIterator[BatchResult]:
        """Wait for the end, then yield every line's outcome (one per ``custom_id``)."""
        await self.wait()
        for result in self.iter_results():
            yield result


def _missing(custom_id: str) -> dict[str, object]:
    message = "the batch ended without a result for this line in its output or error file"
    return {
        "id": None,
        "custom_id": custom_id,
        "response": None,
        "error": {"code": "missing_result", "message": message},
    }
