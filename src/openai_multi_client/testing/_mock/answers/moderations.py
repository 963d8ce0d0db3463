"""The answer of ``/moderations``: every input unflagged, with every category."""

from __future__ import annotations

from typing import Any, Final

from ..validation import moderation_inputs
from .context import Context

_CATEGORIES: Final = (
    "harassment",
    "harassment/threatening",
    "hate",
    "hate/threatening",
    "illicit",
    "illicit/violent",
    "self-harm",
    "self-harm/instructions",
    "self-harm/intent",
    "sexual",
    "sexual/minors",
    "violence",
    "violence/graphic",
)
# Shared, never mutated: they are serialised straight away.
_FLAGS: Final = dict.fromkeys(_CATEGORIES, False)
_SCORES: Final = dict.fromkeys(_CATEGORIES, 1e-06)
_INPUT_TYPES: Final = {name: ["text"] for name in _CATEGORIES}


def answer(body: dict[str, Any], context: Context) -> dict[str, Any]:
    result = {
        "flagged": False,
        "categories": _FLAGS,
        "category_scores": _SCORES,
        "category_applied_input_types": _INPUT_TYPES,
    }
    return {
        "id": context.object_id("modr-"),
        "model": context.model,
        "results": [result] * len(moderation_inputs(body)),
    }
