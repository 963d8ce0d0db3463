"""The ``omc`` command's code keeps its shape: only ``cli/`` uses its modules (the batch format,
journal, cache, progress, prices), no import circles among them, small classes and functions;
and its option types say what they expected."""

from __future__ import annotations

import argparse
import ast
from collections.abc import Callable
from pathlib import Path

import pytest

import openai_multi_client
from openai_multi_client.cli._argtypes import port, positive_int, probability

from .test_mock_structure import imported, oversized

PACKAGE = Path(openai_multi_client.__file__).parent
CLI = "openai_multi_client.cli"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def sources() -> dict[str, tuple[Path, ast.Module]]:
    return {
        module_name(path): (path, ast.parse(path.read_text(), str(path)))
        for path in sorted(PACKAGE.rglob("*.py"))
    }


def test_nothing_outside_the_cli_imports_it() -> None:
    users = {
        name: sorted(target for target in imported(name, path, tree) if target.startswith(CLI))
        for name, (path, tree) in sources().items()
        if not name.startswith(CLI) and name != "openai_multi_client.__main__"
    }
    assert {name: targets for name, targets in users.items() if targets} == {}


def test_the_moved_modules_are_not_at_the_root_any_more() -> None:
    for name in ("_batch", "_journal", "_cache", "_progress"):
        assert not (PACKAGE / f"{name}.py").exists()
        assert (PACKAGE / "cli" / f"{name}.py").exists()


def test_no_import_circles_in_the_cli() -> None:
    modules = {name: source for name, source in sources().items() if name.startswith(CLI)}
    graph = {
        name: sorted(imported(name, path, tree) & modules.keys() - {name, CLI})
        for name, (path, tree) in modules.items()
    }
    circles: list[list[str]] = []
    state: dict[str, str] = {}

    def visit(name: str, trail: list[str]) -> None:
        state[name] = "open"
        for target in graph[name]:
            if state.get(target) == "open":
                circles.append([*trail[trail.index(target) :], target])
            elif target not in state:
                visit(target, [*trail, target])
        state[name] = "done"

    for name in graph:
        if name not in state:
            visit(name, [name])
    assert circles == []


def test_no_class_or_function_of_the_cli_is_too_long() -> None:
    report = [
        f"{name}: {entry}"
        for name, (_, tree) in sources().items()
        if name.startswith(CLI)
        for entry in oversized(tree)
    ]
    assert report == []


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
