"""The mock's code keeps its shape: small classes and functions, no import circles, and no
use of the client's own parsers (the mock must be able to catch their bugs)."""

from __future__ import annotations

import ast
from pathlib import Path

import openai_multi_client.testing

TESTING = Path(openai_multi_client.testing.__file__).parent
PACKAGE = "openai_multi_client.testing"
MAX_CLASS_LINES = 400
MAX_FUNCTION_LINES = 80
# The client's parsing modules, which the mock must not use.
CLIENT_PARSERS = frozenset(
    {"openai_multi_client._sse", "openai_multi_client._stream", "openai_multi_client._headers"}
)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(TESTING).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join([PACKAGE, *parts])


def sources() -> dict[str, tuple[Path, ast.Module]]:
    return {
        module_name(path): (path, ast.parse(path.read_text(), str(path)))
        for path in sorted(TESTING.rglob("*.py"))
    }


def oversized(tree: ast.Module) -> list[str]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef):
            limit = MAX_CLASS_LINES
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            limit = MAX_FUNCTION_LINES
        else:
            continue
        assert node.end_lineno is not None
        lines = node.end_lineno - node.lineno + 1
        if lines > limit:
            found.append(f"{node.name}:{node.lineno} is {lines} lines (limit {limit})")
    return found


def imported(name: str, path: Path, tree: ast.Module) -> set[str]:
    """Absolute names of the modules ``tree`` imports (relative imports resolved)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def test_no_class_or_function_of_the_testing_package_is_too_long() -> None:
    report = [
        f"{path.relative_to(TESTING)}: {entry}"
        for path, tree in sources().values()
        for entry in oversized(tree)
    ]
    assert report == []


def test_no_import_circles_in_the_testing_package() -> None:
    modules = sources()
    graph = {
        name: sorted(imported(name, path, tree) & modules.keys() - {name})
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


def test_the_mock_does_not_use_the_clients_parsers() -> None:
    users = {
        name: sorted(imported(name, path, tree) & CLIENT_PARSERS)
        for name, (path, tree) in sources().items()
        if imported(name, path, tree) & CLIENT_PARSERS
    }
    assert users == {}
