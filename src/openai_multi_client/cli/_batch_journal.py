"""The journal of ``omc run --batch``: the Batch API's steps, beside the per-line outcomes.

The same SQLite file as :class:`~._journal.Journal` (same lock, same ``requests`` rows, so
resume, ``--retry-failed``, ``--errors`` and the output projection work as for online runs),
plus two tables:

* ``batch_chunks``: one row per batch file: its path, endpoint, model, attempt, and, each
  committed before the next step, the redacted id of the key it goes through (``key_id``,
  never the secret), its uploaded ``file_id``, its ``batch_id``, its last seen status and
  request counts, and whether its output and error files were consumed;
* ``batch_lines``: the lines not yet final: the chunk each went into (``NULL``: waiting for a
  new chunk), its place in the chunk file, and how many batches it went through.

A line's final outcome is written to ``requests`` and its ``batch_lines`` row deleted in one
transaction, so a kill between two lines of a downloaded file repeats only the download.

Journals made before ``key_id`` existed get the column when opened; their chunks, all made
with the run's first key, have none (:class:`~._batch_keys.BatchKeys` reads that as the first
key given).
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from ._journal import Journal

__all__ = [
    "BatchCounts",
    "BatchJournal",
    "ChunkRow",
    "LineRow",
    "Outcome",
    "batch_counts",
    "batch_status_lines",
]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS batch_chunks (
    chunk_no INTEGER PRIMARY KEY,
    path TEXT NOT NULL,
    endpoint TEXT NOT NULL,
    model TEXT,
    lines INTEGER NOT NULL,
    file_id TEXT,
    batch_id TEXT,
    status TEXT NOT NULL DEFAULT 'new',
    completed INTEGER NOT NULL DEFAULT 0,
    failed INTEGER NOT NULL DEFAULT 0,
    output_done INTEGER NOT NULL DEFAULT 0,
    error_done INTEGER NOT NULL DEFAULT 0,
    finished INTEGER NOT NULL DEFAULT 0,
    usage TEXT,
    tokens INTEGER NOT NULL DEFAULT 0,
    key_id TEXT
);
CREATE TABLE IF NOT EXISTS batch_lines (
    custom_id TEXT PRIMARY KEY,
    line INTEGER NOT NULL,
    digest BLOB,
    chunk_no INTEGER,
    pos INTEGER,
    attempts INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS batch_lines_chunk ON batch_lines (chunk_no, pos);
"""

_LOOKUP = 256
_ADDED_COLUMNS = (("key_id", "TEXT"),)  # columns added since the first version of the table


@dataclass(frozen=True, slots=True)
class ChunkRow:
    """One batch file as the journal holds it."""

    chunk_no: int
    path: str
    endpoint: str
    model: str | None
    lines: int
    file_id: str | None
    batch_id: str | None
    status: str
    completed: int
    failed: int
    output_done: bool
    error_done: bool
    finished: bool
    usage: dict[str, Any] | None
    tokens: int = 0
    key_id: str | None = None  # the redacted id of the key it goes through

    @property
    def live(self) -> bool:
        """A batch exists for it and its results are not all collected."""
        return self.batch_id is not None and not self.finished


@dataclass(frozen=True, slots=True)
class LineRow:
    """A line not yet final: its input line, digest, chunk and batches gone through."""

    custom_id: str
    line: int
    digest: bytes | None
    chunk_no: int | None
    attempts: int


@dataclass(frozen=True, slots=True)
class Outcome:
    """A final outcome to record: the output line, failed, retryable (for --retry-failed)."""

    row: LineRow
    data: bytes
    failed: bool
    retryable: bool


def _chunk(row: Sequence[Any]) -> ChunkRow:
    usage = json.loads(row[13]) if row[13] else None
    return ChunkRow(
        int(row[0]),
        str(row[1]),
        str(row[2]),
        row[3],
        int(row[4]),
        row[5],
        row[6],
        str(row[7]),
        int(row[8]),
        int(row[9]),
        bool(row[10]),
        bool(row[11]),
        bool(row[12]),
        usage,
        int(row[14]),
        row[15],
    )


_CHUNK_COLUMNS = (
    "chunk_no, path, endpoint, model, lines, file_id, batch_id, status, completed, failed, "
    "output_done, error_done, finished, usage, tokens, key_id"
)


class BatchJournal:
    """The batch tables of an open :class:`Journal` (whose lock it relies on)."""

    def __init__(self, journal: Journal) -> None:
        journal.commit()
        self._journal = journal
        self._db: sqlite3.Connection = journal._db  # the same file, lock and transactions
        self._db.executescript(_SCHEMA)
        self._migrate()

    def _migrate(self) -> None:
        """Add the columns a journal of an earlier version lacks."""
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(batch_chunks)")}
        for name, kind in _ADDED_COLUMNS:
            if name not in columns:
                self._db.execute(f"ALTER TABLE batch_chunks ADD COLUMN {name} {kind}")

    @property
    def run(self) -> int:
        return self._journal.run

    # ---------------------------------------------------------------- the run

    def token(self) -> tuple[str, int]:
        """The run's token (in every batch's metadata, to find a batch again) and the Unix time
        it was made; made once, reused on resume."""
        row = self._db.execute("SELECT value FROM meta WHERE key = 'batch_token'").fetchone()
        if row is not None:
            token, _, started = str(row[0]).partition(" ")
            return token, int(started)
        made, at = secrets.token_hex(8), int(time.time()) - 60
        self._db.execute(
            "INSERT INTO meta (key, value) VALUES ('batch_token', ?)", (f"{made} {at}",)
        )
        return made, at

    def save_settings(self, settings: dict[str, Any]) -> None:
        """What ``omc cancel`` needs to collect results (paths, base URL; never a key)."""
        self._db.execute(
            "INSERT OR REPLACE INTO meta (key, value) VALUES ('batch_settings', ?)",
            (json.dumps(settings),),
        )

    def settings(self) -> dict[str, Any] | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = 'batch_settings'").fetchone()
        return None if row is None else dict(json.loads(row[0]))

    # ---------------------------------------------------------------- chunks

    def chunks(self, *, unfinished: bool = True) -> list[ChunkRow]:
        where = "WHERE finished = 0" if unfinished else ""
        rows = self._db.execute(
            f"SELECT {_CHUNK_COLUMNS} FROM batch_chunks {where} ORDER BY chunk_no"
        )
        return [_chunk(row) for row in rows]

    def waiting(self) -> int:
        """Lines waiting for a new chunk (released by a finished batch)."""
        row = self._db.execute("SELECT count(*) FROM batch_lines WHERE chunk_no IS NULL")
        return int(row.fetchone()[0])

    def next_chunk_no(self) -> int:
        row = self._db.execute("SELECT max(chunk_no) FROM batch_chunks").fetchone()
        return 1 + int(row[0] or 0)

    def pending_filter(self, ids: Sequence[str], retry: str) -> dict[str, int]:
        """Of ``ids``, those waiting for a chunk -> batches gone through: not final (or a
        failure ``retry`` selects, recorded by an earlier run) and in no unfinished chunk."""
        pending: dict[str, int] = {}
        for start in range(0, len(ids), _LOOKUP):
            part = ids[start : start + _LOOKUP]
            marks = ",".join("?" * len(part))
            done = {
                custom_id
                for (custom_id,) in self._db.execute(
                    f"SELECT custom_id FROM requests WHERE custom_id IN ({marks}) AND state = 2 "
                    f"AND NOT ({retry} AND run < ?)",
                    (*part, self.run),
                )
            }
            lines = {
                custom_id: (chunk_no, attempts)
                for custom_id, chunk_no, attempts in self._db.execute(
                    f"SELECT custom_id, chunk_no, attempts FROM batch_lines "
                    f"WHERE custom_id IN ({marks})",
                    part,
                )
            }
            for custom_id in part:
                chunk_no, attempts = lines.get(custom_id, (None, 0))
                if custom_id not in done and chunk_no is None:
                    pending[custom_id] = attempts
        return pending

    def transaction(self) -> _Transaction:
        """One transaction (``with``): committed at the end, rolled back on an exception."""
        return _Transaction(self._db)

    def add_lines(self, lines: Iterable[tuple[str, int, bytes | None, int, int, int]]) -> None:
        """Put lines ``(custom_id, line, digest, chunk_no, pos, attempts)`` into a chunk
        (inside :meth:`transaction`, with their chunks)."""
        self._db.executemany(
            "INSERT INTO batch_lines (custom_id, line, digest, chunk_no, pos, attempts) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (custom_id) DO UPDATE SET "
            "line = excluded.line, digest = excluded.digest, chunk_no = excluded.chunk_no, "
            "pos = excluded.pos, attempts = excluded.attempts",
            lines,
        )

    def add_chunk(
        self, chunk_no: int, path: str, endpoint: str, model: str | None, lines: int, tokens: int
    ) -> None:
        """A new chunk (inside :meth:`transaction`, with its lines); ``tokens`` estimated."""
        self._db.execute(
            "INSERT INTO batch_chunks (chunk_no, path, endpoint, model, lines, tokens) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (chunk_no, path, endpoint, model, lines, tokens),
        )

    def set_key(self, chunk_no: int, key_id: str) -> None:
        """The chunk goes through ``key_id`` (committed before its upload); a file uploaded
        with another key is forgotten (that key's organization alone sees it)."""
        self._db.execute(
            "UPDATE batch_chunks SET key_id = ?, file_id = NULL, status = 'new' WHERE chunk_no = ?",
            (key_id, chunk_no),
        )

    def set_file(self, chunk_no: int, file_id: str) -> None:
        self._db.execute(
            "UPDATE batch_chunks SET file_id = ?, status = 'uploaded' WHERE chunk_no = ?",
            (file_id, chunk_no),
        )

    def set_batch(self, chunk_no: int, batch_id: str, status: str) -> None:
        self._db.execute(
            "UPDATE batch_chunks SET batch_id = ?, status = ? WHERE chunk_no = ?",
            (batch_id, status, chunk_no),
        )

    def set_seen(
        self, chunk_no: int, status: str, completed: int, failed: int, usage: object
    ) -> None:
        self._db.execute(
            "UPDATE batch_chunks SET status = ?, completed = ?, failed = ?, usage = ? "
            "WHERE chunk_no = ?",
            (status, completed, failed, json.dumps(usage) if usage else None, chunk_no),
        )

    def file_consumed(self, chunk_no: int, column: str) -> None:
        assert column in ("output_done", "error_done")
        self._db.execute(f"UPDATE batch_chunks SET {column} = 1 WHERE chunk_no = ?", (chunk_no,))

    def finish(
        self, chunk_no: int, *, release: Sequence[str] = (), undo_attempt: bool = False
    ) -> None:
        """The chunk is done with: its ``release`` d lines wait for a new chunk (without
        counting this batch when ``undo_attempt``: the batch never ran them)."""
        with self.transaction():
            self._release(release, undo_attempt)
            self._db.execute("UPDATE batch_chunks SET finished = 1 WHERE chunk_no = ?", (chunk_no,))

    # ---------------------------------------------------------------- lines

    def chunk_lines(self, chunk_no: int) -> Iterator[LineRow]:
        rows = self._db.execute(
            "SELECT custom_id, line, digest, chunk_no, attempts FROM batch_lines "
            "WHERE chunk_no = ? ORDER BY pos",
            (chunk_no,),
        ).fetchall()
        for custom_id, line, digest, chunk, attempts in rows:
            yield LineRow(
                custom_id, line, None if digest is None else bytes(digest), chunk, attempts
            )

    def line_at(self, chunk_no: int, pos: int) -> int | None:
        """The input line number of line ``pos`` (from 1) of a chunk's file."""
        row = self._db.execute(
            "SELECT line FROM batch_lines WHERE chunk_no = ? AND pos = ?", (chunk_no, pos)
        ).fetchone()
        return None if row is None else int(row[0])

    def lines_of(self, chunk_no: int, ids: Sequence[str]) -> dict[str, LineRow]:
        """Of ``ids``, those still waiting for their outcome from chunk ``chunk_no``."""
        found: dict[str, LineRow] = {}
        for start in range(0, len(ids), _LOOKUP):
            part = ids[start : start + _LOOKUP]
            rows = self._db.execute(
                "SELECT custom_id, line, digest, chunk_no, attempts FROM batch_lines "
                f"WHERE chunk_no = ? AND custom_id IN ({','.join('?' * len(part))})",
                (chunk_no, *part),
            )
            for custom_id, line, digest, chunk, attempts in rows:
                stored = None if digest is None else bytes(digest)
                found[custom_id] = LineRow(custom_id, line, stored, chunk, attempts)
        return found

    def settle(self, outcomes: Sequence[Outcome], retry: Sequence[str]) -> None:
        """In one transaction: record ``outcomes`` as final (as an online run would) and let
        the ``retry`` lines wait for a new chunk."""
        with self.transaction():
            self._db.executemany(
                "INSERT OR REPLACE INTO requests "
                "(custom_id, line, state, failed, output, retryable, digest, run) "
                "VALUES (?, ?, 2, ?, ?, ?, ?, ?)",
                [
                    (
                        o.row.custom_id,
                        o.row.line,
                        int(o.failed),
                        o.data,
                        int(o.retryable),
                        o.row.digest,
                        self.run,
                    )
                    for o in outcomes
                ],
            )
            self._db.executemany(
                "DELETE FROM batch_lines WHERE custom_id = ?",
                [(o.row.custom_id,) for o in outcomes],
            )
            self._release(retry, False)

    def _release(self, ids: Sequence[str], undo_attempt: bool) -> None:
        self._db.executemany(
            "UPDATE batch_lines SET chunk_no = NULL, pos = NULL"
            + (", attempts = max(0, attempts - 1)" if undo_attempt else "")
            + " WHERE custom_id = ?",
            [(custom_id,) for custom_id in ids],
        )


class _Transaction:
    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, *rest: object) -> None:
        self._db.execute("ROLLBACK" if exc_type is not None else "COMMIT")


def batch_status_lines(connection: sqlite3.Connection) -> list[str]:
    """``omc status`` lines for each batch of a journal (none for an online run's journal)."""
    tables = {name for (name,) in connection.execute("SELECT name FROM sqlite_master")}
    if "batch_chunks" not in tables:
        return []
    columns = {row[1] for row in connection.execute("PRAGMA table_info(batch_chunks)")}
    key_id = "key_id" if "key_id" in columns else "NULL"  # a journal of an earlier version
    lines = []
    for chunk_no, batch_id, status, total, completed, failed, finished, key in connection.execute(
        "SELECT chunk_no, batch_id, status, lines, completed, failed, finished, "
        f"{key_id} FROM batch_chunks ORDER BY chunk_no"
    ):
        collected = ", collected" if finished else ""
        through = f" (key {key})" if key else ""
        lines.append(
            f"  chunk {chunk_no}: batch {batch_id or '(not created)'}{through} {status}: "
            f"{completed}/{total} completed, {failed} failed{collected}"
        )
    waiting = connection.execute(
        "SELECT count(*) FROM batch_lines WHERE chunk_no IS NULL"
    ).fetchone()[0]
    if waiting:
        lines.append(f"  {waiting} lines waiting to be resubmitted")
    return lines


@dataclass(frozen=True, slots=True)
class BatchCounts:
    """A batch run's counts, for its metrics: batches by (status, key id; ``""`` for a chunk
    journalled before keys were recorded), the lines of the batches not yet collected
    (``total``, ``completed``, ``failed``), and lines waiting for a new batch."""

    batches: dict[tuple[str, str], int]
    lines: dict[str, int]
    waiting: int


def batch_counts(connection: sqlite3.Connection) -> BatchCounts | None:
    """The counts of a journal's batches (``None``: not a batch run's journal)."""
    tables = {name for (name,) in connection.execute("SELECT name FROM sqlite_master")}
    if "batch_chunks" not in tables:
        return None
    columns = {row[1] for row in connection.execute("PRAGMA table_info(batch_chunks)")}
    key_id = "coalesce(key_id, '')" if "key_id" in columns else "''"
    batches = {
        (str(status), str(key)): int(count)
        for status, key, count in connection.execute(
            f"SELECT status, {key_id}, count(*) FROM batch_chunks GROUP BY 1, 2"
        )
    }
    total, completed, failed = connection.execute(
        "SELECT coalesce(sum(lines), 0), coalesce(sum(completed), 0), coalesce(sum(failed), 0) "
        "FROM batch_chunks WHERE finished = 0 AND batch_id IS NOT NULL"
    ).fetchone()
    waiting = connection.execute(
        "SELECT count(*) FROM batch_lines WHERE chunk_no IS NULL"
    ).fetchone()[0]
    lines = {"total": int(total), "completed": int(completed), "failed": int(failed)}
    return BatchCounts(batches, lines, int(waiting))
