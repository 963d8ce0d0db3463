from __future__ import annotations

import pytest

from openai_multi_client import ConfigurationError, EndpointRemovedError
from openai_multi_client._api import join_url
from openai_multi_client._request import merge_template, resolve_endpoint


@pytest.mark.parametrize(
    ("name", "path"),
    [
        ("completions", "completions"),
        ("chats", "chat/completions"),
        ("chat.completions", "chat/completions"),
        ("embeddings", "embeddings"),
        ("images", "images/generations"),
        ("moderations", "moderations"),
        ("responses", "responses"),
        ("/v1/chat/completions", "chat/completions"),
        ("/v1/audio/speech", "audio/speech"),
        ("/chat/completions", "chat/completions"),
    ],
)
def test_endpoint_table(name: str, path: str) -> None:
    assert resolve_endpoint(name) == path


@pytest.mark.parametrize(
    ("name", "replacement"), [("edits", "chats"), ("fine-tunes", "fine_tuning")]
)
def test_removed_endpoints_name_their_replacement(name: str, replacement: str) -> None:
    with pytest.raises(EndpointRemovedError, match=replacement):
        resolve_endpoint(name)


@pytest.mark.parametrize(
    "name", ["chat", "", "https://evil.example/v1/chat", "//evil.example/x", "/v1/../x", "/", 3]
)
def test_bad_endpoints_are_refused(name: object) -> None:
    with pytest.raises(ConfigurationError, match="endpoint"):
        resolve_endpoint(name)


def test_join_url_keeps_the_query() -> None:
    assert join_url("https://api.openai.com/v1", "chat/completions") == (
        "https://api.openai.com/v1/chat/completions"
    )
    assert join_url(
        "https://x.openai.azure.com/openai/deployments/d?api-version=2024-10-21", "chat/completions"
    ) == ("https://x.openai.azure.com/openai/deployments/d/chat/completions?api-version=2024-10-21")


def test_template_merge_is_shallow_and_copies() -> None:
    template = {"model": "m", "temperature": 0}
    merged = merge_template(template, {"temperature": 1, "messages": []}, "data")
    assert merged == {"model": "m", "temperature": 1, "messages": []}
    merged["model"] = "other"
    assert template["model"] == "m"
    assert merge_template(None, None, "metadata") == {}
    with pytest.raises(ConfigurationError, match="data must be a dict"):
        merge_template(template, ["not", "a", "dict"], "data")
