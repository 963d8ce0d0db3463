"""Tests for the Batch API file format: reading input lines and writing output lines."""

from __future__ import annotations

import io
import json
import re
import time
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from openai_multi_client.cli import _batch
from openai_multi_client.cli._batch import (
    BATCH_ENDPOINTS,
    BadLine,
    BatchRequest,
    error_line,
    output_line,
    read_batch,
)


@pytest.fixture(params=["default", "stdlib"])
def json_backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run a test with the configured JSON backend (orjson when installed) and the stdlib."""
    if request.param == "stdlib":
        monkeypatch.setattr(_batch, "loads", json.loads)
    return str(request.param)


def line(custom_id: Any = "a", **fields: Any) -> bytes:
    """A JSON input line (no newline) with sensible defaults, overridable per field."""
    record: dict[str, Any] = {
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {"model": "m", "messages": [{"role": "user", "content": "hi"}]},
    }
    for key, value in {"custom_id": custom_id, **fields}.items():
        if value is _DROP:
            record.pop(key, None)
        else:
            record[key] = value
    return json.dumps(record).encode()


_DROP = object()


def _nested(depth: int) -> Any:
    """``depth`` arrays, one inside the other, around a number."""
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


def read(data: bytes, **options: Any) -> list[BatchRequest | BadLine]:
    return list(read_batch(io.BytesIO(data), **options))


def codes(items: list[BatchRequest | BadLine]) -> list[tuple[int, str]]:
    return [(i.line, "ok" if isinstance(i, BatchRequest) else i.code) for i in items]


SINGLE_LINES: list[tuple[bytes, str]] = [
    (line(), "ok"),
    (line(url="/v1/embeddings", body={"model": "e", "input": "x"}), "ok"),
    (line("x" * 512), "ok"),
    (b'{"custom_id": "a", "method": "POST", "url": "/v1/responses", "body": {}, "extra": 1}', "ok"),
    (b'{"custom_id": "a", "method": "POST"', "invalid_json"),
    (b"not json", "invalid_json"),
    (b'{"custom_id": "a"} trailing', "invalid_json"),
    (b"[1, 2]", "not_an_object"),
    (b'"text"', "not_an_object"),
    (b"null", "not_an_object"),
    (line(custom_id=_DROP), "missing_custom_id"),
    (line(custom_id=None), "missing_custom_id"),
    (line(custom_id=""), "invalid_custom_id"),
    (line(custom_id=7), "invalid_custom_id"),
    (line(custom_id=["a"]), "invalid_custom_id"),
    (line("x" * 513), "invalid_custom_id"),
    (line(method="post"), "invalid_method"),
    (line(method="GET"), "invalid_method"),
    (line(method=_DROP), "invalid_method"),
    (line(url=_DROP), "invalid_url"),
    (line(url=""), "invalid_url"),
    (line(url=3), "invalid_url"),
    (line(url="v1/chat/completions"), "invalid_url"),
    (line(url="/v1/chat/completions?x=1"), "invalid_url"),
    (line(url="/v1/chat/completions#frag"), "invalid_url"),
    (line(url="https://other.host/v1/chat/completions"), "foreign_host"),
    (line(url="//other.host/v1/chat/completions"), "foreign_host"),
    (line(url="/v1/chat/completions/"), "unknown_endpoint"),
    (line(url="/chat/completions"), "unknown_endpoint"),
    (line(url="/v1/files"), "unknown_endpoint"),
    (line(body=_DROP), "invalid_body"),
    (line(body=None), "invalid_body"),
    (line(body=[1]), "invalid_body"),
    (line(body="{}"), "invalid_body"),
    (b'{"custom_id": "\xff"}', "invalid_utf8"),
    (b'{"custom_id": "\xed\xa0\x80"}', "invalid_utf8"),  # an encoded surrogate
    (b"[" * 65 + b"]" * 65, "too_deep"),
    (line(body={"a": _nested(70)}), "too_deep"),
    (line(body={"a": _nested(62)}), "ok"),
]


@pytest.mark.usefixtures("json_backend")
@pytest.mark.parametrize(("data", "expected"), SINGLE_LINES)
def test_single_line_table(data: bytes, expected: str) -> None:
    """Each line, as line 2 of a file after a blank line, yields exactly the expected result."""
    items = read(b"\n" + data + b"\n")
    assert codes(items) == [(2, expected)]
    item = items[0]
    if isinstance(item, BadLine):
        assert item.message.startswith("line 2: ")
    else:
        assert item.raw == data
        assert item.url in BATCH_ENDPOINTS


def test_lone_surrogate_custom_id_is_refused_with_the_stdlib(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """orjson refuses a lone surrogate escape outright; the stdlib parses it, so it is checked."""
    monkeypatch.setattr(_batch, "loads", json.loads)
    items = read(b'{"custom_id": "\\ud800", "method": "POST", "url": "/v1/responses", "body": {}}')
    assert codes(items) == [(1, "invalid_custom_id")]


def test_good_request_fields() -> None:
    data = line("req-1", url="/v1/embeddings", body={"model": "e", "input": "x"})
    (item,) = read(data + b"\n")
    assert item == BatchRequest(1, "req-1", "/v1/embeddings", {"model": "e", "input": "x"}, data)


def test_bad_lines_do_not_stop_good_ones() -> None:
    data = b"\n".join(
        [
            line("a"),
            b"garbage",
            b"",
            b"   \t ",
            line("b", method="GET"),
            line("c"),
            b"\xff\xfe",
            line("d", url="https://evil.example/v1/chat/completions"),
            line("e"),
        ]
    )
    items = read(data)
    assert codes(items) == [
        (1, "ok"),
        (2, "invalid_json"),
        (5, "invalid_method"),
        (6, "ok"),
        (7, "invalid_utf8"),
        (8, "foreign_host"),
        (9, "ok"),
    ]
    assert [i.custom_id for i in items] == ["a", None, "b", "c", None, "d", "e"]


def test_duplicates_name_the_first_line() -> None:
    data = b"\n".join([line("a-1"), line("a-3"), b"", line("a-2"), line("a-3"), line("a-3")])
    items = read(data)
    assert codes(items) == [
        (1, "ok"),
        (2, "ok"),
        (4, "ok"),
        (5, "duplicate_custom_id"),
        (6, "duplicate_custom_id"),
    ]
    assert items[3] == BadLine(
        5,
        "a-3",
        "duplicate_custom_id",
        "line 5: custom_id 'a-3' appears again (first on line 2)",
    )
    assert isinstance(items[4], BadLine)
    assert "(first on line 2)" in items[4].message


def test_an_id_on_a_bad_line_is_still_taken() -> None:
    """Output is matched by custom_id, so a failed line's id cannot be used again."""
    items = read(line("a", method="GET") + b"\n" + line("a"))
    assert codes(items) == [(1, "invalid_method"), (2, "duplicate_custom_id")]
    assert isinstance(items[1], BadLine)
    assert "first on line 1" in items[1].message


def test_allowed_urls_narrows_the_endpoints() -> None:
    data = line("a") + b"\n" + line("b", url="/v1/embeddings")
    items = read(data, allowed_urls={"/v1/embeddings"})
    assert codes(items) == [(1, "unknown_endpoint"), (2, "ok")]


def test_five_megabyte_line_is_skipped_and_the_next_read() -> None:
    big = line("big", body={"text": "x" * 5_000_000})
    data = line("a") + b"\n" + big + b"\n" + line("b") + b"\n"
    stream = io.BytesIO(data)
    sizes: list[int] = []
    original = stream.readline

    def spy(size: int | None = -1) -> bytes:
        assert size is not None
        assert 0 < size <= 1_000_005  # never an unbounded read
        chunk = original(size)
        sizes.append(len(chunk))
        return chunk

    stream.readline = spy  # type: ignore[method-assign]
    items = list(read_batch(stream, max_line_bytes=1_000_000))
    assert codes(items) == [(1, "ok"), (2, "line_too_long"), (3, "ok")]
    assert max(sizes) <= 1_000_005
    assert len(sizes) > 5  # the big line came in chunks
    bad = items[1]
    assert isinstance(bad, BadLine)
    assert f"{len(big):,} bytes" in bad.message
    assert "1,000,000" in bad.message


@pytest.mark.parametrize("ending", [b"\n", b"\r\n", b""])
def test_line_length_limit_is_exact(ending: bytes) -> None:
    fits = b'{"custom_id": "a", "method": "POST", "url": "/v1/responses", "body": {}}'
    over = fits[:-1] + b" }"
    limit = len(fits)
    data = fits + b"\r\n" + over + ending
    items = read(data, max_line_bytes=limit)
    assert codes(items) == [(1, "ok"), (2, "line_too_long")]
    assert isinstance(items[1], BadLine)
    assert f" {limit + 1:,} bytes" in items[1].message


def test_long_blank_line_is_just_blank() -> None:
    items = read(b" " * 5000 + b"\r\n" + line("a"), max_line_bytes=1000)
    assert codes(items) == [(2, "ok")]


@pytest.mark.usefixtures("json_backend")
@pytest.mark.parametrize("shape", [b"[", b'{"a":'])
def test_deep_nesting_is_refused_quickly(shape: bytes) -> None:
    closer = b"]" if shape == b"[" else b"}"
    deep = shape * 100_000 + b"1" + closer * 100_000
    unclosed = shape * 100_000
    started = time.perf_counter()
    items = read(deep + b"\n" + unclosed + b"\n" + line("a"), max_line_bytes=1_000_000)
    assert time.perf_counter() - started < 1.0
    assert codes(items) == [(1, "too_deep"), (2, "too_deep"), (3, "ok")]


@pytest.mark.usefixtures("json_backend")
def test_depth_limit_is_exact_and_ignores_brackets_in_strings() -> None:
    at_limit = b'{"custom_id": "a", "method": "POST", "url": "/v1/responses", "body": {"x": '
    at_limit += b"[" * 62 + b"]" * 62 + b"}}"
    items = read(at_limit + b"\n" + at_limit.replace(b'"a"', b'"b"'), max_depth=64)
    assert codes(items) == [(1, "ok"), (2, "ok")]
    assert codes(read(at_limit, max_depth=63)) == [(1, "too_deep")]
    text = '[[[[]]]] "\\"{{{{' + "[" * 100
    in_string = line("s", body={"text": text, "wide": [[1], [2]] * 100})
    assert codes(read(in_string, max_depth=4)) == [(1, "ok")]


def test_crlf_and_missing_final_newline() -> None:
    first, second = line("a"), line("b")
    items = read(first + b"\r\n\r\n" + second)
    assert codes(items) == [(1, "ok"), (3, "ok")]
    assert [i.raw for i in items if isinstance(i, BatchRequest)] == [first, second]
    items = read(first + b"\r\n" + second + b"\r")
    assert [i.raw for i in items if isinstance(i, BatchRequest)] == [first, second]


def test_byte_order_mark_on_the_first_line_is_ignored() -> None:
    items = read(b"\xef\xbb\xbf" + line("a") + b"\n" + b"\xef\xbb\xbf" + line("b"))
    assert codes(items) == [(1, "ok"), (2, "invalid_json")]
    assert isinstance(items[0], BatchRequest)
    assert items[0].raw == line("a")


def test_invalid_utf8_message_names_the_byte() -> None:
    (item,) = read(b'\n\n{"custom_id": "caf\xe9"}')
    assert item == BadLine(
        3, None, "invalid_utf8", "line 3: not valid UTF-8 (byte 0xe9 at offset 18)"
    )


def test_non_ascii_utf8_is_fine() -> None:
    (item,) = read(line("café-☕", body={"text": "日本語"}))
    assert isinstance(item, BatchRequest)
    assert item.custom_id == "café-☕"
    assert item.body == {"text": "日本語"}


def test_messages_quote_little_of_the_line() -> None:
    long = "y" * 10_000
    data = b"\n".join(
        [
            line("x" * 512),
            line("x" * 512),
            line("x" * 600),
            line("m", method=long),
            line("u", url="/" + long),
            line("h", url="https://" + long),
            line("q", url="/v1/responses?" + long),
            line("n", method=[long]),
            b'{"custom_id": "' + long.encode() + b"\x01",
        ]
    )
    items = read(data)
    assert len(items) == 9
    for item in items[1:]:
        assert isinstance(item, BadLine)
        assert len(item.message) < 300, item.message
        assert "y" * 81 not in item.message
        assert "x" * 81 not in item.message


def test_bad_arguments_fail_at_once() -> None:
    with pytest.raises(ValueError, match="max_line_bytes"):
        read_batch(io.BytesIO(b""), max_line_bytes=0)
    with pytest.raises(ValueError, match="max_depth"):
        read_batch(io.BytesIO(b""), max_depth=0)
    with pytest.raises(TypeError, match="allowed_urls"):
        read_batch(io.BytesIO(b""), allowed_urls="/v1/responses")


def test_empty_and_blank_inputs() -> None:
    assert read(b"") == []
    assert read(b"\n\n \r\n\t\n") == []


# --- output ------------------------------------------------------------------------------------

_RECORD_ID = re.compile(r"batch_req_[0-9a-f]{24}")


def test_output_line_matches_the_batch_format() -> None:
    body = {"id": "chatcmpl-1", "choices": [{"message": {"content": "héllo"}}]}
    data = output_line("request-1", status_code=200, request_id="req_abc", body=body)
    assert data.endswith(b"\n")
    assert data.count(b"\n") == 1
    record = json.loads(data)
    assert list(record) == ["id", "custom_id", "response", "error"]
    assert _RECORD_ID.fullmatch(record["id"])
    assert record["custom_id"] == "request-1"
    assert record["response"] == {"status_code": 200, "request_id": "req_abc", "body": body}
    assert record["error"] is None
    again = json.loads(output_line("request-1", status_code=200, request_id=None, body=body))
    assert again["id"] != record["id"]
    assert again["response"]["request_id"] is None


def test_output_line_carries_http_failures() -> None:
    body = {"error": {"message": "Rate limit", "type": "requests", "code": None}}
    record = json.loads(output_line("r", status_code=429, request_id="req_1", body=body))
    assert record["response"]["status_code"] == 429
    assert record["response"]["body"] == body
    assert record["error"] is None


def test_output_line_refuses_unencodable_bodies() -> None:
    with pytest.raises(TypeError):
        output_line("r", status_code=200, request_id=None, body={"x": object()})


def test_error_line_matches_the_batch_format() -> None:
    data = error_line("request-2", code="timeout", message="no response after 600 s")
    assert data.endswith(b"\n")
    assert data.count(b"\n") == 1
    record = json.loads(data)
    assert list(record) == ["id", "custom_id", "response", "error"]
    assert _RECORD_ID.fullmatch(record["id"])
    assert record["custom_id"] == "request-2"
    assert record["response"] is None
    assert record["error"] == {"code": "timeout", "message": "no response after 600 s"}


def test_error_line_for_a_bad_input_line() -> None:
    (bad,) = read(b"\n" + line("x", method="GET"))
    assert isinstance(bad, BadLine)
    record = json.loads(
        error_line(bad.custom_id, code=bad.code, message=bad.message, line=bad.line)
    )
    assert record["custom_id"] == "x"
    assert record["response"] is None
    assert record["error"] == {"code": "invalid_method", "message": bad.message, "line": 2}
    record = json.loads(error_line(None, code="invalid_json", message="line 3: ...", line=3))
    assert record["custom_id"] is None
    assert record["error"]["line"] == 3


# --- property ---------------------------------------------------------------------------------

_FRAGMENTS = st.sampled_from(
    [
        b"\n",
        b"\r\n",
        b"\r",
        b" ",
        b"\t",
        b"\x0b",
        b"\xef\xbb\xbf",
        b"\xff",
        b"[",
        b"]",
        b"{",
        b"}",
        b'"',
        b"\\",
        b'"custom_id"',
        b'"method"',
        b'"POST"',
        b'"url"',
        b'"/v1/responses"',
        b'"//h/v1/responses"',
        b'"body"',
        b":",
        b",",
        b"1",
        b"null",
        line("p"),
        line("q"),
        line("r", method="GET"),
    ]
)
_INPUTS = st.one_of(st.binary(max_size=300), st.lists(_FRAGMENTS, max_size=40).map(b"".join))


def _expected_lines(data: bytes) -> list[int]:
    """Line numbers of the non-blank lines, by a plain split (the reference model)."""
    pieces = data.split(b"\n")
    if pieces and pieces[-1] == b"":
        pieces.pop()
    if pieces and pieces[0].startswith(b"\xef\xbb\xbf"):
        pieces[0] = pieces[0][3:]
    return [n for n, piece in enumerate(pieces, 1) if piece.strip()]


@pytest.mark.parametrize("stdlib", [False, True], ids=["default", "stdlib"])
@settings(max_examples=200, deadline=None)
@given(data=_INPUTS, max_line_bytes=st.sampled_from([1, 8, 64, 1_000_000]))
def test_read_batch_never_raises(stdlib: bool, data: bytes, max_line_bytes: int) -> None:
    with pytest.MonkeyPatch.context() as patch:
        if stdlib:
            patch.setattr(_batch, "loads", json.loads)
        items = list(read_batch(io.BytesIO(data), max_line_bytes=max_line_bytes, max_depth=3))
    assert [item.line for item in items] == _expected_lines(data)
    for item in items:
        assert isinstance(item, (BatchRequest, BadLine))
        if isinstance(item, BadLine):
            assert item.message.startswith(f"line {item.line}: ")
        else:
            assert len(item.raw) <= max_line_bytes


def test_seen_ids_grow_and_remember_first_lines() -> None:
    from openai_multi_client.cli._batch import SeenIds

    seen = SeenIds(capacity=4)
    for line in range(1, 20_001):
        assert seen.first_line(f"id-{line}", line) == line
    assert len(seen) == 20_000
    assert seen.first_line("id-17", 99_999) == 17
    assert seen.first_line("id-20000", 99_999) == 20_000
    assert seen.first_line("new", 30_000) == 30_000


def test_duplicates_are_found_with_the_ids_kept_on_disk() -> None:
    from openai_multi_client.cli._seen import DiskSeenIds

    lines = [json.dumps({"custom_id": f"id-{n % 5000}", "method": "POST",
                         "url": "/v1/embeddings", "body": {"input": "x"}})
             for n in range(6000)]  # fmt: skip
    seen = DiskSeenIds()
    try:
        items = list(read_batch(io.BytesIO("\n".join(lines).encode()), seen=seen))
    finally:
        seen.close()
    duplicates = [item for item in items if isinstance(item, BadLine)]
    assert len(duplicates) == 1000
    assert duplicates[0].message == "line 5001: custom_id 'id-0' appears again (first on line 1)"
    assert len(seen) == 5000
