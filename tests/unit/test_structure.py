"""The library keeps its shape (docs/architecture.md): no import circles anywhere in the package,
no class over 400 lines and no function over 80. The CLI and the mock server have their own
rules on top (tests/unit/test_cli_structure.py, tests/unit/test_mock_structure.py)."""

from __future__ import annotations

import ast
from pathlib import Path

import openai_multi_client

PACKAGE = Path(openai_multi_client.__file__).parent
SOURCES = (PACKAGE, PACKAGE.parent / "stable_openai")
MAX_CLASS_LINES = 400
MAX_FUNCTION_LINES = 80


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def sources(prefix: str = "") -> dict[str, tuple[Path, ast.Module]]:
    """Every module of ours whose name starts with ``prefix``, parsed."""
    found = {
        module_name(path): (path, ast.parse(path.read_text(), str(path)))
        for root in SOURCES
        for path in sorted(root.rglob("*.py"))
    }
    return {name: source for name, source in found.items() if name.startswith(prefix)}


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


def imported(name: str, path: Path, tree: ast.Module, known: set[str]) -> set[str]:
    """The modules among ``known`` that ``tree`` imports, type-only imports included.
    ``from package import name`` imports ``package.name`` when that is a module, else
    ``package`` itself."""
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
            for alias in node.names:
                module = f"{base}.{alias.name}"
                names.add(module if module in known else base)
    return (names & known) - {name}


def circles(modules: dict[str, tuple[Path, ast.Module]]) -> list[list[str]]:
    """The import circles among ``modules`` (each found once, as a path that closes)."""
    known = set(modules)
    graph = {name: sorted(imported(name, *source, known)) for name, source in modules.items()}
    found: list[list[str]] = []
    state: dict[str, str] = {}

    def visit(name: str, trail: list[str]) -> None:
        state[name] = "open"
        for target in graph[name]:
            if state.get(target) == "open":
                found.append([*trail[trail.index(target) :], target])
            elif target not in state:
                visit(target, [*trail, target])
        state[name] = "done"

    for name in graph:
        if name not in state:
            visit(name, [name])
    return found


def test_no_import_circles_anywhere() -> None:
    assert circles(sources()) == []


def test_no_class_or_function_is_too_long() -> None:
    report = [
        f"{name}: {entry}" for name, (_, tree) in sources().items() for entry in oversized(tree)
    ]
    assert report == []


def test_the_checks_see_a_circle_and_a_long_function() -> None:
    first = ast.parse("from . import b\n")
    second = ast.parse("from .a import x\n" + "def f():\n" + "    pass\n" * 90)
    modules = {
        "openai_multi_client.a": (PACKAGE / "a.py", first),
        "openai_multi_client.b": (PACKAGE / "b.py", second),
    }
    assert circles(modules) == [
        ["openai_multi_client.a", "openai_multi_client.b", "openai_multi_client.a"]
    ]
    assert oversized(second) == ["f:2 is 91 lines (limit 80)"]
