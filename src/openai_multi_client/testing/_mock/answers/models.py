"""The answers of ``GET /models`` (the list) and ``GET /models/{model}`` (any model: the mock
serves every model name)."""

from __future__ import annotations

from typing import Any, Final

_MODELS: Final = (
    "gpt-4o",
    "gpt-4o-mini",
    "gpt-4.1-mini",
    "gpt-3.5-turbo-instruct",
    "text-embedding-3-small",
    "text-embedding-3-large",
    "text-embedding-ada-002",
    "omni-moderation-latest",
    "dall-e-3",
    "gpt-image-1",
)


def _model(name: str) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": 1_700_000_000, "owned_by": "openai"}


def answer(wanted: str | None) -> dict[str, Any]:
    """The list of models (``wanted`` None), or the one model named."""
    if wanted is not None:
        return _model(wanted)
    return {"object": "list", "data": [_model(name) for name in _MODELS]}
