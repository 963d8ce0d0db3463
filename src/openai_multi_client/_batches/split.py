"""Splitting Batch-format input into batch files: one endpoint and one model each, at most
``max_lines`` lines and ``max_bytes`` bytes, written to disk as the lines stream by (memory
holds the ids, never the bodies)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import IO, Any, Final

from .. import _json
from .._errors import ConfigurationError
from .records import BATCH_ENDPOINTS, BatchChunk

DEFAULT_MAX_LINES: Final = 50_000
DEFAULT_MAX_BYTES: Final = 200 * 1024 * 1024


class _Open:
    """A chunk being written."""

    def __init__(self, path: Path, endpoint: str, model: str | None) -> None:
        self.path = path
        self.endpoint = endpoint
        self.model = model
        self.file: IO[bytes] = path.open("wb")
        self.ids: list[str] = []
        self.numbers: list[int] = []
        self.size = 0

    def close(self) -> BatchChunk:
        self.file.close()
        return BatchChunk(
            self.path, self.endpoint, self.model, tuple(self.ids), tuple(self.numbers), self.size
        )


def _parse(line: Mapping[str, Any] | str | bytes, number: int) -> tuple[dict[str, Any], bytes]:
    if isinstance(line, Mapping):
        record = dict(line)
    else:
        try:
            record = _json.loads(line)
        except (ValueError, RecursionError):
            raise ConfigurationError(f"input line {number}: not valid JSON") from None
    if not isinstance(record, dict):
        raise ConfigurationError(f"input line {number}: expected a JSON object")
    custom_id = record.get("custom_id")
    if not isinstance(custom_id, str) or not custom_id:
        raise ConfigurationError(f"input line {number}: 'custom_id' must be a non-empty string")
    url = record.get("url")
    if url not in BATCH_ENDPOINTS:
        raise ConfigurationError(
            f"input line {number}: 'url' must be one of {', '.join(BATCH_ENDPOINTS)} for the "
            f"Batch API, not {url!r}"
        )
    if not isinstance(record.get("body"), dict):
        raise ConfigurationError(f"input line {number}: 'body' must be a JSON object")
    record.setdefault("method", "POST")
    return record, _json.dumps(record) + b"\n"


def split_lines(
    lines: Iterable[Mapping[str, Any] | str | bytes],
    directory: str | Path,
    *,
    max_lines: int = DEFAULT_MAX_LINES,
    max_bytes: int = DEFAULT_MAX_BYTES,
    first_line: int = 1,
) -> list[BatchChunk]:
    """Write ``lines`` (Batch-format records, as dicts or JSON text) into batch files under
    ``directory``; returns the chunks in the order their first line came.

    A line that is not a Batch-format request, names an endpoint the Batch API does not take,
    repeats a ``custom_id`` or alone exceeds ``max_bytes`` raises :class:`ConfigurationError`
    naming the line (counted from ``first_line``)."""
    if max_lines < 1 or max_bytes < 1:
        raise ConfigurationError("max_lines and max_bytes must be at least 1")
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    seen: dict[str, int] = {}
    groups: dict[tuple[str, str | None], _Open] = {}
    done: list[tuple[int, BatchChunk]] = []
    count = 0
    try:
        for number, line in enumerate(lines, first_line):
            if isinstance(line, (str, bytes)) and not line.strip():
                continue
            record, data = _parse(line, number)
            custom_id = record["custom_id"]
            if custom_id in seen:
                raise ConfigurationError(
                    f"input line {number}: custom_id {custom_id!r} repeats line {seen[custom_id]}"
                )
            seen[custom_id] = number
            if len(data) > max_bytes:
                raise ConfigurationError(
                    f"input line {number}: {len(data):,} bytes, over the batch file limit of "
                    f"{max_bytes:,} bytes"
                )
            model = record["body"].get("model")
            group = (record["url"], model if isinstance(model, str) else None)
            chunk = groups.get(group)
            if chunk is not None and (
                len(chunk.ids) >= max_lines or chunk.size + len(data) > max_bytes
            ):
                done.append((chunk.numbers[0], groups.pop(group).close()))
                chunk = None
            if chunk is None:
                count += 1
                chunk = groups[group] = _Open(folder / f"chunk-{count:05d}.jsonl", *group)
            chunk.file.write(data)
            chunk.ids.append(custom_id)
            chunk.numbers.append(number)
            chunk.size += len(data)
    finally:
        closing = [
            (chunk.numbers[0] if chunk.numbers else 0, chunk.close()) for chunk in groups.values()
        ]
    done.extend(closing)
    return [chunk for _, chunk in sorted(done, key=lambda item: item[0]) if chunk.custom_ids]


def split_file(
    path: str | Path,
    directory: str | Path,
    *,
    max_lines: int = DEFAULT_MAX_LINES,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> list[BatchChunk]:
    """:func:`split_lines` over a JSONL file, streamed from disk (blank lines are skipped but
    counted, so errors name the file's own line numbers)."""
    with Path(path).open("rb") as file:
        return split_lines(file, directory, max_lines=max_lines, max_bytes=max_bytes)
