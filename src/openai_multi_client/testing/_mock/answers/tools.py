"""What the mock answers instead of plain text, built from the schemas the request gives.

* a tool call when ``tool_choice`` is ``"required"`` or names a function (``"auto"`` and
  ``"none"`` get text), with arguments built from the function's ``parameters`` schema;
* JSON content for ``response_format`` (chat) or ``text.format`` (Responses API):
  ``json_object`` gets an object, ``json_schema`` a value conforming to the schema.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, NamedTuple

from ..errors import BadRequest, invalid_type, invalid_value
from .schema import SchemaError, value_for_schema


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
