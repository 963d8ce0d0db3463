"""JSON in one place: orjson when installed (the ``speed`` extra), else the stdlib, with the
same results either way.

* :func:`loads` is permissive, as Python's ``json`` module and the official SDK are: ``NaN``,
  ``Infinity`` and ``-Infinity`` become floats (vLLM sends ``"logprob": -Infinity``) and a lone
  surrogate escape (``"\\ud800"``) is kept in the string. orjson rejects these, so what it
  refuses is parsed again by the stdlib.
* :func:`dumps` is strict, for request bodies: what is not standard JSON (a non-finite float,
  a lone surrogate) raises instead of being sent.
* :func:`dumps_record` never refuses a parsed answer, for what is written to files (``omc
  run``'s output, the journal, the cache): non-finite floats become the strings ``"NaN"``,
  ``"Infinity"`` and ``"-Infinity"`` (as in protobuf's JSON mapping; Python's ``float()`` reads
  them back), and lone surrogates become U+FFFD, so every line is valid, strict JSON.
"""

from __future__ import annotations

import importlib
import json
import math
import re
from typing import Any

_orjson: Any
try:  # imported by name so mypy sees the same thing whether orjson is installed or not
    _orjson = importlib.import_module("orjson")
except ImportError:  # pragma: no cover - depends on the environment
    _orjson = None

_SURROGATE = re.compile("[\ud800-\udfff]")
_NON_FINITE = {math.inf: "Infinity", -math.inf: "-Infinity"}


# One encoder for every call: json.dumps() with options builds a new one each time.
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def _stdlib_dumps(value: Any) -> bytes:
    """Compact, strict JSON; ``ValueError`` for non-finite floats and lone surrogates."""
    text = _ENCODER.encode(value)
    return text.encode()  # UnicodeEncodeError (a ValueError) on a lone surrogate


def dumps(value: Any) -> bytes:
    """Compact UTF-8 JSON, strictly standard. Raises ``TypeError`` for values JSON cannot
    represent and ``ValueError`` for non-finite floats and lone surrogates."""
    if _orjson is not None:
        # orjson's encoding when it is exactly what the stdlib would accept: orjson writes NaN
        # and infinities as null without a word, so an output holding null is checked for
        # them; it refuses integers beyond 64 bits and lone surrogates (the stdlib decides).
        try:
            encoded: bytes = _orjson.dumps(value)
        except _orjson.JSONEncodeError:
            pass
        else:
            if b"null" not in encoded or not _has_non_finite(value):
                return encoded
    try:
        return _stdlib_dumps(value)
    except RecursionError:
        raise ValueError("nested too deeply to encode as JSON") from None


def dumps_record(value: Any) -> bytes:
    """Compact UTF-8 JSON that is always valid and strict: non-finite floats are written as the
    strings ``"NaN"``, ``"Infinity"``, ``"-Infinity"`` and lone surrogates as U+FFFD. Raises
    ``TypeError`` or ``ValueError`` only for what no JSON can hold (an object of another type,
    nesting too deep to encode)."""
    try:
        return dumps(value)
    except ValueError:
        pass
    try:
        return _stdlib_dumps(_representable(value))
    except RecursionError:
        raise ValueError("nested too deeply to encode as JSON") from None


def loads(data: bytes | str) -> Any:
    """Parse JSON, accepting ``NaN``, ``Infinity``, ``-Infinity`` and lone surrogate escapes
    whichever codec is installed; raises ``ValueError`` on malformed input (``RecursionError``
    when nested deeper than the interpreter's stack allows)."""
    if _orjson is not None:
        try:
            return _orjson.loads(data)
        except _orjson.JSONDecodeError:
            pass  # perhaps one of the extensions above: the stdlib decides
    return json.loads(data)


def _has_non_finite(value: Any) -> bool:
    """Whether a float ``NaN`` or infinity is anywhere in ``value`` (lists, tuples, dicts)."""
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, dict):
        return any(_has_non_finite(item) for item in value.values())
    if isinstance(value, list | tuple):
        return any(_has_non_finite(item) for item in value)
    return False


def _representable(value: Any) -> Any:
    """A copy of ``value`` with non-finite floats as strings and lone surrogates replaced."""
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        return "NaN" if math.isnan(value) else _NON_FINITE[value]
    if isinstance(value, str):
        return _SURROGATE.sub("\ufffd", value)
    if isinstance(value, dict):
        return {
            (_SURROGATE.sub("\ufffd", key) if isinstance(key, str) else key): _representable(item)
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return [_representable(item) for item in value]
    return value
