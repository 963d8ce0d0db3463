"""The fault plan drawn for each request, and the faults that end a request early: an error
status, a connection reset, a hang."""

from __future__ import annotations

import contextlib
import random
import socket
import struct
from typing import Final

from aiohttp import web

from .errors import error_body
from .options import ANSWER_FAULTS, Faults

JSON: Final = "application/json"
_FAULT_BODIES: Final = {
    500: (
        error_body(
            "The server had an error while processing your request. Sorry about that!",
            "server_error",
        ),
        JSON,
    ),
    502: (
        b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
        b"<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>cloudflare</center>\r\n"
        b"</body>\r\n</html>\r\n",
        "text/html",
    ),
    503: (
        error_body(
            "That model is currently overloaded with other requests. You can retry your request.",
            "server_error",
        ),
        JSON,
    ),
}


#: The kind of fault of a flex request refused for lack of capacity (``Faults.flex_unavailable``).
FLEX_UNAVAILABLE: Final = "flex_unavailable"
_FLEX_BODY: Final = error_body(
    "Resource unavailable: the flex tier has no capacity for this request right now. "
    "Please try again later.",
    "resource_unavailable",
    code="resource_unavailable",
)


def status_fault(kind: str) -> tuple[int, bytes, str]:
    """The status, body and content type of a ``"500"``, ``"502"`` or ``"503"`` fault, or of
    a flex request refused for lack of capacity (:data:`FLEX_UNAVAILABLE`, a 429)."""
    if kind == FLEX_UNAVAILABLE:
        return 429, _FLEX_BODY, JSON
    status = int(kind)
    body, content_type = _FAULT_BODIES[status]
    return status, body, content_type


class FaultPlan:
    """Draws, from one seeded random source, each request's latency and its fault (if any)."""

    def __init__(self, faults: Faults | None, latency: float | tuple[float, float], seed: int):
        self.faults = faults
        self._latency = latency
        self._random = random.Random(seed)
        self._rate = faults.rate if faults is not None else 0.0
        self._flex_unavailable = faults.flex_unavailable if faults is not None else 0.0
        self._kinds: list[str] = []
        self._cumulative: list[float] = []
        total = 0.0
        for kind, weight in (faults.weights if faults is not None else {}).items():
            if weight > 0:
                total += weight
                self._kinds.append(kind)
                self._cumulative.append(total)

    @property
    def hang_seconds(self) -> float:
        assert self.faults is not None  # only a plan with faults hangs
        return self.faults.hang_seconds

    def latency(self) -> float:
        """The delay before this request's answer."""
        if isinstance(self._latency, tuple):
            return self._random.uniform(*self._latency)
        return self._latency

    def fault(self, flex: bool = False) -> str | None:
        """The fault this request meets (``flex``: a flex request's), or None."""
        if flex and self._flex_unavailable > 0 and self._random.random() < self._flex_unavailable:
            return FLEX_UNAVAILABLE
        if self._rate > 0 and self._random.random() < self._rate:
            return self._random.choices(self._kinds, cum_weights=self._cumulative)[0]
        return None


def is_answer_fault(kind: str) -> bool:
    """Whether the fault is injected while answering (it sends part of the answer)."""
    return kind in ANSWER_FAULTS


def abort(request: web.BaseRequest) -> None:
    """Drop the connection without a response; with SO_LINGER 0 the peer gets a TCP RST."""
    transport = request.transport
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()
