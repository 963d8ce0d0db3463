"""`omc run` killed with SIGKILL several times: after each kill, the count of requests the resume
reports as "outcome unknown" (may be billed twice), against the server's own attempt log.

    python bench/bench_kill.py             # 2,000 requests, concurrency 32, 5 kills
    python bench/bench_kill.py --record    # also append the table to docs/benchmarks.md

The mock server runs in its own process (``tests/integration/run_mock_process.py``: a SIGKILL
of ``omc`` leaves it running, and it logs every attempt), with faults (500, 503, resets) and a
requests-per-minute limit on the key low enough that 429s happen. The bounds are computed by
``tests/integration/kill_bounds.py``, the same code the kill-loop test checks them with. Per
kill: (a) every request the journal holds in doubt was in flight by the server's log, or never
reached the server (sent at the kill, or carried over in doubt from an earlier kill and not yet
sent again; both shown apart), so reported <= in flight + unseen; (b) every request the server
answered on both sides of the kill is counted, so reported >= answered twice.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import publish

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.integration import kill_bounds  # noqa: E402  (the repository root, just added)


def run_with_kills(
    args: argparse.Namespace, folder: Path, server: kill_bounds.RunServer
) -> tuple[list[kill_bounds.Kill], float]:
    """``args.kills`` SIGKILLs of ``omc run``, then a run to the end; the kills and the wall
    time of the whole sequence."""
    source = kill_bounds.write_requests(folder / "in.jsonl", args.requests)
    out = folder / "out.jsonl"
    command = [
        sys.executable, "-m", "openai_multi_client", "run", str(source), "-o", str(out),
        "--base-url", server.base_url, "--key", "sk-bench", "-c", str(args.concurrency),
        "--max-retries", "30",
    ]  # fmt: skip
    rng = random.Random(args.seed)
    low, high = (float(x) for x in args.delay.split(","))
    kills: list[kill_bounds.Kill] = []
    began = time.monotonic()
    for _ in range(args.kills):
        kill, reported = kill_bounds.kill_after(
            command, Path(f"{out}.journal"), rng.uniform(low, high)
        )
        if kills:
            kills[-1].reported, kills[-1].next_start = reported, kill.started
        kills.append(kill)
        print(
            f"kill {len(kills)}: {len(kill.sent)} in doubt, {len(kill.done)} done", file=sys.stderr
        )
    final_start = time.monotonic()
    final = subprocess.run(command, stderr=subprocess.PIPE, text=True, timeout=600, check=False)
    if final.returncode != 0:
        raise RuntimeError(f"the last run failed:\n{final.stderr[-2000:]}")
    kills[-1].reported = kill_bounds.reported_in_doubt(final.stderr)
    kills[-1].next_start = final_start
    wall = time.monotonic() - began
    lines = out.read_text(encoding="utf-8").splitlines()
    if len(lines) != args.requests:
        raise RuntimeError(f"{len(lines)} results for {args.requests} requests")
    return kills, wall


def table(kills: list[kill_bounds.Kill], attempts: list[dict[str, Any]]) -> tuple[str, bool]:
    """The per-kill table, and whether every bound held."""
    rows = [
        "| kill | at (s into the run) | reported in doubt | in flight (server log) | "
        "unseen: sent at the kill | unseen: carried over | answered twice | (a) | (b) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    held = True
    previous: set[str] = set()
    for number, kill in enumerate(kills, 1):
        bound = kill_bounds.bounds(kill, attempts)
        carried = len(set(bound.unseen) & previous)
        fresh = len(bound.unseen) - carried
        a = not bound.over and bound.reported <= bound.in_flight + len(bound.unseen)
        b = not bound.under and bound.reported >= bound.answered_twice
        exact = bound.reported == len(kill.sent)
        held = held and a and b and exact
        rows.append(
            f"| {number} | {kill.at - kill.started:.2f} | {bound.reported}"
            f"{'' if exact else f' (journal: {len(kill.sent)})'} | {bound.in_flight} | {fresh} "
            f"| {carried} | {bound.answered_twice} | {'holds' if a else f'FAILS {bound.over[:5]}'} "
            f"| {'holds' if b else f'FAILS {bound.under[:5]}'} |"
        )
        previous = kill.sent
    return "\n".join(rows), held


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", "--requests", type=int, default=2000)
    parser.add_argument("-c", "--concurrency", type=int, default=32)
    parser.add_argument("--kills", type=int, default=5)
    parser.add_argument("--delay", default="2,5", help="seconds before each kill: LOW,HIGH")
    parser.add_argument("--rpm", type=int, default=1500, help="the mock key's requests/min")
    parser.add_argument("--fault-rate", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=12)
    parser.add_argument("--record", action="store_true")
    parser.add_argument("--log", help="also write the server's attempt log and the kills here")
    args = parser.parse_args()
    options = {
        "latency": [0.05, 0.3],
        "fault_rate": args.fault_rate,
        "fault_kinds": ["500", "503", "reset"],
        "rpm": args.rpm,
    }
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        server = kill_bounds.RunServer(folder, options, seed=args.seed)
        try:
            kills, wall = run_with_kills(args, folder, server)
            report = server.report()
        finally:
            server.close()
    attempts = report["attempts"]
    if args.log:
        kept = [{**vars(kill), "sent": sorted(kill.sent), "done": len(kill.done)} for kill in kills]
        Path(args.log).write_text(json.dumps({"kills": kept, **report}), encoding="utf-8")
    rows, held = table(kills, attempts)
    statuses = [attempt["how"] for attempt in attempts]
    twice = sum(1 for count in report["answer_counts"].values() if count >= 2)
    total = sum(kill.reported for kill in kills)
    summary = (
        f"{len(attempts):,} attempts for {args.requests:,} requests in {wall:.1f} s "
        f"(kills and the run to the end): {statuses.count(429):,} answered 429, "
        f"{statuses.count(500) + statuses.count(503):,} 500/503, {statuses.count('gone'):,} "
        f"with no answer (resets, kills). Reported in doubt over all resumes: {total}; "
        f"answered twice or more by the server: {twice}. All bounds hold: "
        f"{'yes' if held and twice <= total else 'NO'}."
    )
    description = (
        f"{args.requests:,} requests, concurrency {args.concurrency}, {args.kills} SIGKILLs "
        f"each {args.delay.replace(',', '-')} s into a run, mock in its own process with "
        f"latency 0.05-0.3 s, {args.fault_rate:.0%} faults (500, 503, reset) and "
        f"{args.rpm:,} requests/min on the key."
    )
    publish("SIGKILL loop: in-doubt count against the server's log", description,
            f"{rows}\n\n{summary}", args.record)  # fmt: skip
    return 0 if held and twice <= total else 1


if __name__ == "__main__":
    sys.exit(main())
