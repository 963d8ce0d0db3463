"""Instructions per request, counted by valgrind: a figure that stays within about 2 % from run
to run on a shared machine where CPU times vary by a third (needs ``apt-get install valgrind``).

    python bench/bench_instructions.py                        # bare-aiohttp, omc-async, omc-sync
    python bench/bench_instructions.py --contenders omc-async --uvloop
    python bench/bench_instructions.py --rounds 3     # alternating, medians

Each contender runs ``_engine_child.py`` under ``valgrind --tool=cachegrind --cache-sim=no``
twice, with ``--small`` and ``--large`` requests against one zero-latency mock server; the
difference of the two counts divided by the difference of the sizes is the count per request
(start-up, imports and warm-up cancel out). Valgrind runs the process about 50 times slower:
about 30 s a contender. Ratios are against the bare aiohttp loop of the same run.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys

from _common import mock_server

HERE = os.path.dirname(os.path.abspath(__file__))


def instructions(contender: str, url: str, requests: int, uvloop: bool) -> int:
    command = [
        "valgrind",
        "--tool=cachegrind",
        "--cache-sim=no",
        "--cachegrind-out-file=/dev/null",
        sys.executable,
        os.path.join(HERE, "_engine_child.py"),
        contender,
        "--url",
        url,
        "-n",
        str(requests),
        "-c",
        "100",
        *(["--uvloop"] if uvloop else []),
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    match = re.search(r"I\s+refs:\s+([\d,]+)", done.stderr)
    if match is None:
        raise RuntimeError(f"no instruction count from valgrind:\n{done.stderr[-2000:]}")
    return int(match.group(1).replace(",", ""))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--contenders", default="bare-aiohttp,omc-async,omc-sync")
    parser.add_argument("--small", type=int, default=1000)
    parser.add_argument("--large", type=int, default=4000)
    parser.add_argument("--uvloop", action="store_true", help="every loop is uvloop's")
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="measure every contender this many times, alternating; report the medians (the "
        "count moves by a few percent with the machine's load: how many answers one turn of "
        "the event loop handles)",
    )
    args = parser.parse_args()
    contenders = args.contenders.split(",")
    counts: dict[str, list[float]] = {contender: [] for contender in contenders}
    with mock_server("--latency", "0") as url:
        for round_number in range(1, args.rounds + 1):
            for contender in contenders:
                small = instructions(contender, url, args.small, args.uvloop)
                large = instructions(contender, url, args.large, args.uvloop)
                count = (large - small) / (args.large - args.small)
                counts[contender].append(count)
                print(
                    f"round {round_number}: {contender}: {count:,.0f} instructions per request",
                    flush=True,
                )
    medians = {contender: statistics.median(values) for contender, values in counts.items()}
    base = medians.get("bare-aiohttp")
    for contender, median in medians.items():
        low, high = min(counts[contender]), max(counts[contender])
        ratio = f", {median / base:.2f}x bare-aiohttp" if base else ""
        print(f"{contender}: median {median:,.0f} ({low:,.0f} to {high:,.0f}){ratio}")


if __name__ == "__main__":
    main()
