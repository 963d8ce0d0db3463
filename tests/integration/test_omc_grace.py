"""`omc run --grace`: the first stop signal gives requests in flight a grace period, then
abandons them (outcome unknown); the journal stays resumable and a later run sends them again."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from openai_multi_client.cli._journal import open_status
from openai_multi_client.testing import Faults, MockOpenAIServer

from .test_omc_run import output_ids, write_input

Factory = Callable[..., MockOpenAIServer]


def test_sigterm_abandons_hung_requests_after_the_grace_and_the_run_resumes(
    tmp_path: Path, mock_openai_factory: Factory
) -> None:
    hanging = mock_openai_factory(faults=Faults(rate=1.0, kinds=["hang"], hang_seconds=3600))
    source = write_input(tmp_path / "in.jsonl", 30)
    out = tmp_path / "out.jsonl"
    args = [
        sys.executable, "-m", "openai_multi_client", "run", str(source), "-o", str(out),
        "--key", "k", "-c", "5", "--grace", "0.5",
    ]  # fmt: skip
    process = subprocess.Popen(
        [*args, "--base-url", hanging.base_url], stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 60
    while hanging.stats.total_requests < 1 and time.monotonic() < deadline:
        time.sleep(0.05)  # until requests hang in flight (one, while the limits are learned)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=30)  # without the grace: 600 s (the timeout)
    assert process.returncode == 128 + signal.SIGTERM, stderr
    assert "Traceback" not in stderr
    hung = hanging.stats.total_requests
    assert f"{hung} requests still in flight after 0.5 s abandoned" in stderr
    assert output_ids(out) == []
    status = open_status(str(out) + ".journal")
    assert status.in_doubt == hung  # they may have reached the server: unknown outcome
    assert status.done == 0

    answering = mock_openai_factory()
    resumed = subprocess.run(
        [*args, "--base-url", answering.base_url, "--force"],  # another server: same requests
        stderr=subprocess.PIPE,
        text=True,
        timeout=120,
        check=False,
    )
    assert resumed.returncode == 0, resumed.stderr
    assert f"{hung} whose outcome is unknown" in resumed.stderr
    assert sorted(output_ids(out)) == sorted(f"req-{n}" for n in range(30))
    assert answering.stats.total_requests == 30  # the abandoned ones were sent again
    assert open_status(str(out) + ".journal").in_doubt == 0
