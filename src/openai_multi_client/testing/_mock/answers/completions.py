"""The answer of ``/completions``: a ``text_completion`` with ``n`` choices per prompt."""

from __future__ import annotations

import time
from typing import Any, Final

from ..text import reply
from ..validation import prompts
from . import logprobs
from .context import Context

_FINGERPRINT: Final = {"system_fingerprint": "fp_mock"}


def envelope(
    context: Context, kind: str, choices: list[dict[str, Any]], completion_tokens: int
) -> dict[str, Any]:
    """The body around ``choices`` shared by completions and chat completions: ``kind`` is
    the ``object`` (``text_completion`` or ``chat.completion``)."""
    prompt_tokens = context.plan.prompt_tokens
    return {
        "id": context.object_id("cmpl-" if kind == "text_completion" else "chatcmpl-"),
        "object": kind,
        "created": int(time.time()),
        "model": context.model,
        "choices": choices,
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


def answer(body: dict[str, Any], context: Context) -> dict[str, Any]:
    plan = context.plan
    choices: list[dict[str, Any]] = []
    completion_tokens = 0
    top = logprobs.completions_logprobs_wanted(body)
    for prompt in prompts(body):
        text = prompt if isinstance(prompt, str) else f"{len(prompt)} tokens"
        completion, tokens, truncated = reply("Mock completion of: ", text, plan.max_tokens)
        choice_logprobs = None if top is None else logprobs.completions_logprobs(completion, top)
        for _ in range(plan.n):
            choices.append(
                {
                    "text": completion,
                    "index": len(choices),
                    "logprobs": choice_logprobs,
                    "finish_reason": "length" if truncated else "stop",
                }
            )
            completion_tokens += tokens
    return {**envelope(context, "text_completion", choices, completion_tokens), **_FINGERPRINT}
