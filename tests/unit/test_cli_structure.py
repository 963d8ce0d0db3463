"""The ``omc`` command's code keeps its shape: only ``cli/`` uses its modules (the batch format,
journal, cache, progress), with no import circles among them (sizes: test_structure.py); and
its option types say what they expected."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import pytest

import openai_multi_client
from openai_multi_client.cli._argtypes import port, positive_int, probability

from .test_structure import circles, imported, sources

PACKAGE = Path(openai_multi_client.__file__).parent
CLI = "openai_multi_client.cli"


def test_nothing_outside_the_cli_imports_it() -> None:
    everything = set(sources())
    users = {
        name: sorted(
            target for target in imported(name, path, tree, everything) if target.startswith(CLI)
        )
        for name, (path, tree) in sources().items()
        if not name.startswith(CLI) and name != "openai_multi_client.__main__"
    }
    assert {name: targets for name, targets in users.items() if targets} == {}


def test_the_moved_modules_are_not_at_the_root_any_more() -> None:
    for name in ("_batch", "_journal", "_cache", "_progress"):
        assert not (PACKAGE / f"{name}.py").exists()
        assert (PACKAGE / "cli" / f"{name}.py").exists()


def test_no_import_circles_in_the_cli() -> None:
    assert circles(sources(CLI)) == []


@pytest.mark.parametrize(
    ("convert", "text", "message"),
    [
        (positive_int, "0", "expected a positive integer, not '0'"),
        (positive_int, "x", "expected a positive integer, not 'x'"),
        (port, "70000", "expected a port in 0-65535 (0: any free one), not '70000'"),
        (port, "http", "expected a port number, not 'http'"),
        (probability, "1.5", "expected a number in [0, 1], not '1.5'"),
    ],
)
def test_option_types_say_what_they_expected(
    convert: Callable[[str], object], text: str, message: str
) -> None:
    with pytest.raises(argparse.ArgumentTypeError) as caught:
        convert(text)
    assert str(caught.value) == message


def test_option_types_return_the_value() -> None:
    assert (positive_int("3"), port("0"), probability("0.25")) == (3, 0, 0.25)
