"""Request bodies checked as OpenAI checks them (400 :class:`~.errors.BadRequest` naming the
parameter), and what a valid body costs at admission (:class:`Plan`).

Each endpoint's check also runs the checks of the answer's extras (tool calls, structured
outputs, logprobs), so that a bad body is refused before it reaches the rate limits.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final, NamedTuple

from .answers import logprobs, tools
from .errors import BadRequest, empty, invalid_type, missing
from .options import MAX_EMBEDDING_DIMENSIONS
from .text import chars, estimate

# Output tokens a request reserves when it names no maximum (OpenAI's completions default).
_DEFAULT_MAX_TOKENS: Final = 16


class Plan(NamedTuple):
    """What validation learnt of a request: its admission cost and generation parameters."""

    cost: int
    prompt_tokens: int
    n: int
    max_tokens: int | None


def model_of(body: Mapping[str, Any], default: str | None) -> str:
    """The body's ``model``, or ``default`` when it names none and the endpoint has one."""
    model = body.get("model")
    if model is None:
        if default is None:
            raise missing("model")
        return default
    if not isinstance(model, str):
        raise invalid_type("model", "a string", model)
    if not model:
        raise empty("model", "string")
    return model


def _int_param(body: Mapping[str, Any], name: str, low: int, high: int | None) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        raise invalid_type(name, "an integer", value)
    if value < low:
        raise BadRequest(
            f"Invalid '{name}': integer below minimum value. Expected a value >= {low}, "
            f"but got {value} instead.",
            name,
            "integer_below_min_value",
        )
    if high is not None and value > high:
        raise BadRequest(
            f"Invalid '{name}': integer above maximum value. Expected a value <= {high}, "
            f"but got {value} instead.",
            name,
            "integer_above_max_value",
        )
    return value


def _generation_cost(prompt_tokens: int, max_tokens: int | None, outputs: int) -> int:
    """What OpenAI charges at admission: max(max_tokens * n, estimate of the prompt)."""
    reserved = max_tokens if max_tokens is not None else _DEFAULT_MAX_TOKENS
    return max(prompt_tokens, reserved * outputs)


def _check_stream(body: Mapping[str, Any]) -> None:
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise invalid_type("stream", "a boolean", stream)
    options = body.get("stream_options")
    if options is None:
        return
    if not stream:
        raise BadRequest(
            "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
            "stream_options",
            "invalid_value",
        )
    if not isinstance(options, dict):
        raise invalid_type("stream_options", "an object", options)
    usage = options.get("include_usage")
    if usage is not None and not isinstance(usage, bool):
        raise invalid_type("stream_options.include_usage", "a boolean", usage)


def _required(
    body: Mapping[str, Any], name: str, kind: type | tuple[type, ...], expected: str
) -> Any:
    """The parameter ``name``, which must be there and of type ``kind`` (``expected`` in words)."""
    value = body.get(name)
    if value is None:
        raise missing(name)
    if not isinstance(value, kind):
        raise invalid_type(name, expected, value)
    return value


def _string_or_array(body: Mapping[str, Any], name: str, *, empty_string: bool) -> list[Any]:
    """A parameter that is a string or a non-empty array: ``[string]`` or the array itself
    (``[array]`` for an array of token ids); ``empty_string``: whether ``""`` is allowed."""
    value = body.get(name)
    if value is None:
        raise missing(name)
    if isinstance(value, str):
        if not value and not empty_string:
            raise empty(name, "string")
        return [value]
    if not isinstance(value, list):
        raise invalid_type(name, "a string or an array", value)
    if not value:
        raise empty(name, "array")
    if all(isinstance(item, int) and not isinstance(item, bool) for item in value):
        return [value]
    return value


def prompts(body: Mapping[str, Any]) -> list[Any]:
    """The prompts of a completions request (a string, strings, tokens or token lists)."""
    items = _string_or_array(body, "prompt", empty_string=True)
    for index, item in enumerate(items):
        if not isinstance(item, (str, list)):
            raise invalid_type(f"prompt[{index}]", "a string or an array", item)
    return items


def embedding_inputs(body: Mapping[str, Any]) -> list[Any]:
    """The inputs of an embeddings request: one string or token list per vector."""
    items = _string_or_array(body, "input", empty_string=False)
    for index, item in enumerate(items):
        if not isinstance(item, (str, list)) or not item:
            raise BadRequest(
                f"Invalid 'input[{index}]': expected a non-empty string or array of tokens.",
                f"input[{index}]",
                "invalid_value",
            )
    return items


def moderation_inputs(body: Mapping[str, Any]) -> list[Any]:
    """The inputs of a moderations request: one result is due for each."""
    items = _string_or_array(body, "input", empty_string=True)
    value = body["input"]
    if isinstance(value, str):
        return items
    if any(isinstance(item, dict) for item in value):
        return [value]  # multi-modal parts: one result for all of them
    for index, item in enumerate(value):
        if not isinstance(item, str):
            raise invalid_type(f"input[{index}]", "a string", item)
    return list(value)


def check_chat(body: Mapping[str, Any]) -> Plan:
    messages = _required(body, "messages", list, "an array")
    if not messages:
        raise BadRequest(
            "Invalid 'messages': empty array. Expected an array with minimum length 1, "
            "but got an empty array instead.",
            "messages",
            "empty_array",
        )
    for index, message in enumerate(messages):
        if not isinstance(message, dict):
            raise invalid_type(f"messages[{index}]", "an object", message)
        if "role" not in message:
            raise missing(f"messages[{index}].role")
    _check_stream(body)
    logprobs.chat_logprobs_wanted(body)
    tools.tool_call(body)
    tools.structured_text(body.get("response_format"), "response_format", "")
    n = _int_param(body, "n", 1, 128) or 1
    max_tokens = _int_param(body, "max_completion_tokens", 1, None)
    if max_tokens is None:
        max_tokens = _int_param(body, "max_tokens", 1, None)
    prompt_tokens = estimate(chars(messages))
    return Plan(_generation_cost(prompt_tokens, max_tokens, n), prompt_tokens, n, max_tokens)


def check_completions(body: Mapping[str, Any]) -> Plan:
    items = prompts(body)
    _check_stream(body)
    logprobs.completions_logprobs_wanted(body)
    n = _int_param(body, "n", 1, 128) or 1
    max_tokens = _int_param(body, "max_tokens", 1, None)
    prompt_tokens = estimate(chars(items))
    cost = _generation_cost(prompt_tokens, max_tokens, n * len(items))
    return Plan(cost, prompt_tokens, n, max_tokens)


def _check_choice(body: Mapping[str, Any], name: str, allowed: tuple[str, ...]) -> None:
    value = body.get(name)
    if value is not None and value not in allowed:
        names = " and ".join(", ".join(repr(item) for item in allowed).rsplit(", ", 1))
        raise BadRequest(
            f"Invalid value for '{name}': {value!r}. Supported values are: {names}.",
            name,
            "invalid_value",
        )


def check_embeddings(body: Mapping[str, Any]) -> Plan:
    inputs = embedding_inputs(body)
    _int_param(body, "dimensions", 1, MAX_EMBEDDING_DIMENSIONS)
    _check_choice(body, "encoding_format", ("float", "base64"))
    prompt_tokens = estimate(chars(inputs))
    return Plan(prompt_tokens, prompt_tokens, 1, None)


def check_moderations(body: Mapping[str, Any]) -> Plan:
    prompt_tokens = estimate(chars(moderation_inputs(body)))
    return Plan(prompt_tokens, prompt_tokens, 1, None)


def check_responses(body: Mapping[str, Any]) -> Plan:
    value = _required(body, "input", (str, list), "a string or an array")
    _check_stream(body)
    tools.tool_call(body, flat=True)
    text = body.get("text")
    if text is not None and not isinstance(text, dict):
        raise invalid_type("text", "an object", text)
    tools.structured_text((text or {}).get("format"), "text.format", "")
    max_tokens = _int_param(body, "max_output_tokens", 1, None)
    prompt_tokens = estimate(chars(value) + chars(body.get("instructions")))
    return Plan(_generation_cost(prompt_tokens, max_tokens, 1), prompt_tokens, 1, max_tokens)


def check_images(body: Mapping[str, Any]) -> Plan:
    prompt = _required(body, "prompt", str, "a string")
    if not prompt:
        raise empty("prompt", "string")
    n = _int_param(body, "n", 1, 10) or 1
    _check_choice(body, "response_format", ("url", "b64_json"))
    prompt_tokens = estimate(len(prompt))
    return Plan(prompt_tokens, prompt_tokens, n, None)
