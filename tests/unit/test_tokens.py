from __future__ import annotations

import sys
import types
from typing import Any

import pytest

from openai_multi_client import CharacterEstimator
from openai_multi_client._tokens import default_estimator, reserved_output_tokens, tiktoken_offline


@pytest.mark.parametrize(
    ("body", "tokens"),
    [
        ({}, 0),
        ({"max_tokens": 100}, 100),
        ({"max_tokens": 100, "n": 3}, 300),
        ({"max_completion_tokens": 50, "max_tokens": 100}, 50),
        ({"max_output_tokens": 70}, 70),
        ({"max_tokens": True}, 0),
        ({"max_tokens": -5}, 0),
        ({"max_tokens": "100"}, 0),
    ],
)
def test_reserved_output_tokens(body: dict[str, Any], tokens: int) -> None:
    assert reserved_output_tokens(body) == tokens


def test_character_estimate_is_openais_admission_rule() -> None:
    estimate = CharacterEstimator()
    text = "x" * 400  # about 100 tokens
    chat = {"messages": [{"role": "user", "content": text}], "max_tokens": 10}
    assert estimate(chat) == (len("user") + 400 + 3) // 4
    assert estimate({**chat, "max_tokens": 1000}) == 1000  # max(), not the sum
    assert estimate({"input": ["a" * 8, "b" * 8]}) == 4
    assert estimate({"prompt": [1, 2, 3]}) == 3  # token ids count one each
    nested: Any = "deep"
    for _ in range(100):
        nested = [nested]
    assert estimate({"input": nested}) == 0  # bounded depth, no recursion error


def test_tiktoken_is_used_only_when_its_encoding_is_on_disk(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    fake = types.ModuleType("tiktoken")

    def get_encoding(name: str) -> Any:  # pragma: no cover - must not be reached
        raise AssertionError("would download")

    fake.get_encoding = get_encoding  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "tiktoken", fake)
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))
    assert tiktoken_offline() is None
    assert isinstance(default_estimator(), CharacterEstimator)
