"""One attempt at one request: from a :class:`Request` and a :class:`Key` to an
:class:`Outcome`, or a :class:`RequestError`.

Two backends share the :class:`Backend` protocol: :class:`HTTPBackend` speaks OpenAI's HTTP API
through a :class:`Transport`; :class:`CustomAPIBackend` calls the seed's ``custom_api``.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import queue
import threading
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlencode, urljoin, urlsplit, urlunsplit

from multidict import CIMultiDict, CIMultiDictProxy

from . import _json
from ._errors import (
    APIStatusError,
    ConfigurationError,
    ConnectionClosedError,
    CustomAPIError,
    InvalidResponseError,
    RedirectError,
    RequestError,
    StreamInterruptedError,
    status_error,
)
from ._headers import response_request_id
from ._limits.key import Key
from ._request import Request
from ._stream import StreamReader, prepare_stream
from ._transport import (
    HTTPRequest,
    HTTPResponse,
    Timeout,
    Transport,
    origin,
    response_too_large,
)


@dataclass(slots=True)
class Outcome:
    """A successful attempt."""

    response: Any
    status_code: int | None = None
    request_id: str | None = None
    headers: Mapping[str, str] | None = None


class Backend(Protocol):
    def prepare(self, request: Request) -> None:
        """Check and encode a request at submission; raise ``ConfigurationError`` if unusable."""
        ...

    async def call(self, request: Request, key: Key) -> Outcome:
        """Make one attempt; raise a :class:`RequestError` subclass on failure."""
        ...

    async def aclose(self) -> None: ...


def join_url(base_url: str, path: str, api_version: str | None = None) -> str:
    """``base_url`` + ``/`` + ``path``, keeping a query string of the base at the end, with
    Azure's ``api-version`` added when given."""
    parts = urlsplit(base_url)
    query = parts.query
    if api_version is not None:
        pairs = [pair for pair in query.split("&") if pair and not pair.startswith("api-version=")]
        query = "&".join([*pairs, urlencode({"api-version": api_version})])
    return urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/") + "/" + path, query, ""))


def redirect_error(
    status: int,
    url: str,
    body: object,
    headers: Mapping[str, str],
) -> RedirectError:
    """The error for a 3xx answer to ``url``. It names the origin redirected to, never its
    path or query (which could carry anything, the key included)."""
    location = headers.get("location")
    target = same = None
    if location:
        try:
            location = urljoin(url, location.strip())
            target = origin(location)
            same = target == origin(url)
        except ValueError:  # e.g. http://[::1 or a port out of range
            target = None
    if target is None:
        where = "without a usable Location" if location else "without a Location header"
    elif same:
        where = f"to another path on the same origin, {target}"
    else:
        where = f"to another origin, {target}, where the API key was not sent"
    message = (
        f"HTTP {status}: the server redirected {where}; redirects are never followed: "
        "set base_url to the final address if that is the server you mean"
    )
    error = RedirectError(message, status_code=status, body=body, headers=headers)
    error.location, error.target_origin, error.same_origin = location, target, bool(same)
    return error


class HTTPBackend:
    """OpenAI's HTTP API over a transport."""

    def __init__(
        self,
        transport: Transport,
        base_url: str,
        timeout: Timeout,
        headers: Mapping[str, str] | None = None,
        owns_transport: bool = True,
        max_response_bytes: int | None = None,
        flex_timeout: Timeout | None = None,
    ) -> None:
        self._transport = transport
        self._flex_timeout = timeout if flex_timeout is None else flex_timeout
        self._max_response_bytes = max_response_bytes
        self._base_url = base_url
        self._timeout = timeout
        self._headers = {"Content-Type": "application/json", "Accept": "application/json"}
        self._headers.update(headers or {})
        self._owns_transport = owns_transport
        self._urls: dict[tuple[Key, str], str] = {}
        self._key_headers: dict[Key, dict[str, str]] = {}
        self._stream_headers: dict[Key, dict[str, str]] = {}

    @property
    def base_url(self) -> str:
        return self._base_url

    def _url(self, key: Key, path: str) -> str:
        cache_key = (key, path)
        url = self._urls.get(cache_key)
        if url is None:
            base = key.base_url or self._base_url
            url = self._urls[cache_key] = join_url(base, path, key.api_version)
        return url

    def prepare(self, request: Request) -> None:
        if request.data.get("stream") is True:
            prepare_stream(request)
        try:
            request.body = _json.dumps(request.data)
        except (TypeError, ValueError) as exc:
            raise ConfigurationError(f"data cannot be sent as JSON: {exc}") from exc

    async def call(self, request: Request, key: Key) -> Outcome:
        if request.stream:
            return await self._call_stream(request, key)
        headers = self._key_headers.get(key)
        if headers is None:
            headers = self._key_headers[key] = {**self._headers, **key.auth_headers()}
        response = await self._transport.handle(self._post(request, key, headers))
        status, content, limit = response.status_code, response.content, self._max_response_bytes
        if limit is not None and len(content) > limit:  # a transport that read it all anyway
            raise response_too_large(limit, len(content))
        if not 200 <= status < 300:
            raise self._status_failure(response, content, key, request.path)
        if not content or content.isspace():  # (no stripped copy of every body)
            raise InvalidResponseError(
                f"HTTP {status} with an empty body, where a JSON answer was expected "
                "(retried, as any malformed response)"
            )
        content = key.redact_bytes(content)  # a server that echoes the key: never keep it
        try:
            body = _json.loads(content)
        except (ValueError, RecursionError):  # the stdlib parser recurses on nesting
            raise InvalidResponseError(
                f"HTTP {status} with a body that is not JSON "
                f"({len(content)} bytes: {content[:80]!r})"
            ) from None
        if not isinstance(body, dict):
            raise InvalidResponseError(
                f"HTTP {status} with a JSON body that is not an object: {type(body).__name__}"
            )
        answered = response.headers
        return Outcome(body, status, response_request_id(answered), answered)

    def _post(self, request: Request, key: Key, headers: dict[str, str]) -> HTTPRequest:
        assert request.body is not None, "prepare() encodes the body at submission"
        url = self._url(key, request.path)
        limit = self._max_response_bytes
        flex = request.data.get("service_tier") == "flex"
        timeout = self._flex_timeout if flex else self._timeout
        return HTTPRequest("POST", url, headers, request.body, timeout, max_response_bytes=limit)

    def _status_failure(
        self, response: HTTPResponse, content: bytes, key: Key, path: str
    ) -> APIStatusError:
        """The one error path for a status other than 2xx, streamed or not."""
        content = key.redact_bytes(content)  # a server that echoes the key: never keep it
        try:
            body: Any = _json.loads(content) if content else None
        except (ValueError, RecursionError):
            body = None
        headers = response.headers
        return _status_failure(
            response.status_code,
            body,
            content,
            headers,
            response_request_id(headers),
            self._url(key, path),
            key,
        )

    async def _call_stream(self, request: Request, key: Key) -> Outcome:
        """A ``"stream": true`` attempt: events are read, passed on and assembled as they
        arrive (see :mod:`._stream`)."""
        headers = self._stream_headers.get(key)
        if headers is None:
            headers = {**self._headers, **key.auth_headers(), "Accept": "text/event-stream"}
            self._stream_headers[key] = headers
        reader = StreamReader(request, key.secret, key.id, self._max_response_bytes)
        http_request = self._post(request, key, headers)
        http_request.on_data = reader.feed
        try:
            response = await self._transport.handle(http_request)
        except ConnectionClosedError as exc:
            if reader.done:  # everything arrived before the connection broke: keep it
                return Outcome(reader.finish({}, None), 200)
            if reader.started and not isinstance(exc, StreamInterruptedError):
                raise StreamInterruptedError(
                    f"the stream was cut off after {reader.events} events: {exc}"
                ) from exc
            raise
        status, content, limit = response.status_code, response.content, self._max_response_bytes
        if limit is not None and len(content) > limit:  # a transport that read it all anyway
            raise response_too_large(limit, len(content))
        if not 200 <= status < 300:
            raise self._status_failure(response, content, key, request.path)
        if content:  # a transport that ignores on_data: the whole body at once
            reader.feed(content)
        request_id = response_request_id(response.headers)
        body = reader.finish(response.headers, request_id)
        return Outcome(body, status, request_id, response.headers)

    async def aclose(self) -> None:
        close = getattr(self._transport, "aclose", None)
        if self._owns_transport and close is not None:
            await close()


def _redacted(key: Key, headers: Mapping[str, str]) -> Mapping[str, str]:
    """``headers`` without the key: they are kept on the error, and a server that echoes the
    key in a header (a redirect's location, say) must not put it there."""
    if any(key.redact(value) != value for value in headers.values()):
        return CIMultiDictProxy(
            CIMultiDict((name, key.redact(value)) for name, value in headers.items())
        )
    return headers


def _status_failure(
    status: int,
    body: Any,
    content: bytes,
    headers: Mapping[str, str],
    request_id: str | None,
    url: str,
    key: Key,
) -> APIStatusError:
    """The error for a response to ``url`` with a status other than 2xx (a redirect is never
    followed: it becomes a :class:`RedirectError` naming where it points, never the key)."""
    if body is None and content:
        body = {"error": {"message": content[:200].decode(errors="replace")}}
    headers = _redacted(key, headers)
    if 300 <= status < 400:
        error = redirect_error(status, url, body, headers)
        error.request_id = request_id
        return error
    return status_error(status, body, headers, request_id)


CustomAPI = Callable[[Request], Awaitable[Any] | Any]


class CustomAPIBackend:
    """The seed's ``custom_api``: an async callable (awaited in the loop) or a sync callable (run
    in a worker thread, so it may block) that takes the :class:`Request` and returns the
    response. Exceptions become :class:`CustomAPIError` (retried), unless they already are a
    :class:`RequestError`, which is classified as it is."""

    def __init__(self, function: CustomAPI, max_threads: int) -> None:
        self._function = function
        self._is_async = _is_async_callable(function)
        self._threads: DaemonThreadPool | None = None
        self._max_threads = max_threads

    def prepare(self, request: Request) -> None:
        pass

    async def call(self, request: Request, key: Key) -> Outcome:
        try:
            if self._is_async:
                response = self._function(request)
            else:
                if self._threads is None:
                    self._threads = DaemonThreadPool(self._max_threads, "omc-custom-api")
                response = await self._threads.run(self._function, request)
            if inspect.isawaitable(response):
                response = await response
        except RequestError:
            raise
        except Exception as exc:
            raise CustomAPIError(f"custom_api raised {type(exc).__name__}: {exc}") from exc
        return Outcome(response)

    async def aclose(self) -> None:
        threads, self._threads = self._threads, None
        if threads is not None:
            threads.shutdown()


class DaemonThreadPool:
    """Worker threads for blocking user code that never hold up the interpreter's exit.

    ``concurrent.futures.ThreadPoolExecutor`` joins its threads at exit, so one blocking call in
    a sync ``custom_api`` would keep a finished (or Ctrl-C'd) program alive. These threads are
    daemons: the process exits without waiting for them.
    """

    def __init__(self, max_threads: int, name: str) -> None:
        self._jobs: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._max_threads = max_threads
        self._name = name
        self._threads: list[threading.Thread] = []
        self._idle = 0
        self._lock = threading.Lock()

    async def run(self, function: Callable[[Request], Any], request: Request) -> Any:
        """Run ``function(request)`` in a worker thread and await its result."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()

        def settle(outcome: Callable[[], None]) -> None:
            if not future.done():
                outcome()

        def job() -> None:
            try:
                value = function(request)
            except BaseException as exc:
                error = exc
                loop.call_soon_threadsafe(settle, lambda: future.set_exception(error))
            else:
                loop.call_soon_threadsafe(settle, lambda: future.set_result(value))

        self._submit(job)
        return await future

    def _submit(self, job: Callable[[], None]) -> None:
        with self._lock:
            if self._idle == 0 and len(self._threads) < self._max_threads:
                thread = threading.Thread(
                    target=self._work, name=f"{self._name}-{len(self._threads)}", daemon=True
                )
                self._threads.append(thread)
                thread.start()
            else:
                self._idle -= 1 if self._idle else 0
        self._jobs.put(job)

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            # RuntimeError: the loop closed before the result could be delivered.
            with contextlib.suppress(RuntimeError):
                job()
            with self._lock:
                self._idle += 1

    def shutdown(self) -> None:
        """Let idle workers end; busy ones end after their call (without being waited for)."""
        for _ in self._threads:
            self._jobs.put(None)


def _is_async_callable(function: object) -> bool:
    while hasattr(function, "func"):  # functools.partial
        function = function.func
    if inspect.iscoroutinefunction(function):
        return True
    call = getattr(function, "__call__", None)  # noqa: B004
    return inspect.iscoroutinefunction(call)
