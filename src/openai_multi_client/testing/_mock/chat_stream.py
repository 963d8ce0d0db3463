"""The streamed form of a chat completion or a completion, as OpenAI sends it.

A keep-alive comment; per choice, a first chunk with the role (chat); the text in small
deterministic pieces, each with its ``logprobs`` entry when the answer has logprobs; a tool
call as a first delta with its id and name, then its arguments in pieces; a chunk with the
``finish_reason`` per choice; the usage chunk when asked for; ``[DONE]``. Choices interleave.
"""

from __future__ import annotations

from typing import Any

from .answers.logprobs import slice_completions_logprobs
from .sse import DONE, sse, text_pieces


def completion_events(answer: dict[str, Any], include_usage: bool) -> list[bytes]:
    """The server-sent events that stream ``answer`` (``chat.completion`` or completions)."""
    chat = answer["object"] == "chat.completion"
    base: dict[str, Any] = {
        "id": answer["id"],
        "object": "chat.completion.chunk" if chat else "text_completion",
        "created": answer["created"],
        "model": answer["model"],
        "system_fingerprint": answer.get("system_fingerprint"),
    }
    if chat:
        base["service_tier"] = answer.get("service_tier")
    if include_usage:
        base["usage"] = None
    choices = answer["choices"]
    streams = [_chat_deltas(choice) if chat else _text_deltas(choice) for choice in choices]
    events = [b": mock keep-alive\n\n"]
    for step in range(max((len(stream) for stream in streams), default=0)):
        events += [
            sse({**base, "choices": [{"index": index, **stream[step]}]})
            for index, stream in enumerate(streams)
            if step < len(stream)
        ]
    for index, choice in enumerate(choices):
        last: dict[str, Any] = {"delta": {}} if chat else {"text": ""}
        last.update(index=index, logprobs=None, finish_reason=choice["finish_reason"])
        events.append(sse({**base, "choices": [last]}))
    if include_usage:
        events.append(sse({**base, "choices": [], "usage": answer["usage"]}))
    events.append(DONE)
    return events


def _chat_deltas(choice: dict[str, Any]) -> list[dict[str, Any]]:
    message = choice["message"]
    calls = message.get("tool_calls")
    if calls:
        return _tool_call_deltas(calls)
    deltas: list[dict[str, Any]] = [
        {"delta": {"role": "assistant", "content": "", "refusal": None}, "logprobs": None}
    ]
    logprobs = choice.get("logprobs")
    for step, piece in enumerate(text_pieces(message["content"] or "")):
        part = None
        if logprobs is not None:
            part = {"content": logprobs["content"][step : step + 1], "refusal": None}
        deltas.append({"delta": {"content": piece}, "logprobs": part})
    return [{**delta, "finish_reason": None} for delta in deltas]


def _tool_call_deltas(calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    opened = [
        {
            "index": index,
            "id": call["id"],
            "type": "function",
            "function": {"name": call["function"]["name"], "arguments": ""},
        }
        for index, call in enumerate(calls)
    ]
    first = {"role": "assistant", "content": None, "refusal": None, "tool_calls": opened}
    deltas: list[dict[str, Any]] = [{"delta": first}]
    for index, call in enumerate(calls):
        for piece in text_pieces(call["function"]["arguments"]):
            arguments = {"index": index, "function": {"arguments": piece}}
            deltas.append({"delta": {"tool_calls": [arguments]}})
    return [{**delta, "logprobs": None, "finish_reason": None} for delta in deltas]


def _text_deltas(choice: dict[str, Any]) -> list[dict[str, Any]]:
    logprobs = choice.get("logprobs")
    return [
        {
            "text": piece,
            "logprobs": None if logprobs is None else slice_completions_logprobs(logprobs, step),
            "finish_reason": None,
        }
        for step, piece in enumerate(text_pieces(choice["text"]))
    ]
