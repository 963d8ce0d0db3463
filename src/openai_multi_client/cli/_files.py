"""The files of one ``omc run``, checked before any is opened for writing.

Opening an output truncates it, so an output that is also the input (by another name, a symlink
or a hard link) would be emptied before a line is read, and two outputs that are one file would
interleave two writers. Files are compared by identity (device and inode) when they exist, and
by their resolved path when they do not exist yet.
"""

from __future__ import annotations

import contextlib
import os
import stat
import sys
from collections.abc import Iterable, Sequence
from typing import IO

from .._errors import ConfigurationError, OutputFileError
from . import _private

__all__ = ["Outputs", "check_files", "check_input", "check_output_folder"]

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


class Outputs:
    """The output file and the optional errors file of a run. A write that fails raises
    :class:`OutputFileError` naming the file; the journal (committed before every write) keeps
    the results, and ``journal_path`` says where."""

    def __init__(self, output: str, errors: str | None, journal_path: str | None) -> None:
        self._journal_path = journal_path
        self._files: list[tuple[str, IO[bytes]]] = []
        self.output = self._open(output)
        self.errors = None if errors is None else self._open(errors)

    def _open(self, path: str) -> IO[bytes]:
        file = _private.private_open(path)
        self._files.append((path, file))
        return file

    def _failed(self, file: IO[bytes], exc: OSError) -> OutputFileError:
        path = next(path for path, open_file in self._files if open_file is file)
        reason = exc.strerror or str(exc)
        kept = (
            f"every result so far is safe in the journal {self._journal_path}; fix that and run "
            f"the same command again: it rewrites {path} from the journal"
            if self._journal_path
            else "this run keeps no journal (--no-journal), so its results after the last "
            "line written are lost"
        )
        return OutputFileError(f"cannot write {path}: {reason}; {kept}")

    def write(self, lines: Iterable[tuple[bytes, bool]]) -> None:
        """Append ``(line, failed)`` pairs: every line to the output, failures to the errors
        file too; then flush both."""
        output, errors = self.output, self.errors
        file = output
        try:
            for data, failed in lines:
                file = output
                output.write(data)
                if failed and errors is not None:
                    file = errors
                    errors.write(data)
            file = output
            output.flush()
            if errors is not None:
                file = errors
                errors.flush()
        except OSError as exc:
            raise self._failed(file, exc) from exc

    def write_error(self, data: bytes) -> None:
        """Append a line to the errors file only (a bad input line)."""
        assert self.errors is not None
        try:
            self.errors.write(data)
        except OSError as exc:
            raise self._failed(self.errors, exc) from exc

    def close(self) -> None:
        """Close both files. Data a failed write left in a buffer is dropped (the journal has
        it); a failure to write the last lines raises :class:`OutputFileError`."""
        problem: OutputFileError | None = None
        for _, file in self._files:
            try:
                file.close()
            except OSError as exc:
                problem = problem or self._failed(file, exc)
            finally:
                with contextlib.suppress(OSError):
                    file.close()
        if problem is not None:
            raise problem
