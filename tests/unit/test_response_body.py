"""What a response's body may be: not empty, and not larger than ``max_response_bytes``."""

from __future__ import annotations

from typing import Any

import pytest

from openai_multi_client import (
    AsyncMultiClient,
    ConfigurationError,
    HTTPRequest,
    HTTPResponse,
    InvalidResponseError,
    OpenAIMultiClient,
    Request,
    ResponseTooLargeError,
    Result,
    RetryPolicy,
)
from openai_multi_client._stream import StreamReader
from openai_multi_client._transport import DEFAULT_MAX_RESPONSE_BYTES
from openai_multi_client.testing import FakeClock, MockTransport, sse_response

KEY = "sk-test-0123456789"


async def one_result(
    content: bytes, headers: dict[str, str] | None = None, stream: bool = False, **options: Any
) -> tuple[Result, list[HTTPRequest]]:
    seen: list[HTTPRequest] = []

    def handler(request: HTTPRequest) -> HTTPResponse:
        seen.append(request)
        return HTTPResponse.build(200, headers or {"content-type": "application/json"}, content)

    client = AsyncMultiClient(
        max_retries=3,
        endpoint="chats",
        api_key=KEY,
        base_url="http://mock.invalid/v1",
        transport=MockTransport(handler),
        **options,
    )
    async with client:
        data = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
        await client.request({**data, "stream": True} if stream else data)
        client.close()
        results = [result async for result in client]
    assert len(results) == 1
    return results[0], seen


@pytest.mark.parametrize("content", [b"", b" \r\n"])
async def test_an_empty_answer_says_so_and_is_retried(
    content: bytes, fake_clock: FakeClock
) -> None:
    result, seen = await one_result(content)
    assert isinstance(result.error, InvalidResponseError)
    assert "HTTP 200 with an empty body" in str(result.error)
    assert result.attempt == 3  # retried, as any malformed response
    assert len(seen) == 3


async def test_an_answer_over_the_cap_fails_at_once_naming_the_cap() -> None:
    body = b'{"object":"chat.completion","choices":[],"pad":"' + b"x" * 5000 + b'"}'
    result, seen = await one_result(body, max_response_bytes=4096)
    assert isinstance(result.error, ResponseTooLargeError)
    assert isinstance(result.error, InvalidResponseError)
    assert result.error.max_response_bytes == 4096
    assert "4,096 bytes (max_response_bytes)" in str(result.error)
    assert "--max-response-bytes" in str(result.error)
    assert result.attempt == 1  # not retried: the same request would get the same answer
    assert seen[0].max_response_bytes == 4096  # the transport is told the cap


async def test_an_answer_at_the_cap_or_without_one_is_read() -> None:
    body = b'{"object":"chat.completion","choices":[]}'
    for cap in (len(body), None):
        result, seen = await one_result(body, max_response_bytes=cap)
        assert result.error is None, result.error
        assert seen[0].max_response_bytes == cap


async def test_the_default_cap_is_64_mib() -> None:
    _, seen = await one_result(b'{"choices":[]}')
    assert seen[0].max_response_bytes == DEFAULT_MAX_RESPONSE_BYTES == 64 * 1024 * 1024


async def test_a_stream_over_the_cap_fails() -> None:
    chunk = {"id": "c", "choices": [{"index": 0, "delta": {"content": "y" * 100}}]}
    response = sse_response([chunk] * 50)
    result, _ = await one_result(
        response.content, dict(response.headers), max_response_bytes=2000, stream=True
    )
    assert isinstance(result.error, ResponseTooLargeError)


def test_the_stream_reader_counts_every_byte_fed() -> None:
    request = Request(0, "chats", "chat/completions", {"stream": True}, {}, None, RetryPolicy())
    reader = StreamReader(request, max_bytes=100)
    reader.feed(b"data: " + b"x" * 90)
    with pytest.raises(ResponseTooLargeError, match="100 bytes"):
        reader.feed(b"y" * 11)


@pytest.mark.parametrize("value", [0, -1, True, 1.5, "1"])
def test_a_bad_cap_is_refused_by_every_face(value: Any) -> None:
    for face in (AsyncMultiClient, OpenAIMultiClient):
        with pytest.raises(ConfigurationError, match="max_response_bytes must be a whole number"):
            face(api_key=KEY, max_response_bytes=value)
