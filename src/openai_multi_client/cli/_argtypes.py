"""Argument types for ``omc``'s options: a parser and a range check, with messages that show
what was given and what is expected (argparse prints them after the option's name)."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from typing import TypeVar

__all__ = ["checked", "non_negative", "port", "positive_int", "probability"]

T = TypeVar("T")


def checked(
    parse: Callable[[str], T], valid: Callable[[T], bool], expected: str, *, unparsed: str = ""
) -> Callable[[str], T]:
    """An argparse ``type``: ``parse`` the text, then refuse a value that is not ``valid``,
    saying what was ``expected`` (and ``unparsed`` instead when the text does not parse)."""

    def convert(text: str) -> T:
        try:
            value = parse(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected {unparsed or expected}, not {text!r}"
            ) from None
        if not valid(value):
            raise argparse.ArgumentTypeError(f"expected {expected}, not {text!r}")
        return value

    return convert


positive_int = checked(int, lambda value: value >= 1, "a positive integer")
port = checked(
    int,
    lambda value: 0 <= value <= 65535,
    "a port in 0-65535 (0: any free one)",
    unparsed="a port number",
)
probability = checked(float, lambda value: 0.0 <= value <= 1.0, "a number in [0, 1]")
non_negative = checked(float, lambda value: 0 <= value < math.inf, "a number >= 0")
