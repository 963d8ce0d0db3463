"""A mock server in a process of its own, so that a SIGKILL of ``omc`` leaves it running, as
in life. ``script`` (a file beside this one) starts it, prints its base URL on its first line
and, on SIGTERM, writes its report (JSON) to ``report_path`` and exits."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any


class MockProcess:
    def __init__(self, script: Path, tmp_path: Path, options: dict[str, Any], seed: int) -> None:
        self.report_path = tmp_path / "server-report.json"
        command = [sys.executable, str(script), str(self.report_path), json.dumps(options)]
        self.process = subprocess.Popen([*command, str(seed)], stdout=subprocess.PIPE, text=True)
        assert self.process.stdout is not None
        self.base_url = self.process.stdout.readline().strip()
        assert self.base_url.startswith("http://127.0.0.1:"), self.base_url

    def report(self) -> dict[str, Any]:
        self.process.send_signal(signal.SIGTERM)
        self.process.communicate(timeout=30)
        data: dict[str, Any] = json.loads(self.report_path.read_text())
        return data

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.communicate(timeout=30)
