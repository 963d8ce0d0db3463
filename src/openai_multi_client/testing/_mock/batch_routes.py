"""The HTTP face of the mock's Files and Batches APIs, at OpenAI's paths (``/v1/files``,
``/v1/batches``) and Azure's (``/openai/files``, ``/openai/batches``, and the ``/openai/v1/``
form), authenticated as every other route."""

from __future__ import annotations

import itertools
import os
import random
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Protocol

from aiohttp import BodyPartReader, web

from ... import _json
from .accounting import Ledger
from .batch_input import batch_endpoint
from .batch_options import BatchOptions
from .batch_output import LineAnswerer
from .batches import Batch, BatchStore
from .errors import error_body
from .files import UPLOAD_PURPOSES, FileStore

if TYPE_CHECKING:
    from .limits import KeyState, RateLimits
    from .options import ServerOptions

_PREFIXES: Final = ("/v1", "/openai", "/openai/v1")
_Route = Callable[[web.Request], Awaitable[web.Response]]
_METADATA_PAIRS: Final = 16


class Front(Protocol):
    """What the routes use of the server's :class:`~.handler.RequestHandler`: ids,
    authentication, rate-limit state and headers, and the way responses are counted."""

    limits: RateLimits

    def _next_ids(self) -> tuple[int, str]: ...
    def _authenticate(self, request: web.BaseRequest) -> tuple[str, str | None]: ...
    def _refuse(self, refusal: str, key: str, request_id: str) -> web.Response: ...
    def _headers(
        self, request_id: str, state: KeyState | None, content_type: str = ...
    ) -> dict[str, str]: ...
    def _respond(
        self, status: int, body: bytes, request_id: str, state: KeyState | None
    ) -> web.Response: ...


@dataclass(frozen=True)
class _Call:
    """One authenticated call: its request, request id and key."""

    request: web.Request
    request_id: str
    key: str


def _invalid(message: str, param: str | None = None, code: str | None = None) -> bytes:
    return error_body(message, "invalid_request_error", param, code)


class BatchRoutes:
    """``/files`` and ``/batches``: uploads, file objects and contents, batches."""

    def __init__(
        self,
        handler: Front,
        options: ServerOptions,
        batch_options: BatchOptions,
        ledger: Ledger,
        url: Callable[[], str],
    ) -> None:
        self._handler = handler
        self._options = options
        self._ledger = ledger
        self._url = url
        clock = options.clock.now
        epoch = time.time() - clock()
        self._id_prefix = os.urandom(12).hex()
        self.files = FileStore(self._id_prefix, lambda: epoch + clock())
        self.batches = BatchStore(batch_options, self.files, clock, epoch)
        self._batch_numbers = itertools.count(1)
        self._line_numbers: Iterator[int] = itertools.count(1)

    def add_routes(self, router: web.UrlDispatcher) -> None:
        for prefix in _PREFIXES:
            router.add_post(f"{prefix}/files", self._guard(self.upload))
            router.add_get(f"{prefix}/files", self._guard(self.list_files))
            router.add_get(f"{prefix}/files/{{file_id}}", self._guard(self.file))
            router.add_delete(f"{prefix}/files/{{file_id}}", self._guard(self.delete_file))
            router.add_get(f"{prefix}/files/{{file_id}}/content", self._guard(self.content))
            router.add_post(f"{prefix}/batches", self._guard(self.create))
            router.add_get(f"{prefix}/batches", self._guard(self.list_batches))
            router.add_get(f"{prefix}/batches/{{batch_id}}", self._guard(self.batch))
            router.add_post(f"{prefix}/batches/{{batch_id}}/cancel", self._guard(self.cancel))

    def _guard(self, route: Callable[[_Call], Awaitable[web.Response]]) -> _Route:
        """Authenticate, count the arrival, then run ``route`` with the request id."""

        async def guarded(request: web.Request) -> web.Response:
            _, request_id = self._handler._next_ids()
            key, refusal = self._handler._authenticate(request)
            kind = "files" if "/files" in request.path else "batches"
            self._ledger.arrival(key, kind)
            if refusal is not None:
                return self._handler._refuse(refusal, key, request_id)
            return await route(_Call(request, request_id, key))

        return guarded

    def _send(self, call: _Call, status: int, body: bytes) -> web.Response:
        state = self._handler.limits.state(call.key)
        return self._handler._respond(status, body, call.request_id, state)

    def _json(self, call: _Call, value: Any) -> web.Response:
        return self._send(call, 200, _json.dumps(value))

    def _owner(self, call: _Call) -> str:
        """The organization of the call's key: it sees only its own files and batches."""
        return self._handler.limits.state(call.key).organization

    def _not_found(self, call: _Call, what: str, ident: str) -> web.Response:
        body = error_body(f"No such {what}: '{ident}'", "invalid_request_error", "id", None)
        return self._send(call, 404, body)

    # ---------------------------------------------------------------- files

    async def upload(self, call: _Call) -> web.Response:
        request = call.request
        if not request.content_type.startswith("multipart/"):
            body = _invalid("Expected a multipart/form-data upload with 'file' and 'purpose'.")
            return self._send(call, 400, body)
        fields: dict[str, str] = {}
        content: bytes | None = None
        filename = "upload.jsonl"
        reader = await request.multipart()
        while (part := await reader.next()) is not None:
            if not isinstance(part, BodyPartReader):
                continue
            if part.name == "file":
                filename = part.filename or filename
                content = bytes(await part.read())
            elif part.name:
                fields[part.name] = await part.text()
        purpose = fields.get("purpose")
        problem = None
        if content is None:
            problem = _invalid("Missing required parameter: 'file'.", "file")
        elif purpose not in UPLOAD_PURPOSES:
            problem = _invalid(f"Invalid value for 'purpose': {purpose!r}.", "purpose")
        if problem is not None:
            return self._send(call, 400, problem)
        assert content is not None
        assert purpose is not None
        seconds = fields.get("expires_after[seconds]")
        expires = int(seconds) if seconds is not None and seconds.isdigit() else None
        stored = self.files.add(filename, purpose, content, expires, self._owner(call))
        return self._json(call, stored.describe())

    async def list_files(self, call: _Call) -> web.Response:
        request = call.request
        purpose = request.query.get("purpose")
        data = [stored.describe() for stored in self.files.listing(purpose, self._owner(call))]
        return self._json(call, {"object": "list", "data": data, "has_more": False})

    async def file(self, call: _Call) -> web.Response:
        request = call.request
        stored = self.files.get(request.match_info["file_id"], self._owner(call))
        if stored is None:
            return self._not_found(call, "File", request.match_info["file_id"])
        return self._json(call, stored.describe())

    async def delete_file(self, call: _Call) -> web.Response:
        request = call.request
        file_id = request.match_info["file_id"]
        if not self.files.delete(file_id, self._owner(call)):
            return self._not_found(call, "File", file_id)
        return self._json(call, {"id": file_id, "object": "file", "deleted": True})

    async def content(self, call: _Call) -> web.Response:
        request = call.request
        stored = self.files.get(request.match_info["file_id"], self._owner(call))
        if stored is None:
            return self._not_found(call, "File", request.match_info["file_id"])
        state = self._handler.limits.state(call.key)
        headers = self._handler._headers(call.request_id, state, "application/octet-stream")
        self._ledger.status(200)
        return web.Response(body=stored.content, headers=headers)

    # ---------------------------------------------------------------- batches

    async def create(self, call: _Call) -> web.Response:
        request = call.request
        try:
            params = _json.loads(await request.read())
        except (ValueError, RecursionError):
            params = None
        problem = self._check_create(params, self._owner(call))
        if problem is not None:
            status, body = problem
            return self._send(call, status, body)
        assert isinstance(params, dict)
        number = next(self._batch_numbers)
        batch = Batch(
            id=f"batch_{self._id_prefix[:16]}{number:08x}",
            input_file_id=params["input_file_id"],
            endpoint=params["endpoint"],
            completion_window=params["completion_window"],
            metadata=params.get("metadata"),
            created=self._options.clock.now(),
            answerer=self._answerer(params["endpoint"]),
            rng=random.Random(f"{self._options.seed}:{number}"),
            owner=self._owner(call),
        )
        self.batches.add(batch)
        return self._json(call, self.batches.describe(batch))

    def _answerer(self, endpoint: str) -> LineAnswerer:
        found = batch_endpoint(endpoint)
        assert found is not None  # checked by _check_create
        return LineAnswerer(
            found,
            id_prefix=self._id_prefix,
            url=self._url(),
            ledger=self._ledger,
            embedding_dimensions=self._options.embedding_dimensions,
            sequence=self._line_numbers,
        )

    def _check_create(self, params: object, owner: str) -> tuple[int, bytes] | None:
        if not isinstance(params, dict):
            return 400, _invalid("Expected a JSON object body.")
        for name in ("input_file_id", "endpoint", "completion_window"):
            if not isinstance(params.get(name), str):
                return 400, _invalid(f"Missing required parameter: '{name}'.", name)
        if batch_endpoint(params["endpoint"]) is None:
            return 400, _invalid(
                f"Invalid value for 'endpoint': {params['endpoint']!r}.", "endpoint"
            )
        if params["completion_window"] != "24h":
            message = "Invalid value for 'completion_window': only '24h' is supported."
            return 400, _invalid(message, "completion_window")
        metadata = params.get("metadata")
        if metadata is not None and not _valid_metadata(metadata):
            message = (
                "Invalid 'metadata': at most 16 pairs of strings, keys of at most 64 "
                "characters, values of at most 512."
            )
            return 400, _invalid(message, "metadata")
        stored = self.files.get(params["input_file_id"], owner)
        if stored is None:
            body = error_body(
                f"No such File object: '{params['input_file_id']}'",
                "invalid_request_error",
                "input_file_id",
            )
            return 404, body
        if stored.purpose != "batch":
            message = f"The file's purpose is '{stored.purpose}'; a batch needs purpose 'batch'."
            return 400, _invalid(message, "input_file_id")
        return None

    async def list_batches(self, call: _Call) -> web.Response:
        request = call.request
        try:
            limit = int(request.query.get("limit", "20"))
        except ValueError:
            limit = 0
        if not 1 <= limit <= 100:
            body = _invalid("Invalid 'limit': expected an integer from 1 to 100.", "limit")
            return self._send(call, 400, body)
        batches = self.batches.all(self._owner(call))
        after = request.query.get("after")
        if after is not None:
            ids = [batch.id for batch in batches]
            batches = batches[ids.index(after) + 1 :] if after in ids else []
        page = batches[:limit]
        data = [self.batches.describe(batch) for batch in page]
        listing = {
            "object": "list",
            "data": data,
            "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None,
            "has_more": len(batches) > limit,
        }
        return self._json(call, listing)

    async def batch(self, call: _Call) -> web.Response:
        request = call.request
        batch = self.batches.get(request.match_info["batch_id"], self._owner(call))
        if batch is None:
            return self._not_found(call, "Batch", request.match_info["batch_id"])
        return self._json(call, self.batches.describe(batch))

    async def cancel(self, call: _Call) -> web.Response:
        request = call.request
        batch_id = request.match_info["batch_id"]
        outcome = self.batches.cancel(batch_id, self._owner(call))
        if outcome is None:
            return self._not_found(call, "Batch", batch_id)
        if isinstance(outcome, str):
            message = f"Cannot cancel a batch with status '{outcome}'."
            return self._send(call, 409, _invalid(message))
        return self._json(call, self.batches.describe(outcome))


def _valid_metadata(metadata: object) -> bool:
    if not isinstance(metadata, dict) or len(metadata) > _METADATA_PAIRS:
        return False
    return all(
        isinstance(key, str) and isinstance(value, str) and len(key) <= 64 and len(value) <= 512
        for key, value in metadata.items()
    )
