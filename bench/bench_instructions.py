"""Instructions per request, counted by valgrind: a figure that stays within about 2 % from run
to run on a shared machine where CPU times vary by a third (needs ``apt-get install valgrind``).

    python bench/bench_instructions.py                        # bare-aiohttp, omc-async, omc-sync
    python bench/bench_instructions.py --contenders omc-async --uvloop

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
    args = parser.parse_args()
    counts: dict[str, float] = {}
    with mock_server("--latency", "0") as url:
        for contender in args.contenders.split(","):
            small = instructions(contender, url, args.small, args.uvloop)
            large = instructions(contender, url, args.large, args.uvloop)
            counts[contender] = (large - small) / (args.large - args.small)
            print(f"{contender}: {counts[contender]:,.0f} instructions per request", flush=True)
    base = counts.get("bare-aiohttp")
    if base:
        for contender, count in counts.items():
            print(f"{contender}: {count / base:.2f}x bare-aiohttp")


if __name__ == "__main__":
    main()
