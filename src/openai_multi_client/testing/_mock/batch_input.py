"""Validation of a batch's input file as OpenAI does it: every problem becomes an entry of the
batch's ``errors.data`` (``code``, ``line``, ``message``, ``param``) and fails the batch; a line
whose *body* is invalid is not a file problem: it is answered 400 in the error file."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from ... import _json
from .endpoints import OPENAI_ROUTES, Endpoint
from .errors import BadRequest
from .validation import Plan, model_of

#: The endpoints a batch may name, as OpenAI spells them.
BATCH_ENDPOINTS: Final[Mapping[str, Endpoint]] = {
    f"/v1/{suffix}": endpoint for suffix, endpoint in OPENAI_ROUTES
}
# At most this many errors are reported for one file (the first ones, in line order).
_MAX_ERRORS: Final = 100


def batch_endpoint(path: str) -> Endpoint | None:
    """The endpoint of ``/v1/chat/completions`` (or Azure's ``/chat/completions``)."""
    if not path.startswith("/v1/"):
        path = "/v1" + path
    return BATCH_ENDPOINTS.get(path)


@dataclass(frozen=True)
class InputLine:
    """One valid line: its number (from 1), id, body, and what validating the body gave
    (its plan, or the 400 it earns)."""

    number: int
    custom_id: str
    body: dict[str, Any]
    plan: Plan | BadRequest


@dataclass(frozen=True)
class ParsedInput:
    """A file's lines and model, or the errors that fail its batch."""

    lines: list[InputLine]
    model: str | None
    errors: list[dict[str, Any]]

    @property
    def input_tokens(self) -> int:
        """The input tokens the batch enqueues (what the enqueued-token limit counts)."""
        return sum(line.plan.prompt_tokens for line in self.lines if isinstance(line.plan, Plan))


def error(
    code: str, message: str, line: int | None = None, param: str | None = None
) -> dict[str, Any]:
    """One entry of ``errors.data``."""
    return {"code": code, "line": line, "message": message, "param": param}


def parse_input(
    content: bytes, endpoint_path: str, *, max_lines: int, max_bytes: int
) -> ParsedInput:
    """Check ``content`` as the input file of a batch for ``endpoint_path``."""
    if len(content) > max_bytes:
        message = (
            f"The input file is {len(content):,} bytes, over the limit of {max_bytes:,} bytes "
            "for a batch. Split it into smaller files."
        )
        return ParsedInput([], None, [error("file_too_large", message)])
    raw_lines = list(content.split(b"\n"))
    if raw_lines and not raw_lines[-1].strip():
        raw_lines.pop()
    if len(raw_lines) > max_lines:
        message = (
            f"The input file has {len(raw_lines):,} requests, over the limit of {max_lines:,} "
            "requests for a batch. Split it into smaller files."
        )
        return ParsedInput([], None, [error("too_many_lines", message)])
    if not raw_lines:
        return ParsedInput([], None, [error("empty_file", "The input file has no requests.")])
    return _parse_lines(raw_lines, endpoint_path)


def _parse_lines(raw_lines: list[bytes], endpoint_path: str) -> ParsedInput:
    endpoint = batch_endpoint(endpoint_path)
    assert endpoint is not None  # checked when the batch was created
    wanted = "/v1" + endpoint_path if not endpoint_path.startswith("/v1/") else endpoint_path
    seen: set[str] = set()
    lines: list[InputLine] = []
    errors: list[dict[str, Any]] = []
    model: str | None = None
    for number, raw in enumerate(raw_lines, 1):
        if len(errors) >= _MAX_ERRORS:
            break
        problem, line = _parse_line(number, raw, wanted, endpoint, seen)
        if problem is not None:
            errors.append(problem)
            continue
        assert line is not None
        line_model = _model(line, endpoint)
        if model is None:
            model = line_model
        elif line_model is not None and line_model != model:
            errors.append(
                error(
                    "model_mismatch",
                    f"The model '{line_model}' differs from the model '{model}' of the lines "
                    "before it: a batch takes one model.",
                    number,
                    "body.model",
                )
            )
            continue
        lines.append(line)
    return ParsedInput(lines, model, errors)


def _parse_line(
    number: int, raw: bytes, wanted: str, endpoint: Endpoint, seen: set[str]
) -> tuple[dict[str, Any] | None, InputLine | None]:
    try:
        record = _json.loads(raw.removeprefix(b"\xef\xbb\xbf") if number > 1 else raw)
    except (ValueError, RecursionError):
        record = None
    if not isinstance(record, dict) or not isinstance(record.get("body"), dict):
        return error("invalid_json_line", _INVALID_LINE, number), None
    custom_id = record.get("custom_id")
    if not isinstance(custom_id, str) or not custom_id:
        return error("invalid_json_line", _INVALID_LINE, number, "custom_id"), None
    if record.get("method") != "POST":
        return error("invalid_json_line", _INVALID_LINE, number, "method"), None
    url = record.get("url")
    if url != wanted and not (isinstance(url, str) and "/v1" + url == wanted):
        message = f"The URL provided for this request does not match the batch endpoint {wanted}."
        return error("url_mismatch", message, number, "url"), None
    if custom_id in seen:
        message = f"The custom_id '{custom_id}' is used more than once in this file."
        return error("duplicate_custom_id", message, number, "custom_id"), None
    seen.add(custom_id)
    body: dict[str, Any] = record["body"]
    plan: Plan | BadRequest
    try:
        plan = endpoint.check(body)
    except BadRequest as bad:
        plan = bad
    except RecursionError:
        plan = BadRequest("The request body is nested too deeply.")
    return None, InputLine(number, custom_id, body, plan)


def _model(line: InputLine, endpoint: Endpoint) -> str | None:
    try:
        return model_of(line.body, endpoint.default_model)
    except BadRequest:
        return None


_INVALID_LINE: Final = (
    "This line is not parseable as valid JSON, or is missing one of the fields custom_id, "
    "method ('POST'), url and body (an object)."
)
