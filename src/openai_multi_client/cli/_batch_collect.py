"""Collecting a finished batch of ``omc run --batch``: its output and error files read line by
line, each line matched by ``custom_id`` to the chunk that sent it and written as an online run
would write it; retryable failures and lines the batch never ran wait for a new chunk (at most
``--max-retries`` batches per line); a batch refused as a whole is explained in one line.

Outcomes reach the journal in transactions of 2,048 lines, then the output files; a kill in the
middle of a file only repeats its download (lines already final are skipped).
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from .._batches import AsyncBatchClient, BatchInfo, BatchResult
from .._errors import APIStatusError
from ._batch import error_line, output_line
from ._batch_journal import BatchJournal, ChunkRow, LineRow, Outcome
from ._batch_keys import BatchKeys
from ._batch_plan import Caps
from ._batch_queue import QueueGate
from ._files import Outputs
from ._progress import RunProgress

__all__ = ["Collector"]

_SETTLE = 2048  # lines per journal transaction (a kill repeats at most the download)
_TOKEN_LIMIT = "token_limit_exceeded"


def line_output(result: BatchResult) -> bytes:
    """The output line of a Batch API result, the same as an online run writes."""
    response = result.record.get("response")
    if isinstance(response, Mapping) and isinstance(response.get("status_code"), int):
        return output_line(
            result.custom_id,
            status_code=int(response["status_code"]),
            request_id=response.get("request_id"),
            body=response.get("body"),
        )
    problem = result.record.get("error")
    problem = problem if isinstance(problem, Mapping) else {}
    return error_line(
        result.custom_id,
        code=str(problem.get("code") or "batch_error"),
        message=str(problem.get("message") or "the batch gave no answer for this line"),
    )


def _error_class(result: BatchResult) -> str | None:
    error = result.error
    if error is None:
        return None
    code = getattr(error, "code", None)
    return (
        code
        if isinstance(code, str) and not isinstance(error, APIStatusError)
        else type(error).__name__
    )


class Collector:
    """Turns finished batches into final outcomes, outputs and lines to resubmit."""

    def __init__(
        self,
        journal: BatchJournal,
        keys: BatchKeys,
        outputs: Outputs,
        progress: RunProgress,
        *,
        max_attempts: int,
        caps: Caps,
        folder: Path,
        gate: QueueGate,
    ) -> None:
        self._journal = journal
        self._keys = keys
        self._outputs = outputs
        self._progress = progress
        self._max_attempts = max_attempts
        self._caps = caps
        self._folder = folder
        self.gate = gate  # a token limit holds back the chunks of its queue
        self.final = False  # cancelling: lines not run are final, not resubmitted
        self.failed = 0
        self.expired = 0

    async def collect(self, chunk: ChunkRow, info: BatchInfo, *, others_live: bool) -> None:
        """Take the results of ``chunk``'s finished batch ``info`` (``others_live``: batches of
        its queue still run)."""
        if info.status == "failed":
            over = bool(info.problems) and info.problems[0].code == _TOKEN_LIMIT
            if over and not self.final and (others_live or chunk.lines > 1):
                self._over_token_limit(chunk, others_live=others_live)
            else:
                self._refused(chunk, info)
            return
        if info.status == "expired":
            self.expired += 1
        for file_id, column, done in (
            (info.output_file_id, "output_done", chunk.output_done),
            (info.error_file_id, "error_done", chunk.error_done),
        ):
            if file_id and not done:
                await self._consume(chunk, file_id)
                self._journal.file_consumed(chunk.chunk_no, column)
        left = list(self._journal.chunk_lines(chunk.chunk_no))
        again = [row.custom_id for row in left if self._may_retry(row)]
        missing = [
            self._outcome(row, _missing(row.custom_id), failed=True, retryable=True)
            for row in left
            if not self._may_retry(row)
        ]
        self._settle(missing, ())
        self._journal.finish(chunk.chunk_no, release=again)

    def _may_retry(self, row: LineRow) -> bool:
        return not self.final and row.attempts < self._max_attempts

    async def _consume(self, chunk: ChunkRow, file_id: str) -> None:
        client = self._keys.client_of(chunk)
        assert client is not None  # polled through it just before
        path = await client.download(file_id, self._folder / f"{file_id}.jsonl")
        results: list[BatchResult] = []
        for result in AsyncBatchClient.read_results(path):
            results.append(result)
            if len(results) >= _SETTLE:
                self._take(chunk, results)
                results = []
        self._take(chunk, results)
        path.unlink(missing_ok=True)

    def _take(self, chunk: ChunkRow, results: list[BatchResult]) -> None:
        rows = self._journal.lines_of(chunk.chunk_no, [result.custom_id for result in results])
        outcomes: list[Outcome] = []
        again: list[str] = []
        for result in results:
            row = rows.pop(result.custom_id, None)
            if row is None:
                continue  # final already (a repeated download), or not this chunk's line
            if result.retryable and self._may_retry(row):
                again.append(row.custom_id)
                continue
            outcome = self._outcome(row, line_output(result), result.failed, result.retryable)
            outcomes.append(outcome)
            body = result.response if isinstance(result.response, Mapping) else {}
            self._progress.finished(
                ok=not result.failed,
                error_class=_error_class(result),
                model=chunk.model,
                usage=body.get("usage") if isinstance(body.get("usage"), Mapping) else None,
            )
        self._settle(outcomes, again)

    def _outcome(self, row: LineRow, data: bytes, failed: bool, retryable: bool) -> Outcome:
        """An outcome to record, its line scrubbed of the key (a server may quote it back)."""
        if failed:
            self.failed += 1
        return Outcome(row, self._keys.redact(data), failed, retryable)

    def _settle(self, outcomes: list[Outcome], again: Iterable[str]) -> None:
        self._journal.settle(outcomes, list(again))
        self._outputs.write((outcome.data, outcome.failed) for outcome in outcomes)

    def _refused(self, chunk: ChunkRow, info: BatchInfo) -> None:
        """A batch refused as a whole: one line naming the code and the input line; its lines
        go to the error output (sending them again would be refused again)."""
        problem = info.problems[0] if info.problems else None
        code = (problem.code if problem else None) or "batch_failed"
        where = ""
        if problem is not None and problem.line is not None:
            line = self._journal.line_at(chunk.chunk_no, problem.line)
            where = f" at input line {line}" if line is not None else f" at line {problem.line}"
        told = f": {problem.message}" if problem and problem.message else ""
        more = f" (and {len(info.problems) - 1} more)" if len(info.problems) > 1 else ""
        message = f"batch {info.id} failed: {code}{where}{told}{more}"
        print(f"omc run: {message}", file=sys.stderr)
        outcomes = []
        for row in self._journal.chunk_lines(chunk.chunk_no):
            data = error_line(row.custom_id, code=code, message=message, line=row.line)
            outcomes.append(self._outcome(row, data, failed=True, retryable=False))
            self._progress.finished(ok=False, error_class=code, model=chunk.model, usage=None)
        self._settle(outcomes, ())
        self._journal.finish(chunk.chunk_no)

    def _over_token_limit(self, chunk: ChunkRow, *, others_live: bool) -> None:
        """``token_limit_exceeded`` is no failure of the lines: they wait until the running
        batches of its queue end; a chunk over the limit alone goes again in halves."""
        self.gate.hold(chunk)
        if not others_live:
            self._caps.model_lines[chunk.model] = max(1, chunk.lines // 2)
        ids = [row.custom_id for row in self._journal.chunk_lines(chunk.chunk_no)]
        self._journal.finish(chunk.chunk_no, release=ids, undo_attempt=True)
        print(
            f"omc run: chunk {chunk.chunk_no} is over the enqueued-token limit of "
            f"{chunk.model}; it goes again when the running batches end"
            + ("" if others_live else f", in chunks of {max(1, chunk.lines // 2)} lines"),
            file=sys.stderr,
        )


def _missing(custom_id: str) -> bytes:
    return error_line(
        custom_id,
        code="missing_result",
        message="the batch ended without a result for this line in its output or error file",
    )


def usage_of(chunks: Iterable[ChunkRow]) -> list[tuple[str | None, Any]]:
    """(model, usage) of each batch, for the cost at batch prices."""
    return [(chunk.model, chunk.usage) for chunk in chunks if chunk.usage]
