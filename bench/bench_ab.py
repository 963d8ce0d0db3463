"""Paired before/after comparison of two checkouts: client CPU per request of the async and the
sync client, alternating between the two source trees in every round.

    python bench/bench_ab.py --base ../wt-base --branch . --rounds 8 -n 5000

On a shared, noisy machine two separate ``bench_engine.py`` runs differ by more than a small
change costs; running the same child (``_engine_child.py``) from each tree in turn, the order
swapped every round, against one mock server, makes the medians comparable. Each tree's own
``src`` is put first on ``PYTHONPATH`` for its children.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

from _common import machine, mock_server

FACES = ["omc-async", "omc-sync"]


def run(tree: str, face: str, url: str, requests: int, concurrency: int) -> float:
    """Client CPU per request, in ms, of one child run from ``tree``."""
    env = dict(os.environ, PYTHONPATH=os.path.join(tree, "src"))
    child = os.path.join(tree, "bench", "_engine_child.py")
    arguments = [face, "--url", url, "-n", str(requests), "-c", str(concurrency)]
    done = subprocess.run(
        [sys.executable, child, *arguments], capture_output=True, text=True, env=env, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"{child} {face} failed:\n{done.stderr}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    if result["failed"]:
        raise RuntimeError(f"{tree}: {face} had {result['failed']} failed requests")
    return float(result["cpu"]) / float(result["requests"]) * 1e3


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", required=True, help="the checkout before the change")
    parser.add_argument("--branch", required=True, help="the checkout after the change")
    parser.add_argument("-n", "--requests", type=int, default=5_000)
    parser.add_argument("-c", "--concurrency", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=8)
    args = parser.parse_args()
    trees = {"base": os.path.abspath(args.base), "branch": os.path.abspath(args.branch)}
    cpu: dict[tuple[str, str], list[float]] = {(t, f): [] for t in trees for f in FACES}
    with mock_server("--latency", "0") as url:
        for round_number in range(args.rounds):
            order = list(trees.items())
            if round_number % 2:
                order.reverse()
            for face in FACES:
                for name, tree in order:
                    value = run(tree, face, url, args.requests, args.concurrency)
                    cpu[(name, face)].append(value)
                    line = f"round {round_number + 1} {name} {face}: {value:.3f} ms"
                    print(line, file=sys.stderr)
    print(f"Machine: {machine()}. {args.requests:,} requests, concurrency {args.concurrency}.\n")
    print("| face | base, median | branch, median | branch / base |")
    print("|---|---|---|---|")
    for face in FACES:
        before = statistics.median(cpu[("base", face)])
        after = statistics.median(cpu[("branch", face)])
        print(f"| {face} | {before:.3f} ms | {after:.3f} ms | {after / before:.3f}x |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
