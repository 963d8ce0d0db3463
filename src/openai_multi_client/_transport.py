"""Moving bytes: the one-method :class:`Transport` protocol and its aiohttp implementation.

The transport knows nothing of OpenAI: it sends one :class:`HTTPRequest` and returns one
:class:`HTTPResponse`, whatever its status. aiohttp's and asyncio's exceptions are translated to
:class:`~openai_multi_client.TransportError` subclasses here and nowhere else. Redirects are
never followed, so credentials cannot be carried to another origin.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable
from urllib.parse import urlsplit

import aiohttp
from multidict import CIMultiDict, CIMultiDictProxy

from . import _deadlines
from ._errors import (
    ConfigurationError,
    ConnectError,
    ConnectionClosedError,
    RequestTimeoutError,
    ResponseTooLargeError,
    TransportError,
)

DEFAULT_TIMEOUT = 600.0
# The default for a flex request (``service_tier: "flex"``): its answers are slow and OpenAI
# suggests about 15 minutes.
FLEX_TIMEOUT = 900.0
DEFAULT_CONNECT_TIMEOUT = 5.0
DEFAULT_MAX_RESPONSE_BYTES = 64 * 1024 * 1024
"""The largest response body read by default (64 MiB, decompressed): room for ten
``b64_json`` images or a thousand 3072-dimension float embeddings, far above any chat answer."""


def check_max_response_bytes(value: object, argument: str = "max_response_bytes") -> None:
    """``None`` (no cap) or a whole number of bytes >= 1."""
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ConfigurationError(
            f"{argument} must be a whole number of bytes >= 1, or None for no cap; got {value!r}"
        )


def response_too_large(limit: int, size: int | None = None) -> ResponseTooLargeError:
    """The error for a body over ``limit`` bytes (``size``: its announced length, if known)."""
    seen = f"announced as {size:,} bytes" if size is not None else "still arriving"
    error = ResponseTooLargeError(
        f"the response body is over the cap of {limit:,} bytes (max_response_bytes) and was "
        f"{seen}; reading stopped and nothing was kept. Not retried: if such answers are "
        "expected, raise max_response_bytes (omc run: --max-response-bytes)"
    )
    error.max_response_bytes = limit
    return error


@dataclass(frozen=True, slots=True)
class Timeout:
    """Per-request limits in seconds: ``total`` for the whole exchange, ``connect`` for
    establishing the connection, ``read`` (optional) for the longest wait for the next bytes,
    the response's first or a stream's next chunk. Defaults match the official SDK."""

    total: float = DEFAULT_TIMEOUT
    connect: float = DEFAULT_CONNECT_TIMEOUT
    read: float | None = None

    def __post_init__(self) -> None:
        for name, value in (
            ("timeout", self.total),
            ("connect_timeout", self.connect),
            ("read_timeout", 1.0 if self.read is None else self.read),
        ):
            if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
                raise ConfigurationError(f"{name} must be a number of seconds > 0, got {value!r}")


@dataclass(slots=True)
class HTTPRequest:
    """One request. With ``on_data`` set, a transport that can should pass a 2xx response's
    body to it piece by piece as it arrives (then ``HTTPResponse.content`` is empty); one that
    ignores it returns the whole body as usual. Whatever ``on_data`` raises ends the exchange
    and is raised by ``handle``. ``max_response_bytes`` (``None``: no cap) bounds the body a
    transport reads: one that can should stop at it and raise :func:`response_too_large`."""

    method: str
    url: str
    headers: dict[str, str]
    content: bytes
    timeout: Timeout = field(default_factory=Timeout)
    on_data: Callable[[bytes], None] | None = None
    max_response_bytes: int | None = None

    def __repr__(self) -> str:
        # Headers carry the key: never show them.
        return f"HTTPRequest({self.method} {self.url}, {len(self.content)} bytes)"


@dataclass(slots=True)
class HTTPResponse:
    """A complete response. ``headers`` look up case-insensitively."""

    status_code: int
    headers: Mapping[str, str]
    content: bytes

    @classmethod
    def build(
        cls, status_code: int, headers: Mapping[str, str] | None = None, content: bytes = b""
    ) -> HTTPResponse:
        """A response with headers made case-insensitive (for mock transports and tests)."""
        return cls(status_code, CIMultiDictProxy(CIMultiDict(headers or {})), content)


@runtime_checkable
class Transport(Protocol):
    """Sends one request and returns its response, or raises a ``TransportError``."""

    async def handle(self, request: HTTPRequest) -> HTTPResponse: ...


class AiohttpTransport:
    """The default transport: one aiohttp connection pool, created on first use in the running
    loop. Concurrency is limited by the engine, not by the pool."""

    def __init__(self, *, limit_per_host: int = 0) -> None:
        self._limit_per_host = limit_per_host
        self._session: aiohttp.ClientSession | None = None
        self._timeouts: dict[Timeout, aiohttp.ClientTimeout] = {}
        self._last_timeout: Timeout | None = None  # the last one looked up, and its aiohttp form
        self._last_client_timeout = aiohttp.ClientTimeout()
        # Total limits: one sweeping task (see _deadlines) where Task.uncancel exists, else
        # aiohttp's timer per request.
        self._deadlines = _deadlines.Deadlines() if _deadlines.SUPPORTED else None
        self._loop: asyncio.AbstractEventLoop | None = None

    def _open(self) -> aiohttp.ClientSession:
        self._loop = asyncio.get_running_loop()
        connector = aiohttp.TCPConnector(
            limit=0, limit_per_host=self._limit_per_host, ttl_dns_cache=300
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=None),
            auto_decompress=True,
            # The engine sets every header it needs; no cookies between requests.
            cookie_jar=aiohttp.DummyCookieJar(),
        )
        return self._session

    def _client_timeout(self, limits: Timeout) -> aiohttp.ClientTimeout:
        timeout = self._timeouts.get(limits)
        if timeout is None:
            deadlines = self._deadlines
            if deadlines is not None:
                deadlines.limit_in_use(limits.total)
            timeout = self._timeouts[limits] = aiohttp.ClientTimeout(
                total=None if deadlines is not None else limits.total,
                connect=limits.connect,
                sock_read=limits.read,
            )
        self._last_timeout, self._last_client_timeout = limits, timeout
        return timeout

    async def handle(self, request: HTTPRequest) -> HTTPResponse:
        session = self._session or self._open()
        if request.timeout is self._last_timeout:  # the usual case: the client's one Timeout
            timeout = self._last_client_timeout
        else:
            timeout = self._client_timeout(request.timeout)
        deadlines = self._deadlines
        task = None
        if deadlines is not None:
            loop = self._loop
            assert loop is not None  # set by _open()
            task = asyncio.current_task()
            assert task is not None  # aiohttp runs in a task
            deadlines.due[task] = loop.time() + request.timeout.total
            if deadlines.sweeper is None:
                deadlines.sweep(loop)
        try:
            async with session.request(
                request.method,
                request.url,
                data=request.content,
                headers=request.headers,
                timeout=timeout,
                allow_redirects=False,
            ) as response:
                return await _receive(request, response)
        except asyncio.CancelledError:
            if task is not None and deadlines is not None and deadlines.expired(task):
                raise _timed_out(request) from None
            raise
        except asyncio.TimeoutError as exc:
            raise _timed_out(request) from exc
        except aiohttp.ClientConnectorError as exc:
            raise ConnectError(f"cannot connect to {_where(request.url)}: {exc.os_error}") from exc
        except (
            aiohttp.ServerDisconnectedError,
            aiohttp.ClientPayloadError,
            aiohttp.ClientOSError,
        ) as exc:
            raise ConnectionClosedError(
                f"connection to {_where(request.url)} closed mid-request: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        except aiohttp.ClientError as exc:
            # Others (a response aiohttp cannot parse, ...) may quote what the server sent, and a
            # ClientResponseError holds the request's headers, the key among them: keep only
            # the text (which the engine redacts), never the exception itself.
            message = f"{type(exc).__name__}: {exc}"
        finally:
            if task is not None and deadlines is not None:
                del deadlines.due[task]
        # Raised outside the except block, so not even its __context__ holds aiohttp's error.
        raise TransportError(message)

    async def aclose(self) -> None:
        if self._deadlines is not None:
            self._deadlines.close()
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    def __repr__(self) -> str:
        state = "open" if self._session is not None else "idle"
        return f"AiohttpTransport({state})"


def _timed_out(request: HTTPRequest) -> RequestTimeoutError:
    limits = f"within {request.timeout.total:g} s"
    if request.timeout.read is not None:
        limits += f", or no data for {request.timeout.read:g} s"
    return RequestTimeoutError(
        f"no complete response {limits} (connect limit {request.timeout.connect:g} s)"
    )


async def _receive(request: HTTPRequest, response: aiohttp.ClientResponse) -> HTTPResponse:
    """Read ``response``'s body piece by piece (to ``on_data`` for a 2xx answer when set), never
    more than ``max_response_bytes`` of it: a larger announced length fails before reading."""
    limit = request.max_response_bytes
    on_data = request.on_data if 200 <= response.status < 300 else None
    if on_data is None and limit is None:
        return HTTPResponse(response.status, response.headers, await response.read())
    length = response.content_length
    # With a Content-Encoding the length is the compressed size: the pieces are counted instead.
    announced = length if "Content-Encoding" not in response.headers else None
    if limit is not None and announced is not None and announced > limit:
        response.close()  # the connection goes, with the body never read
        raise response_too_large(limit, announced)
    if on_data is None and announced is not None:  # within the limit: read it in one call
        return HTTPResponse(response.status, response.headers, await response.read())
    pieces: list[bytes] = []
    size = 0
    async for piece in response.content.iter_any():
        size += len(piece)
        if limit is not None and size > limit:
            response.close()
            raise response_too_large(limit)
        if on_data is not None:
            on_data(piece)
        else:
            pieces.append(piece)
    return HTTPResponse(response.status, response.headers, b"".join(pieces))


def origin(url: str) -> str:
    """``scheme://host[:port]`` of an absolute URL (the port only when not the scheme's default),
    without user info, path or query; raises ``ValueError`` for a URL that has none."""
    parts = urlsplit(url)
    scheme, host, port = parts.scheme.lower(), parts.hostname, parts.port
    if not scheme or not host:
        raise ValueError(f"no origin in {url!r}")
    if ":" in host:
        host = f"[{host}]"
    default = {"http": 80, "https": 443}.get(scheme)
    return f"{scheme}://{host}" if port is None or port == default else f"{scheme}://{host}:{port}"


def _where(url: str) -> str:
    """The origin of ``url`` for an error message (keys and paths never appear)."""
    try:
        return origin(url)
    except ValueError:
        return "the server"
