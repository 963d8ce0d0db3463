"""The mock server as a testing tool for users' own code: the official SDK's helpers against it.

Every helper a user is likely to call (parse, stream, tools, logprobs, embeddings, raw
responses, models, Azure) runs through the real ``openai`` package over loopback HTTP.
"""

from __future__ import annotations

import base64
import json
import struct
from collections.abc import AsyncIterator
from enum import Enum
from typing import Literal

import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam, ChatCompletionNamedToolChoiceParam
from openai.types.responses import FunctionToolParam
from pydantic import BaseModel

from openai_multi_client.testing import MockOpenAIServer
from openai_multi_client.testing._mock.answers.schema import value_for_schema

KEY = "sk-test"
MODEL = "gpt-4o-mini"
ASK: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hello there"}]


class Colour(str, Enum):
    RED = "red"
    BLUE = "blue"


class Step(BaseModel):
    explanation: str
    output: int


class Answer(BaseModel):
    steps: list[Step]
    final: float
    colour: Colour
    mood: Literal["calm", "busy"]
    ok: bool
    note: str | None
    child: Step | None


class GetWeather(BaseModel):
    city: str
    units: Literal["c", "f"]
    days: int


@pytest.fixture
async def client() -> AsyncIterator[openai.AsyncOpenAI]:
    async with (
        MockOpenAIServer() as server,
        openai.AsyncOpenAI(api_key=KEY, base_url=server.base_url, max_retries=0) as sdk,
    ):
        yield sdk


async def test_chat_parse_with_a_pydantic_model(client: openai.AsyncOpenAI) -> None:
    completion = await client.chat.completions.parse(
        model=MODEL, messages=ASK, response_format=Answer
    )
    parsed = completion.choices[0].message.parsed
    assert isinstance(parsed, Answer)
    assert parsed.colour is Colour.RED
    assert parsed.steps[0].output == 1
    plain = await client.chat.completions.create(
        model=MODEL, messages=ASK, response_format={"type": "json_object"}
    )
    assert json.loads(plain.choices[0].message.content or "") == {
        "reply": "Mock reply to: hello there"
    }


async def test_chat_stream_helper_with_structured_output(client: openai.AsyncOpenAI) -> None:
    async with client.chat.completions.stream(
        model=MODEL, messages=ASK, response_format=Step
    ) as stream:
        kinds = {event.type async for event in stream}
        final = await stream.get_final_completion()
    assert {"content.delta", "content.done", "chunk"} <= kinds
    assert final.choices[0].message.parsed == Step(explanation="mock explanation", output=1)


async def test_tools_with_tool_choice_required_and_named(client: openai.AsyncOpenAI) -> None:
    tools = [openai.pydantic_function_tool(GetWeather)]
    completion = await client.chat.completions.parse(
        model=MODEL, messages=ASK, tools=tools, tool_choice="required"
    )
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.tool_calls is not None
    call = choice.message.tool_calls[0]
    assert call.type == "function"
    assert call.function.name == "GetWeather"
    assert call.function.parsed_arguments == GetWeather(city="mock city", units="c", days=1)

    named: ChatCompletionNamedToolChoiceParam = {
        "type": "function",
        "function": {"name": "GetWeather"},
    }
    async with client.chat.completions.stream(
        model=MODEL,
        messages=ASK,
        tools=tools,
        tool_choice=named,
    ) as stream:
        kinds = [event.type async for event in stream]
        final = await stream.get_final_completion()
    assert "tool_calls.function.arguments.delta" in kinds
    assert "tool_calls.function.arguments.done" in kinds
    streamed = final.choices[0].message.tool_calls
    assert streamed is not None
    assert streamed[0].function.parsed_arguments == call.function.parsed_arguments

    with pytest.raises(openai.BadRequestError, match="tool_choice"):
        await client.chat.completions.create(
            model=MODEL,
            messages=ASK,
            tools=tools,
            tool_choice={"type": "function", "function": {"name": "nope"}},
        )


async def test_logprobs_chat_and_completions(client: openai.AsyncOpenAI) -> None:
    completion = await client.chat.completions.create(
        model=MODEL, messages=ASK, logprobs=True, top_logprobs=3
    )
    logprobs = completion.choices[0].logprobs
    assert logprobs is not None
    assert logprobs.content
    text = completion.choices[0].message.content
    assert "".join(item.token for item in logprobs.content) == text
    for item in logprobs.content:
        assert item.logprob < 0
        assert bytes(item.bytes or []) == item.token.encode()
        assert len(item.top_logprobs) == 3
        assert item.top_logprobs[0].token == item.token

    async with client.chat.completions.stream(
        model=MODEL, messages=ASK, logprobs=True, top_logprobs=1
    ) as stream:
        final = await stream.get_final_completion()
    streamed = final.choices[0].logprobs
    assert streamed is not None
    assert streamed.content
    assert [item.token for item in streamed.content] == [item.token for item in logprobs.content]

    legacy = await client.completions.create(
        model="gpt-3.5-turbo-instruct", prompt="say", logprobs=2
    )
    old = legacy.choices[0].logprobs
    assert old is not None
    assert old.tokens
    assert old.top_logprobs
    assert "".join(old.tokens) == legacy.choices[0].text
    assert all(len(top) == 2 for top in old.top_logprobs)


async def test_responses_parse_and_stream(client: openai.AsyncOpenAI) -> None:
    parsed = await client.responses.parse(model=MODEL, input="hi", text_format=Answer)
    assert isinstance(parsed.output_parsed, Answer)

    async with client.responses.stream(model=MODEL, input="hello there") as stream:
        kinds = [event.type async for event in stream]
        final = await stream.get_final_response()
    assert final.output_text == "Mock reply to: hello there"
    assert kinds[:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    assert kinds[-4:] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]

    async with client.responses.stream(model=MODEL, input="x", text_format=Step) as stream:
        structured = await stream.get_final_response()
    assert structured.output_parsed == Step(explanation="mock explanation", output=1)


async def test_responses_tool_call_streamed(client: openai.AsyncOpenAI) -> None:
    tool: FunctionToolParam = {
        "type": "function",
        "name": "get_weather",
        "parameters": GetWeather.model_json_schema(),
        "strict": False,
    }
    async with client.responses.stream(
        model=MODEL,
        input="weather?",
        tools=[tool],
        tool_choice="required",
    ) as stream:
        kinds = [event.type async for event in stream]
        final = await stream.get_final_response()
    assert "response.function_call_arguments.delta" in kinds
    call = final.output[0]
    assert call.type == "function_call"
    assert call.name == "get_weather"
    assert GetWeather.model_validate_json(call.arguments).days == 1


async def test_embeddings_sizes_dimensions_and_base64(client: openai.AsyncOpenAI) -> None:
    small = await client.embeddings.create(model="text-embedding-3-small", input="a")
    large = await client.embeddings.create(model="text-embedding-3-large", input="a")
    assert len(small.data[0].embedding) == 1536
    assert len(large.data[0].embedding) == 3072
    sized = await client.embeddings.create(
        model="text-embedding-3-small", input=["a", "b"], dimensions=256
    )
    assert [len(item.embedding) for item in sized.data] == [256, 256]
    packed = await client.embeddings.create(
        model="text-embedding-3-small", input="a", dimensions=4, encoding_format="base64"
    )
    raw = base64.b64decode(str(packed.data[0].embedding))
    assert len(struct.unpack("<4f", raw)) == 4


async def test_raw_response_and_models(client: openai.AsyncOpenAI) -> None:
    raw = await client.chat.completions.with_raw_response.create(model=MODEL, messages=ASK)
    assert raw.headers["x-request-id"].startswith("req_")
    assert "x-ratelimit-limit-requests" in raw.headers
    assert raw.parse().choices[0].message.content == "Mock reply to: hello there"
    listed = await client.models.list()
    assert "text-embedding-3-large" in [model.id for model in listed.data]
    model = await client.models.retrieve("gpt-4o")
    assert model.id == "gpt-4o"
    assert model.object == "model"


async def test_azure_client_against_the_mock() -> None:
    async with MockOpenAIServer() as server:
        async with openai.AsyncAzureOpenAI(
            api_key=KEY,
            azure_endpoint=server.url,
            api_version="2024-10-21",
            max_retries=0,
        ) as azure:
            chat = await azure.chat.completions.create(model="my-deployment", messages=ASK)
            assert chat.model == "my-deployment"
            response = await azure.responses.create(model="my-deployment", input="hi")
            assert response.output_text == "Mock reply to: hi"
            moderation = await azure.moderations.create(input="hi")
            assert moderation.results[0].flagged is False
            embedding = await azure.embeddings.create(model="emb", input="hi", dimensions=3)
            assert len(embedding.data[0].embedding) == 3
            assert (await azure.models.retrieve("gpt-4o")).id == "gpt-4o"
        assert server.stats.requests_by_key == {KEY: 5}


def test_schema_values_conform() -> None:
    schema = {
        "type": "object",
        "properties": {
            "tags": {"type": "array", "items": {"type": "string"}, "minItems": 2, "maxItems": 3},
            "score": {"type": "number", "exclusiveMinimum": 2, "maximum": 9},
            "count": {"type": "integer", "minimum": 10, "multipleOf": 4},
            "when": {"type": "string", "format": "date-time"},
            "kind": {"const": "fixed"},
            "short": {"type": "string", "maxLength": 3},
            "maybe": {"type": ["null", "boolean"]},
            "tree": {"$ref": "#/$defs/Node"},
        },
        "required": ["tags"],
        "$defs": {
            "Node": {
                "type": "object",
                "properties": {"children": {"type": "array", "items": {"$ref": "#/$defs/Node"}}},
                "required": ["children"],
            }
        },
    }
    value = value_for_schema(schema)
    assert value["tags"] == ["mock tags", "mock tags"]
    assert 2 < value["score"] <= 9
    assert value["count"] >= 10
    assert value["count"] % 4 == 0
    assert value["when"] == "2024-01-01T00:00:00Z"
    assert value["kind"] == "fixed"
    assert len(value["short"]) <= 3
    assert value["maybe"] is True
    assert isinstance(value["tree"]["children"], list)  # a recursive schema ends
