"""How an answer goes out on the wire: whole, streamed as server-sent events, or broken by the
fault planned for it (truncated, cut, stalled, an error event midway). An answer is counted in
the :class:`~.accounting.Ledger` just before its last bytes leave, and taken back when the
client turns out to be gone."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping
from typing import Any, Final

from aiohttp import web

from ... import _json
from .accounting import Ledger
from .chat_stream import completion_events
from .errors import SERVER_ERROR_BODY
from .faults import FaultPlan, abort
from .responses_stream import response_events
from .sse import frame, split
from .waits import Waits

logger = logging.getLogger(__name__)

# A stream with the malformed fault carries this truncated event midway.
_TRUNCATED_EVENT: Final = b'data: {"id": "chatcmpl-trunc\n\n'


def stream_events(answer: dict[str, Any], include_usage: bool) -> list[bytes]:
    """The server-sent events that stream ``answer`` (chat, completions or responses)."""
    if answer.get("object") == "response":
        return response_events(answer)
    return completion_events(answer, include_usage)


class Sender:
    """Writes answers and the faults that break them."""

    def __init__(self, ledger: Ledger, waits: Waits, plan: FaultPlan) -> None:
        self._ledger = ledger
        self._waits = waits
        self._plan = plan

    async def send(
        self,
        request: web.Request,
        body: Mapping[str, Any],
        answer: dict[str, Any],
        fault: str | None,
        headers: dict[str, str],
    ) -> web.StreamResponse:
        """Send ``answer`` to ``body`` (streamed when it asks for it), or the fault planned
        for it (one of :data:`~.options.ANSWER_FAULTS`)."""
        if body.get("stream") is not True:
            return await self._whole(request, body, _json.dumps(answer), fault, headers)
        options = body.get("stream_options")
        usage = isinstance(options, dict) and options.get("include_usage") is True
        return await self._stream(request, body, stream_events(answer, usage), fault, headers)

    async def _whole(
        self,
        request: web.Request,
        body: Mapping[str, Any],
        payload: bytes,
        fault: str | None,
        headers: dict[str, str],
    ) -> web.StreamResponse:
        """Send ``payload`` as one JSON body, or the fault planned for it."""
        if fault == "malformed":
            logger.debug("fault: malformed body for %s", headers.get("x-request-id"))
            self._ledger.status(200, fault="malformed")
            return web.Response(status=200, body=payload[: len(payload) // 2], headers=headers)
        if fault is not None:  # stream_cut, stream_stall: half the body
            return await self.cut(request, fault, payload, headers, content_length=len(payload))
        self._ledger.status(200)
        response = web.Response(status=200, body=payload, headers=headers)
        # Counted before the bytes leave, so a client that has its answer also sees it counted
        # (the server may run in another thread); taken back if the connection is gone.
        digest = self._ledger.answer(body)
        try:
            await response.prepare(request)
            await response.write_eof()
        except ConnectionError:
            self._ledger.take_back(digest)
            logger.debug(
                "client of %s disconnected before the answer was sent", headers.get("x-request-id")
            )
        return response

    async def _stream(
        self,
        request: web.Request,
        body: Mapping[str, Any],
        events: list[bytes],
        fault: str | None,
        headers: dict[str, str],
    ) -> web.StreamResponse:
        """Send ``events`` as server-sent events, or the fault planned for them."""
        headers["Cache-Control"] = "no-cache"
        half = len(events) // 2
        if fault in ("stream_cut", "stream_stall"):
            return await self.cut(request, fault, b"".join(events), headers)
        if fault == "malformed":
            events.insert(half, _TRUNCATED_EVENT)
        elif fault == "stream_error":
            events[half:] = [frame(SERVER_ERROR_BODY)]
        request_id = headers.get("x-request-id")
        logger.debug("streaming %d events for %s (fault: %s)", len(events), request_id, fault)
        self._ledger.status(200, fault=fault)
        response = web.StreamResponse(status=200, headers=headers)
        digest = self._ledger.answer(body) if fault is None else None
        try:
            await response.prepare(request)
            for piece in split(b"".join(events)):
                await response.write(piece)
            await response.write_eof()
        except ConnectionError:
            if digest is not None:
                self._ledger.take_back(digest)
            logger.debug("client of %s disconnected mid-stream", request_id)
        return response

    async def cut(
        self,
        request: web.Request,
        fault: str,
        payload: bytes,
        headers: Mapping[str, str],
        content_length: int | None = None,
    ) -> web.StreamResponse:
        """Send the headers and half of ``payload``; then, for ``stream_stall``, nothing for
        ``hang_seconds``; then drop the connection."""
        logger.debug("fault: %s after %d of %d bytes", fault, len(payload) // 2, len(payload))
        self._ledger.status(200, fault=fault)
        response = web.StreamResponse(status=200, headers=headers)
        if content_length is not None:
            response.content_length = content_length
        with contextlib.suppress(ConnectionError):
            await response.prepare(request)
            await response.write(payload[: len(payload) // 2])
            if fault == "stream_stall":
                await self._waits.pause(self._plan.hang_seconds)
        transport = request.transport
        if transport is not None:
            transport.close()  # what was written still arrives, then the end: a cut body
        return response

    async def drop(self, request: web.Request, kind: str) -> web.StreamResponse:
        """A ``reset`` (at once) or a ``hang`` (after ``hang_seconds``): no response at all."""
        logger.debug("fault: %s", kind)
        self._ledger.silent_fault(kind)
        if kind == "hang":
            await self._waits.pause(self._plan.hang_seconds)
        abort(request)
        # aiohttp meets the closed transport while sending this and drops it quietly.
        return web.Response(status=503)
