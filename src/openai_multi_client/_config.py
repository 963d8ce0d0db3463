"""Where settings come from, as the official SDK does it.

Precedence, highest first: explicit arguments; the ``openai`` module's ``api_key`` /
``base_url`` (or the seed-era ``api_base``) when the package is installed and they are set;
the environment variables ``OPENAI_API_KEY``, ``OPENAI_BASE_URL`` and ``OPENAI_ORG_ID``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from ._errors import ConfigurationError

DEFAULT_BASE_URL = "https://api.openai.com/v1"


@dataclass(frozen=True, slots=True)
class Settings:
    api_key: str | None
    base_url: str
    organization: str | None


def _openai_module_setting(*names: str) -> str | None:
    # Only look if the user imported openai: importing it ourselves costs ~0.5 s.
    module = sys.modules.get("openai")
    if module is None:
        return None
    for name in names:
        value = getattr(module, name, None)
        if value:
            return str(value)
    return None


def resolve_settings(
    api_key: str | None,
    base_url: str | None,
    organization: str | None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    env = os.environ if environ is None else environ
    key = api_key
    if key is None:
        key = _openai_module_setting("api_key") or env.get("OPENAI_API_KEY") or None
    url = base_url
    if url is None:
        url = (
            _openai_module_setting("base_url", "api_base")
            or env.get("OPENAI_BASE_URL")
            or DEFAULT_BASE_URL
        )
    org = organization
    if org is None:
        org = _openai_module_setting("organization") or env.get("OPENAI_ORG_ID") or None
    return Settings(api_key=key, base_url=check_base_url(url), organization=org)


def check_base_url(url: object, argument: str = "base_url") -> str:
    """A validated base URL without a trailing slash."""
    if not isinstance(url, str) or not url:
        raise ConfigurationError(f"{argument} must be a URL string, got {url!r}")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigurationError(
            f"{argument} must be an http(s) URL such as 'https://api.openai.com/v1', got {url!r}"
        )
    if parts.username or parts.password:
        raise ConfigurationError(f"{argument} must not carry credentials in the URL")
    if parts.fragment:
        raise ConfigurationError(f"{argument} must not have a #fragment, got {url!r}")
    return url.rstrip("/")


def is_openai_host(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    return host == "api.openai.com" or host.endswith(".openai.com")
