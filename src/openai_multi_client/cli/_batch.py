"""The OpenAI Batch API file format, read and written as a stream.

``omc run INPUT.jsonl -o OUTPUT.jsonl`` takes the same files as OpenAI's Batch API: one request a
line, ``{"custom_id": "request-1", "method": "POST", "url": "/v1/chat/completions", "body":
{...}}``, and writes one result a line, matched by ``custom_id`` rather than by position.

Inputs may hold hundreds of thousands of lines and hundreds of megabytes, so :func:`read_batch`
works line by line and never holds more than one line (at most ``max_line_bytes``) in memory.
A bad line never stops the read: it becomes a :class:`BadLine` with a short machine ``code`` and
a message that names the line, and the lines after it are read as usual.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from array import array
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from itertools import accumulate
from typing import TYPE_CHECKING, Any, BinaryIO, Protocol

from .._batches.records import BATCH_ENDPOINTS
from .._errors import APIStatusError, InvalidResponseError
from .._json import dumps_record, loads

if TYPE_CHECKING:
    from .._request import Result

__all__ = [
    "BATCH_ENDPOINTS",
    "BadLine",
    "BatchRequest",
    "IdRegistry",
    "error_line",
    "output_line",
    "read_batch",
    "result_line",
]

MAX_CUSTOM_ID_CHARS = 512
"""The longest ``custom_id`` accepted, in characters."""

_DRAIN_CHUNK = 1 << 16  # bytes read at a time while skipping the rest of an over-long line
_EXCERPT_CHARS = 60  # characters of offending content quoted in a message (before repr)
_MESSAGE_PART_CHARS = 80  # hard cap on any quoted or relayed part of a message
_BOM = b"\xef\xbb\xbf"


class IdRegistry(Protocol):
    """Where :func:`read_batch` remembers the ``custom_id`` values it has seen."""

    def first_line(self, custom_id: str, line: int) -> int:
        """The line ``custom_id`` first appeared on; records ``line`` if it is new."""
        ...


@dataclass(frozen=True, slots=True)
class BatchRequest:
    """One well-formed input line.

    ``line`` is the 1-based line number in the input; ``url`` the endpoint path exactly as given
    (always one of the allowed paths, so without host, query or fragment); ``raw`` the line's
    bytes without its line ending (``\\n`` or ``\\r\\n``) and, on line 1, without a UTF-8 byte
    order mark: the same request in an LF or a CRLF file has the same ``raw``, which makes it a
    stable input for fingerprinting.
    """

    line: int
    custom_id: str
    url: str
    body: dict[str, Any]
    raw: bytes


@dataclass(frozen=True, slots=True)
class BadLine:
    """An input line that cannot be sent, and why.

    ``custom_id`` is set when the line's ``custom_id`` could be read and is valid (so a failure
    record can still be matched to its request). ``code`` is one of ``invalid_json``,
    ``not_an_object``, ``missing_custom_id``, ``invalid_custom_id``, ``duplicate_custom_id``,
    ``invalid_method``, ``invalid_url``, ``foreign_host``, ``unknown_endpoint``,
    ``invalid_body``, ``line_too_long``, ``too_deep`` or ``invalid_utf8``. ``message`` is for
    people, starts with ``"line N: "`` and quotes at most about 80 characters of the line.
    """

    line: int
    custom_id: str | None
    code: str
    message: str


def read_batch(
    stream: BinaryIO,
    *,
    max_line_bytes: int = 1_000_000,
    max_depth: int = 64,
    allowed_urls: Collection[str] = BATCH_ENDPOINTS,
    seen: IdRegistry | None = None,
) -> Iterator[BatchRequest | BadLine]:
    """Read a Batch API input file: one :class:`BatchRequest` or :class:`BadLine` per request line.

    ``stream`` is a binary stream read with ``readline``; give a buffered one (``open(path,
    "rb")``, ``io.BytesIO``, ``gzip.open``). Blank and whitespace-only lines are skipped but
    counted in line numbers. Lines end with ``\\n`` or ``\\r\\n``; the last may have no ending.

    - A line longer than ``max_line_bytes`` (line ending excluded) is ``line_too_long``; it is
      skipped in bounded chunks, never held whole in memory.
    - JSON nested deeper than ``max_depth`` arrays and objects (the line's own object is depth
      1) is ``too_deep``. The depth is measured with a few linear passes over the bytes before
      parsing, so a hostile ``[[[[...`` line costs little and cannot exhaust the stack.
    - ``method`` must be exactly ``"POST"``; ``url`` a path (no host, query or fragment) that is
      one of ``allowed_urls``; ``custom_id`` a non-empty string of at most 512 characters,
      unique in the file; ``body`` a JSON object.

    Duplicate detection keeps a 64-bit hash of every ``custom_id`` seen, with the line it first
    appeared on, in a compact open-addressing table (:class:`SeenIds`): 12 to 24 bytes per id
    (under 5 MB for 200,000 ids, whatever their length), the one cost that grows with the file;
    give another ``seen`` registry (``omc run`` keeps them in a temporary SQLite file) to keep
    memory flat.

    Invalid arguments raise ``ValueError`` or ``TypeError`` at once, not on the first ``next``.
    """
    if max_line_bytes < 1:
        raise ValueError(f"max_line_bytes must be at least 1, got {max_line_bytes}")
    if max_depth < 1:
        raise ValueError(f"max_depth must be at least 1, got {max_depth}")
    if isinstance(allowed_urls, str):
        raise TypeError("allowed_urls must be a collection of paths, not a single string")
    checker = _LineChecker(
        max_depth=max_depth,
        allowed_urls=frozenset(allowed_urls),
        seen=SeenIds() if seen is None else seen,
    )
    return _read_batch(stream, max_line_bytes, checker)


def _read_batch(
    stream: BinaryIO, max_line_bytes: int, checker: _LineChecker
) -> Iterator[BatchRequest | BadLine]:
    """The generator behind :func:`read_batch`, once its arguments are known to be sound."""
    for number, raw, length in _lines(stream, max_line_bytes):
        if raw is None:
            yield BadLine(
                number,
                None,
                "line_too_long",
                f"line {number}: {length:,} bytes, over the limit of {max_line_bytes:,} "
                "(max_line_bytes); the line was skipped",
            )
        elif raw and not raw.isspace():
            yield checker.check(number, raw)


def _lines(stream: BinaryIO, limit: int) -> Iterator[tuple[int, bytes | None, int]]:
    """``(line number, content, length)`` for each line of ``stream``, blank ones included.

    The content excludes the line ending (and a UTF-8 byte order mark on line 1). For a line
    longer than ``limit`` the content is ``None`` and the line is read and dropped in chunks of
    64 KiB; a whitespace-only over-long line is dropped silently, like any blank line.
    """
    number = 0
    while True:
        number += 1
        # Two bytes of slack so that a line of exactly ``limit`` bytes plus "\r\n" arrives
        # whole, and on line 1 room for a byte order mark.
        size_hint = limit + 2 + (len(_BOM) if number == 1 else 0)
        chunk = stream.readline(size_hint)
        if not chunk:
            return
        complete = chunk.endswith(b"\n") or len(chunk) < size_hint
        if number == 1 and chunk.startswith(_BOM):
            chunk = chunk[len(_BOM) :]
        if complete:
            line = _strip_line_ending(chunk)
            if len(line) <= limit:
                yield number, line, len(line)
            elif not line.isspace():
                yield number, None, len(line)
            continue
        size = len(chunk)
        blank = chunk.isspace()
        tail = chunk[-1:]
        del chunk
        while True:
            part = stream.readline(_DRAIN_CHUNK)
            if not part:
                break
            size += len(part)
            blank = blank and part.isspace()
            tail = part[-2:] if len(part) > 1 else (tail + part)[-2:]
            if part.endswith(b"\n"):
                break
        if not blank:
            size -= len(tail) - len(_strip_line_ending(tail))
            yield number, None, size


def _strip_line_ending(chunk: bytes) -> bytes:
    """``chunk`` without a trailing ``\\n``, ``\\r\\n`` or (on a last line) ``\\r``."""
    if chunk.endswith(b"\n"):
        chunk = chunk[:-1]
    if chunk.endswith(b"\r"):
        chunk = chunk[:-1]
    return chunk


# --- nesting depth -------------------------------------------------------------------------

_ESCAPE_PAIR = re.compile(rb"\\.", re.DOTALL)
# After escape pairs are gone a string is a quote, non-quotes, and a quote (or the line's end).
_STRING = re.compile(rb'"[^"]*(?:"|\Z)')
_NOT_BRACKET = bytes(b for b in range(256) if b not in b"[]{}")
_BRACKET_STEP = [0] * 256
_BRACKET_STEP[ord("[")] = _BRACKET_STEP[ord("{")] = 1
_BRACKET_STEP[ord("]")] = _BRACKET_STEP[ord("}")] = -1


def _too_deep(raw: bytes, limit: int) -> bool:
    """Whether a JSON parser would nest deeper than ``limit`` arrays/objects reading ``raw``.

    Linear, with every pass in C: lines with at most ``limit`` opening brackets (nearly all)
    are cleared by two ``count`` calls. Otherwise escape pairs and strings are removed, the
    brackets kept, and the deepest running total of opens minus closes is the depth. For valid
    JSON this is exact; for invalid JSON it bounds what a parser reaches before it fails (text
    before the first stray backslash is measured exactly, and the parser stops there at the
    latest), so a ``False`` answer is always safe to parse.
    """
    if raw.count(b"[") + raw.count(b"{") <= limit:
        return False
    outside_strings = _STRING.sub(b"", _ESCAPE_PAIR.sub(b"", raw))
    brackets = outside_strings.translate(None, _NOT_BRACKET)
    return max(accumulate(map(_BRACKET_STEP.__getitem__, brackets)), default=0) > limit


# --- one line --------------------------------------------------------------------------------


def _excerpt(value: object) -> str:
    """At most about 80 characters showing ``value``: a cut ``repr`` for strings and scalars,
    just the JSON type for arrays and objects."""
    if isinstance(value, (list, dict)):
        return f"a JSON {_json_type(value)}"
    if isinstance(value, str) and len(value) > _EXCERPT_CHARS:
        shown = repr(value[:_EXCERPT_CHARS]) + "..."
    else:
        shown = repr(value)
    if len(shown) > _MESSAGE_PART_CHARS:
        shown = shown[: _MESSAGE_PART_CHARS - 3] + "..."
    return shown


def _json_type(value: object) -> str:
    """The JSON name of a parsed value's type, for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


class _LineChecker:
    """Validates one non-blank line at a time and remembers the ``custom_id`` values seen."""

    __slots__ = ("_allowed_urls", "_max_depth", "_seen")

    def __init__(self, *, max_depth: int, allowed_urls: frozenset[str], seen: IdRegistry) -> None:
        self._max_depth = max_depth
        self._allowed_urls = allowed_urls
        # custom_id -> line of first appearance, for the duplicate message.
        self._seen = seen

    def check(self, number: int, raw: bytes) -> BatchRequest | BadLine:
        """The request on line ``number`` (content ``raw``), or why it is unusable."""
        where = f"line {number}"
        try:
            text = raw.decode("ascii") if raw.isascii() else raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            return BadLine(
                number,
                None,
                "invalid_utf8",
                f"{where}: not valid UTF-8 (byte 0x{raw[exc.start]:02x} at offset {exc.start})",
            )
        if _too_deep(raw, self._max_depth):
            return BadLine(
                number,
                None,
                "too_deep",
                f"{where}: JSON nested deeper than {self._max_depth} levels (max_depth)",
            )
        try:
            data = loads(text)
        except RecursionError:  # only if max_depth is set beyond the interpreter's stack
            return BadLine(number, None, "too_deep", f"{where}: JSON nested too deeply to parse")
        except ValueError as exc:
            reason = str(exc)[:_MESSAGE_PART_CHARS]
            return BadLine(number, None, "invalid_json", f"{where}: not valid JSON ({reason})")
        del text
        if not isinstance(data, dict):
            return BadLine(
                number,
                None,
                "not_an_object",
                f"{where}: expected a JSON object, got {_json_type(data)}",
            )
        return self._check_object(number, raw, data)

    def _check_object(
        self, number: int, raw: bytes, data: dict[str, Any]
    ) -> BatchRequest | BadLine:
        """Field checks for a line that parsed as a JSON object."""
        where = f"line {number}"
        custom_id = data.get("custom_id")
        if custom_id is None:
            return BadLine(number, None, "missing_custom_id", f"{where}: no custom_id")
        problem = (
            _custom_id_problem(custom_id)
            if isinstance(custom_id, str)
            else f"is a JSON {_json_type(custom_id)}; it must be a string"
        )
        if problem is not None:
            return BadLine(number, None, "invalid_custom_id", f"{where}: custom_id {problem}")
        first = self._seen.first_line(custom_id, number)
        if first != number:
            return BadLine(
                number,
                custom_id,
                "duplicate_custom_id",
                f"{where}: custom_id {_excerpt(custom_id)} appears again (first on line {first})",
            )

        method = data.get("method")
        if method != "POST":
            shown = "is missing" if method is None else f"is {_excerpt(method)}"
            return BadLine(
                number,
                custom_id,
                "invalid_method",
                f'{where}: method {shown}; the Batch API takes only "POST"',
            )

        url = data.get("url")
        if not isinstance(url, str) or not url:
            shown = "is missing" if url is None else f"is {_excerpt(url)}"
            return BadLine(
                number,
                custom_id,
                "invalid_url",
                f"{where}: url {shown}; give a path such as '/v1/chat/completions'",
            )
        bad_url = self._url_problem(url)
        if bad_url is not None:
            code, reason = bad_url
            return BadLine(number, custom_id, code, f"{where}: url {reason}")

        body = data.get("body")
        if not isinstance(body, dict):
            shown = "is missing" if "body" not in data else f"is a JSON {_json_type(body)}"
            return BadLine(
                number,
                custom_id,
                "invalid_body",
                f"{where}: body {shown}; it must be a JSON object",
            )
        return BatchRequest(number, custom_id, url, body, raw)

    def _url_problem(self, url: str) -> tuple[str, str] | None:
        """``(code, reason)`` when ``url`` is not an allowed endpoint path, else ``None``."""
        if "://" in url or url.startswith("//"):
            return (
                "foreign_host",
                f"{_excerpt(url)} names a host; give only the path, such as "
                "'/v1/chat/completions' (requests go to the configured base URL)",
            )
        if "?" in url or "#" in url:
            return "invalid_url", f"{_excerpt(url)} has a query or fragment; give only the path"
        if not url.startswith("/"):
            return "invalid_url", f"{_excerpt(url)} is not a path starting with '/'"
        if url not in self._allowed_urls:
            reason = f"{_excerpt(url)} is not an allowed Batch API endpoint"
            if len(self._allowed_urls) <= 10:
                reason += " (" + ", ".join(sorted(self._allowed_urls)) + ")"
            return "unknown_endpoint", reason
        return None


def _custom_id_problem(custom_id: str) -> str | None:
    """Why the string ``custom_id`` is unusable, or ``None`` when it is fine."""
    if not custom_id:
        return "is empty"
    if len(custom_id) > MAX_CUSTOM_ID_CHARS:
        return f"has {len(custom_id):,} characters; at most {MAX_CUSTOM_ID_CHARS} are allowed"
    try:
        custom_id.encode("utf-8")
    except UnicodeEncodeError:
        return f"{_excerpt(custom_id)} holds an unpaired surrogate escape"
    return None


# --- output ----------------------------------------------------------------------------------


def _record_id() -> str:
    """A fresh output record id in OpenAI's style: ``batch_req_`` and 24 hex digits."""
    return "batch_req_" + secrets.token_hex(12)


def output_line(custom_id: str, *, status_code: int, request_id: str | None, body: Any) -> bytes:
    """One Batch API output line, newline included, for a request that got an HTTP response.

    HTTP failures (4xx, 5xx) are written here too, with their status and body; ``error`` is
    ``null``. The line is always strict JSON: non-finite numbers in ``body`` are written as the
    strings ``"NaN"``, ``"Infinity"``, ``"-Infinity"`` and lone surrogates as U+FFFD. Raises
    ``TypeError`` or ``ValueError`` when ``body`` holds what no JSON can (see
    :func:`result_line`, which turns that into the request's failure).
    """
    record = {
        "id": _record_id(),
        "custom_id": custom_id,
        "response": {"status_code": status_code, "request_id": request_id, "body": body},
        "error": None,
    }
    return dumps_record(record) + b"\n"


def error_line(custom_id: str | None, *, code: str, message: str, line: int | None = None) -> bytes:
    """One Batch API output line, newline included, for a failure without an HTTP response.

    ``response`` is ``null`` and ``error`` is ``{"code", "message"}``, plus ``"line"`` (the
    input line number) when given, as in OpenAI's own batch error objects. ``custom_id`` is
    ``None`` for a line whose ``custom_id`` could not be read.
    """
    error: dict[str, Any] = {"code": code, "message": message}
    if line is not None:
        error["line"] = line
    record = {"id": _record_id(), "custom_id": custom_id, "response": None, "error": error}
    return dumps_record(record) + b"\n"


def result_line(custom_id: str, result: Result) -> tuple[bytes, bool]:
    """The output line of one request's :class:`Result`, and whether it failed.

    An answer, or an HTTP error with its body, is written with :func:`output_line`; another
    failure with :func:`error_line`, its code the error's class name. An answer that cannot be
    written at all (no JSON can hold it) becomes this request's ``InvalidResponseError``
    failure, naming its ``custom_id``, instead of an exception that would end the run.
    """
    error = result.error
    try:
        if error is None:
            line = output_line(
                custom_id,
                status_code=result.status_code or 200,
                request_id=result.request_id,
                body=result.response,
            )
            return line, False
        if isinstance(error, APIStatusError):
            line = output_line(
                custom_id,
                status_code=error.status_code,
                request_id=error.request_id,
                body=error.body,
            )
            return line, True
    except (TypeError, ValueError) as exc:
        message = (
            f"the answer to custom_id {_excerpt(custom_id)} cannot be written as JSON: "
            f"{str(exc)[:_MESSAGE_PART_CHARS]}"
        )
        return error_line(custom_id, code=InvalidResponseError.__name__, message=message), True
    return error_line(custom_id, code=type(error).__name__, message=str(error)), True


def id_hash(custom_id: str) -> int:
    """A 64-bit hash of ``custom_id`` (unsigned), for the duplicate check."""
    digest = hashlib.blake2b(custom_id.encode("utf-8", "surrogatepass"), digest_size=8)
    return int.from_bytes(digest.digest(), "little")


class SeenIds:
    """The ``custom_id`` values of a file and the line each first appeared on, in two flat
    arrays: 64-bit hashes and line numbers, open addressing with linear probing, grown at half
    full. Two ids with the same 64-bit hash would be taken for a duplicate: with 10^6 ids the
    odds are about 1 in 3 * 10^7, and the error message names both lines, so a user can check.
    """

    __slots__ = ("_count", "_hashes", "_lines", "_mask")

    def __init__(self, capacity: int = 1 << 12) -> None:
        self._hashes = array("Q", bytes(8 * capacity))
        self._lines = array("I", bytes(4 * capacity))
        self._mask = capacity - 1
        self._count = 0

    def first_line(self, custom_id: str, line: int) -> int:
        """The line ``custom_id`` first appeared on; records ``line`` if it is new."""
        value = id_hash(custom_id) or 1  # 0 marks an empty slot
        hashes, mask = self._hashes, self._mask
        slot = value & mask
        while True:
            stored = hashes[slot]
            if stored == 0:
                break
            if stored == value:
                return int(self._lines[slot])
            slot = (slot + 1) & mask
        hashes[slot] = value
        self._lines[slot] = line
        self._count += 1
        if self._count * 2 > mask:
            self._grow()
        return line

    def _grow(self) -> None:
        old = zip(self._hashes, self._lines, strict=True)
        capacity = (self._mask + 1) * 2
        self._hashes = array("Q", bytes(8 * capacity))
        self._lines = array("I", bytes(4 * capacity))
        self._mask = capacity - 1
        for value, line in old:
            if value:
                slot = value & self._mask
                while self._hashes[slot]:
                    slot = (slot + 1) & self._mask
                self._hashes[slot] = value
                self._lines[slot] = line

    def __len__(self) -> int:
        return self._count
