"""JSON that is not strict: parsed the same with and without orjson, always written strictly."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path
from typing import Any

import pytest

from openai_multi_client import InvalidResponseError, Request, Result, RetryPolicy
from openai_multi_client import _json as codec
from openai_multi_client._stream import StreamReader
from openai_multi_client.cli._batch import output_line, result_line
from openai_multi_client.cli._cache import ResponseCache, cache_key

CODECS = ["stdlib", "orjson"]


@pytest.fixture(params=CODECS)
def json_codec(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each test runs once with the stdlib codec and once with orjson (when installed)."""
    if request.param == "orjson":
        if importlib.util.find_spec("orjson") is None:
            pytest.skip("the speed extra (orjson) is not installed")
        monkeypatch.setattr(codec, "_orjson", importlib.import_module("orjson"))
    else:
        monkeypatch.setattr(codec, "_orjson", None)
    return str(request.param)


def strict_loads(data: bytes | str) -> Any:
    """``json.loads`` that refuses NaN and infinities, and text that is not UTF-8."""

    def refuse(constant: str) -> Any:
        raise AssertionError(f"not strict JSON: {constant}")

    text = data.decode("utf-8") if isinstance(data, bytes) else data
    return json.loads(text, parse_constant=refuse)


ODD = b'{"logprob":-Infinity,"other":Infinity,"score":NaN,"text":"a\\ud800b","ok":"\\ud83d\\ude00"}'


def test_loads_accepts_non_finite_numbers_and_lone_surrogates(json_codec: str) -> None:
    parsed = codec.loads(ODD)
    assert parsed["logprob"] == -math.inf
    assert parsed["other"] == math.inf
    assert math.isnan(parsed["score"])
    assert parsed["text"] == "a\ud800b"  # kept, as Python's json module does
    assert parsed["ok"] == "\U0001f600"  # a proper pair is one character


def test_loads_still_refuses_malformed_json(json_codec: str) -> None:
    for bad in (b"{", b'{"a": nan}', b"[1,]", b"\xff"):
        with pytest.raises((json.JSONDecodeError, UnicodeDecodeError)):
            codec.loads(bad)


def test_dumps_is_strict_for_requests(json_codec: str) -> None:
    for value in ({"a": math.nan}, {"a": [1.0, -math.inf]}, {"a": "x\udc80"}):
        with pytest.raises(ValueError, match=r"not JSON compliant|surrogates not allowed"):
            codec.dumps(value)
    with pytest.raises(TypeError):
        codec.dumps({"a": object()})
    assert strict_loads(codec.dumps({"a": None, "b": 2**70})) == {"a": None, "b": 2**70}


def test_dumps_record_writes_strict_json_for_any_parsed_answer(json_codec: str) -> None:
    written = codec.dumps_record(codec.loads(ODD))
    assert strict_loads(written) == {
        "logprob": "-Infinity",
        "other": "Infinity",
        "score": "NaN",
        "text": "a\ufffdb",
        "ok": "\U0001f600",
    }
    assert float(strict_loads(written)["logprob"]) == -math.inf  # float() reads them back
    assert strict_loads(codec.dumps_record({"k\ud800": [math.nan, (1, None)]})) == {
        "k\ufffd": ["NaN", [1, None]]
    }


def test_dumps_record_is_the_plain_encoding_for_ordinary_answers(json_codec: str) -> None:
    value = {"a": [1, 2.5, None, True, "é"], "b": {"c": 2**70}}
    assert strict_loads(codec.dumps_record(value)) == value


def test_output_line_of_an_odd_answer_is_strict_json(json_codec: str) -> None:
    line = output_line("req-1", status_code=200, request_id=None, body=codec.loads(ODD))
    record = strict_loads(line)
    assert record["custom_id"] == "req-1"
    assert record["response"]["body"]["logprob"] == "-Infinity"


def result_of(response: Any) -> Result:
    return Result(0, "chats", {}, {"custom_id": "req-7"}, response=response, status_code=200)


def test_an_answer_no_json_can_hold_is_that_requests_failure(json_codec: str) -> None:
    line, failed = result_line("req-7", result_of({"choices": [object()]}))
    record = strict_loads(line)
    assert failed
    assert record["custom_id"] == "req-7"
    assert record["response"] is None
    assert record["error"]["code"] == InvalidResponseError.__name__
    assert "'req-7'" in record["error"]["message"]
    assert "cannot be written as JSON" in record["error"]["message"]


def test_result_line_of_an_odd_answer_is_a_success(json_codec: str) -> None:
    line, failed = result_line("req-7", result_of(codec.loads(ODD)))
    assert not failed
    assert strict_loads(line)["response"]["body"]["score"] == "NaN"


def test_the_cache_stores_odd_answers_and_keys_odd_requests(
    json_codec: str, tmp_path: Path
) -> None:
    cache = ResponseCache(str(tmp_path / "cache.sqlite"))
    try:
        key = cache_key("/v1/chat/completions", {"messages": "lone \ud800"})
        cache.put(key, 200, "req_1", codec.loads(ODD))
        cache.put("other", 200, None, {"a": object()})  # not storable: skipped, no error
        hit = cache.get(key)
        assert hit is not None
        assert hit[2]["logprob"] == "-Infinity"
        assert cache.get("other") is None
    finally:
        cache.close()


def test_streamed_chunks_with_odd_values_are_assembled(json_codec: str) -> None:
    request = Request(0, "chats", "chat/completions", {"stream": True}, {}, None, RetryPolicy())
    chunks: list[dict[str, Any]] = []
    request.on_chunk = lambda chunk, _: chunks.append(chunk)
    reader = StreamReader(request)
    reader.feed(
        b'data: {"id":"c","choices":[{"index":0,"delta":{"role":"assistant","content":"a\\ud800"},'
        b'"logprobs":{"content":[{"token":"a","logprob":-Infinity}]}}]}\n\n'
        b'data: {"id":"c","choices":[{"index":0,"delta":{"content":"b"},"logprobs":{"content":'
        b'[{"token":"b","logprob":NaN}]},"finish_reason":"stop"}]}\n\ndata: [DONE]\n\n'
    )
    response = reader.finish({}, None)
    choice = response["choices"][0]
    assert choice["message"]["content"] == "a\ud800b"
    logprobs = [entry["logprob"] for entry in choice["logprobs"]["content"]]
    assert logprobs[0] == -math.inf
    assert math.isnan(logprobs[1])
    assert len(chunks) == 2
    record = strict_loads(output_line("req-1", status_code=200, request_id=None, body=response))
    body = record["response"]["body"]["choices"][0]
    assert [entry["logprob"] for entry in body["logprobs"]["content"]] == ["-Infinity", "NaN"]
    assert body["message"]["content"] == "a\ufffdb"
