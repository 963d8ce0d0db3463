"""Run one command and report its wall time and peak RSS as a JSON line (bench helper).

A process of its own, so RUSAGE_CHILDREN covers exactly that one command."""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time

started = time.perf_counter()
done = subprocess.run(sys.argv[1:], capture_output=True, text=True, check=False)
wall = time.perf_counter() - started
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
print(
    json.dumps(
        {
            "returncode": done.returncode,
            "wall": wall,
            "cpu": usage.ru_utime + usage.ru_stime,
            "rss_mb": usage.ru_maxrss / 1024,
            "stderr_tail": done.stderr[-400:],
        }
    )
)
