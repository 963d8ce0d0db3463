"""A transport that answers from a function, for unit tests without sockets."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

from .. import _json
from .._transport import HTTPRequest, HTTPResponse
from ._mock.sse import DONE, sse

Handler = Callable[[HTTPRequest], HTTPResponse | Awaitable[HTTPResponse]]


class MockTransport:
    """Calls ``handler(request)`` (sync or async) for every request and returns its response.

    The handler may raise a :class:`~openai_multi_client.TransportError` subclass to imitate a
    network failure. ``requests`` counts the requests handled.
    """

    def __init__(self, handler: Handler) -> None:
        self._handler = handler
        self.requests = 0

    async def handle(self, request: HTTPRequest) -> HTTPResponse:
        self.requests += 1
        response = self._handler(request)
        if inspect.isawaitable(response):
            response = await response
        return response

    def __repr__(self) -> str:
        return f"MockTransport(requests={self.requests})"


def json_response(
    status_code: int = 200, body: Any = None, headers: Mapping[str, str] | None = None
) -> HTTPResponse:
    """An :class:`HTTPResponse` with a JSON body."""
    content = b"" if body is None else _json.dumps(body)
    return HTTPResponse.build(
        status_code, {"content-type": "application/json", **(headers or {})}, content
    )


def error_response(
    status_code: int,
    message: str = "error",
    code: str | None = None,
    type: str = "server_error",
    headers: Mapping[str, str] | None = None,
) -> HTTPResponse:
    """An :class:`HTTPResponse` carrying OpenAI's error body."""
    body = {"error": {"message": message, "type": type, "param": None, "code": code}}
    return json_response(status_code, body, headers)


def sse_response(
    events: Iterable[Any],
    *,
    done: bool = True,
    status_code: int = 200,
    headers: Mapping[str, str] | None = None,
) -> HTTPResponse:
    """An :class:`HTTPResponse` streaming ``events`` as server-sent events: each a dict (sent
    as ``data: <json>``) or a string (sent as it is, e.g. ``": keep-alive\n\n"``), then
    ``data: [DONE]`` unless ``done=False``."""
    parts = [event.encode() if isinstance(event, str) else sse(event) for event in events]
    if done:
        parts.append(DONE)
    return HTTPResponse.build(
        status_code, {"content-type": "text/event-stream", **(headers or {})}, b"".join(parts)
    )
