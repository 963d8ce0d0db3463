"""A value that conforms to a JSON schema, for the mock's structured outputs and tool calls.

Covers what OpenAI's structured outputs accept and what pydantic generates: objects (every
property, required or not), arrays (``minItems``, ``maxItems``), strings (``enum``, ``const``,
``format``, ``minLength``, ``maxLength``), integers and numbers (bounds, ``multipleOf``),
booleans, null, ``anyOf`` / ``oneOf`` / ``allOf``, and ``$ref`` into ``$defs`` or
``definitions`` (recursive schemas end where a branch allows it: null, an empty array, an
object's optional properties left out). The value is deterministic: the same schema gives the
same value.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Final

# How deep references may nest before a recursive schema is cut short.
_MAX_DEPTH: Final = 8
_FORMATS: Final = {
    "date-time": "2024-01-01T00:00:00Z",
    "date": "2024-01-01",
    "time": "00:00:00Z",
    "duration": "P1D",
    "email": "mock@example.com",
    "hostname": "example.com",
    "ipv4": "127.0.0.1",
    "ipv6": "::1",
    "uuid": "00000000-0000-4000-8000-000000000000",
    "uri": "https://example.com/",
}


class SchemaError(ValueError):
    """The schema cannot be satisfied (e.g. a ``$ref`` that points nowhere)."""


def value_for_schema(schema: object, name: str = "value") -> Any:
    """A value conforming to ``schema`` (a JSON schema as a dict; ``{}`` allows anything).

    ``name`` seeds the strings (a property's name, so the values read sensibly)."""
    root = schema if isinstance(schema, Mapping) else {}
    return _Builder(root).build(root, name, 0)


class _Builder:
    def __init__(self, root: Mapping[str, Any]) -> None:
        self._root = root

    def build(self, schema: object, name: str, depth: int) -> Any:
        if not isinstance(schema, Mapping):
            return True if schema is not False else None  # a boolean schema
        if "$ref" in schema:
            if depth >= _MAX_DEPTH:
                return None
            return self.build(self._resolve(schema["$ref"]), name, depth + 1)
        if "const" in schema:
            return schema["const"]
        enum = schema.get("enum")
        if isinstance(enum, list) and enum:
            return enum[0]
        for combinator in ("anyOf", "oneOf"):
            choices = schema.get(combinator)
            if isinstance(choices, list) and choices:
                return self.build(self._pick(choices, depth), name, depth)
        if isinstance(schema.get("allOf"), list):
            merged: dict[str, Any] = {k: v for k, v in schema.items() if k != "allOf"}
            for part in schema["allOf"]:
                _merge(merged, self._resolve(part["$ref"]) if "$ref" in part else part)
            return self.build(merged, name, depth)
        return self._typed(schema, _type_of(schema, depth), name, depth)

    def _typed(self, schema: Mapping[str, Any], kind: str, name: str, depth: int) -> Any:
        if kind == "object":
            return self._object(schema, depth)
        if kind == "array":
            return self._array(schema, name, depth)
        if kind == "string":
            return _string(schema, name)
        if kind in ("integer", "number"):
            return _number(schema, integer=kind == "integer")
        if kind == "boolean":
            return True
        return None

    def _object(self, schema: Mapping[str, Any], depth: int) -> dict[str, Any]:
        properties = schema.get("properties")
        if not isinstance(properties, Mapping):
            return {}
        required = schema.get("required")
        needed = set(required) if isinstance(required, list) else set()
        return {
            key: self.build(sub, key, depth + 1)
            for key, sub in properties.items()
            if key in needed or depth < _MAX_DEPTH // 2
        }

    def _array(self, schema: Mapping[str, Any], name: str, depth: int) -> list[Any]:
        low = schema.get("minItems")
        count = low if isinstance(low, int) and low > 0 else (1 if depth < _MAX_DEPTH // 2 else 0)
        high = schema.get("maxItems")
        if isinstance(high, int):
            count = min(count, high)
        prefix = schema.get("prefixItems")
        items = schema.get("items", {})
        values: list[Any] = []
        for index in range(max(count, len(prefix) if isinstance(prefix, list) else 0)):
            sub = prefix[index] if isinstance(prefix, list) and index < len(prefix) else items
            values.append(self.build(sub, name, depth + 1))
        return values

    def _pick(self, choices: list[Any], depth: int) -> Any:
        """The first choice that is not null; past the depth limit, null when allowed."""

        def is_null(choice: Any) -> bool:
            return isinstance(choice, Mapping) and choice.get("type") == "null"

        if depth >= _MAX_DEPTH // 2 and any(is_null(choice) for choice in choices):
            return {"type": "null"}
        for choice in choices:
            if not is_null(choice):
                return choice
        return choices[0]

    def _resolve(self, ref: object) -> Any:
        if not isinstance(ref, str) or not ref.startswith("#"):
            raise SchemaError(f"unsupported $ref {ref!r}: only local references (#/...) work")
        node: Any = self._root
        for raw in ref[1:].split("/"):
            if not raw:
                continue
            part = raw.replace("~1", "/").replace("~0", "~")
            if not isinstance(node, Mapping) or part not in node:
                raise SchemaError(f"$ref {ref!r} points to nothing in the schema")
            node = node[part]
        return node


def _type_of(schema: Mapping[str, Any], depth: int) -> str:
    kind = schema.get("type")
    if isinstance(kind, list):
        kinds = [k for k in kind if isinstance(k, str)]
        if "null" in kinds and depth >= _MAX_DEPTH // 2:
            return "null"
        kind = next((k for k in kinds if k != "null"), "null")
    if isinstance(kind, str):
        return kind
    if "properties" in schema:
        return "object"
    if "items" in schema or "prefixItems" in schema:
        return "array"
    return "string"


def _merge(into: dict[str, Any], part: Mapping[str, Any]) -> None:
    for key, value in part.items():
        if key == "properties" and isinstance(into.get(key), Mapping):
            into[key] = {**into[key], **value}
        elif key == "required" and isinstance(into.get(key), list):
            into[key] = [*into[key], *value]
        else:
            into.setdefault(key, value)


def _string(schema: Mapping[str, Any], name: str) -> str:
    text = _FORMATS.get(str(schema.get("format")), f"mock {name}")
    low, high = schema.get("minLength"), schema.get("maxLength")
    if isinstance(low, int) and len(text) < low:
        text = (text + " " + "x" * low)[:low]
    if isinstance(high, int) and len(text) > high:
        text = text[: max(high, 0)]
    return text


def _number(schema: Mapping[str, Any], *, integer: bool) -> int | float:
    low = schema.get("minimum")
    high = schema.get("maximum")
    if isinstance(schema.get("exclusiveMinimum"), (int, float)):
        low = schema["exclusiveMinimum"] + (1 if integer else 0.5)
    if isinstance(schema.get("exclusiveMaximum"), (int, float)):
        high = schema["exclusiveMaximum"] - (1 if integer else 0.5)
    value: float = 1.0
    if isinstance(low, (int, float)) and value < low:
        value = low
    if isinstance(high, (int, float)) and value > high:
        value = high
    step = schema.get("multipleOf")
    if isinstance(step, (int, float)) and step > 0:
        value = math.ceil(value / step) * step
    return math.ceil(value) if integer else float(value)
