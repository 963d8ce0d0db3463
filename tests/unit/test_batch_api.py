"""The Batch API's pure parts: splitting input into batch files, what an output line means,
batch prices."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from openai_multi_client import (
    BatchLineError,
    ConfigurationError,
    InsufficientQuotaError,
    InternalServerError,
    NotFoundError,
)
from openai_multi_client._batches.job import explain
from openai_multi_client._batches.outcome import classify
from openai_multi_client._batches.prices import batch_cost, batch_prices
from openai_multi_client._batches.records import BatchChunk, BatchInfo
from openai_multi_client._batches.split import split_file, split_lines
from openai_multi_client._prices import DEFAULT_PRICES, Price


def line(number: int, model: str = "m1", url: str = "/v1/chat/completions") -> dict[str, Any]:
    return {"custom_id": f"r{number}", "url": url, "body": {"model": model, "n": number}}


def read(chunk: BatchChunk) -> list[dict[str, Any]]:
    return [json.loads(text) for text in chunk.path.read_text().splitlines()]


def test_split_by_model_endpoint_and_count(tmp_path: Path) -> None:
    lines = [line(n, "m1" if n % 3 else "m2") for n in range(10)]
    lines.append(line(10, "m1", "/v1/embeddings"))
    chunks = split_lines(lines, tmp_path, max_lines=3)
    for chunk in chunks:
        records = read(chunk)
        assert {record["body"]["model"] for record in records} == {chunk.model}
        assert {record["url"] for record in records} == {chunk.endpoint}
        assert [record["custom_id"] for record in records] == list(chunk.custom_ids)
        assert all(record["method"] == "POST" for record in records)
        assert chunk.line_count <= 3
        assert chunk.size_bytes == chunk.path.stat().st_size
    ids = [custom_id for chunk in chunks for custom_id in chunk.custom_ids]
    assert sorted(ids) == sorted(f"r{n}" for n in range(11))
    assert chunks[0].line_numbers[0] == 1  # in the order of their first line
    m2 = [chunk for chunk in chunks if chunk.model == "m2"]
    assert [chunk.line_numbers for chunk in m2] == [(1, 4, 7), (10,)]


def test_split_by_bytes(tmp_path: Path) -> None:
    size = len(json.dumps(line(1) | {"method": "POST"})) + 1
    chunks = split_lines([line(n) for n in range(1, 10)], tmp_path, max_bytes=size * 2)
    assert [chunk.line_count for chunk in chunks] == [2, 2, 2, 2, 1]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{nope", "input line 3: not valid JSON"),
        ('{"custom_id": "r1", "url": "/v1/chat/completions", "body": {}}', "repeats line 1"),
        ('{"custom_id": "x", "url": "/v1/files", "body": {}}', "input line 3: 'url' must be"),
        ('{"custom_id": "x", "url": "/v1/embeddings", "body": 3}', "input line 3: 'body'"),
        ('{"url": "/v1/embeddings", "body": {}}', "input line 3: 'custom_id'"),
    ],
)
def test_bad_lines_are_named(tmp_path: Path, text: str, message: str) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text(json.dumps(line(1)) + "\n\n" + text + "\n")
    with pytest.raises(ConfigurationError, match=message):
        split_file(source, tmp_path / "chunks")


def test_split_file_streams_lines_with_their_numbers(tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text(json.dumps(line(1)) + "\n\n" + json.dumps(line(2)) + "\n")
    (chunk,) = split_file(source, tmp_path / "chunks")
    assert chunk.line_numbers == (1, 3)
    assert chunk.input_line(2) == 3
    assert chunk.input_line(3) is None


def record(status: int | None, body: Any = None, code: str | None = None) -> dict[str, Any]:
    response = None if status is None else {"status_code": status, "request_id": "q", "body": body}
    error = None if code is None else {"code": code, "message": "gone"}
    return {"id": "batch_req_1", "custom_id": "c", "response": response, "error": error}


def test_classify() -> None:
    ok = classify(record(200, {"object": "chat.completion"}))
    assert (ok.failed, ok.retryable, ok.response, ok.status_code) == (
        False,
        False,
        ok.response,
        200,
    )
    assert ok.response == {"object": "chat.completion"}
    server = classify(record(500, {"error": {"message": "boom", "type": "server_error"}}))
    assert isinstance(server.error, InternalServerError)
    assert server.retryable
    assert server.response is None
    assert classify(record(429, {"error": {"code": "rate_limit_exceeded"}})).retryable
    quota = classify(record(429, {"error": {"code": "insufficient_quota"}}))
    assert isinstance(quota.error, InsufficientQuotaError)
    assert not quota.retryable
    missing = classify(record(404, {"error": {"message": "no model"}}))
    assert isinstance(missing.error, NotFoundError)
    assert not missing.retryable
    for code in ("batch_expired", "batch_cancelled", "request_timeout"):
        never = classify(record(None, code=code))
        assert isinstance(never.error, BatchLineError)
        assert never.error.code == code
        assert never.retryable
    assert not classify(record(None, code="something_else")).retryable


def test_explain_names_code_and_input_line(tmp_path: Path) -> None:
    chunk = BatchChunk(tmp_path / "c", "/v1/embeddings", "m", ("a", "b"), (40, 41), 10)
    info = BatchInfo.from_json(
        {
            "id": "batch_1",
            "status": "failed",
            "errors": {
                "data": [
                    {"code": "url_mismatch", "line": 2, "message": "wrong url", "param": "url"},
                    {"code": "invalid_json_line", "line": 1, "message": "bad", "param": None},
                ]
            },
        }
    )
    error = explain(info, chunk)
    assert (
        str(error) == "batch batch_1 failed: url_mismatch at input line 41: wrong url (and 1 more)"
    )
    assert len(error.problems) == 2
    no_line = BatchInfo.from_json(
        {"id": "b", "status": "failed", "errors": {"data": [{"code": "too_many_lines"}]}}
    )
    assert str(explain(no_line, chunk)) == "batch b failed: too_many_lines"


def test_batch_prices_are_half() -> None:
    table = batch_prices()
    assert table["gpt-4o-mini"] == Price(0.075, 0.30)
    assert set(table) == set(DEFAULT_PRICES)
    assert batch_prices({"x": Price(1.0, 4.0)}) == {"x": Price(0.5, 2.0)}
    usage = {"input_tokens": 1_000_000, "output_tokens": 1_000_000}
    assert batch_cost([("gpt-4o-mini-2024-07-18", usage), ("gpt-4o", None)]) == pytest.approx(0.375)
    assert batch_cost([("unknown-model", usage)]) is None
