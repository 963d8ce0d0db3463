"""Requests and results: the endpoint table, template merging, and the two records that flow
through the engine."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeAlias

from ._errors import ConfigurationError, EndpointRemovedError, RequestError
from ._retry import RetryPolicy

# Seed and friendly names -> path below the base URL (which ends in /v1 for OpenAI).
ENDPOINTS: Mapping[str, str] = {
    "completions": "completions",
    "chats": "chat/completions",
    "chat.completions": "chat/completions",
    "chat/completions": "chat/completions",
    "embeddings": "embeddings",
    "images": "images/generations",
    "images.generations": "images/generations",
    "moderations": "moderations",
    "responses": "responses",
}

REMOVED_ENDPOINTS: Mapping[str, str] = {
    "edits": "OpenAI removed the edits endpoint; use endpoint='chats' (/v1/chat/completions) "
    "with an instruction in the messages instead",
    "fine-tunes": "OpenAI replaced fine-tunes with /v1/fine_tuning/jobs, which starts a job "
    "rather than answering a request, so it is not a bulk endpoint; create jobs with the "
    "official openai package",
}


def resolve_endpoint(endpoint: object, argument: str = "endpoint") -> str:
    """The path (relative to the base URL, no leading slash) for an endpoint name or raw path.

    Raw paths start with ``/``; a leading ``/v1/`` is dropped because the base URL carries the
    version (``https://api.openai.com/v1``). Absolute URLs are refused: the API key would be sent
    to whatever host they name.
    """
    if not isinstance(endpoint, str) or not endpoint:
        raise ConfigurationError(
            f"{argument} must be an endpoint name such as 'chats' or a path such as "
            f"'/v1/chat/completions', got {endpoint!r}"
        )
    path = ENDPOINTS.get(endpoint)
    if path is not None:
        return path
    removed = REMOVED_ENDPOINTS.get(endpoint)
    if removed is not None:
        raise EndpointRemovedError(f"{argument}={endpoint!r}: {removed}")
    if "://" in endpoint or endpoint.startswith("//"):
        raise ConfigurationError(
            f"{argument}={endpoint!r} is an absolute URL; give a path such as "
            "'/v1/chat/completions' and set base_url for the host, so the API key is only ever "
            "sent to the host you configured"
        )
    if endpoint.startswith("/"):
        relative = endpoint.lstrip("/")
        if relative.startswith("v1/"):
            relative = relative[3:]
        if not relative or any(part in ("", ".", "..") for part in relative.split("/")):
            raise ConfigurationError(f"{argument}={endpoint!r} is not a usable path")
        return relative
    names = ", ".join(repr(name) for name in ENDPOINTS)
    raise ConfigurationError(
        f"unknown {argument} {endpoint!r}: use one of {names}, or a raw path starting with '/'"
    )


def merge_template(
    template: Mapping[str, Any] | None, values: object, argument: str
) -> dict[str, Any]:
    """A new dict: the template's items overridden by ``values`` (a shallow merge, as the seed
    did)."""
    if values is None:
        values = {}
    if not isinstance(values, Mapping):
        raise ConfigurationError(f"{argument} must be a dict, got {type(values).__name__}")
    if template:
        return {**template, **values}
    return dict(values)


Callback: TypeAlias = Callable[["Result"], object]
#: ``on_chunk(chunk, request)``: called with each chunk of a streamed request (see ``_stream``).
ChunkCallback: TypeAlias = Callable[[dict[str, Any], "Request"], object]


@dataclass(slots=True, eq=False)
class Request:
    """One request as the engine carries it. ``custom_api`` receives this object.

    ``index`` is the submission number (0, 1, 2, ...); ``attempt`` the number of the attempt
    under way (1 for the first); ``key`` the redacted id of the key used for it. A streamed
    request's ``on_chunk`` receives this object with each chunk: ``attempt`` and ``key`` say
    which attempt the chunk belongs to (when either changes, the stream restarted).
    """

    index: int
    endpoint: str | None  # None: a custom_api client without an endpoint (as in the seed)
    path: str
    data: dict[str, Any]
    metadata: dict[str, Any]
    callback: Callback | None
    policy: RetryPolicy
    attempt: int = 0
    key: str | None = None
    # Set when the request is built (the engine's build_request), not part of the public
    # surface. Per-attempt bookkeeping lives in the dispatcher's Flight, not here.
    tokens: int = 0
    body: bytes | None = None
    stream: bool = False  # "stream": true (set by the backend's prepare)
    on_chunk: ChunkCallback | None = None
    chunk_error: Exception | None = None  # what on_chunk raised; it is not called again
    first_chunk: Callable[[], object] | None = None  # telemetry: the attempt's first chunk came

    def __repr__(self) -> str:
        return (
            f"Request(index={self.index}, endpoint={self.endpoint!r}, attempt={self.attempt}, "
            f"metadata={self.metadata!r})"
        )


@dataclass(slots=True, eq=False)
class Result:
    """The outcome of one request. Iterating a client yields these.

    ``response`` is the parsed JSON body as a plain dict (``result.response['choices'][0]``);
    on failure it is ``None`` (or the error body, for an HTTP error status), ``failed`` is true
    and ``error`` says why. ``attempt`` is how many attempts were made. ``key`` is the redacted
    id of the key that produced the outcome, never the secret.
    """

    index: int
    endpoint: str | None
    data: dict[str, Any]
    metadata: dict[str, Any]
    response: Any = None
    failed: bool = False
    attempt: int = 0
    error: RequestError | None = None
    status_code: int | None = None
    request_id: str | None = None
    latency: float | None = None
    key: str | None = None
    callback: Callback | None = None
    _chunk_error: Exception | None = field(default=None, repr=False)

    @property
    def usage(self) -> dict[str, Any] | None:
        """The response's ``usage`` object (token counts), when it has one."""
        response = self.response
        if isinstance(response, dict):
            usage = response.get("usage")
            if isinstance(usage, dict):
                return usage
        return None

    def __repr__(self) -> str:
        outcome = f"error={self.error!r}" if self.failed else f"status_code={self.status_code}"
        return (
            f"Result(index={self.index}, endpoint={self.endpoint!r}, failed={self.failed}, "
            f"{outcome}, attempt={self.attempt}, key={self.key!r}, metadata={self.metadata!r})"
        )


class RequestBuilder:
    """The one place a :class:`Request` is made, from a client's templates and retry policy.

    ``prepare`` is the backend's (it encodes the body once and marks a streamed request);
    ``estimate`` counts the tokens the key pool will reserve (``None``: no token limits);
    ``endpoint_needed`` is false for a ``custom_api`` client, which may go without one. After
    :meth:`build`, only the dispatcher writes a request's attempt fields.
    """

    __slots__ = ("_data", "_endpoint", "_endpoint_needed", "_estimate", "_metadata",
                 "_on_chunk", "_paths", "_policies", "_policy", "_prepare")  # fmt: skip

    def __init__(
        self,
        endpoint: str | None,
        data_template: Mapping[str, Any] | None,
        metadata_template: Mapping[str, Any] | None,
        policy: RetryPolicy,
        prepare: Callable[[Request], None],
        estimate: Callable[[Mapping[str, Any]], int] | None,
        on_chunk: ChunkCallback | None,
        endpoint_needed: bool,
    ) -> None:
        self._endpoint = endpoint
        self._data = data_template
        self._metadata = metadata_template
        self._policy = policy
        self._policies: dict[tuple[int, float, float], RetryPolicy] = {}
        self._paths: dict[str, str] = {}  # endpoint name -> resolved path
        self._prepare = prepare
        self._estimate = estimate
        self._on_chunk = on_chunk
        self._endpoint_needed = endpoint_needed

    def build(
        self,
        data: Mapping[str, Any],
        endpoint: str | None,
        metadata: Mapping[str, Any] | None,
        callback: Callback | None,
        max_retries: int | None,
        retry_multiplier: float | None,
        retry_max: float | None,
        on_chunk: ChunkCallback | None,
    ) -> Request:
        """Validate and build one request; ``max_retries``, ``retry_multiplier`` and
        ``retry_max`` override the client's where not ``None``."""
        name = endpoint if endpoint is not None else self._endpoint
        if name is not None:
            path = self._paths.get(name)
            if path is None:
                path = resolve_endpoint(name)
                if len(self._paths) < 64:
                    self._paths[name] = path
        elif not self._endpoint_needed:
            path = ""  # the seed's custom_api needs no endpoint: it gets request.endpoint None
        else:
            raise ConfigurationError(
                "no endpoint: pass endpoint=... to the client or to request(), e.g. 'chats'"
            )
        merged = (
            dict(data)
            if type(data) is dict and not self._data
            else merge_template(self._data, data, "data")
        )
        merged_metadata = (
            {}
            if metadata is None and not self._metadata
            else merge_template(self._metadata, metadata, "metadata")
        )
        if callback is not None and not callable(callback):
            raise ConfigurationError(f"callback must be callable, got {type(callback).__name__}")
        tokens = 0 if self._estimate is None else self._estimate(merged)
        if max_retries is None and retry_multiplier is None and retry_max is None:
            policy = self._policy
        else:
            policy = self._policy_for(max_retries, retry_multiplier, retry_max)
        request = Request(-1, name, path, merged, merged_metadata, callback, policy, tokens=tokens)
        self._prepare(request)
        if on_chunk is not None and not (callable(on_chunk) and request.stream):
            raise ConfigurationError(
                "on_chunk must be callable and is only called for streamed requests: "
                "set data['stream']=True (chat completions, completions or responses)"
            )
        request.on_chunk = on_chunk or self._on_chunk
        return request

    def _policy_for(
        self, max_retries: int | None, multiplier: float | None, maximum: float | None
    ) -> RetryPolicy:
        base = self._policy
        spec = (
            base.max_attempts if max_retries is None else max_retries,
            base.multiplier if multiplier is None else multiplier,
            base.max_delay if maximum is None else maximum,
        )
        policy = self._policies.get(spec)
        if policy is None:
            policy = RetryPolicy(*spec, base.max_server_delay, base.max_paced)
            if len(self._policies) < 64:
                self._policies[spec] = policy
        return policy


#: The seed's name for both the request handed to ``custom_api`` and the result yielded by
#: iteration; kept so that ``from openai_multi_client import Payload`` and annotations using it
#: keep working.
Payload: TypeAlias = Request | Result
