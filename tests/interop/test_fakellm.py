"""fakellm 0.3.5: the smallest reproduction of issue 16's item 1, a 429 with no hint and no
rate-limit headers (its rule answers ``{"error": {"message": "Rate limit exceeded (mock)"}}``
and nothing else)."""

from __future__ import annotations

from pathlib import Path

import pytest

from .helpers import batch_line, omc_run
from .servers import ServerProcess, http_json

pytestmark = pytest.mark.interop


def rule_counts(server: ServerProcess) -> dict[str, int]:
    stats = http_json("GET", server.url + "/_fakellm/stats")
    counts: dict[str, int] = stats["by_rule"]
    return counts


def test_omc_run_chat(tmp_path: Path, fakellm: ServerProcess) -> None:
    lines = [batch_line(n, "gpt-4o-mini") for n in range(30)]
    process, records = omc_run(tmp_path, lines, fakellm.url + "/v1", "sk-interop-fakellm")
    assert process.returncode == 0, process.stderr
    assert len(records) == 30
    assert all(r["response"]["status_code"] == 200 for r in records)
