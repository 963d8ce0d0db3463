"""The mock's batches: each one's life (``validating -> in_progress -> finalizing ->
completed``, or ``failed``, ``expired``, ``cancelling -> cancelled``) run as a small
discrete-event simulation on the server's clock, so that a test with a virtual clock sees
hours pass at once and in the right order.

Nothing runs in the background: whenever a batch is looked at, every batch is first brought
up to the present, event by event in time order (so the enqueued-token limit sees exactly the
batches enqueued at the moment another one is validated).
"""

from __future__ import annotations

import math
import random
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .batch_input import InputLine, ParsedInput, error, parse_input
from .batch_options import BatchOptions
from .batch_output import Answers, LineAnswerer, draw_faults
from .errors import BadRequest
from .files import FileStore

#: Statuses after which nothing more happens.
FINAL = frozenset({"completed", "failed", "expired", "cancelled"})


@dataclass
class Batch:
    """One batch: what it was created with, its lines once validated, and its times (server
    clock seconds) and results."""

    id: str
    input_file_id: str
    endpoint: str
    completion_window: str
    metadata: dict[str, str] | None
    created: float
    answerer: LineAnswerer
    rng: random.Random
    status: str = "validating"
    times: dict[str, float] = field(default_factory=dict)
    lines: list[InputLine] = field(default_factory=list)
    faults: list[str | None] = field(default_factory=list)
    model: str | None = None
    input_tokens: int = 0
    processed: int = 0  # lines answered when the batch stopped processing
    errors: list[dict[str, Any]] | None = None
    output_file_id: str | None = None
    error_file_id: str | None = None
    counts: tuple[int, int] | None = None  # (completed, failed), once final
    usage: dict[str, int] | None = None
    owner: str = ""  # the organization whose keys see it (and whose queue it counts in)

    @property
    def enqueued(self) -> bool:
        """Validated and not yet finished: its input tokens count against the model's limit."""
        return self.status in ("in_progress", "finalizing", "cancelling")


class BatchStore:
    """Every batch of one server and the rules that move them on."""

    def __init__(
        self,
        options: BatchOptions,
        files: FileStore,
        clock: Callable[[], float],
        epoch: float,
    ) -> None:
        self.options = options
        self._files = files
        self._clock = clock
        self._epoch = epoch
        self._batches: dict[str, Batch] = {}
        self._lock = threading.Lock()

    # ---------------------------------------------------------------- access

    def add(self, batch: Batch) -> None:
        with self._lock:
            self._advance(batch.created)
            self._batches[batch.id] = batch

    def get(self, batch_id: str, owner: str | None = None) -> Batch | None:
        """The batch, if ``owner`` (``None``: any organization) sees it."""
        with self._lock:
            self._advance(self._clock())
            batch = self._batches.get(batch_id)
        return batch if batch is not None and owner in (None, batch.owner) else None

    def all(self, owner: str | None = None) -> list[Batch]:
        """Every batch ``owner`` sees (``None``: all), newest first (as OpenAI lists them)."""
        with self._lock:
            self._advance(self._clock())
            batches = list(reversed(self._batches.values()))
        return [batch for batch in batches if owner in (None, batch.owner)]

    def cancel(self, batch_id: str, owner: str | None = None) -> Batch | str | None:
        """The batch, now ``cancelling``; ``None`` if unknown (to ``owner``); its status if it
        cannot be."""
        with self._lock:
            now = self._clock()
            self._advance(now)
            batch = self._batches.get(batch_id)
            if batch is None or owner not in (None, batch.owner):
                return None
            if batch.status == "cancelling":
                return batch
            if batch.status not in ("validating", "in_progress"):
                return batch.status
            batch.processed = self._processed(batch, now)
            batch.status = "cancelling"
            batch.times["cancelling"] = now
            return batch

    def describe(self, batch: Batch) -> dict[str, Any]:
        """The ``Batch`` object as the API returns it."""
        with self._lock:
            return self._describe(batch)

    # ---------------------------------------------------------------- the simulation

    def _advance(self, now: float) -> None:
        while True:
            due = [
                (when, index, batch)
                for index, batch in enumerate(self._batches.values())
                if (when := self._next_event(batch)) is not None and when <= now
            ]
            if not due:
                return
            when, _, batch = min(due, key=lambda item: (item[0], item[1]))
            self._apply(batch, when)

    def _next_event(self, batch: Batch) -> float | None:
        options = self.options
        expiry = batch.created + options.expire_seconds
        if batch.status == "validating":
            return min(batch.created + options.validation_seconds, expiry)
        if batch.status == "in_progress":
            return min(self._done_at(batch), expiry)
        if batch.status == "finalizing":
            return batch.times["finalizing"] + options.finalizing_seconds
        if batch.status == "cancelling":
            return batch.times["cancelling"] + options.cancel_seconds
        return None

    def _done_at(self, batch: Batch) -> float:
        speed = self.options.lines_per_second
        started = batch.times["in_progress"]
        return started if speed is None else started + len(batch.lines) / speed

    def _processed(self, batch: Batch, now: float) -> int:
        if batch.status != "in_progress":
            return batch.processed
        speed = self.options.lines_per_second
        if speed is None:
            return len(batch.lines)
        done = math.floor((now - batch.times["in_progress"]) * speed + 1e-9)
        return max(0, min(len(batch.lines), done))

    def _apply(self, batch: Batch, when: float) -> None:
        expiry = batch.created + self.options.expire_seconds
        if batch.status in ("validating", "in_progress") and when >= expiry:
            batch.processed = self._processed(batch, when)
            self._finish(batch, "expired", when, "batch_expired")
        elif batch.status == "validating":
            self._validate(batch, when)
        elif batch.status == "in_progress":
            batch.processed = len(batch.lines)
            batch.status = "finalizing"
            batch.times["finalizing"] = when
        elif batch.status == "finalizing":
            self._finish(batch, "completed", when, "batch_expired")
        elif batch.status == "cancelling":
            self._finish(batch, "cancelled", when, "batch_cancelled")

    def _validate(self, batch: Batch, when: float) -> None:
        options = self.options
        stored = self._files.get(batch.input_file_id, batch.owner)
        if stored is None:
            parsed = ParsedInput([], None, [error("file_not_found", "The input file is gone.")])
        else:
            parsed = parse_input(
                stored.content,
                batch.endpoint,
                max_lines=options.max_lines,
                max_bytes=options.max_file_bytes,
            )
        if not parsed.errors:
            batch.model = parsed.model
            batch.input_tokens = parsed.input_tokens
            limit = options.enqueued_token_limits.get(parsed.model or "")
            enqueued = self._enqueued(parsed.model, batch.owner)
            if limit is not None and enqueued + batch.input_tokens > limit:
                message = (
                    f"Enqueued token limit reached for {parsed.model} in organization "
                    f"{batch.owner or 'org-mock'}. Limit: {limit:,} enqueued tokens. Please try "
                    "again once some in_progress batches have been completed."
                )
                parsed = ParsedInput([], parsed.model, [error("token_limit_exceeded", message)])
        if parsed.errors:
            batch.errors = parsed.errors
            batch.status = "failed"
            batch.times["failed"] = when
            batch.counts = (0, 0)
            return
        batch.lines = parsed.lines
        batch.faults = draw_faults(
            len(parsed.lines), options.line_fault_rate, options.line_fault_kinds, batch.rng
        )
        batch.status = "in_progress"
        batch.times["in_progress"] = when

    def _enqueued(self, model: str | None, owner: str) -> int:
        """What ``owner``'s batches of ``model`` hold: the limit is per organization."""
        return sum(
            batch.input_tokens
            for batch in self._batches.values()
            if batch.enqueued and batch.model == model and batch.owner == owner
        )

    def _finish(self, batch: Batch, status: str, when: float, not_run: str) -> None:
        answers = batch.answerer.answer(
            batch.lines,
            batch.faults,
            batch.processed,
            not_run,
            batch.rng,
            shuffle=self.options.shuffle_output,
        )
        self._write_files(batch, answers)
        batch.counts = (len(answers.output), len(answers.errors))
        batch.usage = answers.usage
        batch.status = status
        batch.times[status] = when

    def _write_files(self, batch: Batch, answers: Answers) -> None:
        if answers.output:
            name = f"{batch.id}_output.jsonl"
            content = answers.file(answers.output)
            stored = self._files.add(name, "batch_output", content, owner=batch.owner)
            batch.output_file_id = stored.id
        if answers.errors:
            name = f"{batch.id}_error.jsonl"
            content = answers.file(answers.errors)
            stored = self._files.add(name, "batch_output", content, owner=batch.owner)
            batch.error_file_id = stored.id

    # ---------------------------------------------------------------- the Batch object

    def _at(self, seconds: float | None) -> int | None:
        return None if seconds is None else int(self._epoch + seconds)

    def _describe(self, batch: Batch) -> dict[str, Any]:
        times = batch.times
        final = batch.counts is not None
        if final:
            assert batch.counts is not None
            completed, failed = batch.counts
        else:
            completed, failed = self._running_counts(batch)
        body: dict[str, Any] = {
            "id": batch.id,
            "object": "batch",
            "endpoint": batch.endpoint,
            "model": batch.model,
            "errors": {"object": "list", "data": batch.errors} if batch.errors else None,
            "input_file_id": batch.input_file_id,
            "completion_window": batch.completion_window,
            "status": batch.status,
            "output_file_id": batch.output_file_id,
            "error_file_id": batch.error_file_id,
            "created_at": self._at(batch.created),
            "expires_at": self._at(batch.created + self.options.expire_seconds),
            "request_counts": {
                "total": len(batch.lines),
                "completed": completed,
                "failed": failed,
            },
            "metadata": batch.metadata,
        }
        for name in _TIME_FIELDS:
            body[f"{name}_at"] = self._at(times.get(name))
        body["usage"] = _usage(batch.usage) if batch.usage is not None else None
        return body

    def _running_counts(self, batch: Batch) -> tuple[int, int]:
        done = self._processed(batch, self._clock())
        failed = sum(
            1
            for line, fault in zip(batch.lines[:done], batch.faults[:done], strict=True)
            if fault is not None or isinstance(line.plan, BadRequest)
        )
        return done - failed, failed


_TIME_FIELDS = (
    "in_progress",
    "finalizing",
    "completed",
    "failed",
    "expired",
    "cancelling",
    "cancelled",
)


def _usage(usage: Mapping[str, int]) -> dict[str, Any]:
    return {
        "input_tokens": usage["input_tokens"],
        "input_tokens_details": {"cached_tokens": usage["cached_tokens"]},
        "output_tokens": usage["output_tokens"],
        "output_tokens_details": {"reasoning_tokens": usage["reasoning_tokens"]},
        "total_tokens": usage["input_tokens"] + usage["output_tokens"],
    }
