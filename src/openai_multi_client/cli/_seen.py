"""The ``custom_id`` values one ``omc run`` has read, on disk, so memory stays flat at 10^7 lines.

The reader's duplicate check needs every id of the input so far. In memory that is 12 to 24
bytes an id (:class:`~openai_multi_client.cli._batch.SeenIds`), some 200 MB at 10^7 lines; here it
is a table of 64-bit hashes in a private temporary SQLite database (SQLite deletes the file when
it is closed), with a page cache of a few megabytes whatever the input's size.
"""

from __future__ import annotations

import sqlite3

from ._batch import id_hash

__all__ = ["DiskSeenIds"]

_COMMIT_EVERY = 4096  # inserts per transaction: nothing here needs to survive a crash
_CACHE_KIB = 4096  # SQLite page cache


class DiskSeenIds:
    """An :class:`~openai_multi_client.cli._batch.IdRegistry` in a temporary SQLite file. Used by
    one thread at a time (the reader); close it with :meth:`close`."""

    def __init__(self) -> None:
        # "" is SQLite's private temporary on-disk database, removed on close.
        self._db = sqlite3.connect("", isolation_level=None, check_same_thread=False)
        self._db.execute(f"PRAGMA cache_size = -{_CACHE_KIB}")
        self._db.execute("PRAGMA journal_mode = OFF")
        self._db.execute("PRAGMA synchronous = OFF")
        self._db.execute("CREATE TABLE seen (hash INTEGER PRIMARY KEY, line INTEGER NOT NULL)")
        self._uncommitted = 0
        self._count = 0

    def first_line(self, custom_id: str, line: int) -> int:
        """The line ``custom_id`` first appeared on; records ``line`` if it is new. Two ids with
        the same 64-bit hash count as one (odds about 1 in 3 * 10^7 at 10^6 ids; the message
        names both lines)."""
        value = id_hash(custom_id)
        key = value - (1 << 64) if value >= 1 << 63 else value  # SQLite integers are signed
        if not self._uncommitted:
            self._db.execute("BEGIN")
        inserted = self._db.execute(
            "INSERT OR IGNORE INTO seen (hash, line) VALUES (?, ?)", (key, line)
        ).rowcount
        self._uncommitted += 1
        if self._uncommitted >= _COMMIT_EVERY:
            self._db.execute("COMMIT")
            self._uncommitted = 0
        if inserted:
            self._count += 1
            return line
        row = self._db.execute("SELECT line FROM seen WHERE hash = ?", (key,)).fetchone()
        return int(row[0])

    def __len__(self) -> int:
        return self._count

    def close(self) -> None:
        self._db.close()
