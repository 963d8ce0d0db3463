"""Streamed answers: assembly of chunks, error events, cut streams, on_chunk, and the engine
retrying a stream (mock transport, virtual time)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from openai_multi_client import (
    AsyncMultiClient,
    BadRequestError,
    CallbackError,
    ConfigurationError,
    ConnectionClosedError,
    HTTPRequest,
    HTTPResponse,
    InsufficientQuotaError,
    InternalServerError,
    InvalidResponseError,
    RateLimitError,
    Request,
    Result,
    StreamInterruptedError,
    _json,
)
from openai_multi_client._request import Request as RequestRecord
from openai_multi_client._retry import RetryPolicy
from openai_multi_client._stream import StreamReader, prepare_stream
from openai_multi_client.testing import FakeClock, MockTransport, sse_response

KEY = "sk-test-0123456789abcdef"
Chunk = dict[str, Any]


def record(path: str = "chat/completions", **data: Any) -> Request:
    return RequestRecord(0, "chats", path, data, {}, None, RetryPolicy())


def read(
    response: HTTPResponse,
    path: str = "chat/completions",
    on_chunk: Callable[[Chunk, Request], object] | None = None,
    split: int | None = None,
) -> dict[str, Any]:
    request = record(path)
    request.on_chunk = on_chunk
    reader = StreamReader(request, KEY, "key-1")
    content = response.content
    step = split or len(content) or 1
    for start in range(0, len(content), step):
        reader.feed(content[start : start + step])
    return reader.finish(response.headers, "req_1")


def chat_chunk(index: int = 0, finish: str | None = None, **delta: Any) -> Chunk:
    choice = {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "gpt-x",
        "system_fingerprint": "fp_1",
        "choices": [choice],
        "usage": None,
    }


USAGE = {"prompt_tokens": 5, "completion_tokens": 4, "total_tokens": 9}


def usage_chunk() -> Chunk:
    return {"id": "chatcmpl-1", "object": "chat.completion.chunk", "choices": [], "usage": USAGE}


CHAT = [
    chat_chunk(0, role="assistant", content=""),
    chat_chunk(1, role="assistant", content=""),
    chat_chunk(0, content="Hel"),
    chat_chunk(1, content="Bon"),
    chat_chunk(0, content="lo"),
    chat_chunk(1),  # an empty delta
    chat_chunk(1, content="jour"),
    chat_chunk(0, finish="stop"),
    chat_chunk(1, finish="length"),
    usage_chunk(),
]


@pytest.mark.parametrize("split", [None, 1, 7])
def test_chat_chunks_become_a_chat_completion(split: int | None) -> None:
    response = read(sse_response([": keep-alive\n\n", *CHAT]), split=split)
    assert response == {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": "gpt-x",
        "system_fingerprint": "fp_1",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Hello", "refusal": None},
                "logprobs": None,
                "finish_reason": "stop",
            },
            {
                "index": 1,
                "message": {"role": "assistant", "content": "Bonjour", "refusal": None},
                "logprobs": None,
                "finish_reason": "length",
            },
        ],
        "usage": USAGE,
    }


def test_tool_call_fragments_merge_by_index() -> None:
    def call(index: int, **fields: Any) -> dict[str, Any]:
        return {"index": index, **fields}

    chunks = [
        chat_chunk(role="assistant", content=None),
        chat_chunk(
            tool_calls=[
                call(0, id="call_a", type="function", function={"name": "f", "arguments": ""})
            ]
        ),
        chat_chunk(tool_calls=[call(0, function={"arguments": '{"x"'})]),
        chat_chunk(
            tool_calls=[
                call(1, id="call_b", type="function", function={"name": "g", "arguments": "{"})
            ]
        ),
        chat_chunk(tool_calls=[call(0, function={"arguments": ": 1}"})]),
        chat_chunk(tool_calls=[call(1, function={"arguments": "}"})]),
        chat_chunk(finish="tool_calls"),
    ]
    message = read(sse_response(chunks))["choices"][0]["message"]
    assert message["content"] is None
    assert message["tool_calls"] == [
        {"id": "call_a", "type": "function", "function": {"name": "f", "arguments": '{"x": 1}'}},
        {"id": "call_b", "type": "function", "function": {"name": "g", "arguments": "{}"}},
    ]


def test_refusal_reasoning_and_logprobs_are_assembled() -> None:
    def token(text: str) -> dict[str, Any]:
        return {"token": text, "logprob": -0.1, "bytes": None, "top_logprobs": []}

    first = chat_chunk(role="assistant", reasoning_content="thi")
    first["choices"][0]["logprobs"] = {"content": [token("a")], "refusal": None}
    second = chat_chunk(reasoning_content="nk", refusal="No.")
    second["choices"][0]["logprobs"] = {"content": [token("b")], "refusal": None}
    choice = read(sse_response([first, second, chat_chunk(finish="stop")]))["choices"][0]
    assert choice["message"]["reasoning_content"] == "think"
    assert choice["message"]["refusal"] == "No."
    assert [t["token"] for t in choice["logprobs"]["content"]] == ["a", "b"]
    assert first["choices"][0]["logprobs"]["content"] == [token("a")]  # chunks are not changed


def test_completions_chunks_become_a_text_completion() -> None:
    def chunk(text: str, finish: str | None = None, index: int = 0) -> Chunk:
        return {
            "id": "cmpl-1",
            "object": "text_completion",
            "created": 1,
            "model": "m",
            "choices": [{"text": text, "index": index, "logprobs": None, "finish_reason": finish}],
        }

    events = [
        chunk("Once"),
        chunk("Two", index=1),
        chunk(" upon"),
        chunk("", "stop"),
        chunk("", "stop", 1),
    ]
    response = read(sse_response([*events, usage_chunk()]), path="completions", split=5)
    assert response["object"] == "text_completion"
    assert [c["text"] for c in response["choices"]] == ["Once upon", "Two"]
    assert [c["finish_reason"] for c in response["choices"]] == ["stop", "stop"]
    assert response["usage"] == USAGE


def test_responses_stream_yields_the_final_response() -> None:
    final = {"id": "resp_1", "object": "response", "status": "completed", "usage": USAGE}
    events = [
        {"type": "response.created", "response": {"id": "resp_1", "status": "in_progress"}},
        {"type": "response.output_text.delta", "delta": "Hi"},
        {"type": "response.completed", "response": final},
    ]
    assert read(sse_response(events, done=False), path="responses") == final
    with pytest.raises(StreamInterruptedError, match=r"response\.completed"):
        read(sse_response(events[:2], done=False), path="responses")
    failed = {"type": "response.failed", "response": {"error": {"code": "server_error"}}}
    with pytest.raises(InternalServerError):
        read(sse_response([events[0], failed], done=False), path="responses")
    error = {"type": "error", "code": "rate_limit_exceeded", "message": "slow down", "param": None}
    with pytest.raises(RateLimitError, match="slow down"):
        read(sse_response([events[0], error], done=False), path="responses")


def test_a_stream_without_done_or_finish_reason_is_interrupted() -> None:
    with pytest.raises(StreamInterruptedError, match=r"\[DONE\]"):
        read(sse_response(CHAT, done=False))
    with pytest.raises(StreamInterruptedError, match="choice 1 has no finish_reason"):
        read(sse_response(CHAT[:-2]))
    with pytest.raises(StreamInterruptedError, match="no choice"):
        read(sse_response([]))
    with pytest.raises(StreamInterruptedError):  # cut mid-event
        read(HTTPResponse.build(200, {}, sse_response(CHAT).content[:-40]))


def test_a_malformed_event_is_an_invalid_response() -> None:
    with pytest.raises(InvalidResponseError, match="event 2"):
        read(sse_response([CHAT[0], 'data: {"id": "chatc\n\n', *CHAT[1:]]))
    with pytest.raises(InvalidResponseError, match="not a JSON object"):
        read(sse_response(["data: [1, 2]\n\n"]))


@pytest.mark.parametrize(
    ("error", "expected", "status"),
    [
        ({"message": "boom", "type": "server_error", "code": None}, InternalServerError, 500),
        ({"message": "slow", "type": "tokens", "code": "rate_limit_exceeded"}, RateLimitError, 429),
        (
            {"message": "quota", "type": "x", "code": "insufficient_quota"},
            InsufficientQuotaError,
            429,
        ),
        ({"message": "bad", "type": "invalid_request_error"}, BadRequestError, 400),
        (
            {"object": "error", "message": "bad", "type": "BadRequestError", "code": 400},
            BadRequestError,
            400,
        ),
    ],
)
def test_an_error_event_is_classified_as_its_http_status(
    error: dict[str, Any], expected: type[Exception], status: int
) -> None:
    with pytest.raises(expected) as caught:
        read(sse_response([CHAT[0], {"error": error}], done=False))
    assert getattr(caught.value, "status_code", None) == status
    assert getattr(caught.value, "request_id", None) == "req_1"
    assert "error event" in str(caught.value)


def test_a_server_that_ignores_stream_may_answer_with_plain_json() -> None:
    body = {"id": "x", "object": "chat.completion", "choices": [], "usage": USAGE}
    assert read(HTTPResponse.build(200, {}, b"\n" + _json.dumps(body))) == body
    with pytest.raises(BadRequestError):
        read(
            HTTPResponse.build(
                200, {}, b'{"error": {"message": "no", "type": "invalid_request_error"}}'
            )
        )


def test_an_echoed_key_never_reaches_chunks_responses_or_errors() -> None:
    seen: list[Chunk] = []
    echo = chat_chunk(content=f"your key is {KEY}")
    response = read(
        sse_response([echo, chat_chunk(finish="stop")]),
        on_chunk=lambda c, r: seen.append(c),
        split=3,
    )
    assert KEY not in repr(seen)
    assert KEY not in repr(response)
    assert "key-1" in response["choices"][0]["message"]["content"]
    with pytest.raises(InvalidResponseError) as caught:
        read(sse_response([f"data: {KEY}\n\n"]))
    assert KEY not in str(caught.value)


def test_on_chunk_gets_every_chunk_and_its_errors_stop_only_the_callback() -> None:
    seen: list[tuple[str | None, int]] = []

    def on_chunk(chunk: Chunk, request: Request) -> None:
        seen.append(
            (
                chunk["choices"][0]["delta"].get("content") if chunk["choices"] else None,
                request.index,
            )
        )
        if len(seen) == 3:
            raise ValueError("boom")

    request = record()
    request.on_chunk = on_chunk
    reader = StreamReader(request)
    reader.feed(sse_response(CHAT).content)
    response = reader.finish({}, None)
    assert response["choices"][0]["message"]["content"] == "Hello"
    assert len(seen) == 3
    assert isinstance(request.chunk_error, ValueError)


def test_prepare_asks_for_usage_unless_told_otherwise() -> None:
    request = record(stream=True)
    prepare_stream(request)
    assert request.stream
    assert request.data["stream_options"] == {"include_usage": True}
    for options in (None, {"include_usage": False}):
        request = record(stream=True, stream_options=options)
        prepare_stream(request)
        assert request.data["stream_options"] == options
    request = record("responses", stream=True)
    prepare_stream(request)
    assert "stream_options" not in request.data
    with pytest.raises(ConfigurationError, match="stream"):
        prepare_stream(record("embeddings", stream=True))


# ------------------------------------------------------------------------------ the engine


def make_client(handler: Callable[[HTTPRequest], Any], **options: Any) -> AsyncMultiClient:
    options.setdefault("api_key", KEY)
    options.setdefault("endpoint", "chats")
    options.setdefault("base_url", "http://mock.invalid/v1")
    return AsyncMultiClient(transport=MockTransport(handler), **options)


def streamed(text: str) -> dict[str, Any]:
    return {"model": "m", "stream": True, "messages": [{"role": "user", "content": text}]}


async def run(
    client: AsyncMultiClient, bodies: list[dict[str, Any]], **options: Any
) -> list[Result]:
    async def produce() -> None:
        for body in bodies:
            await client.request(body, **options)
        client.close()

    producer = asyncio.ensure_future(produce())
    results = [result async for result in client]
    await producer
    return results


async def test_a_cut_stream_is_retried_and_on_chunk_sees_the_restart(fake_clock: FakeClock) -> None:
    sent: list[dict[str, Any]] = []

    def handler(request: HTTPRequest) -> HTTPResponse:
        sent.append(_json.loads(request.content))
        assert request.headers["Accept"] == "text/event-stream"
        return sse_response(CHAT[:3] if len(sent) == 1 else CHAT, done=len(sent) > 1)

    seen: list[tuple[int, int]] = []
    async with make_client(
        handler, on_chunk=lambda chunk, req: seen.append((req.index, req.attempt))
    ) as client:
        [result] = await run(client, [streamed("hi")])
    assert not result.failed, result.error
    assert result.attempt == 2
    assert result.response["choices"][1]["message"]["content"] == "Bonjour"
    assert result.usage == USAGE
    assert sent[0]["stream_options"] == {"include_usage": True}
    assert seen == [(0, 1)] * 3 + [(0, 2)] * len(CHAT)
    assert client.statistics().retries == 1


async def test_an_error_event_is_retried_like_a_500(fake_clock: FakeClock) -> None:
    calls = 0

    def handler(request: HTTPRequest) -> HTTPResponse:
        nonlocal calls
        calls += 1
        if calls == 1:
            return sse_response(
                [CHAT[0], {"error": {"message": "oops", "type": "server_error"}}], done=False
            )
        return sse_response(CHAT)

    async with make_client(handler) as client:
        [result] = await run(client, [streamed("x")])
    assert not result.failed
    assert result.attempt == 2


async def test_a_stream_that_stays_cut_fails_with_stream_interrupted(fake_clock: FakeClock) -> None:
    async with make_client(
        lambda request: sse_response(CHAT[:2], done=False), max_retries=3
    ) as client:
        [result] = await run(client, [streamed("x")])
    assert result.failed
    assert isinstance(result.error, StreamInterruptedError)
    assert result.attempt == 3


async def test_an_on_chunk_error_surfaces_as_callback_error_with_the_result(
    fake_clock: FakeClock,
) -> None:
    def on_chunk(chunk: Chunk, request: Request) -> None:
        raise RuntimeError("callback bug")

    async with make_client(lambda request: sse_response(CHAT)) as client:
        await client.request(streamed("a"), on_chunk=on_chunk)
        await client.request(streamed("b"))
        client.close()
        with pytest.raises(CallbackError, match="on_chunk") as caught:
            await client.__anext__()
        assert not caught.value.result.failed
        assert caught.value.result.response["choices"][0]["message"]["content"] == "Hello"
        rest = [result async for result in client]
    assert len(rest) == 1
    assert not rest[0].failed


async def test_on_chunk_needs_a_streamed_request(fake_clock: FakeClock) -> None:
    async with make_client(lambda request: sse_response(CHAT)) as client:
        with pytest.raises(ConfigurationError, match="on_chunk"):
            await client.request({"model": "m", "messages": []}, on_chunk=lambda c, r: None)
        with pytest.raises(ConfigurationError, match="stream"):
            await client.request(
                {"model": "m", "input": "x", "stream": True}, endpoint="embeddings"
            )


class CutAfterBody:
    """A transport that streams the whole body to ``on_data`` and then loses the connection."""

    def __init__(self, body: bytes) -> None:
        self.body = body

    async def handle(self, request: HTTPRequest) -> HTTPResponse:
        assert request.on_data is not None
        request.on_data(self.body)
        raise ConnectionClosedError("connection reset after the body")


@pytest.mark.parametrize(("events", "complete"), [(CHAT, True), (CHAT[:-2], False)])
async def test_a_connection_lost_after_done_keeps_a_complete_answer(
    fake_clock: FakeClock, events: list[Chunk], complete: bool
) -> None:
    transport = CutAfterBody(sse_response(events).content)
    options: dict[str, Any] = {"api_key": KEY, "base_url": "http://mock.invalid/v1"}
    async with AsyncMultiClient(
        endpoint="chats", transport=transport, max_retries=1, **options
    ) as client:
        [result] = await run(client, [streamed("x")])
    if complete:
        assert not result.failed
        assert result.response["choices"][1]["message"]["content"] == "Bonjour"
        assert result.status_code == 200
    else:
        assert isinstance(result.error, StreamInterruptedError)
