"""The answer of ``/responses``: a ``response`` whose output is a message quoting the input,
the JSON its ``text.format`` asks for, or the function call its ``tool_choice`` requires."""

from __future__ import annotations

import time
from typing import Any

from ..options import is_real
from ..text import estimate, last_user_text, reply
from . import tools
from .context import Context


def _output(body: dict[str, Any], context: Context) -> tuple[dict[str, Any], int, bool]:
    """The output item, its tokens and whether it was cut at ``max_output_tokens``."""
    max_tokens = context.plan.max_tokens
    value = body["input"]
    text = value if isinstance(value, str) else last_user_text(value)
    output, tokens, truncated = reply("Mock reply to: ", text, max_tokens)
    text_format = (body.get("text") or {}).get("format")
    structured = tools.structured_text(text_format, "text.format", output)
    if structured is not None:
        output, tokens, truncated = reply("", structured, max_tokens, quote=False)
    call = tools.tool_call(body, flat=True)
    item: dict[str, Any]
    if call is not None:
        item = {
            "type": "function_call",
            "id": context.object_id("fc_"),
            "call_id": context.object_id("call_"),
            "name": call.name,
            "arguments": call.arguments,
            "status": "completed",
        }
        return item, max(1, estimate(len(call.name) + len(call.arguments))), truncated
    item = {
        "type": "message",
        "id": context.object_id("msg_"),
        "status": "incomplete" if truncated else "completed",
        "role": "assistant",
        "content": [{"type": "output_text", "text": output, "annotations": [], "logprobs": []}],
    }
    return item, tokens, truncated


def answer(body: dict[str, Any], context: Context) -> dict[str, Any]:
    plan = context.plan
    item, tokens, truncated = _output(body, context)
    now = int(time.time())
    temperature = body.get("temperature")
    top_p = body.get("top_p")
    return {
        "id": context.object_id("resp_"),
        "object": "response",
        "created_at": now,
        "status": "incomplete" if truncated else "completed",
        "background": False,
        "completed_at": None if truncated else now,
        "error": None,
        "incomplete_details": {"reason": "max_output_tokens"} if truncated else None,
        "instructions": body.get("instructions"),
        "max_output_tokens": plan.max_tokens,
        "model": context.model,
        "output": [item],
        "parallel_tool_calls": True,
        "previous_response_id": body.get("previous_response_id"),
        "reasoning": {"effort": None, "summary": None},
        "store": bool(body.get("store", True)),
        "temperature": temperature if is_real(temperature) else 1.0,
        "text": {"format": (body.get("text") or {}).get("format") or {"type": "text"}},
        "tool_choice": body.get("tool_choice", "auto"),
        "tools": body.get("tools") or [],
        "top_p": top_p if is_real(top_p) else 1.0,
        "truncation": "disabled",
        "usage": {
            "input_tokens": plan.prompt_tokens,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": tokens,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": plan.prompt_tokens + tokens,
        },
        "user": None,
        "metadata": {},
    }
