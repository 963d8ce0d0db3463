from __future__ import annotations

import sys
import types

import pytest

from openai_multi_client import ConfigurationError
from openai_multi_client._config import DEFAULT_BASE_URL, resolve_settings


def test_environment_is_the_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(sys.modules, "openai", raising=False)
    env = {"OPENAI_API_KEY": "sk-env", "OPENAI_BASE_URL": "http://env/v1", "OPENAI_ORG_ID": "o"}
    settings = resolve_settings(None, None, None, env)
    assert (settings.api_key, settings.base_url, settings.organization) == (
        "sk-env",
        "http://env/v1",
        "o",
    )
    assert resolve_settings(None, None, None, {}).base_url == DEFAULT_BASE_URL


def test_openai_module_beats_environment_and_arguments_beat_both(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake = types.ModuleType("openai")
    fake.api_key = "sk-module"  # type: ignore[attr-defined]
    fake.api_base = "http://seed-era/v1/"  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "openai", fake)
    env = {"OPENAI_API_KEY": "sk-env", "OPENAI_BASE_URL": "http://env/v1"}
    settings = resolve_settings(None, None, None, env)
    assert settings.api_key == "sk-module"
    assert settings.base_url == "http://seed-era/v1"
    settings = resolve_settings("sk-arg", "http://arg/v1", "org", env)
    assert (settings.api_key, settings.base_url, settings.organization) == (
        "sk-arg",
        "http://arg/v1",
        "org",
    )


@pytest.mark.parametrize("url", ["api.openai.com", "ftp://x/v1", "http:///v1", "https://a:b@h/v1"])
def test_bad_base_urls(url: str) -> None:
    with pytest.raises(ConfigurationError, match="base_url"):
        resolve_settings("k", url, None, {})
