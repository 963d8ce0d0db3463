"""Azure OpenAI over real HTTP: the key in ``api-key``, deployment URLs with ``api-version``,
and Azure's ``retry-after-ms`` obeyed."""

from __future__ import annotations

from collections.abc import Iterator

from aiohttp import web

from openai_multi_client import Key, arun_requests

from .recorder import Recorder, serve

ANSWER = {
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}}],
    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
}


def replies(*responses: web.StreamResponse) -> Iterator[web.StreamResponse]:
    yield from responses
    while True:
        yield web.json_response(ANSWER)


async def test_deployment_url_api_version_and_api_key_header() -> None:
    answers = replies()
    recorder = Recorder(lambda request: next(answers))
    runner, port = await serve(recorder, "127.0.0.1")
    try:
        key = Key("azure-secret", azure=True, api_version="2024-10-21")
        base = f"http://127.0.0.1:{port}/openai/deployments/my-gpt"
        bodies = [{"messages": [{"role": "user", "content": "hi"}]}]
        chat = [r async for r in arun_requests(bodies, api_key=key, base_url=base)]
        embedding = [
            r
            async for r in arun_requests(
                [{"input": "x"}], endpoint="embeddings", api_key=key, base_url=f"{base}?a=1"
            )
        ]
    finally:
        await runner.cleanup()
    assert not chat[0].failed, chat[0].error
    assert not embedding[0].failed, embedding[0].error
    (_, chat_path, chat_headers), (_, embed_path, embed_headers) = recorder.seen
    assert chat_path == "/openai/deployments/my-gpt/chat/completions?api-version=2024-10-21"
    assert embed_path == "/openai/deployments/my-gpt/embeddings?a=1&api-version=2024-10-21"
    for headers in (chat_headers, embed_headers):
        assert headers["api-key"] == "azure-secret"
        assert "Authorization" not in headers


async def test_retry_after_ms_is_obeyed_before_retry_after() -> None:
    # Azure's 429 says 300 ms in retry-after-ms and an hour in retry-after: the client must take
    # the precise one (otherwise it would wait max_server_delay, 120 s, and time out here).
    limited = web.json_response(
        {"error": {"message": "Rate limit exceeded", "code": "rate_limit_exceeded"}},
        status=429,
        headers={"retry-after-ms": "300", "retry-after": "3600"},
    )
    unavailable = web.json_response(
        {"error": {"message": "busy"}}, status=503, headers={"retry-after-ms": "200"}
    )
    answers = replies(limited, unavailable)
    recorder = Recorder(lambda request: next(answers))
    runner, port = await serve(recorder, "127.0.0.1")
    try:
        key = Key("azure-secret", azure=True, api_version="2024-10-21")
        base = f"http://127.0.0.1:{port}/openai/deployments/my-gpt"
        bodies = [{"messages": [{"role": "user", "content": "hi"}]}]
        (result,) = [r async for r in arun_requests(bodies, api_key=key, base_url=base)]
    finally:
        await runner.cleanup()
    assert not result.failed, result.error
    assert len(recorder.seen) == 3
    first, second, third = recorder.times
    assert second - first >= 0.3  # waits never end early: this bound cannot flake
    assert third - second >= 0.2
