"""The two bounds on the "may be billed twice" count after a SIGKILL of ``omc run``, measured
against the attempt log of a mock server in its own process (``run_mock_process.py``).

How "in flight at the kill" is measured, independently of the journal's *sent* marks: from the
server's log, a request not done in the journal after the kill was in flight (or waiting to
retry after an attempt of unknown outcome) if its last attempt before the next run started
was still open at the kill (or arrived after it: sent just before), or ended in a way the
client could not know was unbilled (a 200 whose result had not reached the journal, a reset,
a hang, a disconnect). A request whose last attempt ended with an error status (500, 503, 429)
more than ``SETTLE`` seconds before the kill was not in flight: its unbilled mark had time to
reach the journal. Bound (a): every request the journal holds as *sent* is in that set.
Bound (b): every request the server answered both before and after the kill is in it too.
"""

from __future__ import annotations

import json
import re
import signal
import sqlite3
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .mock_process import MockProcess

SERVER_SCRIPT = Path(__file__).with_name("run_mock_process.py")
#: How long an unbilled mark may take to reach the journal (it commits with the next send).
SETTLE = 0.05


class RunServer(MockProcess):
    """The online mock server in its own process, logging every attempt."""

    def __init__(self, tmp_path: Path, options: dict[str, Any], seed: int) -> None:
        super().__init__(SERVER_SCRIPT, tmp_path, options, seed)


@dataclass
class Kill:
    """One SIGKILL: when, and what the journal held right after it."""

    started: float
    at: float
    sent: set[str]
    done: set[str]
    reported: int = -1  # what the next run said
    next_start: float = float("inf")


@dataclass
class Bounds:
    """The figures of one kill: reported in doubt, in flight by the server's log, answered
    twice across it, and the requests that break bound (a) or (b)."""

    reported: int
    in_flight: int
    answered_twice: int
    over: list[str] = field(default_factory=list)
    under: list[str] = field(default_factory=list)
    #: Held as sent but never seen by the server in this run: sent at the kill, or carried
    #: over in doubt from an earlier kill and not yet sent again.
    unseen: list[str] = field(default_factory=list)


def journal_states(journal: Path) -> tuple[set[str], set[str]]:
    """The custom ids held as *sent* (outcome unknown) and as done."""
    connection = sqlite3.connect(f"file:{journal}?mode=ro", uri=True)
    try:
        rows = connection.execute("SELECT custom_id, state FROM requests").fetchall()
    finally:
        connection.close()
    sent = {str(cid) for cid, state in rows if state == 1}
    done = {str(cid) for cid, state in rows if state == 2}
    return sent, done


def reported_in_doubt(stderr: str) -> int:
    match = re.search(r"(\d+) whose outcome is unknown", stderr)
    return int(match.group(1)) if match else 0


def kill_after(args: list[str], journal: Path, delay: float) -> tuple[Kill, int]:
    """Start ``omc run``, SIGKILL it ``delay`` s after it started working (for a resume: after
    it said what it resumes, so that a slow start on a loaded machine is never killed before
    it reports); the kill and what the run reported on resuming the previous one."""
    resuming = journal.exists()
    started = time.monotonic()
    process = subprocess.Popen(args, stderr=subprocess.PIPE, text=True)
    assert process.stderr is not None
    lines: list[str] = []
    said_resuming = threading.Event()

    def read() -> None:
        assert process.stderr is not None
        for line in process.stderr:
            lines.append(line)
            if line.startswith("omc run: resuming"):
                said_resuming.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    if resuming:
        assert said_resuming.wait(60), "".join(lines)
    time.sleep(delay)
    at = time.monotonic()
    process.send_signal(signal.SIGKILL)
    process.wait(60)
    reader.join(60)
    process.stderr.close()
    stderr = "".join(lines)
    assert process.returncode == -signal.SIGKILL, stderr  # it was still running
    sent, done = journal_states(journal)
    return Kill(started, at, sent, done), reported_in_doubt(stderr)


def write_requests(path: Path, count: int) -> Path:
    """An ``omc run`` input of ``count`` chat requests ``req-N`` asking ``question N`` (how the
    server's log names them)."""
    with path.open("w", encoding="utf-8") as file:
        for n in range(count):
            body = {
                "model": "gpt-4o-mini",
                "messages": [{"role": "user", "content": f"question {n}"}],
                "max_tokens": 10,
            }
            line = {"custom_id": f"req-{n}", "method": "POST", "url": "/v1/chat/completions"}
            file.write(json.dumps({**line, "body": body}) + "\n")
    return path


def _custom_id(attempt: dict[str, Any]) -> str | None:
    question = attempt.get("question")
    return None if question is None else "req-" + str(question).removeprefix("question ")


def bounds(kill: Kill, attempts: list[dict[str, Any]]) -> Bounds:
    """Bound (a) and (b) for one kill, from the server's attempt log."""
    last: dict[str, dict[str, Any]] = {}
    answered_before: set[str] = set()
    answered_after: set[str] = set()
    for attempt in attempts:
        cid = _custom_id(attempt)
        if cid is None or attempt["arrived"] < kill.started:
            continue
        if attempt["arrived"] < kill.next_start:
            last[cid] = attempt
            if attempt["how"] == 200:
                answered_before.add(cid)
        elif attempt["how"] == 200:
            answered_after.add(cid)
    in_flight = {
        cid
        for cid, attempt in last.items()
        if cid not in kill.done
        and (
            attempt["ended"] >= kill.at - SETTLE
            or attempt["arrived"] >= kill.at
            or attempt["how"] in (200, "gone")
        )
    }
    twice = answered_before & answered_after
    return Bounds(
        reported=kill.reported,
        in_flight=len(in_flight),
        answered_twice=len(twice),
        # Sent but neither in flight by the log nor unseen by the server (sent at the kill).
        over=sorted(cid for cid in kill.sent - in_flight if cid in last),
        under=sorted(twice - kill.sent),
        unseen=sorted(kill.sent - last.keys()),
    )
