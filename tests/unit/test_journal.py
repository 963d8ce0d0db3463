"""The run journal: schema migration, batched lookups, retry selection."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

from openai_multi_client.cli._journal import Journal, open_status, request_digest, retryable_output

_V1_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE requests (
    custom_id TEXT PRIMARY KEY,
    line INTEGER NOT NULL,
    state INTEGER NOT NULL,
    failed INTEGER NOT NULL DEFAULT 0,
    output BLOB
) WITHOUT ROWID;
"""


def _line(custom_id: str, status: int | None, code: str | None = None) -> bytes:
    record: dict[str, Any]
    if status is None:
        record = {"custom_id": custom_id, "response": None, "error": {"code": code, "message": ""}}
    else:
        record = {"custom_id": custom_id, "response": {"status_code": status, "body": {}}}
    return json.dumps(record).encode() + b"\n"


def _v1_journal(path: Path) -> None:
    db = sqlite3.connect(path)
    db.executescript(_V1_SCHEMA)
    rows = [
        ("ok", 1, 2, 0, _line("ok", 200)),
        ("e503", 2, 2, 1, _line("e503", 503)),
        ("e400", 3, 2, 1, _line("e400", 400)),
        ("refused", 4, 2, 1, _line("refused", None, "ConnectError")),
        ("odd", 5, 2, 1, b"not json"),
        ("flying", 6, 1, 0, None),
    ]
    db.executemany("INSERT INTO requests VALUES (?, ?, ?, ?, ?)", rows)
    db.commit()
    db.close()


def test_a_version_1_journal_is_read_and_migrated(tmp_path: Path) -> None:
    path = tmp_path / "old.journal"
    _v1_journal(path)
    before = open_status(str(path))  # read-only: not migrated, failures classified from lines
    assert (before.done, before.failed, before.in_doubt, before.failed_retryable) == (5, 4, 1, 2)
    with Journal.open(str(path), None) as journal:
        assert journal.status() == before
        assert journal.to_retry("retryable") == 2
        assert journal.to_retry("all") == 4
        assert journal.to_retry(None) == 0
        known = journal.lookup(["ok", "e503", "e400", "flying", "absent"])
        assert set(known) == {"ok", "e503", "e400", "flying"}
        assert known["e503"].to_retry("retryable")
        assert not known["e400"].to_retry("retryable")
        assert known["e400"].to_retry("all")
        assert not known["ok"].to_retry("all")
        assert not known["flying"].done
        assert known["ok"].digest is None
        kept = [data for data, _ in journal.outputs(leave_out="retryable")]
        assert kept == [_line("ok", 200), _line("e400", 400), b"not json"]
    columns = {row[1] for row in sqlite3.connect(path).execute("PRAGMA table_info(requests)")}
    assert {"retryable", "digest", "run"} <= columns


def test_a_failure_sent_again_is_in_doubt_until_its_new_outcome(tmp_path: Path) -> None:
    path = str(tmp_path / "j.journal")
    digest = request_digest("/v1/chat/completions", {"model": "m"})
    with Journal.open(path, None) as journal:
        journal.mark_sent("a", 1, digest)
        journal.record("a", 1, _line("a", 503), failed=True, retryable=True, digest=digest)
        journal.commit()
    with Journal.open(path, None) as journal:
        assert journal.lookup(["a"])["a"].digest == digest
        journal.mark_sent("a", 1, digest)
        assert journal.status().in_doubt == 1
        assert list(journal.not_retried("retryable")) == []  # it was sent by this run
        journal.record("a", 1, _line("a", 200), failed=False, digest=digest)
        journal.commit()
        assert journal.status().failed_retryable == 0


def test_the_digest_is_of_the_request_not_its_spelling() -> None:
    one = request_digest("/v1/embeddings", {"model": "m", "input": ["x", 1.5]})
    assert one == request_digest("/v1/embeddings", {"input": ["x", 1.5], "model": "m"})
    assert one != request_digest("/v1/completions", {"model": "m", "input": ["x", 1.5]})
    assert one != request_digest("/v1/embeddings", {"model": "m", "input": ["x", 2.5]})


def test_retryable_output_reads_status_and_error_codes() -> None:
    assert retryable_output(_line("a", 429))
    assert retryable_output(_line("a", 502))
    assert not retryable_output(_line("a", 404))
    assert not retryable_output(b"{")
    assert retryable_output(_line("a", None, "RequestTimeoutError"))
    assert not retryable_output(_line("a", None, "RequestTooLargeError"))


def test_an_unbilled_attempt_is_not_in_doubt_until_the_next_one_leaves(tmp_path: Path) -> None:
    path = str(tmp_path / "j.journal")
    with Journal.open(path, None) as journal:
        journal.mark_sent("a", 1)
        journal.mark_sent("b", 2)
        journal.mark_unbilled("a")  # a 429, say: not billed
        journal.commit()
        assert journal.status().in_doubt == 1
        journal.mark_sent("b", 2)  # b's retry: still in doubt, once
        assert journal.status().in_doubt == 1
    with Journal.open(path, None) as journal:  # after a crash: a is sent again, not counted
        assert journal.status().in_doubt == 1
        assert not journal.lookup(["a"])["a"].done
        journal.mark_sent("a", 1)  # its next attempt may be billed
        assert journal.status().in_doubt == 2
        journal.mark_unbilled("a")
        journal.record("a", 1, _line("a", 200), failed=False)
        journal.mark_unbilled("a")  # an answer recorded stays recorded
        journal.commit()
        assert journal.status().done == 1
        assert journal.status().in_doubt == 1


def test_an_unbilled_mark_is_durable_at_once(tmp_path: Path) -> None:
    """A crash right after an unbilled answer (no commit of the run's own) must not count the
    request as possibly billed twice: another reader sees the mark at once."""
    path = str(tmp_path / "j.journal")
    with Journal.open(path, None) as journal:
        journal.mark_sent("a", 1)
        assert open_status(path).in_doubt == 1
        journal.mark_unbilled("a")
        assert open_status(path).in_doubt == 0
