"""The mock server's error wording: 400 ``invalid_request_error`` as OpenAI words it, OpenAI's
error body, the canned bodies of refusals, and how a key is shown in a message."""

from __future__ import annotations

from typing import Final

from ... import _json


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


def missing(param: str) -> BadRequest:
    return BadRequest(
        f"Missing required parameter: '{param}'.", param, "missing_required_parameter"
    )


def empty(param: str, what: str) -> BadRequest:
    """``what`` is ``"string"`` or ``"array"``."""
    return BadRequest(f"Invalid '{param}': empty {what}.", param, f"empty_{what}")


def error_body(
    message: str, error_type: str, param: str | None = None, code: str | None = None
) -> bytes:
    """OpenAI's error body as JSON bytes."""
    return _json.dumps(
        {"error": {"message": message, "type": error_type, "param": param, "code": code}}
    )


def bad_request_body(bad: BadRequest) -> bytes:
    return error_body(bad.message, "invalid_request_error", bad.param, bad.code)


def redact(key: str) -> str:
    """A key as OpenAI shows it in messages: its first three and last four characters."""
    if len(key) <= 8:
        return "*" * len(key)
    return f"{key[:3]}{'*' * (len(key) - 7)}{key[-4:]}"


def invalid_key_body(key: str) -> bytes:
    message = (
        f"Incorrect API key provided: {redact(key)}. You can find your API key at "
        "https://platform.openai.com/account/api-keys."
    )
    return error_body(message, "invalid_request_error", None, "invalid_api_key")


NO_KEY_BODY: Final = error_body(
    "You didn't provide an API key. You need to provide your API key in an Authorization header "
    "using Bearer auth (i.e. Authorization: Bearer YOUR_KEY), or as the password field (with "
    "blank username) if you're accessing the API from your browser and are prompted for a "
    "username and password. You can obtain an API key from "
    "https://platform.openai.com/account/api-keys.",
    "invalid_request_error",
)
NO_QUOTA_BODY: Final = error_body(
    "You exceeded your current quota, please check your plan and billing details. For more "
    "information on this error, read the docs: "
    "https://platform.openai.com/docs/guides/error-codes/api-errors.",
    "insufficient_quota",
    None,
    "insufficient_quota",
)
# Azure OpenAI's 401 for an unknown api-key: a code that is the status, no type, no param.
AZURE_INVALID_KEY_BODY: Final = _json.dumps(
    {
        "error": {
            "code": "401",
            "message": "Access denied due to invalid subscription key or wrong API endpoint. "
            "Make sure to provide a valid key for an active subscription and use a correct "
            "regional API endpoint for your resource.",
        }
    }
)
BAD_JSON_BODY: Final = error_body(
    "We could not parse the JSON body of your request. (HINT: This likely means you aren't "
    "using your HTTP library correctly. The OpenAI API expects a JSON payload, but what was "
    "sent was not valid JSON.)",
    "invalid_request_error",
)
NOT_OBJECT_BODY: Final = error_body(
    "Invalid type for request body: expected an object.", "invalid_request_error", None, None
)
TOO_DEEP_BODY: Final = error_body("The request body is nested too deeply.", "invalid_request_error")
SERVER_ERROR_BODY: Final = error_body(
    "The server had an error while processing your request. Sorry about that!", "server_error"
)
