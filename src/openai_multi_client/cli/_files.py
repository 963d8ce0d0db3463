"""The files of one ``omc run``, checked before any is opened for writing.

Opening an output truncates it, so an output that is also the input (by another name, a symlink
or a hard link) would be emptied before a line is read, and two outputs that are one file would
interleave two writers. Files are compared by identity (device and inode) when they exist, and
by their resolved path when they do not exist yet.
"""

from __future__ import annotations

import os
import stat
import sys
from collections.abc import Sequence

from .._errors import ConfigurationError

__all__ = ["check_files", "check_input", "check_output_folder"]

_Identity = tuple[int, int] | str


def _identity(path: str) -> _Identity:
    """What makes ``path`` the file it is: ``(device, inode)`` if it exists, else the path with
    every symlink in it resolved (a dangling symlink resolves to its target)."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return os.path.realpath(path)
    return info.st_dev, info.st_ino


def _stdin_identity() -> _Identity | None:
    """The file standard input is redirected from, if it is a regular file."""
    try:
        info = os.fstat(sys.stdin.fileno())
    except (OSError, ValueError, AttributeError):
        return None
    return (info.st_dev, info.st_ino) if stat.S_ISREG(info.st_mode) else None


def check_input(path: str) -> None:
    """Refuse an input that is missing or is not a file one can read line by line."""
    if path == "-":
        return
    if os.path.isdir(path):
        raise ConfigurationError(f"the input {path!r} is a directory; give a JSONL file")
    if not os.path.exists(path):
        raise ConfigurationError(f"no input file {path!r}")


def check_output_folder(option: str, path: str) -> None:
    """Refuse an output whose folder does not exist, or that is a directory itself."""
    if os.path.isdir(path):
        raise ConfigurationError(f"{option} {path!r} is a directory; give a file name")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise ConfigurationError(
            f"{option} {path!r}: the folder {folder!r} does not exist; create it first"
        )


def check_files(source: str, outputs: Sequence[tuple[str, str]]) -> None:
    """Refuse, with :class:`ConfigurationError`, outputs ``(option, path)`` that are the same
    file as the input ``source`` (``-`` for standard input) or as each other."""
    seen: list[tuple[str, str, _Identity]] = []
    if source == "-":
        stdin = _stdin_identity()
        if stdin is not None:
            seen.append(("the input", "standard input", stdin))
    else:
        seen.append(("the input", source, _identity(source)))
    for option, path in outputs:
        identity = _identity(path)
        for other_option, other_path, other in seen:
            if identity == other:
                same = "" if path == other_path else f" ({other_path!r})"
                raise ConfigurationError(
                    f"{option} {path!r} is the same file as {other_option}{same}: it would be "
                    "overwritten; give each of the input, -o, --errors and --journal its own file"
                )
        seen.append((option, path, identity))
