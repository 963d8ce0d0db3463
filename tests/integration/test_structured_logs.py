"""Structured logs: the library's records carry their fields as ``extra``, and
``omc run --log-format json`` writes one JSON object a line."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

import pytest

from openai_multi_client import OpenAIMultiOrderedClient
from openai_multi_client.cli._logs import JSONFormatter
from openai_multi_client.testing import Faults, MockOpenAIServer

from .test_omc_run import omc, write_input


def records_of(caplog: pytest.LogCaptureFixture, event: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if getattr(r, "event", None) == event]


def test_retries_failures_and_retired_keys_carry_their_fields(
    mock_openai_factory: Any, caplog: pytest.LogCaptureFixture
) -> None:
    server: MockOpenAIServer = mock_openai_factory(
        faults=Faults(rate=1.0, kinds={"500"}), no_quota_keys=["sk-dead-secret-0003"]
    )
    caplog.set_level(logging.DEBUG, logger="openai_multi_client")
    api = OpenAIMultiOrderedClient(
        endpoint="chats",
        api_key=["sk-dead-secret-0003", "sk-live-secret-0004"],
        base_url=server.base_url,
        max_retries=2,
        retry_multiplier=0.001,
        retry_max=0.001,
    )
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    api.request(body, metadata={"custom_id": "line-7"})
    api.close()
    [result] = list(api)
    assert result.failed
    [retry] = records_of(caplog, "retry")
    assert vars(retry)["custom_id"] == "line-7"
    assert vars(retry)["request_index"] == 0
    assert vars(retry)["attempt"] == 1
    assert vars(retry)["key_id"] == result.key
    assert vars(retry)["error_class"] == "InternalServerError"
    [failed] = records_of(caplog, "request_failed")
    assert failed.levelno == logging.INFO
    assert vars(failed)["custom_id"] == "line-7"
    assert vars(failed)["attempt"] == 2
    assert vars(failed)["error_class"] == "InternalServerError"
    retired = records_of(caplog, "key_retired")
    if retired:  # the dead key was tried first
        assert vars(retired[0])["key_id"].startswith("key-")
    text = caplog.text + repr([vars(r) for r in caplog.records])
    assert "secret-000" not in text


def test_the_json_formatter_writes_one_object_a_line() -> None:
    try:
        raise ValueError("boom\nsecond line")
    except ValueError:
        record = logging.LogRecord("omc", logging.ERROR, __file__, 1, "a %s", ("b",), None)
        record.exc_info = sys.exc_info()
    record.event = "request_failed"
    record.custom_id = "x"
    line = JSONFormatter().format(record)
    assert "\n" not in line
    parsed = json.loads(line)
    assert parsed["event"] == "request_failed"
    assert parsed["level"] == "ERROR"
    assert parsed["message"] == "a b"
    assert parsed["custom_id"] == "x"
    assert parsed["time"].endswith("Z")
    assert "ValueError: boom" in parsed["exception"]
    assert list(parsed)[:5] == ["time", "level", "logger", "event", "message"]


def test_omc_run_log_format_json(tmp_path: Path, mock_openai_factory: Any) -> None:
    server: MockOpenAIServer = mock_openai_factory(
        faults=Faults(rate=0.5, kinds={"500"}), no_quota_keys=["sk-dead-secret-0005"], seed=3
    )
    source = write_input(tmp_path / "in.jsonl", 20)
    done = omc(
        "-vv", "run", str(source), "-o", str(tmp_path / "out.jsonl"), "--log-format", "json",
        "--base-url", server.base_url, "--key", "sk-dead-secret-0005",
        "--key", "sk-live-secret-0006", "--max-retries", "1",
    )  # fmt: skip
    assert done.returncode in (0, 1), done.stderr
    lines = [json.loads(line) for line in done.stderr.splitlines() if line.startswith("{")]
    events = {line["event"] for line in lines}
    assert {"key_retired", "request_failed"} <= events, done.stderr
    for line in lines:
        assert {"time", "level", "logger", "event", "message"} <= set(line)
    [retired] = [line for line in lines if line["event"] == "key_retired"]
    assert retired["level"] == "WARNING"
    assert retired["key_id"].startswith("key-")
    failed = [line for line in lines if line["event"] == "request_failed"]
    assert all(line["custom_id"].startswith("req-") for line in failed)
    assert all(line["error_class"] == "InternalServerError" for line in failed)
    assert " WARNING openai_multi_client: " not in done.stderr  # no text log lines
    assert "secret-000" not in done.stderr
