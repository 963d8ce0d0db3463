"""Plain records of the Batch API's steps, each one a thing a journal can commit: a chunk
written to disk, an uploaded file, a batch as last seen."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

#: Statuses after which a batch changes no more.
FINAL_STATUSES: Final = frozenset({"completed", "failed", "expired", "cancelled"})
#: The endpoints the Batch API takes.
BATCH_ENDPOINTS: Final = (
    "/v1/responses",
    "/v1/chat/completions",
    "/v1/embeddings",
    "/v1/completions",
    "/v1/moderations",
    "/v1/images/generations",
)
#: Metadata keys naming the run and the chunk a batch belongs to (to find it again).
RUN_KEY: Final = "omc_run"
CHUNK_KEY: Final = "omc_chunk"


@dataclass(frozen=True)
class BatchChunk:
    """One batch input file on disk: its endpoint and model, its lines' ``custom_id`` s and
    their line numbers in the original input (from 1), in file order."""

    path: Path
    endpoint: str
    model: str | None
    custom_ids: tuple[str, ...]
    line_numbers: tuple[int, ...]
    size_bytes: int

    @property
    def line_count(self) -> int:
        return len(self.custom_ids)

    def input_line(self, file_line: int) -> int | None:
        """The input line number of this file's line ``file_line`` (from 1)."""
        if 1 <= file_line <= len(self.line_numbers):
            return self.line_numbers[file_line - 1]
        return None


@dataclass(frozen=True)
class UploadedFile:
    """A file as the Files API described it after upload."""

    id: str
    size_bytes: int
    filename: str


@dataclass(frozen=True)
class BatchProblem:
    """One entry of a failed batch's ``errors.data``: why its input was refused."""

    code: str | None
    message: str | None
    line: int | None = None
    param: str | None = None


@dataclass(frozen=True)
class BatchInfo:
    """A batch as last retrieved (``raw`` is the whole ``Batch`` object)."""

    id: str
    status: str
    endpoint: str
    input_file_id: str
    output_file_id: str | None
    error_file_id: str | None
    total: int
    completed: int
    failed: int
    problems: tuple[BatchProblem, ...] = ()
    metadata: Mapping[str, str] = field(default_factory=dict)
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False)

    @property
    def done(self) -> bool:
        """Whether the batch has reached a final status."""
        return self.status in FINAL_STATUSES

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> BatchInfo:
        counts = body.get("request_counts") or {}
        errors = body.get("errors") or {}
        problems = tuple(
            BatchProblem(
                code=item.get("code"),
                message=item.get("message"),
                line=item.get("line"),
                param=item.get("param"),
            )
            for item in (errors.get("data") or [])
            if isinstance(item, dict)
        )
        return cls(
            id=str(body["id"]),
            status=str(body["status"]),
            endpoint=str(body.get("endpoint", "")),
            input_file_id=str(body.get("input_file_id", "")),
            output_file_id=body.get("output_file_id"),
            error_file_id=body.get("error_file_id"),
            total=int(counts.get("total") or 0),
            completed=int(counts.get("completed") or 0),
            failed=int(counts.get("failed") or 0),
            problems=problems,
            metadata=dict(body.get("metadata") or {}),
            raw=dict(body),
        )
