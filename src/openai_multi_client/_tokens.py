"""How many tokens a request will be charged at admission.

OpenAI counts ``max(max_tokens * n, estimate of the prompt)`` against tokens per minute when a
request arrives, and estimates the prompt from its characters (about four a token). The default
:class:`CharacterEstimator` does the same, fast. :class:`TiktokenEstimator` counts real tokens
when tiktoken is installed and its encoding is already on disk (it never downloads).
:func:`default_estimator` picks tiktoken when usable, else characters; any callable with the
:class:`TokenEstimator` signature can replace it.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from collections.abc import Callable, Mapping
from typing import Any, Protocol

logger = logging.getLogger("openai_multi_client")

# Fields whose text is the prompt, per endpoint.
_PROMPT_FIELDS = ("messages", "prompt", "input", "instructions")


class TokenEstimator(Protocol):
    def __call__(self, body: Mapping[str, Any]) -> int:
        """Tokens a request with this body will be charged at admission."""
        ...


def reserved_output_tokens(body: Mapping[str, Any]) -> int:
    """``max_tokens`` (or its newer names) times ``n``; 0 when unset."""
    value = body.get("max_completion_tokens") or body.get("max_tokens")
    if value is None:
        value = body.get("max_output_tokens")
    if type(value) is not int or value <= 0:
        return 0
    choices = body.get("n")
    return value * choices if type(choices) is int and choices > 1 else value


def _text_length(value: object, depth: int = 0) -> int:
    if isinstance(value, str):
        return len(value)
    if depth > 16:
        return 0
    if type(value) is dict:  # the common case, faster than the Mapping check below
        total = 0
        for item in value.values():
            total += len(item) if type(item) is str else _text_length(item, depth + 1)
        return total
    if isinstance(value, Mapping):
        return sum(_text_length(item, depth + 1) for item in value.values())
    if isinstance(value, list | tuple):
        total = 0
        for item in value:
            # Token-id arrays count one token (four characters) per id.
            total += 4 if isinstance(item, int) else _text_length(item, depth + 1)
        return total
    return 0


def _texts(value: object, depth: int = 0) -> list[str]:
    if isinstance(value, str):
        return [value]
    if depth > 16:
        return []
    if isinstance(value, Mapping):
        return [text for item in value.values() for text in _texts(item, depth + 1)]
    if isinstance(value, list | tuple):
        return [text for item in value for text in _texts(item, depth + 1)]
    return []


class CharacterEstimator:
    """``max(reserved output, ceil(characters / 4))``, OpenAI's admission rule of thumb."""

    def __call__(self, body: Mapping[str, Any]) -> int:
        characters = 0
        for field in _PROMPT_FIELDS:
            value = body.get(field)
            if value is not None:
                characters += _text_length(value)
        return max(reserved_output_tokens(body), (characters + 3) // 4)

    def __repr__(self) -> str:
        return "CharacterEstimator()"


class TiktokenEstimator:
    """``max(reserved output, tokens of the prompt)`` with a tiktoken encoding."""

    def __init__(self, encode: Callable[[str], list[int]], name: str) -> None:
        self._encode = encode
        self._name = name

    def __call__(self, body: Mapping[str, Any]) -> int:
        tokens = 0
        for field in _PROMPT_FIELDS:
            for text in _texts(body.get(field)):
                tokens += len(self._encode(text))
        return max(reserved_output_tokens(body), tokens)

    def __repr__(self) -> str:
        return f"TiktokenEstimator({self._name!r})"


_ENCODING_URL = "https://openaipublic.blob.core.windows.net/encodings/{}.tiktoken"


def tiktoken_offline(encoding: str = "o200k_base") -> TiktokenEstimator | None:
    """A tiktoken estimator if tiktoken is installed and ``encoding`` is in its local cache;
    ``None`` otherwise. Never touches the network."""
    try:
        import tiktoken
    except ImportError:
        return None
    cache_dir = os.environ.get("TIKTOKEN_CACHE_DIR") or os.environ.get("DATA_GYM_CACHE_DIR")
    if cache_dir is None:
        cache_dir = os.path.join(tempfile.gettempdir(), "data-gym-cache")
    cache_key = hashlib.sha1(_ENCODING_URL.format(encoding).encode()).hexdigest()
    if not cache_dir or not os.path.exists(os.path.join(cache_dir, cache_key)):
        return None
    try:
        encoder = tiktoken.get_encoding(encoding)
    except Exception:  # a corrupt cache or an unknown encoding: fall back quietly
        logger.debug("tiktoken encoding %s unusable; estimating from characters", encoding)
        return None
    return TiktokenEstimator(encoder.encode_ordinary, encoding)


def default_estimator() -> TokenEstimator:
    """tiktoken when usable offline, else the character rule."""
    return tiktoken_offline() or CharacterEstimator()
