"""What the mock answers beyond plain text: tool calls, structured outputs and logprobs.

* a tool call when ``tool_choice`` is ``"required"`` or names a function (``"auto"`` and
  ``"none"`` get text), with arguments built from the function's ``parameters`` schema;
* JSON content for ``response_format`` (chat) or ``text.format`` (Responses API):
  ``json_object`` gets an object, ``json_schema`` a value conforming to the schema;
* ``logprobs`` for chat (``logprobs: true`` and ``top_logprobs``) and completions
  (``logprobs: N``), one entry per piece a stream sends (the mock's "tokens").
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Final, NamedTuple

from .errors import BadRequest, invalid_type, invalid_value
from .schema import SchemaError, value_for_schema
from .sse import text_pieces

_MAX_TOP_LOGPROBS: Final = 20
_MAX_COMPLETIONS_LOGPROBS: Final = 5


class ToolCall(NamedTuple):
    """The function the mock calls and its arguments (JSON text)."""

    name: str
    arguments: str


def to_json(value: object) -> str:
    """Compact JSON text, the same with or without the optional orjson."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


# ------------------------------------------------------------------------------ tool calls


def _functions(tools: object, *, flat: bool) -> dict[str, Any]:
    """Function name -> parameters schema; ``flat``: the Responses API's tool shape."""
    if tools is None:
        return {}
    if not isinstance(tools, list):
        raise invalid_type("tools", "an array", tools)
    functions: dict[str, Any] = {}
    for index, tool in enumerate(tools):
        if not isinstance(tool, Mapping):
            raise invalid_type(f"tools[{index}]", "an object", tool)
        if tool.get("type") != "function":
            continue
        spec = tool if flat else tool.get("function")
        where = f"tools[{index}]" if flat else f"tools[{index}].function"
        if not isinstance(spec, Mapping):
            raise BadRequest(
                f"Missing required parameter: '{where}'.", where, "missing_required_parameter"
            )
        name = spec.get("name")
        if not isinstance(name, str) or not name:
            raise BadRequest(
                f"Missing required parameter: '{where}.name'.",
                f"{where}.name",
                "missing_required_parameter",
            )
        functions[name] = spec.get("parameters") or {"type": "object", "properties": {}}
    return functions


def tool_call(body: Mapping[str, Any], *, flat: bool = False) -> ToolCall | None:
    """The call the answer makes, or None for a text answer (``flat``: Responses API)."""
    functions = _functions(body.get("tools"), flat=flat)
    choice = body.get("tool_choice")
    if choice is None or choice in ("auto", "none"):
        return None
    if choice == "required":
        if not functions:
            raise invalid_value("tool_choice", "'required' needs at least one function in 'tools'.")
        name = next(iter(functions))
    elif isinstance(choice, Mapping) and choice.get("type") == "function":
        named = choice if flat else choice.get("function")
        wanted = named.get("name") if isinstance(named, Mapping) else None
        if not isinstance(wanted, str) or wanted not in functions:
            raise invalid_value("tool_choice", f"no function named {wanted!r} in 'tools'.")
        name = wanted
    else:
        return None  # allowed_tools, built-in tools...: answered with text
    try:
        arguments = value_for_schema(functions[name], name)
    except SchemaError as exc:
        raise invalid_value(f"tools.{name}.parameters", str(exc)) from None
    return ToolCall(name, to_json(arguments))


# ------------------------------------------------------------------------ structured outputs


def structured_text(fmt: object, param: str, reply: str) -> str | None:
    """JSON content for a ``response_format`` / ``text.format``; None for plain text.

    Chat nests the schema as ``json_schema.schema``, the Responses API as ``schema``."""
    if fmt is None:
        return None
    if not isinstance(fmt, Mapping):
        raise invalid_type(param, "an object", fmt)
    kind = fmt.get("type")
    if kind == "text":
        return None
    if kind == "json_object":
        return to_json({"reply": reply})
    if kind != "json_schema":
        raise invalid_value(
            f"{param}.type",
            f"{kind!r}. Supported values are: 'text', 'json_object' and 'json_schema'.",
        )
    holder = fmt.get("json_schema", fmt) if param == "response_format" else fmt
    if not isinstance(holder, Mapping):
        raise invalid_type(f"{param}.json_schema", "an object", holder)
    schema = holder.get("schema", {})
    try:
        return to_json(value_for_schema(schema))
    except SchemaError as exc:
        raise invalid_value(f"{param}.schema", str(exc)) from None


# ---------------------------------------------------------------------------------- logprobs


def _logprob(position: int, rank: int) -> float:
    return round(-0.0125 * (1 + position % 7) - 1.5 * rank, 6)


def _entry(token: str, logprob: float) -> dict[str, Any]:
    return {"token": token, "logprob": logprob, "bytes": list(token.encode())}


def chat_logprobs_wanted(body: Mapping[str, Any]) -> int | None:
    """How many top_logprobs a chat request asks for (None: no logprobs); validated."""
    wanted = body.get("logprobs")
    top = body.get("top_logprobs")
    if wanted is not None and not isinstance(wanted, bool):
        raise invalid_type("logprobs", "a boolean", wanted)
    if top is not None:
        if not isinstance(top, int) or isinstance(top, bool) or not 0 <= top <= _MAX_TOP_LOGPROBS:
            raise invalid_value("top_logprobs", f"expected an integer in [0, {_MAX_TOP_LOGPROBS}].")
        if not wanted:
            raise invalid_value("top_logprobs", "'logprobs' must be true when it is used.")
    return (top or 0) if wanted else None


def chat_logprobs(text: str, top: int) -> dict[str, Any]:
    """A chat choice's ``logprobs``: one entry per streamed piece of ``text``."""
    content = []
    for position, token in enumerate(text_pieces(text)):
        chosen = _logprob(position, 0)
        alternatives = [_entry(token, chosen)] + [
            _entry(f"{token}~{rank}", _logprob(position, rank)) for rank in range(1, top)
        ]
        content.append({**_entry(token, chosen), "top_logprobs": alternatives[:top]})
    return {"content": content, "refusal": None}


def completions_logprobs_wanted(body: Mapping[str, Any]) -> int | None:
    """The ``logprobs`` count a completions request asks for (None: none); validated."""
    wanted = body.get("logprobs")
    if wanted is None:
        return None
    if (
        not isinstance(wanted, int)
        or isinstance(wanted, bool)
        or not 0 <= wanted <= _MAX_COMPLETIONS_LOGPROBS
    ):
        raise invalid_value("logprobs", f"expected an integer in [0, {_MAX_COMPLETIONS_LOGPROBS}].")
    return wanted


def completions_logprobs(text: str, top: int, offset: int = 0) -> dict[str, Any]:
    """A completions choice's ``logprobs`` (tokens, token_logprobs, top_logprobs, offsets)."""
    tokens = text_pieces(text)
    offsets, position = [], offset
    for token in tokens:
        offsets.append(position)
        position += len(token)
    return {
        "tokens": tokens,
        "token_logprobs": [_logprob(index, 0) for index in range(len(tokens))],
        "top_logprobs": [
            {
                (token if rank == 0 else f"{token}~{rank}"): _logprob(index, rank)
                for rank in range(top)
            }
            for index, token in enumerate(tokens)
        ],
        "text_offset": offsets,
    }


def slice_completions_logprobs(logprobs: Mapping[str, Any], step: int) -> dict[str, Any]:
    """The part of a completions ``logprobs`` that goes with the ``step``-th streamed piece."""
    return {name: values[step : step + 1] for name, values in logprobs.items()}
