"""Scrubbing an API key out of text a server sent back: the whole key, or the start of it.

A server or proxy that quotes the key back may quote all of it or only its beginning
(``partial sk-CANARY123``); either is replaced by the key's redacted id. A beginning counts when
it is the key's type prefix (``sk-``, ``sk-proj-``, ...) and at least :data:`MIN_SECRET_CHARS`
characters of the key after it: enough to narrow a guess, too many to occur by chance in an
ordinary message (``sk-`` alone, or ``sk-proj-``, is left alone).
"""

from __future__ import annotations

from typing import AnyStr

# Characters of the secret part (after the type prefix) from which a beginning is redacted.
MIN_SECRET_CHARS = 8
# Longest first: the type prefix of a key is the first of these it starts with.
_TYPE_PREFIXES = ("sk-svcacct-", "sk-admin-", "sk-proj-", "sk-None-", "sk-")


class Redactor:
    """Replaces ``secret`` and every beginning of it of at least ``minimum`` characters."""

    __slots__ = ("_head_bytes", "_minimum", "_replacement", "_replacement_bytes", "_secret",
                 "_secret_bytes")  # fmt: skip

    def __init__(self, secret: str, replacement: str) -> None:
        prefix = next((p for p in _TYPE_PREFIXES if secret.startswith(p)), "")
        # A short secret is only ever redacted whole.
        self._minimum = min(len(secret), len(prefix) + MIN_SECRET_CHARS)
        self._secret = secret
        self._secret_bytes = secret.encode("utf-8")
        self._head_bytes = self._secret_bytes[: self._minimum]
        self._replacement = replacement
        self._replacement_bytes = replacement.encode("utf-8")

    def in_text(self, text: str) -> str:
        return _scrub(text, self._secret, self._minimum, self._replacement)

    def in_bytes(self, content: bytes) -> bytes:
        if not self._head_bytes or self._head_bytes not in content:  # every answer: no call
            return content
        return _scrub(content, self._secret_bytes, self._minimum, self._replacement_bytes)


def _scrub(text: AnyStr, secret: AnyStr, minimum: int, replacement: AnyStr) -> AnyStr:
    """``text`` with each run that starts with ``secret[:minimum]`` and goes on matching
    ``secret`` (as far as it does) replaced by ``replacement``."""
    if not secret:
        return text
    head = secret[:minimum]
    start = text.find(head)
    if start < 0:
        return text
    parts: list[AnyStr] = []
    position = 0
    while start >= 0:
        end = start + len(head)
        while end < len(text) and end - start < len(secret) and text[end] == secret[end - start]:
            end += 1
        parts.append(text[position:start])
        parts.append(replacement)
        position = end
        start = text.find(head, end)
    parts.append(text[position:])
    return text[:0].join(parts)
