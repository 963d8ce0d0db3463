"""``progress=True`` on the clients and ``run_requests``: a tqdm bar on standard error; off by
default (nothing printed); a clear error when tqdm is missing."""

from __future__ import annotations

import subprocess
import sys
import threading
from typing import Any

import pytest

from openai_multi_client import (
    AsyncMultiClient,
    ConfigurationError,
    CustomAPIError,
    OpenAIMultiClient,
    run_requests,
)


def answer(request: Any) -> dict[str, Any]:
    if request.data.get("fail"):
        raise CustomAPIError("refused")
    return {"ok": request.data["n"]}


def test_the_bar_counts_finished_requests_and_failures(capsys: pytest.CaptureFixture[str]) -> None:
    threads = set(threading.enumerate())
    api = OpenAIMultiClient(custom_api=answer, max_retries=1, progress=True)
    for n in range(5):
        api.request({"n": n, "fail": n == 2})
    api.close()
    results = list(api)
    assert sorted(r.failed for r in results) == [False] * 4 + [True]
    err = capsys.readouterr().err
    assert "5/5" in err
    assert "req/s" in err
    assert "failed=1" in err
    assert capsys.readouterr().out == ""
    # No tqdm monitor thread left behind.
    assert not [t for t in set(threading.enumerate()) - threads if "monitor" in repr(t).lower()]


def test_run_requests_takes_progress(capsys: pytest.CaptureFixture[str]) -> None:
    results = list(run_requests(({"n": n} for n in range(3)), custom_api=answer, progress=True))
    assert [r.response for r in results] == [{"ok": 0}, {"ok": 1}, {"ok": 2}]
    assert "3/3" in capsys.readouterr().err


async def test_nothing_is_printed_unless_asked(capsys: pytest.CaptureFixture[str]) -> None:
    async with AsyncMultiClient(custom_api=answer) as client:
        await client.request({"n": 1})
        client.close()
        assert [r.response async for r in client] == [{"ok": 1}]
        assert client._dispatcher.progress is None
    assert capsys.readouterr() == ("", "")


def test_progress_must_be_a_bool() -> None:
    with pytest.raises(ConfigurationError, match="progress must be True or False"):
        AsyncMultiClient(custom_api=answer, progress="yes")  # type: ignore[arg-type]


_WITHOUT_TQDM = """
import sys
sys.modules["tqdm"] = None
from openai_multi_client import ConfigurationError, OpenAIMultiClient
try:
    OpenAIMultiClient(custom_api=lambda r: {}, progress=True)
except ConfigurationError as exc:
    print(exc)
"""


def test_a_clear_error_without_tqdm() -> None:
    done = subprocess.run(
        [sys.executable, "-c", _WITHOUT_TQDM],
        check=False,
        capture_output=True,
        text=True,
        timeout=50,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == (
        "progress=True needs tqdm: pip install 'openai-multi-client[progress]'"
    )
