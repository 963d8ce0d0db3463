"""``omc run``'s options become one frozen RunConfig, checked once, with messages naming the
option; keys never show in its repr."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from openai_multi_client import ConfigurationError
from openai_multi_client.cli import build_parser
from openai_multi_client.cli._config import RunConfig


def config(tmp_path: Path, *options: str) -> RunConfig:
    source = tmp_path / "in.jsonl"
    source.write_text("")
    argv = ["run", str(source), "-o", str(tmp_path / "out.jsonl"), *options]
    return RunConfig.from_args(build_parser().parse_args(argv))


def test_defaults_and_the_journal_beside_the_output(tmp_path: Path) -> None:
    made = config(tmp_path, "--key", "sk-secret-one")
    assert made.journal == str(tmp_path / "out.jsonl") + ".journal"
    assert (made.concurrency, made.max_retries, made.ordered) == (50, 10, False)
    assert made.keys == ("sk-secret-one",)
    assert "gpt-4o-mini" in made.prices
    assert config(tmp_path, "--no-journal", "--mock").journal is None


def test_keys_never_show_and_the_config_cannot_change(tmp_path: Path) -> None:
    made = config(tmp_path, "--key", "sk-secret-one", "--rpm", "60")
    assert "sk-secret" not in repr(made)
    with pytest.raises(dataclasses.FrozenInstanceError):
        made.concurrency = 3  # type: ignore[misc]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["-c", "0"], "--concurrency must be at least 1"),
        (["--max-line-bytes", "0"], "--max-line-bytes must be at least 1"),
        (["--budget-tokens", "-1"], "--budget-tokens must not be negative, got -1"),
        (["--rpm", "0"], "--rpm must be a number above 0, got 0"),
        (["--retry-failed", "--no-journal"], "it cannot go with --no-journal"),
        (["--ordered", "--cache", "c.db"], "--ordered and --cache together are not supported"),
        (["--metrics-port", "70000"], "--metrics-port must be a port from 0 to 65535, got 70000"),
        (["--metrics-host", "0.0.0.0"], "--metrics-host goes with --metrics-port"),
    ],
)
def test_bad_options_are_refused_naming_the_option(
    tmp_path: Path, options: list[str], message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message):
        config(tmp_path, "--mock", *options)


def test_a_key_given_twice_names_the_line_not_the_key(tmp_path: Path) -> None:
    keys = tmp_path / "keys.txt"
    keys.write_text("# team keys\nsk-secret-one\n\nsk-secret-one\n")
    with pytest.raises(ConfigurationError) as caught:
        config(tmp_path, "--keys-file", str(keys))
    assert "line 4: the same key as line 2" in str(caught.value)
    assert "sk-secret" not in str(caught.value)


def test_the_reorder_buffer_is_settable_and_checked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert config(tmp_path, "--mock").reorder_buffer == 10_000
    assert config(tmp_path, "--mock", "--ordered", "--reorder-buffer", "500").reorder_buffer == 500
    with pytest.raises(SystemExit):
        config(tmp_path, "--mock", "--reorder-buffer", "0")
    assert "--reorder-buffer: expected a positive integer, not '0'" in capsys.readouterr().err


def test_metrics_port_without_the_extra_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib.util

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *args: None if name == "prometheus_client" else find_spec(name, *args),
    )
    with pytest.raises(ConfigurationError, match=r"pip install 'openai-multi-client\[metrics\]'"):
        config(tmp_path, "--mock", "--metrics-port", "9464")


def test_flex_is_set_only_where_the_endpoint_takes_it() -> None:
    from openai_multi_client.cli._batch import BatchRequest
    from openai_multi_client.cli._producer import _with_tier

    def item(url: str, **body: Any) -> BatchRequest:
        return BatchRequest(1, "a", url, {"model": "m", **body}, b"")

    assert _with_tier(item("/v1/chat/completions"), True)["service_tier"] == "flex"
    assert _with_tier(item("/v1/responses"), True)["service_tier"] == "flex"
    assert "service_tier" not in _with_tier(item("/v1/embeddings"), True)
    assert "service_tier" not in _with_tier(item("/v1/chat/completions"), False)
    own = item("/v1/chat/completions", service_tier="default")
    assert _with_tier(own, True)["service_tier"] == "default"  # the line's own choice wins
