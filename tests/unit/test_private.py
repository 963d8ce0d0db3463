"""Every file ``omc run`` writes is private (0600), made so by one opener."""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

import pytest

from openai_multi_client import ConfigurationError, OpenAIMultiClientError
from openai_multi_client._errors import JournalError, OutputFileError
from openai_multi_client.cli._cache import ResponseCache
from openai_multi_client.cli._journal import Journal
from openai_multi_client.cli._private import private_open, private_sqlite

posix_only = pytest.mark.skipif(sys.platform == "win32", reason="POSIX file modes")


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@posix_only
def test_an_existing_cache_file_with_a_wide_mode_becomes_private(tmp_path: Path) -> None:
    path = tmp_path / "answers.cache"
    ResponseCache(str(path)).close()
    os.chmod(path, 0o644)
    cache = ResponseCache(str(path))
    cache.put("k", 200, None, {"x": 1})
    cache.close()
    assert mode(path) == 0o600


@posix_only
def test_journal_and_its_wal_files_are_private(tmp_path: Path) -> None:
    path = tmp_path / "run.journal"
    path.write_bytes(b"")
    os.chmod(path, 0o666)
    journal = Journal.open(str(path), "fingerprint")
    journal.mark_sent("a", 1)
    try:
        for name in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
            assert mode(name) == 0o600, name
    finally:
        journal.close()


@posix_only
def test_private_open_truncates_or_keeps(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    path.write_bytes(b"kept\n")
    os.chmod(path, 0o644)
    private_open(str(path), truncate=False).close()
    assert path.read_bytes() == b"kept\n"
    assert mode(path) == 0o600
    with private_open(str(path)) as file:
        file.write(b"new\n")
    assert path.read_bytes() == b"new\n"


def test_private_sqlite_is_in_wal_mode(tmp_path: Path) -> None:
    connection = private_sqlite(str(tmp_path / "db"))
    try:
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert connection.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
    finally:
        connection.close()


def test_the_cli_errors_are_in_the_one_tree() -> None:
    assert issubclass(JournalError, ConfigurationError)
    assert issubclass(OutputFileError, OpenAIMultiClientError)
