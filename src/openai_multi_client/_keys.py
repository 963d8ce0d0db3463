"""API keys and the pool that hands them out.

A :class:`Key` holds its secret privately: its repr, its ``id`` and every message the library
writes show only a redacted id (``key-3f9a1c2b``, a hash prefix, or the name the user gave).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Sequence

from ._errors import ConfigurationError

logger = logging.getLogger("openai_multi_client")


def redacted_id(secret: str) -> str:
    """A stable, non-reversible id for a secret: ``key-`` and 8 hex digits of its SHA-256."""
    return "key-" + hashlib.sha256(secret.encode("utf-8")).hexdigest()[:8]


class Key:
    """One API key and where and how to send it.

    ``base_url`` overrides the client's; ``azure=True`` sends the key as Azure's ``api-key``
    header instead of ``Authorization: Bearer``; ``organization`` is sent as
    ``OpenAI-Organization``. ``name`` replaces the hash in the redacted id.
    """

    __slots__ = ("_secret", "azure", "base_url", "id", "organization")

    def __init__(
        self,
        secret: str,
        *,
        name: str | None = None,
        base_url: str | None = None,
        organization: str | None = None,
        azure: bool = False,
    ) -> None:
        if not isinstance(secret, str):
            raise ConfigurationError(
                f"a key's secret must be a string, got {type(secret).__name__}"
            )
        self._secret = secret
        if name is not None and secret and secret in name:
            raise ConfigurationError("a key's name must not contain its secret")
        self.id = name if name is not None else redacted_id(secret)
        self.base_url = base_url
        self.organization = organization
        self.azure = azure

    @property
    def secret(self) -> str:
        """The secret itself; only the transport should read this."""
        return self._secret

    def auth_headers(self) -> dict[str, str]:
        """The headers that carry this key (none for an empty key, as local servers need none)."""
        headers: dict[str, str] = {}
        if self._secret:
            if self.azure:
                headers["api-key"] = self._secret
            else:
                headers["Authorization"] = f"Bearer {self._secret}"
        if self.organization:
            headers["OpenAI-Organization"] = self.organization
        return headers

    def redact(self, text: str) -> str:
        """``text`` with every occurrence of the secret replaced by the redacted id."""
        if self._secret and self._secret in text:
            return text.replace(self._secret, self.id)
        return text

    def __repr__(self) -> str:
        return f"Key({self.id!r})"

    __str__ = __repr__


class KeyPool:
    """The keys of one client; hands out usable keys, cools down limited ones, retires dead
    ones.

    Keys are used in turn. A key that got a 429 ``rate_limit_exceeded`` cools down until the
    time the server gave and is skipped meanwhile; only that key is affected. A retired key
    (invalid, forbidden, out of quota) is never handed out again in this run; when every key is
    retired, :attr:`exhausted` is true and the engine fails what is pending at once.
    """

    def __init__(self, keys: Sequence[Key]) -> None:
        if not keys:
            raise ConfigurationError("a key pool needs at least one key")
        self._keys = list(keys)
        self._active = list(keys)
        self._retired: dict[str, str] = {}
        self._cooling_until: dict[Key, float] = {}
        self._turn = 0

    @property
    def keys(self) -> Sequence[Key]:
        return tuple(self._keys)

    @property
    def exhausted(self) -> bool:
        """Every key is retired."""
        return not self._active

    def choose(self, now: float) -> Key | None:
        """The next usable key that is not cooling down at ``now``, or ``None``."""
        active = self._active
        for _ in range(len(active)):
            self._turn = (self._turn + 1) % len(active)
            key = active[self._turn]
            until = self._cooling_until.get(key)
            if until is None:
                return key
            if until <= now:
                del self._cooling_until[key]
                return key
        return None

    def ready_at(self) -> float | None:
        """When the first cooling key becomes usable again (``None`` if none is cooling)."""
        return min(self._cooling_until.values(), default=None)

    def cool_down(self, key: Key, until: float) -> None:
        """Skip ``key`` until ``until`` (a 429 told us it is over its limit)."""
        if key in self._active and self._cooling_until.get(key, until - 1) < until:
            self._cooling_until[key] = until

    def retire(self, key: Key, reason: str) -> None:
        """Stop using ``key`` for the rest of the run (warns once, with the redacted id)."""
        if key.id in self._retired or key not in self._active:
            return
        self._active.remove(key)
        self._cooling_until.pop(key, None)
        self._retired[key.id] = reason
        logger.warning(
            "retired API key %s for this run: %s (%d of %d keys left)",
            key.id,
            key.redact(reason),
            len(self._active),
            len(self._keys),
        )

    def retired_reasons(self) -> dict[str, str]:
        """Redacted key id -> why it was retired."""
        return dict(self._retired)

    def redact(self, text: str) -> str:
        """``text`` with every key's secret replaced by its redacted id."""
        for key in self._keys:
            text = key.redact(text)
        return text

    def __repr__(self) -> str:
        return (
            f"KeyPool(active={len(self._active)}, cooling={len(self._cooling_until)}, "
            f"retired={len(self._retired)})"
        )


def as_keys(keys: Iterable[str | Key]) -> list[Key]:
    """Normalise a list of secrets or :class:`Key` objects."""
    result: list[Key] = []
    for position, item in enumerate(keys):
        if isinstance(item, Key):
            result.append(item)
        elif isinstance(item, str):
            result.append(Key(item))
        else:
            raise ConfigurationError(
                f"api_key entry {position} must be a string or a Key, got {type(item).__name__}"
            )
    return result
