"""The run journal: what ``omc run`` has sent and answered, in SQLite, so a killed run resumes
without sending again what was already answered.

Promises, and how they are kept:

* **A result is reported only after its commit.** Outcomes are recorded in a transaction; the
  caller writes them to the output only after :meth:`Journal.commit` returns them.
* **A committed request is never sent again.** A resumed run skips every ``custom_id`` whose
  outcome is in the journal.
* **Only requests in flight at a crash can be billed twice.** Before a request is first sent,
  :meth:`Journal.mark_sent` commits it as *sent*. After a crash, the requests still marked
  *sent* are exactly those whose outcome is unknown; a resumed run sends them again and says
  how many there are.
* **One process per journal**: an exclusive lock on ``JOURNAL.lock``, taken with ``filelock``
  (``flock`` on Unix, ``msvcrt.locking`` on Windows), so the operating system releases it when
  the process dies, however it dies.
* **Files are private** (mode 0600) and **never hold a key**: the journal stores custom ids,
  line numbers, output lines (response bodies, which the engine scrubs of keys) and a
  fingerprint of the input and of the options that shape requests.

WAL mode with ``synchronous=NORMAL``: a commit survives the process being killed (the WAL is in
the OS's page cache); only a power cut can lose the last commits, which a resume then sends
again.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass

import filelock

from ._errors import ConfigurationError, OpenAIMultiClientError

_SENT = 1
_DONE = 2

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS requests (
    custom_id TEXT PRIMARY KEY,
    line INTEGER NOT NULL,
    state INTEGER NOT NULL,
    failed INTEGER NOT NULL DEFAULT 0,
    output BLOB
) WITHOUT ROWID;
"""


class JournalError(OpenAIMultiClientError):
    """The journal cannot be used: locked by another process, or made for other input."""


@dataclass(frozen=True, slots=True)
class JournalStatus:
    """What a journal holds."""

    done: int
    failed: int
    in_doubt: int
    fingerprint: str | None


def _private_file(path: str) -> None:
    descriptor = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
    os.close(descriptor)
    os.chmod(path, 0o600)


class Journal:
    """One run's journal. Use :meth:`open`; close with :meth:`close` (or ``with``)."""

    def __init__(
        self, path: str, connection: sqlite3.Connection, lock: filelock.BaseFileLock | None
    ) -> None:
        self.path = path
        self._db = connection
        self._lock = lock
        self._pending = 0

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
            _private_file(path)
            old_umask = os.umask(0o077)  # the -wal and -shm files SQLite creates: private too
            try:
                connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
                connection.execute("PRAGMA journal_mode=WAL")
                connection.execute("PRAGMA synchronous=NORMAL")
                connection.executescript(_SCHEMA)
            finally:
                os.umask(old_umask)
            journal = cls(path, connection, lock)
            journal._check_fingerprint(fingerprint, force)
        except BaseException:
            lock.release()
            raise
        return journal

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
        counts = dict(
            self._db.execute(
                "SELECT state * 10 + failed, count(*) FROM requests GROUP BY state, failed"
            ).fetchall()
        )
        row = self._db.execute("SELECT value FROM meta WHERE key = 'fingerprint'").fetchone()
        return JournalStatus(
            done=counts.get(_DONE * 10, 0) + counts.get(_DONE * 10 + 1, 0),
            failed=counts.get(_DONE * 10 + 1, 0),
            in_doubt=counts.get(_SENT * 10, 0),
            fingerprint=None if row is None else str(row[0]),
        )

    def finished_ids(self) -> set[str]:
        """The custom ids whose outcome is recorded (never to be sent again)."""
        rows = self._db.execute("SELECT custom_id FROM requests WHERE state = ?", (_DONE,))
        return {str(custom_id) for (custom_id,) in rows}

    def outputs(self) -> Iterator[tuple[bytes, bool]]:
        """Every recorded output line, in input order, with whether it is a failure."""
        rows = self._db.execute(
            "SELECT output, failed FROM requests WHERE state = ? ORDER BY line", (_DONE,)
        )
        for output, failed in rows:
            yield bytes(output), bool(failed)

    # ------------------------------------------------------------------ writing

    def mark_sent(self, custom_id: str, line: int) -> None:
        """Commit that ``custom_id`` is about to be sent (idempotent; commits any recorded
        outcomes with it)."""
        cursor = self._db.execute(
            "INSERT OR IGNORE INTO requests (custom_id, line, state) VALUES (?, ?, ?)",
            (custom_id, line, _SENT),
        )
        if cursor.rowcount or self._pending:
            self._commit()

    def record(self, custom_id: str, line: int, output: bytes, *, failed: bool) -> None:
        """Record an outcome; it is durable after the next :meth:`commit`."""
        if not self._pending:
            self._db.execute("BEGIN")
        try:
            self._db.execute(
                "INSERT OR REPLACE INTO requests (custom_id, line, state, failed, output) "
                "VALUES (?, ?, ?, ?, ?)",
                (custom_id, line, _DONE, int(failed), output),
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
        raise ConfigurationError(f"no journal at {path}")
    connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        journal = Journal(path, connection, None)
        return journal.status()
    finally:
        connection.close()


class NullJournal(Journal):
    """No journal (``omc run --no-journal``): nothing is recorded, so nothing can be resumed.
    For measuring what the journal costs, and for throwaway runs."""

    def __init__(self) -> None:
        self.path = "(no journal)"
        self._pending = 0

    def status(self) -> JournalStatus:
        return JournalStatus(done=0, failed=0, in_doubt=0, fingerprint=None)

    def finished_ids(self) -> set[str]:
        return set()

    def outputs(self) -> Iterator[tuple[bytes, bool]]:
        return iter(())

    def mark_sent(self, custom_id: str, line: int) -> None:
        pass

    def record(self, custom_id: str, line: int, output: bytes, *, failed: bool) -> None:
        pass

    def commit(self) -> int:
        return 0

    def close(self) -> None:
        pass
