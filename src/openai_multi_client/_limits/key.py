"""API keys: a :class:`Key` is configuration (its secret, held privately, where to send it,
its limits); :func:`as_keys` normalises what users pass."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable

from .._errors import ConfigurationError
from .._redact import Redactor


def redacted_id(secret: str) -> str:
    """A stable, non-reversible id for a secret: ``key-`` and 8 hex digits of its SHA-256."""
    return "key-" + hashlib.sha256(secret.encode("utf-8")).hexdigest()[:8]


class Key:
    """One API key, where and how to send it, and its limits.

    ``base_url`` overrides the client's. ``azure=True`` sends the key as Azure's ``api-key``
    header instead of ``Authorization: Bearer``, and ``api_version`` is added as the
    ``api-version`` query parameter. ``organization`` is sent as ``OpenAI-Organization``.
    ``requests_per_minute`` and ``tokens_per_minute`` are enforced by the client (otherwise they
    are learned from the server's headers); ``weight`` scales the key's share of traffic when
    several keys have headroom. ``name`` replaces the hash in the redacted id.

    ``group`` names the keys that share one set of limits: OpenAI's limits belong to the
    organization and project, so keys of one project add no capacity. Keys of one group are
    paced, and cool down after a 429, as one; their configured limits are the group's, not each
    key's. Keys the server shows to share limits are grouped without it (see
    :mod:`~openai_multi_client._limits.group`).
    """

    __slots__ = (
        "_redactor",
        "_secret",
        "_secret_bytes",
        "api_version",
        "azure",
        "base_url",
        "group",
        "id",
        "organization",
        "requests_per_minute",
        "tokens_per_minute",
        "weight",
    )

    def __init__(
        self,
        secret: str,
        *,
        name: str | None = None,
        base_url: str | None = None,
        organization: str | None = None,
        azure: bool = False,
        api_version: str | None = None,
        requests_per_minute: float | None = None,
        tokens_per_minute: float | None = None,
        weight: float = 1.0,
        group: str | None = None,
    ) -> None:
        check_secret(secret, "a key's secret")
        if name is not None and secret in name:
            raise ConfigurationError("a key's name must not contain its secret")
        if group is not None and (not isinstance(group, str) or not group.strip()):
            raise ConfigurationError(f"group must be a non-empty string, got {group!r}")
        if group is not None and secret in group:
            raise ConfigurationError("a key's group must not contain its secret")
        for argument, limit in (
            ("requests_per_minute", requests_per_minute),
            ("tokens_per_minute", tokens_per_minute),
        ):
            if limit is not None and (
                isinstance(limit, bool)
                or not isinstance(limit, int | float)
                or not limit > 0
                or math.isinf(limit)
            ):
                raise ConfigurationError(f"{argument} must be a positive number, got {limit!r}")
        if isinstance(weight, bool) or not isinstance(weight, int | float) or not weight > 0:
            raise ConfigurationError(f"weight must be a positive number, got {weight!r}")
        self._secret = secret
        self._secret_bytes = secret.encode("utf-8")
        self.id = name if name is not None else redacted_id(secret)
        self._redactor = Redactor(secret, self.id)
        self.base_url = base_url
        self.organization = organization
        self.azure = azure
        self.api_version = api_version
        self.requests_per_minute = requests_per_minute
        self.tokens_per_minute = tokens_per_minute
        self.weight = float(weight)
        self.group = group

    @classmethod
    def keyless(cls, name: str | None = None, *, base_url: str | None = None) -> Key:
        """A key without a secret, for a server that needs none (a local vLLM or Ollama):
        requests carry no ``Authorization`` header."""
        key = cls("\0", name=name, base_url=base_url)  # replaced below
        key._secret, key._secret_bytes = "", b""
        if name is None:
            key.id = redacted_id("")
        key._redactor = Redactor("", key.id)
        return key

    @property
    def secret(self) -> str:
        """The secret itself; only the transport should read this."""
        return self._secret

    @property
    def secret_bytes(self) -> bytes:
        """The secret as UTF-8 bytes (to scrub it from response bodies)."""
        return self._secret_bytes

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
        """``text`` with the secret, or the start of it (see :mod:`._redact`), replaced by the
        redacted id."""
        return self._redactor.in_text(text)

    def redact_bytes(self, content: bytes) -> bytes:
        """As :meth:`redact`, for a body as received."""
        return self._redactor.in_bytes(content)

    def __repr__(self) -> str:
        return f"Key({self.id!r})"

    __str__ = __repr__


# What a README's example key looks like; sent as a key, it would only earn a 401 per request.
_PLACEHOLDERS = frozenset({"...", "…"})


def check_secret(secret: object, what: str) -> None:
    """Refuse what cannot be a key: not a string, empty, blank, or the placeholder ``...``.
    The message names ``what`` (e.g. "API key 2"), never the value."""
    if not isinstance(secret, str):
        raise ConfigurationError(f"{what} must be a string, got {type(secret).__name__}")
    if not secret.strip():
        raise ConfigurationError(
            f"{what} is {'empty' if not secret else 'only whitespace'}: give the key itself "
            "(for a server that needs no key, leave api_key out or use Key.keyless())"
        )
    if secret.strip() in _PLACEHOLDERS:
        raise ConfigurationError(
            f"{what} is the placeholder '...' from an example: replace it with your API key"
        )


def as_keys(keys: Iterable[str | Key]) -> list[Key]:
    """Normalise a list of secrets or :class:`Key` objects."""
    result: list[Key] = []
    for position, item in enumerate(keys):
        if isinstance(item, Key):
            result.append(item)
        elif isinstance(item, str):
            check_secret(item, f"API key {position}")
            result.append(Key(item))
        else:
            raise ConfigurationError(
                f"api_key entry {position} must be a string or a Key, got {type(item).__name__}"
            )
    if len({key.id for key in result}) != len(result):
        raise ConfigurationError("the same API key (or key name) is listed twice")
    return result
