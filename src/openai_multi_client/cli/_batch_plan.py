"""Planning the batch files of ``omc run --batch``: the input's lines that still need an
answer go into chunk files next to the journal, one endpoint and one model each, within the
line, byte and token caps, and the chunks with their lines are committed in one transaction
before anything is uploaded.

The input is read again for each round (first submission, then resubmissions of lines that
failed for a temporary reason), line by line: memory does not grow with the file.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Final

from .._json import dumps_record
from .._tokens import CharacterEstimator
from ._batch import BadLine, BatchRequest, read_batch
from ._batch_journal import BatchJournal
from ._journal import request_digest
from ._seen import DiskSeenIds

__all__ = ["MAX_FILE_BYTES", "Caps", "Planner"]

MAX_FILE_BYTES: Final = 200 * 1024 * 1024
"""The Batch API's largest input file."""
_LOOKUP = 256


@dataclass
class Caps:
    """What one chunk may hold: lines, bytes, estimated tokens (``None``: no cap), and per
    model a smaller line cap learned from ``token_limit_exceeded``. ``estimate``: estimate
    each chunk's tokens even without a cap (a budget needs them)."""

    lines: int
    bytes: int = MAX_FILE_BYTES
    tokens: int | None = None
    model_lines: dict[str | None, int] = field(default_factory=dict)
    estimate: bool = False

    def lines_for(self, model: str | None) -> int:
        return min(self.lines, self.model_lines.get(model, self.lines))


@dataclass
class _Open:
    """A chunk being written."""

    chunk_no: int
    path: Path
    endpoint: str
    model: str | None
    file: IO[bytes]
    lines: int = 0
    size: int = 0
    tokens: int = 0


class Planner:
    """Writes the pending lines of ``input_path`` into new chunks under ``folder``."""

    def __init__(
        self, journal: BatchJournal, input_path: str, folder: Path, caps: Caps, retry: str
    ) -> None:
        self._journal = journal
        self._input = input_path
        self._folder = folder
        self.caps = caps
        self._retry = retry  # SQL selecting recorded failures to send again
        self._estimate = CharacterEstimator()

    def plan(
        self, max_lines: int | None, on_bad: Callable[[BadLine], None] | None
    ) -> tuple[int, bool]:
        """Commit new chunks holding at most ``max_lines`` pending lines (``None``: all);
        ``on_bad`` hears of bad lines. Returns the lines planned and whether lines were left
        out for ``max_lines``."""
        self._folder.mkdir(parents=True, exist_ok=True)
        state = _State(self._journal.next_chunk_no())
        capped = False
        seen = DiskSeenIds()
        try:
            with self._journal.transaction(), open(self._input, "rb") as source:
                batch: list[BatchRequest] = []
                for item in read_batch(source, seen=seen):
                    if isinstance(item, BadLine):
                        if on_bad is not None:
                            on_bad(item)
                        continue
                    batch.append(item)
                    if len(batch) >= _LOOKUP:
                        capped = self._take(batch, state, max_lines) or capped
                        batch = []
                capped = self._take(batch, state, max_lines) or capped
                for group in list(state.open.values()):
                    self._close(state, group)
        finally:
            seen.close()
            for group in state.open.values():
                group.file.close()
        return state.planned, capped

    def _take(self, batch: list[BatchRequest], state: _State, max_lines: int | None) -> bool:
        if not batch:
            return False
        pending = self._journal.pending_filter([item.custom_id for item in batch], self._retry)
        rows = []
        capped = False
        for item in batch:
            if item.custom_id not in pending:
                continue
            if max_lines is not None and state.planned >= max_lines:
                capped = True
                break
            group, pos = self._place(item, state)
            digest = request_digest(item.url, item.body)
            attempts = pending[item.custom_id] + 1
            rows.append((item.custom_id, item.line, digest, group.chunk_no, pos, attempts))
            state.planned += 1
        self._journal.add_lines(rows)
        return capped

    def _place(self, item: BatchRequest, state: _State) -> tuple[_Open, int]:
        """Write ``item`` into its group's open chunk (a new one when the caps say so)."""
        model = item.body.get("model")
        key = (item.url, model if isinstance(model, str) else None)
        record = {"custom_id": item.custom_id, "method": "POST", "url": item.url}
        data = dumps_record({**record, "body": item.body}) + b"\n"
        wanted = self.caps.tokens is not None or self.caps.estimate
        tokens = self._estimate(item.body) if wanted else 0
        group = state.open.get(key)
        if group is not None and (
            group.lines >= self.caps.lines_for(key[1])
            or group.size + len(data) > self.caps.bytes
            or (self.caps.tokens is not None and group.tokens + tokens > self.caps.tokens)
        ):
            self._close(state, group)
            group = None
        if group is None:
            chunk_no = state.next_no
            state.next_no += 1
            path = self._folder / f"chunk-{chunk_no:05d}.jsonl"
            group = _Open(chunk_no, path, key[0], key[1], path.open("wb"))
            state.open[key] = group
        group.file.write(data)
        group.lines += 1
        group.size += len(data)
        group.tokens += tokens
        return group, group.lines

    def _close(self, state: _State, group: _Open) -> None:
        group.file.close()
        del state.open[(group.endpoint, group.model)]
        self._journal.add_chunk(
            group.chunk_no, str(group.path), group.endpoint, group.model, group.lines, group.tokens
        )


class _State:
    def __init__(self, next_no: int) -> None:
        self.next_no = next_no
        self.open: dict[tuple[str, str | None], _Open] = {}
        self.planned = 0
