"""Private files for ``omc run``: every file it writes (outputs, journal, cache) is mode 0600,
also when it existed before with a wider mode, because response bodies are the user's data.

:func:`private_open` is the one place that creates such a file; :func:`private_sqlite` opens a
SQLite database in one, in WAL mode, with the ``-wal`` and ``-shm`` files SQLite adds private too.

WAL with ``synchronous=NORMAL``: a commit survives the process being killed (the WAL is in the
OS's page cache); only a power cut can lose the last commits.
"""

from __future__ import annotations

import os
import sqlite3
from typing import IO

__all__ = ["private_open", "private_sqlite"]


def private_open(path: str, *, truncate: bool = True) -> IO[bytes]:
    """``path`` opened for writing, mode 0600 (narrowed if it existed with a wider mode);
    emptied unless ``truncate`` is false."""
    flags = os.O_CREAT | os.O_WRONLY | (os.O_TRUNC if truncate else 0)
    descriptor = os.open(path, flags, 0o600)
    try:
        os.fchmod(descriptor, 0o600)
    except BaseException:
        os.close(descriptor)
        raise
    return os.fdopen(descriptor, "wb")


def private_sqlite(path: str) -> sqlite3.Connection:
    """A connection to the SQLite database at ``path`` (created if missing) in a private file,
    in autocommit mode (transactions are explicit), usable from any one thread at a time."""
    private_open(path, truncate=False).close()
    old_umask = os.umask(0o077)  # the -wal and -shm files SQLite creates: private too
    try:
        connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        try:
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=NORMAL")
        except BaseException:
            connection.close()
            raise
    finally:
        os.umask(old_umask)
    return connection
