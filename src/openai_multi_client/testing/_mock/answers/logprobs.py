"""Logprobs the mock answers with: for chat (``logprobs: true`` and ``top_logprobs``) and
completions (``logprobs: N``), one entry per piece a stream sends (the mock's "tokens")."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from ..errors import invalid_type, invalid_value
from ..sse import text_pieces

_MAX_TOP_LOGPROBS: Final = 20
_MAX_COMPLETIONS_LOGPROBS: Final = 5


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
