"""JSON encoding in one place: orjson when installed (the ``speed`` extra), else the stdlib."""

from __future__ import annotations

import importlib
import json
from typing import Any

_orjson: Any
try:  # imported by name so mypy sees the same thing whether orjson is installed or not
    _orjson = importlib.import_module("orjson")
except ImportError:  # pragma: no cover - depends on the environment
    _orjson = None


def dumps(value: Any) -> bytes:
    """Compact UTF-8 JSON. Raises ``TypeError`` for values JSON cannot represent."""
    if _orjson is not None:
        try:
            encoded: bytes = _orjson.dumps(value)
        except _orjson.JSONEncodeError as exc:
            raise TypeError(str(exc)) from exc
        return encoded
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def loads(data: bytes | str) -> Any:
    """Parse JSON; raises ``ValueError`` on malformed input."""
    if _orjson is not None:
        return _orjson.loads(data)
    return json.loads(data)
