"""The API operations the mock serves: how each validates a body, builds its answer and which
model it defaults to; and the paths they are served at (OpenAI's and Azure's)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from . import validation
from .answers import chat, completions, embeddings, images, moderations, responses
from .answers.context import Context


@dataclass(frozen=True)
class Endpoint:
    """One API operation: its name, how to validate a body, how to answer it, which model it
    defaults to."""

    name: str
    check: Callable[[Mapping[str, Any]], validation.Plan]
    build: Callable[[dict[str, Any], Context], dict[str, Any]]
    default_model: str | None = None


CHAT: Final = Endpoint("chat.completions", validation.check_chat, chat.answer)
COMPLETIONS: Final = Endpoint("completions", validation.check_completions, completions.answer)
EMBEDDINGS: Final = Endpoint("embeddings", validation.check_embeddings, embeddings.answer)
MODERATIONS: Final = Endpoint(
    "moderations", validation.check_moderations, moderations.answer, "omni-moderation-latest"
)
RESPONSES: Final = Endpoint("responses", validation.check_responses, responses.answer)
IMAGES: Final = Endpoint("images.generations", validation.check_images, images.answer, "dall-e-2")

#: Path suffixes after ``/v1/``, ``/openai/v1/`` and ``/openai/``.
OPENAI_ROUTES: Final = (
    ("chat/completions", CHAT),
    ("completions", COMPLETIONS),
    ("embeddings", EMBEDDINGS),
    ("moderations", MODERATIONS),
    ("responses", RESPONSES),
    ("images/generations", IMAGES),
)
#: Azure's per-deployment form, after ``/openai/deployments/{deployment}/`` (the SDK's
#: AzureOpenAI sends the first four there, and moderations and responses to /openai/{suffix};
#: both forms answer all of them).
AZURE_ROUTES: Final = (
    ("chat/completions", CHAT),
    ("completions", COMPLETIONS),
    ("embeddings", EMBEDDINGS),
    ("images/generations", IMAGES),
    ("moderations", MODERATIONS),
    ("responses", RESPONSES),
)
#: Where ``GET /models`` and ``GET /models/{model}`` are served.
MODEL_PREFIXES: Final = ("/v1", "/openai/v1", "/openai")
