"""The mock server's request errors: a 400 ``invalid_request_error`` as OpenAI words it."""

from __future__ import annotations


class BadRequest(Exception):
    """A 400 ``invalid_request_error``: its message, the parameter at fault and a code."""

    def __init__(self, message: str, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code


def type_name(value: object) -> str:
    """How OpenAI's error messages name the JSON type of ``value``."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, list):
        return "an array"
    return "an object"


def invalid_type(param: str, expected: str, value: object) -> BadRequest:
    return BadRequest(
        f"Invalid type for '{param}': expected {expected}, but got {type_name(value)} instead.",
        param,
        "invalid_type",
    )


def invalid_value(param: str, message: str) -> BadRequest:
    return BadRequest(f"Invalid value for '{param}': {message}", param, "invalid_value")
