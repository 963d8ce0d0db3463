"""``omc run --keys-file``: a second column puts keys in groups that share one set of limits."""

from __future__ import annotations

from pathlib import Path

import pytest

from openai_multi_client import ConfigurationError, Key
from openai_multi_client.cli import build_parser
from openai_multi_client.cli._config import RunConfig


def config(tmp_path: Path, keys: str) -> RunConfig:
    source = tmp_path / "in.jsonl"
    source.write_text('{"custom_id": "a", "method": "POST", "url": "/v1/chat/completions"}\n')
    keys_file = tmp_path / "keys.txt"
    keys_file.write_text(keys)
    args = build_parser().parse_args(
        ["run", str(source), "-o", str(tmp_path / "out.jsonl"), "--keys-file", str(keys_file)]
    )
    return RunConfig.from_args(args)


def test_a_second_column_names_the_group(tmp_path: Path) -> None:
    keys = config(tmp_path, "# org A\nsk-a1 org-a\nsk-a2   org-a\n\nsk-b1\n").keys
    assert all(isinstance(key, Key) for key in keys)
    groups = [(key.secret, key.group) for key in keys if isinstance(key, Key)]
    assert groups == [("sk-a1", "org-a"), ("sk-a2", "org-a"), ("sk-b1", None)]


def test_keys_without_groups_stay_plain(tmp_path: Path) -> None:
    assert config(tmp_path, "sk-a1\nsk-a2\n").keys == ("sk-a1", "sk-a2")


def test_a_line_of_three_words_is_refused_naming_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=r"line 2: expected a key and optionally") as info:
        config(tmp_path, "sk-a1 org-a\nsk-secret-2 org-a extra\n")
    assert "sk-secret-2" not in str(info.value)
