"""Message content for GenAI spans, when the user opts in (off by default).

The OpenTelemetry GenAI semantic conventions (v1.37 and later) record content as the span
attributes ``gen_ai.input.messages``, ``gen_ai.output.messages`` and
``gen_ai.system_instructions``: lists of messages ``{"role", "parts": [...]}`` (outputs add
``finish_reason``), each part ``{"type": "text", "content"}``, ``{"type": "tool_call", "id",
"name", "arguments"}`` or ``{"type": "tool_call_response", "id", "response"}``; other parts
(images, audio, files) keep only their ``type``. The Python API has no structured attribute
values, so each is a JSON string, as other instrumentations record them.

The opt-in is the conventions' environment variable
``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true`` (read once per client) or the
client's ``capture_message_content=True``. No opentelemetry import here.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

__all__ = ["CAPTURE_ENV", "capture_enabled", "input_attributes", "output_messages"]

CAPTURE_ENV = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"

Part = dict[str, Any]
Message = dict[str, Any]


def capture_enabled(option: bool | None) -> bool:
    """The client's ``capture_message_content``, or when ``None`` the environment variable
    (``true``, any case; anything else, or unset, is off)."""
    if option is not None:
        return option
    return os.environ.get(CAPTURE_ENV, "").strip().lower() == "true"


def _dumps(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)


def _text(content: object) -> Part:
    return {"type": "text", "content": content if isinstance(content, str) else _dumps(content)}


def _content_parts(content: object) -> list[Part]:
    """Parts of a chat or responses ``content``: a string, or a list of typed parts."""
    if content is None:
        return []
    if not isinstance(content, list):
        return [_text(content)]
    parts: list[Part] = []
    for item in content:
        if isinstance(item, str):
            parts.append(_text(item))
        elif isinstance(item, dict):
            kind = item.get("type")
            if kind in ("text", "input_text", "output_text") and "text" in item:
                parts.append(_text(item["text"]))
            elif kind == "refusal" and "refusal" in item:
                parts.append(_text(item["refusal"]))
            else:
                parts.append({"type": kind if isinstance(kind, str) else "unknown"})
    return parts


def _tool_calls(calls: object) -> list[Part]:
    parts: list[Part] = []
    for call in calls if isinstance(calls, list) else []:
        if not isinstance(call, dict):
            continue
        function = call.get("function")
        function = function if isinstance(function, dict) else {}
        parts.append(
            {
                "type": "tool_call",
                "id": call.get("id"),
                "name": function.get("name"),
                "arguments": function.get("arguments"),
            }
        )
    return parts


def _chat_message(message: Mapping[str, Any]) -> Message:
    role = message.get("role")
    role = role if isinstance(role, str) else "user"
    if role == "tool":
        response = {"type": "tool_call_response", "id": message.get("tool_call_id")}
        response["response"] = message.get("content")
        return {"role": role, "parts": [response]}
    parts = _content_parts(message.get("content")) + _tool_calls(message.get("tool_calls"))
    found: Message = {"role": role, "parts": parts}
    if isinstance(message.get("name"), str):
        found["name"] = message["name"]
    return found


def _input_messages(data: Mapping[str, Any]) -> list[Message] | None:
    messages = data.get("messages")
    if isinstance(messages, list):  # chat completions
        return [_chat_message(m) for m in messages if isinstance(m, dict)]
    prompt = data.get("prompt")
    if prompt is not None:  # completions
        prompts = prompt if isinstance(prompt, list) else [prompt]
        return [{"role": "user", "parts": [_text(p)]} for p in prompts]
    items = data.get("input")
    if isinstance(items, str):  # responses, a plain prompt
        return [{"role": "user", "parts": [_text(items)]}]
    if isinstance(items, list) and "model" in data and "messages" not in data:
        return [_chat_message(m) for m in items if isinstance(m, dict) and "role" in m]
    return None


def input_attributes(endpoint_path: str, data: Mapping[str, Any]) -> dict[str, str]:
    """The span attributes of a request's content (none for embeddings and other endpoints
    the conventions do not describe)."""
    if endpoint_path.strip("/") not in ("chat/completions", "completions", "responses"):
        return {}
    attributes: dict[str, str] = {}
    messages = _input_messages(data)
    if messages is not None:
        attributes["gen_ai.input.messages"] = _dumps(messages)
    instructions = data.get("instructions")
    if isinstance(instructions, str):  # the Responses API's system prompt
        attributes["gen_ai.system_instructions"] = _dumps([_text(instructions)])
    return attributes


def output_messages(response: Mapping[str, Any]) -> str | None:
    """``gen_ai.output.messages`` of an answer (chat, completions or responses), or ``None``."""
    choices = response.get("choices")
    messages: list[Message] = []
    if isinstance(choices, list):
        for choice in choices:
            if not isinstance(choice, dict):
                continue
            message = choice.get("message")
            if isinstance(message, dict):  # chat completions
                found = _chat_message({"role": "assistant", **message})
            else:  # completions
                found = {"role": "assistant", "parts": [_text(choice.get("text", ""))]}
            found["finish_reason"] = choice.get("finish_reason")
            messages.append(found)
        return _dumps(messages)
    output = response.get("output")
    if isinstance(output, list):  # responses
        status = response.get("status")
        reason = "stop" if status == "completed" else status
        for item in output:
            if not isinstance(item, dict):
                continue
            if item.get("type") == "message":
                parts = _content_parts(item.get("content"))
            elif item.get("type") == "function_call":
                call = {"type": "tool_call", "id": item.get("call_id"), "name": item.get("name")}
                parts = [{**call, "arguments": item.get("arguments")}]
            else:
                continue
            messages.append({"role": "assistant", "parts": parts, "finish_reason": reason})
        return _dumps(messages)
    return None
