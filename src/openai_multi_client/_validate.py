"""Argument checks shared by the public constructors: each raises ``ConfigurationError``
naming the argument and what would be valid."""

from __future__ import annotations

import math

from ._errors import ConfigurationError


def check_count(name: str, value: object) -> None:
    """A whole number >= 0 (bools are refused)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigurationError(f"{name} must be a whole number >= 0, got {value!r}")


def check_positive(name: str, value: object) -> None:
    """A whole number >= 1."""
    check_count(name, value)
    if value == 0:
        raise ConfigurationError(f"{name} must be at least 1, got 0")


def check_seconds(name: str, value: object) -> None:
    """A finite duration >= 0 in seconds."""
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or math.isnan(value)
        or math.isinf(value)
        or value < 0
    ):
        raise ConfigurationError(f"{name} must be a finite number of seconds >= 0, got {value!r}")
