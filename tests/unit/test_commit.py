"""The commit policy of ``omc run`` ("N results or T seconds") and the committer, on a fake
clock, with a real journal and real output files."""

from __future__ import annotations

from pathlib import Path

import pytest

from openai_multi_client.cli._commit import (
    COMMIT_EVERY,
    COMMIT_SECONDS,
    CommitPolicy,
    Committer,
)
from openai_multi_client.cli._files import Outputs
from openai_multi_client.cli._journal import Journal, open_status
from openai_multi_client.testing import FakeClock


def test_the_run_commits_every_256_results_or_after_a_fifth_of_a_second() -> None:
    assert (COMMIT_EVERY, COMMIT_SECONDS) == (256, 0.2)


def test_due_at_every_results_whatever_the_time() -> None:
    policy = CommitPolicy(FakeClock(), every=3, seconds=10.0)
    assert not policy.due(0)
    assert not policy.due(2)
    assert policy.due(3)
    assert policy.due(4)


def test_due_once_the_time_is_over_and_counted_from_the_last_commit() -> None:
    clock = FakeClock()
    policy = CommitPolicy(clock, every=100, seconds=0.2)
    clock.advance(0.2)
    assert not policy.due(1)  # "longer than": exactly 0.2 s is not yet due
    clock.advance(0.01)
    assert policy.due(1)
    assert not policy.due(0)  # nothing waits: nothing to commit
    policy.committed()
    assert not policy.due(1)
    clock.advance(0.25)
    assert policy.due(1)


@pytest.mark.parametrize(("every", "seconds"), [(0, 0.2), (1, -1.0), (1, float("nan"))])
def test_a_policy_that_could_never_commit_is_refused(every: int, seconds: float) -> None:
    with pytest.raises(ValueError, match="every must be"):
        CommitPolicy(FakeClock(), every=every, seconds=seconds)


def _committer(tmp_path: Path, clock: FakeClock, every: int) -> tuple[Committer, Journal, Path]:
    journal = Journal.open(str(tmp_path / "run.journal"), "fingerprint")
    output = tmp_path / "out.jsonl"
    outputs = Outputs(str(output), None, journal.path)
    policy = CommitPolicy(clock, every=every, seconds=0.2)
    return Committer(journal, outputs, policy), journal, output


def _record(committer: Committer, n: int) -> None:
    committer.record(f"id-{n}", n, b"line %d\n" % n, b"d" * 16, failed=False, retryable=False)


def test_outputs_are_written_only_after_the_journal_commits(tmp_path: Path) -> None:
    clock = FakeClock()
    committer, journal, output = _committer(tmp_path, clock, every=3)
    try:
        _record(committer, 1)
        _record(committer, 2)
        assert output.read_bytes() == b""
        assert open_status(journal.path).done == 0  # another reader sees nothing yet
        _record(committer, 3)  # the third result: a commit, then the lines
        assert output.read_bytes() == b"line 1\nline 2\nline 3\n"
        assert open_status(journal.path).done == 3
    finally:
        committer.close_outputs()
        journal.close()


def test_a_lone_result_is_committed_by_the_timer(tmp_path: Path) -> None:
    clock = FakeClock()
    committer, journal, output = _committer(tmp_path, clock, every=256)
    try:
        _record(committer, 1)
        committer.tick()
        assert output.read_bytes() == b""
        clock.advance(0.3)
        committer.tick()
        assert output.read_bytes() == b"line 1\n"
        assert open_status(journal.path).done == 1
    finally:
        committer.close_outputs()
        journal.close()


def test_finish_commits_what_waits(tmp_path: Path) -> None:
    committer, journal, output = _committer(tmp_path, FakeClock(), every=256)
    try:
        _record(committer, 1)
        committer.finish(None)
        assert output.read_bytes() == b"line 1\n"
    finally:
        committer.close_outputs()
        journal.close()
