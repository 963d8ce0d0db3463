"""Server-sent-event framing for the mock server and ``MockTransport``: events, text pieces,
write sizes.

Independent of the library's own SSE parser on purpose: the mock must be able to catch its bugs.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import Any, Final

from ... import _json

# Sizes of the pieces a streamed reply's text is cut into, in turn (deterministic).
PIECE_SIZES: Final = (3, 5, 1, 7, 4, 2, 6)
# Sizes of the writes a stream's bytes go out in, so events straddle reads.
WRITE_SIZES: Final = (61, 17, 230, 5, 96)
DONE: Final = b"data: [DONE]\n\n"


def frame(data: bytes, event: str | None = None) -> bytes:
    """One event: ``data: DATA`` (one line) and, when given, an ``event:`` line before it."""
    line = b"data: " + data + b"\n\n"
    return line if event is None else b"event: " + event.encode() + b"\n" + line


def sse(payload: Mapping[str, Any], event: str | None = None) -> bytes:
    """One event carrying ``payload`` as JSON (see :func:`frame`)."""
    return frame(_json.dumps(payload), event)


def _cut(data: Any, sizes: tuple[int, ...]) -> list[Any]:
    pieces: list[Any] = []
    start = 0
    for size in itertools.cycle(sizes):
        if start >= len(data):
            return pieces
        pieces.append(data[start : start + size])
        start += size
    raise AssertionError("unreachable")  # pragma: no cover


def split(data: bytes, sizes: tuple[int, ...] = WRITE_SIZES) -> list[bytes]:
    """``data`` in pieces of ``sizes``, in turn."""
    return _cut(data, sizes)


def text_pieces(text: str) -> list[str]:
    """``text`` in the small deterministic pieces a stream sends (also the mock's "tokens")."""
    return _cut(text, PIECE_SIZES)
