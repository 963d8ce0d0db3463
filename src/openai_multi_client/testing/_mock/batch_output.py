"""The answers of a batch's lines, as the lines of its output and error files.

Each processed line is answered by the same answer builders the online endpoints use; a line
fault (500, 429) or an invalid body (400) is a line with that status in the error file; a line
never processed (the batch expired or was cancelled first) is a line with ``error.code``
``batch_expired`` or ``batch_cancelled`` in the error file.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from ... import _json
from .accounting import Ledger
from .answers.context import Context
from .batch_input import InputLine
from .endpoints import Endpoint
from .errors import BadRequest, bad_request_body, error_body
from .faults import status_fault
from .validation import Plan, model_of

_RATE_LIMITED: Final = error_body(
    "Rate limit reached while processing this batch request. Retry it later.",
    "requests",
    None,
    "rate_limit_exceeded",
)
_NOT_RUN: Final = {
    "batch_expired": "This request could not be executed before the completion window expired.",
    "batch_cancelled": "This request was not executed because the batch was cancelled.",
}


def draw_faults(
    count: int, rate: float, kinds: Sequence[str], rng: random.Random
) -> list[str | None]:
    """The fault of each of ``count`` lines (``None``: answered normally)."""
    if rate <= 0:
        return [None] * count
    return [rng.choice(kinds) if rng.random() < rate else None for _ in range(count)]


@dataclass
class Answers:
    """The output and error file contents of a batch, and what its lines used."""

    output: list[bytes] = field(default_factory=list)
    errors: list[bytes] = field(default_factory=list)
    usage: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys(
            ("input_tokens", "cached_tokens", "output_tokens", "reasoning_tokens"), 0
        )
    )

    def file(self, lines: list[bytes]) -> bytes:
        return b"".join(line + b"\n" for line in lines)


class LineAnswerer:
    """Answers lines of one batch; ids come from the server's ``id_prefix`` and a counter."""

    def __init__(
        self,
        endpoint: Endpoint,
        *,
        id_prefix: str,
        url: str,
        ledger: Ledger,
        embedding_dimensions: int | None,
        sequence: Iterator[int],
    ) -> None:
        self._endpoint = endpoint
        self._id_prefix = id_prefix
        self._url = url
        self._ledger = ledger
        self._dimensions = embedding_dimensions
        self._sequence = sequence

    def answer(
        self,
        lines: Sequence[InputLine],
        faults: Sequence[str | None],
        processed: int,
        not_run: str,
        rng: random.Random,
        *,
        shuffle: bool,
    ) -> Answers:
        """Answer the first ``processed`` lines; the others get ``not_run``'s error."""
        answers = Answers()
        for line, fault in zip(lines[:processed], faults[:processed], strict=True):
            self._answer_line(line, fault, answers)
        message = _NOT_RUN[not_run]
        for line in lines[processed:]:
            record = self._record(line, None, {"code": not_run, "message": message})
            answers.errors.append(_json.dumps(record))
        if shuffle:
            rng.shuffle(answers.output)
            rng.shuffle(answers.errors)
        return answers

    def _answer_line(self, line: InputLine, fault: str | None, answers: Answers) -> None:
        sequence = next(self._sequence)
        request_id = f"req_{self._id_prefix}b{sequence:08x}"
        status, body = self._response(line, fault, sequence, answers)
        response = {"status_code": status, "request_id": request_id, "body": body}
        record = _json.dumps(self._record(line, response, None))
        (answers.output if status == 200 else answers.errors).append(record)

    def _response(
        self, line: InputLine, fault: str | None, sequence: int, answers: Answers
    ) -> tuple[int, Any]:
        plan = line.plan
        try:
            model = model_of(line.body, self._endpoint.default_model)
        except BadRequest as bad:
            plan = bad
        if isinstance(plan, BadRequest):
            return 400, _json.loads(bad_request_body(plan))
        if fault == "429":
            return 429, _json.loads(_RATE_LIMITED)
        if fault is not None:
            status, content, _ = status_fault(fault)
            return status, _json.loads(content)
        return 200, self._build(line, model, plan, sequence, answers)

    def _build(
        self, line: InputLine, model: str, plan: Plan, sequence: int, answers: Answers
    ) -> Any:
        context = Context(model, plan, sequence, self._id_prefix, self._url, self._dimensions)
        body = self._endpoint.build(line.body, context)
        self._ledger.answer(line.body)
        _add_usage(answers.usage, body.get("usage"))
        return body

    def _record(
        self, line: InputLine, response: dict[str, Any] | None, error: dict[str, Any] | None
    ) -> dict[str, Any]:
        number = next(self._sequence)
        return {
            "id": f"batch_req_{self._id_prefix[:16]}{number:08x}",
            "custom_id": line.custom_id,
            "response": response,
            "error": error,
        }


def _add_usage(total: dict[str, int], usage: object) -> None:
    if not isinstance(usage, dict):
        return
    for names, into in (
        (("prompt_tokens", "input_tokens"), "input_tokens"),
        (("completion_tokens", "output_tokens"), "output_tokens"),
    ):
        for name in names:
            value = usage.get(name)
            if isinstance(value, int):
                total[into] += value
                break


def new_sequence() -> Iterator[int]:
    return itertools.count(1)
