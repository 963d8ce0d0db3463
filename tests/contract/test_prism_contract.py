"""The client against OpenAI's own OpenAPI spec, served by Prism over HTTP (see conftest.py).

For every endpoint of the endpoint table: the requests the client builds pass Prism's validation
(a violation would be a 422 and a failed result), and the client parses whatever Prism answers:
the spec's examples, and random responses generated from the response schemas (seeded, so every
run sees the same ones).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import zlib
from pathlib import Path
from typing import Any

import pytest

from openai_multi_client import (
    AsyncMultiClient,
    InternalServerError,
    Result,
    UnprocessableEntityError,
    run_requests,
)
from openai_multi_client._request import ENDPOINTS
from openai_multi_client._transport import AiohttpTransport, HTTPRequest, HTTPResponse

pytestmark = [pytest.mark.contract, pytest.mark.timeout(300)]

ROOT = Path(__file__).resolve().parents[2]
KEY = "sk-contract-test"
DYNAMIC_RESPONSES = 30  # random responses asked for per endpoint
PRISM_ERRORS = "https://stoplight.io/prism/errors#"


def user(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


# Realistic bodies per endpoint path: the common forms and the options users send most.
BODIES: dict[str, list[dict[str, Any]]] = {
    "chat/completions": [
        {"model": "gpt-4o-mini", "messages": user("What is 2 * 2?")},
        {
            "model": "gpt-4o-mini",
            "messages": [
                {"role": "system", "content": "Answer in one word."},
                *user("Capital of France?"),
                {"role": "assistant", "content": "Paris"},
                *user("And of Italy? ünïcödé ✓"),
            ],
            "max_tokens": 20,
            "temperature": 0.2,
            "n": 2,
            "seed": 7,
            "user": "contract-test",
        },
        {
            "model": "gpt-4o",
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "What is in this image?"},
                        {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}},
                    ],
                }
            ],
            "max_completion_tokens": 50,
            "response_format": {"type": "json_object"},
            "logprobs": True,
            "top_logprobs": 2,
        },
        {
            "model": "gpt-4o-mini",
            "messages": user("Weather in Paris?"),
            "tools": [
                {
                    "type": "function",
                    "function": {
                        "name": "weather",
                        "parameters": {
                            "type": "object",
                            "properties": {"city": {"type": "string"}},
                        },
                    },
                }
            ],
            "tool_choice": "auto",
            "stop": ["\n"],
        },
    ],
    "completions": [
        {"model": "gpt-3.5-turbo-instruct", "prompt": "Say hi"},
        {"model": "gpt-3.5-turbo-instruct", "prompt": ["a", "b"], "max_tokens": 5, "n": 1},
        {"model": "davinci-002", "prompt": [1, 2, 3], "temperature": 0, "logprobs": 2},
    ],
    "embeddings": [
        {"model": "text-embedding-3-small", "input": "hello"},
        {"model": "text-embedding-3-small", "input": ["a", "b"], "dimensions": 256},
        {"model": "text-embedding-ada-002", "input": [1, 2, 3], "encoding_format": "float"},
    ],
    "moderations": [
        {"input": "some text"},
        {"model": "omni-moderation-latest", "input": ["one", "two"]},
        {
            "model": "omni-moderation-latest",
            "input": [
                {"type": "text", "text": "a caption"},
                {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}},
            ],
        },
    ],
    "responses": [
        {"model": "gpt-4o-mini", "input": "hello"},
        {
            "model": "gpt-4o-mini",
            "instructions": "Be brief.",
            "input": [{"role": "user", "content": "Tell me a joke."}],
            "max_output_tokens": 50,
            "temperature": 0.5,
            "store": False,
        },
        {
            "model": "o4-mini",
            "input": [{"role": "user", "content": [{"type": "input_text", "text": "2 + 2?"}]}],
            "reasoning": {"effort": "low"},
            "text": {"format": {"type": "text"}},
        },
    ],
    "images/generations": [
        {"prompt": "a cat"},
        {"model": "dall-e-3", "prompt": "a cat", "n": 1, "size": "1024x1024", "quality": "hd"},
        {"model": "gpt-image-1", "prompt": "a dog", "size": "1536x1024", "output_format": "png"},
    ],
}

# A member that the spec requires in each endpoint's answer, and its type.
SHAPES: dict[str, tuple[str, type]] = {
    "chat/completions": ("choices", list),
    "completions": ("choices", list),
    "embeddings": ("data", list),
    "moderations": ("results", list),
    "responses": ("output", list),
    "images/generations": ("created", int),
}

# A string field of each endpoint's first body that can take any text.
VARIED = {
    "chat/completions": "user",
    "completions": "prompt",
    "embeddings": "input",
    "moderations": "input",
    "responses": "input",
    "images/generations": "prompt",
}


def test_every_endpoint_of_the_table_is_covered() -> None:
    assert set(BODIES) == set(SHAPES) == set(VARIED) == set(ENDPOINTS.values())


def check_parsed(path: str, result: Result) -> None:
    assert not result.failed, (path, result.error, result.response)
    assert result.status_code == 200
    assert isinstance(result.response, dict)
    member, kind = SHAPES[path]
    assert isinstance(result.response[member], kind), result.response
    usage = result.usage
    assert usage is None or isinstance(usage, dict)


@pytest.mark.parametrize("path", sorted(BODIES))
async def test_requests_pass_validation_and_examples_parse(prism: str, path: str) -> None:
    bodies = BODIES[path]
    async with AsyncMultiClient(
        endpoint=f"/v1/{path}",
        api_key=KEY,
        base_url=prism,
        organization="org-contract",
        ordered=True,
        max_retries=1,
    ) as client:
        for body in bodies:
            await client.request(body)
        client.close()
        results = [result async for result in client]
    assert len(results) == len(bodies)
    for result in results:
        check_parsed(path, result)


def test_every_endpoint_name_with_the_sync_client(prism: str) -> None:
    for name, path in ENDPOINTS.items():
        (result,) = run_requests([BODIES[path][0]], endpoint=name, api_key=KEY, base_url=prism)
        check_parsed(path, result)


def test_omc_run_batch_file(prism: str, tmp_path: Path) -> None:
    lines = [
        {"custom_id": f"{path}-{n}", "method": "POST", "url": f"/v1/{path}", "body": body}
        for path, bodies in BODIES.items()
        for n, body in enumerate(bodies)
    ]
    requests, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    requests.write_text("".join(json.dumps(line) + "\n" for line in lines))
    run = ["run", str(requests), "-o", str(out), "--base-url", prism, "--no-journal"]
    done = subprocess.run(
        [sys.executable, "-m", "openai_multi_client", *run, "--max-retries", "1"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "OPENAI_API_KEY": KEY, "PYTHONWARNINGS": "error"},
        check=False,
    )
    assert done.returncode == 0, done.stderr
    answers = [json.loads(line) for line in out.read_text().splitlines()]
    expected = sorted(str(line["custom_id"]) for line in lines)
    assert sorted(a["custom_id"] for a in answers) == expected
    assert all(a["response"]["status_code"] == 200 and a["error"] is None for a in answers)


@pytest.mark.parametrize("path", sorted(BODIES))
def test_prism_rejects_a_broken_request(prism: str, path: str) -> None:
    # The control that makes the tests above mean something: Prism does validate each of these
    # request bodies, and its 422 reaches the caller as a classified error, not retried.
    (result,) = run_requests([{"model": 5}], endpoint=f"/{path}", api_key=KEY, base_url=prism)
    assert isinstance(result.error, UnprocessableEntityError), result.error
    assert result.attempt == 1
    violations = result.error.body["validation"]  # type: ignore[index]
    assert any(v["location"][:1] == ["body"] for v in violations), violations


class DynamicPrism(AiohttpTransport):
    """Asks Prism for a random response generated from the response schema, seeded by the
    request's body, so that the same requests always get the same responses."""

    async def handle(self, request: HTTPRequest) -> HTTPResponse:
        seed = zlib.crc32(request.content)
        request.headers = {**request.headers, "Prefer": f"dynamic=true, seed={seed}"}
        return await super().handle(request)


def is_prism_generation_failure(result: Result) -> bool:
    # Prism's generator (json-schema-faker) cannot build every response schema of the spec:
    # for about one /responses answer in six it throws, or builds an `output` item that fails
    # the spec's own anyOf, and answers 500 with its own problem type. Nothing to parse there.
    error = result.error
    return (
        isinstance(error, InternalServerError)
        and isinstance(error.body, dict)
        and str(error.body.get("type", "")).startswith(PRISM_ERRORS)
    )


@pytest.mark.parametrize("path", sorted(BODIES))
async def test_random_responses_parse(prism: str, path: str) -> None:
    template = BODIES[path][0]
    field = VARIED[path]
    # Each body differs, so each gets a seed (and a random response) of its own.
    bodies = [{**template, field: f"contract {n}"} for n in range(DYNAMIC_RESPONSES)]
    transport = DynamicPrism()
    try:
        async with AsyncMultiClient(
            endpoint=path.replace("/", "."),
            api_key=KEY,
            base_url=prism,
            transport=transport,
            concurrency=8,
            max_retries=1,  # a generation failure would fail the same way again
        ) as client:

            async def produce() -> None:
                for body in bodies:
                    await client.request(body)
                client.close()

            producer = asyncio.ensure_future(produce())
            results = [result async for result in client]
            await producer
            (key,) = client.statistics().keys.keys
    finally:
        await transport.aclose()
    assert len(results) == DYNAMIC_RESPONSES
    # Random usage counts (negative ones too) never make the key's token count go negative.
    assert key.tokens >= 0
    parsed = [result for result in results if not result.failed]
    for result in parsed:
        check_parsed(path, result)
    unexplained = [r for r in results if r.failed and not is_prism_generation_failure(r)]
    assert not unexplained, [(r.error, r.response) for r in unexplained]
    assert len(parsed) >= 20, f"only {len(parsed)} of {len(results)} random responses"
