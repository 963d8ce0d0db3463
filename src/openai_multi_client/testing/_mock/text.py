"""Prompt text as the mock sees it: characters, OpenAI's token rule of thumb, the user's last
words, and the deterministic reply that quotes them."""

from __future__ import annotations

from typing import Any, Final

# How many characters of the user's message a mock reply quotes.
_QUOTE_CHARS: Final = 200


def chars(value: object) -> int:
    """Characters of prompt text in ``value``: strings, lists of them, message objects
    (``content`` / ``text``); a token id counts as four characters (one token)."""
    if isinstance(value, str):
        return len(value)
    if isinstance(value, list):
        return sum(chars(item) for item in value)
    if isinstance(value, dict):
        return chars(value.get("content")) + chars(value.get("text"))
    if isinstance(value, int) and not isinstance(value, bool):
        return 4
    return 0


def estimate(characters: int) -> int:
    """OpenAI's rule of thumb: a token is about four characters."""
    return (characters + 3) // 4


def _text_of(content: object) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(
            part["text"]
            for part in content
            if isinstance(part, dict) and isinstance(part.get("text"), str)
        )
    return ""


def last_user_text(items: list[Any]) -> str:
    """The text of the last user message of ``items`` (else of the last item)."""
    for item in reversed(items):
        if isinstance(item, dict) and item.get("role") == "user":
            return _text_of(item.get("content"))
    last = items[-1] if items else None
    return _text_of(last.get("content")) if isinstance(last, dict) else ""


def reply(
    prefix: str, text: str, max_tokens: int | None, *, quote: bool = True
) -> tuple[str, int, bool]:
    """A deterministic reply quoting ``text`` (``quote=False``: all of it): (reply, its
    tokens, whether truncated)."""
    quoted = text if len(text) <= _QUOTE_CHARS or not quote else text[:_QUOTE_CHARS] + "..."
    answer = f"{prefix}{quoted}"
    tokens = max(1, estimate(len(answer)))
    if max_tokens is not None and tokens > max_tokens:
        return answer[: max_tokens * 4], max_tokens, True
    return answer, tokens, False
