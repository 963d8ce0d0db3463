"""The Files and Batches endpoints over aiohttp: upload (streamed from disk), create,
retrieve, list, cancel, download (streamed to disk). OpenAI's paths (``{base}/files``) or
Azure's (``{endpoint}/openai/files?api-version=...`` with the ``api-key`` header).

Control calls are retried a few times on connection errors, 408, 409, 429 and 5xx (and 404
just after an upload, as a new file may not be visible at once); other errors are raised as the
library's :class:`~openai_multi_client.APIStatusError` subclasses, with the key redacted.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlencode, urlsplit, urlunsplit

import aiohttp

from .. import _json
from .._clock import Clock
from .._errors import (
    APIStatusError,
    ConnectError,
    InvalidResponseError,
    RequestTimeoutError,
    TransportError,
    status_error,
)
from .._limits.key import Key
from .records import BatchInfo, UploadedFile

logger = logging.getLogger("openai_multi_client")

_ATTEMPTS: Final = 5
_RETRY_STATUSES: Final = frozenset({408, 409, 429})
_TIMEOUT: Final = aiohttp.ClientTimeout(total=None, connect=30.0, sock_read=600.0)
# An answer: status, headers, body (empty when streamed to a file).
_Answer = tuple[int, Mapping[str, str], bytes]


def api_root(base_url: str, key: Key) -> str:
    """Where ``files`` and ``batches`` live: the base URL itself, or for Azure the resource's
    ``/openai`` (a deployment's URL is cut back to it)."""
    parts = urlsplit(base_url)
    path = parts.path.rstrip("/")
    if key.azure:
        cut = path.find("/openai")
        path = (path[:cut] if cut >= 0 else path) + "/openai"
    return urlunsplit((parts.scheme, parts.netloc, path, parts.query, ""))


class BatchHTTP:
    """One key's calls to the Files and Batches endpoints, over one aiohttp session."""

    def __init__(self, key: Key, base_url: str, clock: Clock) -> None:
        self._key = key
        self._root = api_root(base_url, key)
        self._clock = clock
        self._session: aiohttp.ClientSession | None = None

    def _url(self, path: str, query: Mapping[str, str] | None = None) -> str:
        parts = urlsplit(self._root)
        pairs = [pair for pair in parts.query.split("&") if pair]
        if self._key.api_version is not None:
            pairs = [pair for pair in pairs if not pair.startswith("api-version=")]
            pairs.append(urlencode({"api-version": self._key.api_version}))
        if query:
            pairs.append(urlencode(query))
        return urlunsplit((parts.scheme, parts.netloc, parts.path + path, "&".join(pairs), ""))

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=_TIMEOUT, cookie_jar=aiohttp.DummyCookieJar()
            )
        return self._session

    async def aclose(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    # ---------------------------------------------------------------- one exchange

    async def _retrying(
        self,
        what: str,
        send: Callable[[], Awaitable[_Answer]],
        *,
        retry_not_found: bool = False,
    ) -> _Answer:
        """``send()`` until it gets a 2xx answer, at most :data:`_ATTEMPTS` times, waiting
        between tries on connection errors, 408, 409, 429, 5xx (and 404 if asked); other
        statuses raise their :class:`APIStatusError` at once."""
        for attempt in range(1, _ATTEMPTS + 1):
            try:
                status, headers, body = await send()
            except TransportError:
                if attempt == _ATTEMPTS:
                    raise
                await self._clock.sleep(min(2.0**attempt, 30.0))
                continue
            if status < 300:
                return status, headers, body
            error = self._error(status, headers, body)
            transient = status in _RETRY_STATUSES or status >= 500
            if attempt == _ATTEMPTS or not (transient or (retry_not_found and status == 404)):
                raise error
            logger.info("%s: %s; retrying", what, error)
            await self._clock.sleep(min(2.0**attempt, 30.0))
        raise AssertionError("unreachable")  # pragma: no cover

    async def _call(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        query: Mapping[str, str] | None = None,
        retry_not_found: bool = False,
    ) -> Any:
        """A JSON call, retried on transient failures; returns the parsed body."""
        content = None if json is None else _json.dumps(json)

        async def send() -> _Answer:
            return await self._exchange(method, path, content, query)

        _, _, body = await self._retrying(f"{method} {path}", send, retry_not_found=retry_not_found)
        try:
            return _json.loads(body)
        except ValueError:
            raise InvalidResponseError(f"{method} {path}: the answer is not JSON") from None

    async def _exchange(
        self,
        method: str,
        path: str,
        content: bytes | aiohttp.FormData | None,
        query: Mapping[str, str] | None = None,
        sink: Path | None = None,
    ) -> _Answer:
        headers = self._key.auth_headers()
        if isinstance(content, bytes):
            headers["Content-Type"] = "application/json"
        try:
            async with self._open().request(
                method, self._url(path, query), data=content, headers=headers, allow_redirects=False
            ) as response:
                if sink is not None and response.status < 300:
                    with sink.open("wb") as file:
                        async for piece in response.content.iter_chunked(1 << 16):
                            file.write(piece)
                    return response.status, response.headers, b""
                return response.status, response.headers, await response.read()
        except asyncio.TimeoutError as exc:
            raise RequestTimeoutError(f"{method} {path}: no answer in time") from exc
        except aiohttp.ClientConnectorError as exc:
            raise ConnectError(f"{method} {path}: cannot connect: {exc.os_error}") from exc
        except aiohttp.ClientError as exc:
            message = self._key.redact(f"{method} {path}: {type(exc).__name__}: {exc}")
        raise TransportError(message)

    def _error(self, status: int, headers: Mapping[str, str], body: bytes) -> APIStatusError:
        try:
            parsed = _json.loads(self._key.redact_bytes(body))
        except ValueError:
            parsed = None
        return status_error(status, parsed, dict(headers), headers.get("x-request-id"))

    # ---------------------------------------------------------------- the endpoints

    async def upload(self, path: Path) -> UploadedFile:
        """``POST /files`` with purpose ``batch``, the file streamed from disk."""

        async def send() -> _Answer:
            with path.open("rb") as file:
                form = aiohttp.FormData()
                form.add_field("purpose", "batch")
                form.add_field("file", file, filename=path.name, content_type="application/jsonl")
                return await self._exchange("POST", "/files", form)

        _, _, body = await self._retrying("POST /files", send)
        try:
            info = _json.loads(body)
            return UploadedFile(str(info["id"]), int(info.get("bytes") or 0), path.name)
        except (ValueError, KeyError, TypeError):
            raise InvalidResponseError("POST /files: the answer is not a file object") from None

    async def create(
        self, file_id: str, endpoint: str, metadata: Mapping[str, str] | None
    ) -> BatchInfo:
        """``POST /batches`` with completion window ``24h``."""
        params: dict[str, Any] = {
            "input_file_id": file_id,
            "endpoint": endpoint,
            "completion_window": "24h",
        }
        if metadata:
            params["metadata"] = dict(metadata)
        body = await self._call("POST", "/batches", json=params, retry_not_found=True)
        return BatchInfo.from_json(body)

    async def retrieve(self, batch_id: str) -> BatchInfo:
        return BatchInfo.from_json(await self._call("GET", f"/batches/{batch_id}"))

    async def cancel(self, batch_id: str) -> BatchInfo:
        return BatchInfo.from_json(await self._call("POST", f"/batches/{batch_id}/cancel"))

    async def list_page(
        self, after: str | None = None, limit: int = 100
    ) -> tuple[list[BatchInfo], bool]:
        """One page of batches, newest first, and whether more follow."""
        query = {"limit": str(limit)}
        if after is not None:
            query["after"] = after
        body = await self._call("GET", "/batches", query=query)
        data = [BatchInfo.from_json(item) for item in body.get("data") or []]
        return data, bool(body.get("has_more"))

    async def download(self, file_id: str, path: Path) -> None:
        """``GET /files/{id}/content`` streamed into ``path``."""
        where = f"/files/{file_id}/content"

        async def send() -> _Answer:
            return await self._exchange("GET", where, None, sink=path)

        await self._retrying(f"GET {where}", send)
