"""The answer of ``/chat/completions``: a ``chat.completion`` quoting the user, or the JSON
its ``response_format`` asks for, or the tool call its ``tool_choice`` requires."""

from __future__ import annotations

from typing import Any

from ..text import estimate, last_user_text, reply
from . import logprobs, tools
from .completions import envelope
from .context import Context


def _message(body: dict[str, Any], context: Context) -> tuple[dict[str, Any], int, str]:
    """The assistant message, its tokens and its finish reason."""
    max_tokens = context.plan.max_tokens
    text, tokens, truncated = reply("Mock reply to: ", last_user_text(body["messages"]), max_tokens)
    structured = tools.structured_text(body.get("response_format"), "response_format", text)
    if structured is not None:
        text, tokens, truncated = reply("", structured, max_tokens, quote=False)
    message: dict[str, Any] = {
        "role": "assistant",
        "content": text,
        "refusal": None,
        "annotations": [],
    }
    call = tools.tool_call(body)
    if call is None:
        return message, tokens, "length" if truncated else "stop"
    function = {"name": call.name, "arguments": call.arguments}
    call_id = context.object_id("call_")
    message.update(
        content=None, tool_calls=[{"id": call_id, "type": "function", "function": function}]
    )
    return message, max(1, estimate(len(call.name) + len(call.arguments))), "tool_calls"


def answer(body: dict[str, Any], context: Context) -> dict[str, Any]:
    plan = context.plan
    message, tokens, finish = _message(body, context)
    top = logprobs.chat_logprobs_wanted(body)
    choice_logprobs = None
    if top is not None and message["content"] is not None:
        choice_logprobs = logprobs.chat_logprobs(message["content"], top)
    choices: list[dict[str, Any]] = [
        {"index": index, "message": message, "logprobs": choice_logprobs, "finish_reason": finish}
        for index in range(plan.n)
    ]
    completion = envelope(context, "chat.completion", choices, tokens * plan.n)
    completion["usage"].update(
        prompt_tokens_details={"cached_tokens": 0, "audio_tokens": 0},
        completion_tokens_details={
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    )
    # The tier that served it, as OpenAI reports: flex when asked for, else "default".
    tier = "flex" if body.get("service_tier") == "flex" else "default"
    completion.update(service_tier=tier, system_fingerprint="fp_mock")
    return completion
