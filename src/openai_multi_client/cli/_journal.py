"""The run journal: what ``omc run`` has sent and answered, in SQLite, so a killed run resumes
without sending again what was already answered.

Promises, and how they are kept:

* **A result is reported only after its commit.** Outcomes are recorded in a transaction; the
  caller writes them to the output only after :meth:`Journal.commit` returns them.
* **A committed request is never sent again.** A resumed run skips every ``custom_id`` whose
  outcome is in the journal.
* **Only requests in flight at a crash can be billed twice.** Before each attempt of a request
  leaves, :meth:`Journal.mark_sent` commits it as *sent*. An attempt that ends with an answer
  known not to be billed (an error status, a refused connection) makes it *unbilled*
  (:meth:`Journal.mark_unbilled`) until its next attempt. After a crash, the requests still
  marked *sent* are exactly those whose last attempt may have reached the server without its
  answer reaching the journal; a resumed run sends them again and says how many there are. It
  sends the *unbilled* ones again too, without counting them.
* **One process per journal**: an exclusive lock on ``JOURNAL.lock``, taken with ``filelock``
  (``flock`` on Unix, ``msvcrt.locking`` on Windows), so the operating system releases it when
  the process dies, however it dies.
* **Files are private** (mode 0600) and **never hold a key**: the journal stores custom ids,
  line numbers, output lines (response bodies, which the engine scrubs of keys), a fingerprint
  of the input and of the options that shape requests, and a digest of each request's url and
  body (so that input read from a pipe, which cannot be fingerprinted whole, is still checked
  request by request).
* **A failure for a temporary reason can be sent again**: each failure records whether it was
  retryable (:func:`retryable_output` for journals made before that column existed), and
  ``omc run --retry-failed`` sends those again; the new outcome replaces the old.

Schema versions: 1 had ``requests (custom_id, line, state, failed, output)``; 2 adds
``retryable``, ``digest`` and ``run`` (the number of the run that last wrote the row). A version
1 journal is migrated when opened for writing; :func:`open_status` reads either.

The file is opened by :func:`~._private.private_sqlite` (WAL mode with ``synchronous=NORMAL``):
a commit survives the process being killed; only a power cut can lose the last commits, which a
resume then sends again.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

import filelock

from .._errors import ConfigurationError, JournalError
from ._private import private_sqlite

_SENT = 1
_DONE = 2
_UNBILLED = 3  # sent, but every attempt so far ended with an answer known not to be billed
_LOOKUP_CHUNK = 256  # ids per lookup query (SQLite allows 32,766 parameters)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS requests (
    custom_id TEXT PRIMARY KEY,
    line INTEGER NOT NULL,
    state INTEGER NOT NULL,
    failed INTEGER NOT NULL DEFAULT 0,
    output BLOB,
    retryable INTEGER NOT NULL DEFAULT 0,
    digest BLOB,
    run INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
"""
_ADDED_IN_2 = (
    ("retryable", "INTEGER NOT NULL DEFAULT 0"),
    ("digest", "BLOB"),
    ("run", "INTEGER NOT NULL DEFAULT 0"),
)

RetryMode = Literal["retryable", "all"]
"""Which recorded failures ``omc run --retry-failed`` sends again."""

# Failures without an HTTP response that a retry may cure (see _retry.classify), by the error
# code written to the output line (the exception's class name).
_RETRYABLE_CODES = frozenset(
    {
        "TransportError",
        "ConnectError",
        "RequestTimeoutError",
        "ConnectionClosedError",
        "StreamInterruptedError",
        "InvalidResponseError",
        "CustomAPIError",
    }
)


def retryable_output(output: bytes) -> bool:
    """Whether a recorded failure line shows a temporary failure: a 408, 409, 429 or 5xx
    response, or a transport error. For journals made before the ``retryable`` column."""
    try:
        record = json.loads(output)
        response, error = record.get("response"), record.get("error")
        if isinstance(response, dict):
            status = response.get("status_code")
            return isinstance(status, int) and (status in (408, 409, 429) or status >= 500)
        return isinstance(error, dict) and error.get("code") in _RETRYABLE_CODES
    except (ValueError, AttributeError):
        return False


@dataclass(frozen=True, slots=True)
class Known:
    """What the journal holds about one custom id."""

    done: bool
    failed: bool
    retryable: bool
    digest: bytes | None

    def to_retry(self, mode: RetryMode | None) -> bool:
        """Whether ``--retry-failed`` (``mode``) sends this recorded failure again."""
        return self.done and self.failed and mode is not None and (mode == "all" or self.retryable)


def _retry_filter(mode: RetryMode | None) -> str:
    """SQL selecting the rows ``mode`` sends again (none when ``mode`` is ``None``)."""
    if mode is None:
        return "0"
    return "failed = 1" if mode == "all" else "failed = 1 AND retryable = 1"


@dataclass(frozen=True, slots=True)
class JournalStatus:
    """What a journal holds."""

    done: int
    failed: int
    in_doubt: int
    fingerprint: str | None
    failed_retryable: int = 0


class Journal:
    """One run's journal. Use :meth:`open`; close with :meth:`close` (or ``with``)."""

    def __init__(
        self, path: str, connection: sqlite3.Connection, lock: filelock.BaseFileLock | None
    ) -> None:
        self.path = path
        self._db = connection
        self._lock = lock
        self._pending = 0
        self.run = 0

    @classmethod
    def open(cls, path: str, fingerprint: str | None, *, force: bool = False) -> Journal:
        """Open (or create) the journal at ``path`` for input with ``fingerprint``.

        Refuses, with :class:`JournalError`, when another process holds it, or when it was made
        for another input or other request-shaping options (unless ``force``).
        """
        lock_path = path + ".lock"
        folder = os.path.dirname(path) or "."
        if not os.path.isdir(folder):  # filelock would create it: say so instead
            raise ConfigurationError(f"no directory {folder!r} for the journal {path!r}")
        # Not thread-local: the journal may be closed from another thread than opened it.
        lock = filelock.FileLock(lock_path, timeout=0, mode=0o600, thread_local=False)
        try:
            lock.acquire()
        except filelock.Timeout:
            raise JournalError(
                f"{path} is in use by another omc run (lock {lock_path}); wait for it to "
                "finish, or give this run its own --journal"
            ) from None
        try:
            connection = private_sqlite(path)
            try:
                connection.executescript(_SCHEMA)
            except BaseException:
                connection.close()
                raise
            journal = cls(path, connection, lock)
            journal._migrate()
            journal._check_fingerprint(fingerprint, force)
            journal._start_run()
        except BaseException:
            lock.release()
            raise
        return journal

    def _migrate(self) -> None:
        """Bring a version 1 journal to version 2: add the columns, and classify its recorded
        failures as retryable or not from their output lines."""
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(requests)")}
        missing = [(name, kind) for name, kind in _ADDED_IN_2 if name not in columns]
        if not missing:
            return
        self._db.execute("BEGIN IMMEDIATE")
        try:
            for name, kind in missing:
                self._db.execute(f"ALTER TABLE requests ADD COLUMN {name} {kind}")
            rows = self._db.execute(
                "SELECT custom_id, output FROM requests WHERE state = ? AND failed = 1", (_DONE,)
            ).fetchall()
            self._db.executemany(
                "UPDATE requests SET retryable = 1 WHERE custom_id = ?",
                [(custom_id,) for custom_id, output in rows if retryable_output(bytes(output))],
            )
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise

    def _start_run(self) -> None:
        """Number this run (rows it writes carry the number)."""
        row = self._db.execute("SELECT value FROM meta WHERE key = 'run'").fetchone()
        self.run = (0 if row is None else int(row[0])) + 1
        self._db.execute(
            "INSERT OR REPLACE INTO meta (key, value) VALUES ('run', ?)", (str(self.run),)
        )

    def _check_fingerprint(self, fingerprint: str | None, force: bool) -> None:
        row = self._db.execute("SELECT value FROM meta WHERE key = 'fingerprint'").fetchone()
        stored = None if row is None else str(row[0])
        if fingerprint is None:
            return
        if stored is not None and stored != fingerprint and not force:
            raise JournalError(
                f"{self.path} belongs to a run with another input or other options that shape "
                "the requests; resuming would mix them. Use another --journal (or -o), or "
                "--force to resume anyway"
            )
        self._db.execute(
            "INSERT OR REPLACE INTO meta (key, value) VALUES ('fingerprint', ?)", (fingerprint,)
        )

    # ------------------------------------------------------------------ reading

    def status(self) -> JournalStatus:
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(requests)")}
        # A version 1 journal (read by omc status without migrating it): classify its failures.
        retryable = "retryable" if "retryable" in columns else "0"
        counts: dict[tuple[int, int], int] = {}
        failed_retryable = 0
        rows = self._db.execute(
            f"SELECT state, failed, {retryable}, count(*) FROM requests GROUP BY state, failed, 3"
        )
        for state, failed, is_retryable, count in rows:
            counts[state, failed] = counts.get((state, failed), 0) + count
            if state == _DONE and failed and is_retryable:
                failed_retryable += count
        if retryable == "0":
            failed_retryable = sum(
                retryable_output(bytes(output))
                for (output,) in self._db.execute(
                    "SELECT output FROM requests WHERE state = ? AND failed = 1", (_DONE,)
                )
            )
        row = self._db.execute("SELECT value FROM meta WHERE key = 'fingerprint'").fetchone()
        return JournalStatus(
            done=counts.get((_DONE, 0), 0) + counts.get((_DONE, 1), 0),
            failed=counts.get((_DONE, 1), 0),
            in_doubt=counts.get((_SENT, 0), 0) + counts.get((_SENT, 1), 0),
            fingerprint=None if row is None else str(row[0]),
            failed_retryable=failed_retryable,
        )

    def to_retry(self, mode: RetryMode | None) -> int:
        """How many recorded failures ``--retry-failed`` (``mode``) would send again."""
        row = self._db.execute(
            f"SELECT count(*) FROM requests WHERE state = ? AND {_retry_filter(mode)}", (_DONE,)
        ).fetchone()
        return int(row[0])

    def lookup(self, custom_ids: Sequence[str]) -> dict[str, Known]:
        """What the journal holds about each of ``custom_ids`` (absent ids are left out), in
        one query per 256 ids."""
        known: dict[str, Known] = {}
        for start in range(0, len(custom_ids), _LOOKUP_CHUNK):
            chunk = custom_ids[start : start + _LOOKUP_CHUNK]
            rows = self._db.execute(
                "SELECT custom_id, state, failed, retryable, digest FROM requests "
                f"WHERE custom_id IN ({','.join('?' * len(chunk))})",
                chunk,
            )
            for custom_id, state, failed, retryable, digest in rows:
                stored = None if digest is None else bytes(digest)
                known[custom_id] = Known(state == _DONE, bool(failed), bool(retryable), stored)
        return known

    def outputs(self, *, leave_out: RetryMode | None = None) -> Iterator[tuple[bytes, bool]]:
        """Every recorded output line, in input order, with whether it is a failure; without
        the failures ``leave_out`` would send again."""
        rows = self._db.execute(
            "SELECT output, failed FROM requests "
            f"WHERE state = ? AND NOT ({_retry_filter(leave_out)}) ORDER BY line",
            (_DONE,),
        )
        for output, failed in rows:
            yield bytes(output), bool(failed)

    def not_retried(self, mode: RetryMode | None) -> Iterator[tuple[bytes, bool]]:
        """The failures ``mode`` selected for sending again that this run did not send (left
        out of :meth:`outputs` at the start; the output files get them at the end)."""
        rows = self._db.execute(
            "SELECT output, failed FROM requests "
            f"WHERE state = ? AND {_retry_filter(mode)} AND run < ? ORDER BY line",
            (_DONE, self.run),
        )
        for output, failed in rows:
            yield bytes(output), bool(failed)

    # ------------------------------------------------------------------ writing

    def mark_sent(self, custom_id: str, line: int, digest: bytes | None = None) -> None:
        """Commit that ``custom_id`` is about to be sent (idempotent; commits any recorded
        outcomes with it). A recorded failure sent again (``--retry-failed``) becomes *sent*:
        its outcome is unknown until the new one is recorded."""
        cursor = self._db.execute(
            "INSERT INTO requests (custom_id, line, state, digest, run) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (custom_id) DO UPDATE SET state = excluded.state, run = excluded.run, "
            "line = excluded.line, digest = coalesce(excluded.digest, digest) "
            "WHERE state != ?",
            (custom_id, line, _SENT, digest, self.run, _SENT),
        )
        if cursor.rowcount or self._pending:
            self._commit()

    def mark_unbilled(self, custom_id: str) -> None:
        """``custom_id``'s last attempt ended with an answer known not to be billed: it is no
        longer of unknown outcome. Committed at once (with any outcomes pending), so that a
        crash right after cannot report it as possibly billed twice; such answers are failures,
        so this costs a commit per failed attempt only."""
        if not self._pending:
            self._db.execute("BEGIN")
        self._db.execute(
            "UPDATE requests SET state = ? WHERE custom_id = ? AND state = ?",
            (_UNBILLED, custom_id, _SENT),
        )
        self._pending += 1
        self._commit()

    def record(
        self,
        custom_id: str,
        line: int,
        output: bytes,
        *,
        failed: bool,
        retryable: bool = False,
        digest: bytes | None = None,
    ) -> None:
        """Record an outcome (``retryable``: a failure a later run may send again); it is
        durable after the next :meth:`commit`."""
        if not self._pending:
            self._db.execute("BEGIN")
        try:
            self._db.execute(
                "INSERT OR REPLACE INTO requests "
                "(custom_id, line, state, failed, output, retryable, digest, run) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (custom_id, line, _DONE, int(failed), output, int(retryable), digest, self.run),
            )
        except BaseException:
            if not self._pending:
                self._db.execute("ROLLBACK")
            raise
        self._pending += 1

    def commit(self) -> int:
        """Make recorded outcomes durable; returns how many were committed."""
        committed = self._pending
        if committed:
            self._commit()
        return committed

    def _commit(self) -> None:
        if self._pending:
            self._db.execute("COMMIT")
            self._pending = 0

    def close(self) -> None:
        """Commit what is pending, close the database and release the lock."""
        try:
            self._commit()
            self._db.close()
        finally:
            if self._lock is not None:
                self._lock.release()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Journal({self.path!r})"


def open_status(path: str) -> JournalStatus:
    """A journal's status, read-only (for ``omc status``; works while a run holds it)."""
    if not os.path.exists(path):
        raise ConfigurationError(f"no journal at {path}{_did_you_mean(path)}")
    if os.path.isdir(path):
        raise ConfigurationError(f"{path} is a directory, not a journal{_did_you_mean(path)}")
    connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        try:
            tables = {name for (name,) in connection.execute("SELECT name FROM sqlite_master")}
        except sqlite3.DatabaseError:
            tables = set()
        if not {"meta", "requests"} <= tables:
            raise ConfigurationError(f"{path} is not a journal{_did_you_mean(path)}")
        journal = Journal(path, connection, None)
        return journal.status()
    finally:
        connection.close()


def _did_you_mean(path: str) -> str:
    """A hint for ``omc status`` given the output file (or another file) for the journal."""
    if os.path.isfile(path + ".journal"):
        return f"; did you mean {path}.journal?"
    return (
        "; give the journal file omc run wrote (OUTPUT.journal beside the output, or its --journal)"
    )


class NullJournal(Journal):
    """No journal (``omc run --no-journal``): nothing is recorded, so nothing can be resumed.
    For measuring what the journal costs, and for throwaway runs."""

    def __init__(self) -> None:
        self.path = "(no journal)"
        self._pending = 0

    def status(self) -> JournalStatus:
        return JournalStatus(done=0, failed=0, in_doubt=0, fingerprint=None)

    def to_retry(self, mode: RetryMode | None) -> int:
        return 0

    def lookup(self, custom_ids: Sequence[str]) -> dict[str, Known]:
        return {}

    def outputs(self, *, leave_out: RetryMode | None = None) -> Iterator[tuple[bytes, bool]]:
        return iter(())

    def not_retried(self, mode: RetryMode | None) -> Iterator[tuple[bytes, bool]]:
        return iter(())

    def mark_sent(self, custom_id: str, line: int, digest: bytes | None = None) -> None:
        pass

    def mark_unbilled(self, custom_id: str) -> None:
        pass

    def record(
        self,
        custom_id: str,
        line: int,
        output: bytes,
        *,
        failed: bool,
        retryable: bool = False,
        digest: bytes | None = None,
    ) -> None:
        pass

    def commit(self) -> int:
        return 0

    def close(self) -> None:
        pass


def request_digest(url: str, body: object) -> bytes:
    """A 128-bit digest of what a request sends (its endpoint and its body, canonical JSON: the
    same whatever the key order or spacing of the input line, and with or without orjson)."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    data = url.encode() + b"\n" + canonical.encode("utf-8", "surrogatepass")
    return hashlib.blake2b(data, digest_size=16).digest()
