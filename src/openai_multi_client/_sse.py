"""Server-sent events: an incremental decoder of ``text/event-stream`` bytes.

Pure and free of I/O: feed it the body as it arrives, in pieces of any size, and it returns the
events completed so far. It follows the WHATWG event-stream grammar: lines end in ``\\r\\n``,
``\\n`` or ``\\r``; a blank line ends an event; lines starting with ``:`` are comments (such as
``: keep-alive``); ``data`` lines of one event are joined with ``\\n``; one space after the
colon is dropped; ``id`` and ``retry`` are ignored (a bulk client never reconnects a stream).
"""

from __future__ import annotations

from typing import NamedTuple


class ServerSentEvent(NamedTuple):
    """One event: its ``event`` field (``None`` when absent) and its ``data`` (lines joined)."""

    event: str | None
    data: str


class SSEDecoder:
    """``feed(bytes) -> events``; ``close() -> events`` at the end of the body."""

    __slots__ = ("_buffer", "_data", "_event", "_has_data")

    def __init__(self) -> None:
        self._buffer = b""
        self._data: list[str] = []
        self._event: str | None = None
        self._has_data = False

    def feed(self, chunk: bytes) -> list[ServerSentEvent]:
        """The events completed by ``chunk`` (a piece of the body, split anywhere)."""
        buffer = self._buffer + chunk if self._buffer else chunk
        lines = buffer.splitlines(keepends=True)  # bytes split on \r\n, \n and \r only
        # An unterminated last line waits for more; so does one ending in \r, whose \n may be
        # in the next piece (it would otherwise count as an extra, event-ending blank line).
        if lines and (lines[-1][-1:] not in (b"\n", b"\r") or lines[-1].endswith(b"\r")):
            self._buffer = lines.pop()
        else:
            self._buffer = b""
        events: list[ServerSentEvent] = []
        for line in lines:
            self._line(line.rstrip(b"\r\n"), events)
        return events

    def close(self) -> list[ServerSentEvent]:
        """End of the body: the complete lines still held, and an event they leave pending
        (an event cut off mid-line is dropped: it may be truncated)."""
        events: list[ServerSentEvent] = []
        pending, self._buffer = self._buffer, b""
        if pending.endswith(b"\r"):
            self._line(pending.rstrip(b"\r"), events)
        self._line(b"", events)
        return events

    def _line(self, raw: bytes, events: list[ServerSentEvent]) -> None:
        if not raw:
            if self._has_data:
                events.append(ServerSentEvent(self._event, "\n".join(self._data)))
            self._data = []
            self._event = None
            self._has_data = False
            return
        if raw[0] == 0x3A:  # ":" a comment
            return
        line = raw.decode("utf-8", errors="replace")
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
            self._has_data = True
        elif name == "event":
            self._event = value
