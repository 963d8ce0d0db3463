"""The mock server's request handling, in order: route, authentication, body validation (400),
rate limits (429), latency, fault plan, answer.

Latency and faults apply only to requests that reach the answer stage; error responses are
immediate.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiohttp import web

from ... import _json
from .accounting import Ledger
from .answers import images, models
from .answers.context import Context
from .batch_options import BatchOptions
from .batch_routes import BatchRoutes
from .endpoints import AZURE_ROUTES, MODEL_PREFIXES, OPENAI_ROUTES, Endpoint
from .errors import (
    AZURE_INVALID_KEY_BODY,
    BAD_JSON_BODY,
    NO_KEY_BODY,
    NO_QUOTA_BODY,
    NOT_OBJECT_BODY,
    TOO_DEEP_BODY,
    BadRequest,
    bad_request_body,
    error_body,
    invalid_key_body,
)
from .faults import JSON, FaultPlan, abort, is_answer_fault, status_fault
from .limits import KeyState, RateLimits
from .options import ServerOptions
from .sending import Sender
from .validation import Plan, model_of
from .waits import Waits

_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# A valid request: its body, the model to answer as, and its plan.
_Valid = tuple[dict[str, Any], str, Plan]


class RequestHandler:
    """Answers every route of the mock; its collaborators hold the state (counters, buckets,
    the fault plan, the waits)."""

    def __init__(
        self,
        options: ServerOptions,
        *,
        ledger: Ledger,
        waits: Waits,
        url: Callable[[], str],
        batch_options: BatchOptions | None = None,
    ) -> None:
        self._options = options
        self._ledger = ledger
        self._waits = waits
        self._url = url
        self.limits = RateLimits(options)
        self.plan = FaultPlan(options.faults, options.latency, options.seed)
        self._sender = Sender(ledger, waits, self.plan)
        self._id_prefix = os.urandom(12).hex()
        self._sequence = itertools.count(1)
        self.batch_routes = BatchRoutes(self, options, batch_options or BatchOptions(), ledger, url)

    def add_routes(self, router: web.UrlDispatcher) -> None:
        for suffix, endpoint in OPENAI_ROUTES:
            handler = self._handler(endpoint, azure=False)
            router.add_post(f"/v1/{suffix}", handler)
            router.add_post(f"/openai/v1/{suffix}", handler)  # Azure's newer v1 form
            router.add_post(f"/openai/{suffix}", handler)  # Azure, outside deployments
        for suffix, endpoint in AZURE_ROUTES:
            router.add_post(
                f"/openai/deployments/{{deployment}}/{suffix}", self._handler(endpoint, azure=True)
            )
        for prefix in MODEL_PREFIXES:
            router.add_get(f"{prefix}/models", self.models)
            router.add_get(f"{prefix}/models/{{model}}", self.models)
        router.add_get(images.IMAGE_PATH, self.image_file)
        self.batch_routes.add_routes(router)
        router.add_route("*", "/{tail:.*}", self.not_found)

    def _handler(self, endpoint: Endpoint, *, azure: bool) -> _Handler:
        async def handle(request: web.Request) -> web.StreamResponse:
            deployment = request.match_info["deployment"] if azure else None
            return await self.serve(request, endpoint, deployment)

        return handle

    # ---------------------------------------------------------------- responses

    def _next_ids(self) -> tuple[int, str]:
        sequence = next(self._sequence)
        return sequence, f"req_{self._id_prefix}{sequence:08x}"

    def _headers(
        self, request_id: str, state: KeyState | None, content_type: str = JSON
    ) -> dict[str, str]:
        headers = {"Content-Type": content_type, "x-request-id": request_id}
        if state is not None:
            headers.update(self.limits.headers(state))
        return headers

    def _respond(
        self,
        status: int,
        body: bytes,
        request_id: str,
        state: KeyState | None,
        *,
        extra: Mapping[str, str] | None = None,
        limited: str | None = None,
    ) -> web.Response:
        headers = self._headers(request_id, state)
        if extra:
            headers.update(extra)
        self._ledger.status(status, limited=limited)
        return web.Response(status=status, body=body, headers=headers)

    # ---------------------------------------------------------------- authentication

    def _authenticate(self, request: web.BaseRequest) -> tuple[str, str | None]:
        """(key as presented, None when accepted, else the reason it is not)."""
        headers = request.headers
        authorization = headers.get("Authorization")
        key: str | None = None
        if authorization is not None:
            scheme, _, credentials = authorization.partition(" ")
            if scheme.lower() == "bearer":
                key = credentials.strip()
        # Azure's api-key header: Azure words its refusal of an unknown key in its own way.
        invalid = "invalid"
        if not key:
            key = headers.get("api-key") or None
            invalid = "invalid_azure"
        options = self._options
        if key is None:
            return "", (None if not options.require_key else "missing")
        if key in options.invalid_keys:
            return key, invalid
        if key in options.no_quota_keys:
            return key, "no_quota"
        if options.keys is not None and key not in options.keys:
            return key, invalid
        return key, None

    def _refuse(self, refusal: str, key: str, request_id: str) -> web.Response:
        if refusal == "missing":
            return self._respond(401, NO_KEY_BODY, request_id, None)
        if refusal == "no_quota":
            return self._respond(429, NO_QUOTA_BODY, request_id, self.limits.state(key))
        if refusal == "invalid_azure":
            return self._respond(401, AZURE_INVALID_KEY_BODY, request_id, None)
        return self._respond(401, invalid_key_body(key), request_id, None)

    # ---------------------------------------------------------------- the API endpoints

    async def serve(
        self, request: web.Request, endpoint: Endpoint, deployment: str | None
    ) -> web.StreamResponse:
        sequence, request_id = self._next_ids()
        key, refusal = self._authenticate(request)
        self._ledger.arrival(key, endpoint.name)
        if refusal is not None:
            return self._refuse(refusal, key, request_id)
        state = self.limits.state(key)
        valid = await self._validate(request, endpoint, deployment, request_id, state)
        if isinstance(valid, web.Response):
            return valid
        body, model, plan = valid
        if state.limited:
            refused = self.limits.admit(state, plan.cost, model)
            if refused is not None:
                return self._respond(
                    429,
                    refused.body,
                    request_id,
                    state,
                    extra=refused.headers,
                    limited=refused.kind,
                )
        delay = self.plan.latency()
        if delay > 0 and not await self._waits.pause(delay):
            abort(request)
            return web.Response(status=503)
        streamed = body.get("stream") is True
        fault = self.plan.fault(flex=body.get("service_tier") == "flex")
        if fault == "stream_error" and not streamed:
            return self._status_fault("500", request_id, state, label=fault)
        if fault in ("reset", "hang"):
            return await self._sender.drop(request, fault)
        if fault is not None and not is_answer_fault(fault):
            return self._status_fault(fault, request_id, state)
        context = Context(
            model, plan, sequence, self._id_prefix, self._url(), self._options.embedding_dimensions
        )
        answer = endpoint.build(body, context)
        # Reserved at admission, settled at the answer: unused tokens are given back.
        usage = answer.get("usage")
        used = usage.get("total_tokens") if isinstance(usage, dict) else None
        self.limits.refund(state, plan.cost, used)
        headers = self._headers(request_id, state, "text/event-stream" if streamed else JSON)
        return await self._sender.send(request, body, answer, fault, headers)

    async def _validate(
        self,
        request: web.Request,
        endpoint: Endpoint,
        deployment: str | None,
        request_id: str,
        state: KeyState,
    ) -> _Valid | web.Response:
        """The body, model and plan of a valid request, or the 400 of an invalid one."""
        try:
            body = _json.loads(await request.read())
        except (ValueError, RecursionError):
            return self._respond(400, BAD_JSON_BODY, request_id, state)
        if not isinstance(body, dict):
            return self._respond(400, NOT_OBJECT_BODY, request_id, state)
        try:
            model = deployment if deployment is not None else model_of(body, endpoint.default_model)
            plan = endpoint.check(body)
        except BadRequest as bad:
            return self._respond(400, bad_request_body(bad), request_id, state)
        except RecursionError:
            return self._respond(400, TOO_DEEP_BODY, request_id, state)
        return body, model, plan

    def _status_fault(
        self, kind: str, request_id: str, state: KeyState, label: str | None = None
    ) -> web.Response:
        status, body, content_type = status_fault(kind)
        headers = self._headers(request_id, state, content_type)
        self._ledger.status(status, fault=label or kind)
        return web.Response(status=status, body=body, headers=headers)

    # ---------------------------------------------------------------- other routes

    async def models(self, request: web.Request) -> web.Response:
        """``GET /models`` and ``GET /models/{model}``."""
        _, request_id = self._next_ids()
        key, refusal = self._authenticate(request)
        self._ledger.arrival(key, "models")
        if refusal is not None:
            return self._refuse(refusal, key, request_id)
        body = _json.dumps(models.answer(request.match_info.get("model")))
        return self._respond(200, body, request_id, self.limits.state(key))

    async def image_file(self, request: web.Request) -> web.Response:
        """The image behind every ``url`` the images endpoint returns (not counted in stats)."""
        _, request_id = self._next_ids()
        return web.Response(
            body=images.PNG, headers={"Content-Type": "image/png", "x-request-id": request_id}
        )

    async def not_found(self, request: web.Request) -> web.Response:
        _, request_id = self._next_ids()
        key, refusal = self._authenticate(request)
        self._ledger.arrival(key, "unknown")
        body = error_body(f"Invalid URL ({request.method} {request.path})", "invalid_request_error")
        state = None if refusal else self.limits.state(key)
        return self._respond(404, body, request_id, state)
