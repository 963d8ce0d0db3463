"""The one exception tree of openai-multi-client.

Every error the library raises, or attaches to a failed :class:`Result`, derives from
:class:`OpenAIMultiClientError`. Errors from aiohttp, asyncio and user code are translated into
this tree at one boundary each (the transport, the engine), so callers never need to know
which HTTP library is underneath.

::

    OpenAIMultiClientError
    ├── ConfigurationError (also ValueError)       bad argument or setting, raised at once
    │   ├── EndpointRemovedError                    edits, fine-tunes: says what replaced them
    │   └── JournalError                            omc run: journal in use or made for other input
    ├── ClientClosedError                           request() after close()
    │   └── PortalClosedError                       (internal) the sync face's loop has stopped
    ├── SharedLimitsError                           the shared-limits backend (Redis) failed
    ├── OutputFileError                             omc run: an output file cannot be written
    ├── CallbackError                               a user callback raised; carries .result
    ├── BatchFailedError                            a Batch API batch was refused: .problems
    └── RequestError                                why one request failed (on Result.error)
        ├── TransportError                          no HTTP response
        │   ├── ConnectError
        │   ├── RequestTimeoutError                 connect or total timeout
        │   └── ConnectionClosedError               reset or cut off mid-response
        │       └── StreamInterruptedError          a stream that stopped before its end
        ├── InvalidResponseError                    a response we cannot parse
        │   └── ResponseTooLargeError               over max_response_bytes: not retried
        ├── APIStatusError                          an HTTP error status, with OpenAI's error body
        │   ├── RedirectError                   3xx: never followed; names the target origin
        │   ├── BadRequestError                 400
        │   ├── AuthenticationError             401
        │   ├── PermissionDeniedError           403
        │   ├── NotFoundError                   404
        │   ├── RequestTimeoutStatusError       408
        │   ├── ConflictError                   409
        │   ├── UnprocessableEntityError        422
        │   ├── RateLimitError                  429 rate_limit_exceeded
        │   │   └── InsufficientQuotaError      429 insufficient_quota (billing: key is done)
        │   └── InternalServerError             5xx
        ├── CustomAPIError                          the custom_api callable raised
        ├── RequestTooLargeError                    more tokens than any key allows a minute
        ├── BatchLineError                          a batch ended before running the line
        ├── NoUsableKeyError                        every key was retired for this run
        ├── ModelRefusedError                       every key was refused the request's model
        └── AbandonedRequestError                   stopped before it had an outcome
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any


class OpenAIMultiClientError(Exception):
    """Base class of every error raised by openai-multi-client."""


class ConfigurationError(OpenAIMultiClientError, ValueError):
    """An argument or setting is invalid. The message names it and says what would be valid."""


class EndpointRemovedError(ConfigurationError):
    """The endpoint existed in the seed library but OpenAI removed it; the message names the
    replacement."""


class JournalError(ConfigurationError):
    """``omc run``'s journal cannot be used: locked by another process, or made for other input
    or options (the message names the journal and says how to go on)."""


class ClientClosedError(OpenAIMultiClientError):
    """A request was submitted after ``close()``."""


class PortalClosedError(ClientClosedError):
    """The loop thread behind a sync client has stopped (the client was shut down). Internal:
    the sync faces turn it into a plain :class:`ClientClosedError` with a message."""


class SharedLimitsError(OpenAIMultiClientError):
    """The backend that shares the keys' limits among processes (Redis) cannot be reached or
    failed, and the client was told to fail rather than fall back to local limits."""


class OutputFileError(OpenAIMultiClientError):
    """An output file of ``omc run`` cannot be written (disk full, quota, I/O error). The results
    are in the journal already; a rerun rewrites the file from it."""


class CallbackError(OpenAIMultiClientError):
    """A user callback raised. The original exception is ``__cause__``; the result the callback
    was given is kept in :attr:`result`, so nothing already done is lost."""

    def __init__(self, message: str, result: Any) -> None:
        super().__init__(message)
        self.result = result


class BatchFailedError(OpenAIMultiClientError):
    """A batch of the Batch API failed validation: ``problems`` lists OpenAI's ``errors.data``
    (code, line, message), and the message names the first code and the input line at fault."""

    def __init__(self, message: str, *, batch_id: str, problems: tuple[Any, ...] = ()) -> None:
        super().__init__(message)
        self.batch_id = batch_id
        self.problems = problems


class RequestError(OpenAIMultiClientError):
    """Why a request failed. Found on ``Result.error``; never raised out of iteration."""


class TransportError(RequestError):
    """The request got no complete HTTP response."""


class ConnectError(TransportError):
    """The connection to the server could not be made."""


class RequestTimeoutError(TransportError):
    """The request did not complete within its timeout."""


class ConnectionClosedError(TransportError):
    """The connection was reset or closed before the whole response arrived."""


class StreamInterruptedError(ConnectionClosedError):
    """A streamed response (``stream: true``) stopped before its end: the connection dropped
    mid-stream, or the body ended without its final event (``data: [DONE]`` and a
    ``finish_reason`` for every choice; for the Responses API, ``response.completed``). Retried
    like any dropped connection; chunks of the failed attempt may already have reached
    ``on_chunk``."""


class InvalidResponseError(RequestError):
    """The server answered with a body that could not be parsed as the expected JSON."""


class ResponseTooLargeError(InvalidResponseError):
    """The response's body was larger than the client's ``max_response_bytes`` (``omc run
    --max-response-bytes``): reading stopped there and nothing of it was kept, so a runaway
    answer cannot exhaust memory. Not retried (the same request would get the same answer);
    raise the cap if such answers are expected."""

    max_response_bytes: int = 0


class CustomAPIError(RequestError):
    """The ``custom_api`` callable raised; the original exception is ``__cause__``."""


class NoUsableKeyError(RequestError):
    """Every API key of the client was retired during this run (invalid, forbidden or out of
    quota), so no request can be sent. Add a working key and run again."""


class ModelRefusedError(RequestError):
    """Every usable key was refused the request's model (a 401/403 for that model that did not
    show the key itself dead, as a proxy answers when one model's upstream key is dead). Only
    that model's requests fail, none sent again; the keys stay in use for the others.
    :attr:`model` is that model; :attr:`refusals` maps each redacted key id to the server's
    words."""

    model: str | None = None
    refusals: Mapping[str, str] = MappingProxyType({})


class AbandonedRequestError(RequestError):
    """The run was stopped (:meth:`AsyncMultiClient.abandon_unsent`) before this request was
    sent, or while it waited to be retried; it has no outcome and may be sent again later."""


class BatchLineError(RequestError):
    """A Batch API line that got no HTTP answer: its batch expired (``batch_expired``), was
    cancelled (``batch_cancelled``) or timed out (``request_timeout``) first. ``code`` is
    the Batch API's error code."""

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code


class RequestTooLargeError(RequestError):
    """The request would be charged more tokens than any key's tokens-per-minute limit, so it
    could never be admitted; it fails at once instead of waiting forever."""


class APIStatusError(RequestError):
    """The server answered with an HTTP error status.

    ``body`` is the parsed JSON body when there was one; ``code``, ``type`` and ``param`` come
    from OpenAI's error object ``{"error": {"message", "type", "param", "code"}}``.
    """

    status_code: int

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        body: object = None,
        headers: Mapping[str, str] | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.body = body
        self.headers: Mapping[str, str] = headers or {}
        self.request_id = request_id
        error = body.get("error") if isinstance(body, dict) else None
        details: dict[str, Any] = error if isinstance(error, dict) else {}
        self.code: str | None = _str_or_none(details.get("code"))
        self.type: str | None = _str_or_none(details.get("type"))
        self.param: str | None = _str_or_none(details.get("param"))


class RedirectError(APIStatusError):
    """3xx: the server redirected the request. Redirects are never followed, so the API key is
    never sent to another address. ``location`` is the ``Location`` header as sent, resolved
    against the request's URL (``None`` without one); ``target_origin`` its scheme, host and
    port (no user info, path or query); ``same_origin`` whether that is the request's origin.
    Not retried: set ``base_url`` to the final address instead."""

    location: str | None = None
    target_origin: str | None = None
    same_origin: bool = False


class BadRequestError(APIStatusError):
    """400: the request is malformed; retrying will not help."""


class AuthenticationError(APIStatusError):
    """401: the key is invalid or revoked."""


class PermissionDeniedError(APIStatusError):
    """403: the key may not use this resource."""


class NotFoundError(APIStatusError):
    """404: no such endpoint or model."""


class RequestTimeoutStatusError(APIStatusError):
    """408: the server timed out waiting for the request."""


class ConflictError(APIStatusError):
    """409: a conflicting operation was in progress."""


class UnprocessableEntityError(APIStatusError):
    """422: the request was well formed but cannot be processed."""


class RateLimitError(APIStatusError):
    """429 ``rate_limit_exceeded``: the key is over its requests or tokens per minute."""


class InsufficientQuotaError(RateLimitError):
    """429 ``insufficient_quota``: the key's account has no quota left. It will not work again
    until billing changes, so the key is retired for the run. A proxy's exceeded budget
    (LiteLLM's ``budget_exceeded``, a 400, 422 or 429) is one too."""


class InternalServerError(APIStatusError):
    """5xx: the server failed."""


_STATUS_ERRORS: dict[int, type[APIStatusError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    408: RequestTimeoutStatusError,
    409: ConflictError,
    422: UnprocessableEntityError,
    429: RateLimitError,
}


def status_error(
    status_code: int,
    body: object,
    headers: Mapping[str, str] | None = None,
    request_id: str | None = None,
) -> APIStatusError:
    """Build the right :class:`APIStatusError` subclass for an HTTP error response."""
    error = body.get("error") if isinstance(body, dict) else None
    code = error.get("code") if isinstance(error, dict) else None
    message = error.get("message") if isinstance(error, dict) else None
    cls: type[APIStatusError]
    quota = status_code == 429 and _is_quota_exhausted(error)
    if quota or (status_code in _BUDGET_STATUSES and _is_budget_exceeded(error)):
        cls = InsufficientQuotaError
    elif status_code >= 500:
        cls = InternalServerError
    else:
        cls = _STATUS_ERRORS.get(status_code, APIStatusError)
    text = f"HTTP {status_code}"
    if isinstance(code, str) and code:
        text += f" ({code})"
    if isinstance(message, str) and message:
        text += f": {message}"
    return cls(text, status_code=status_code, body=body, headers=headers, request_id=request_id)


# OpenAI's words for an account without quota. Proxies pass them on in their own shapes:
# LiteLLM 1.106 answers ``{"code": "429", "type": "throttling_error", "message": "litellm.
# RateLimitError: ... You exceeded your current quota, please check your plan and billing
# details..."}``, so the code and the type say "rate limit" and only the message says "quota".
_QUOTA_WORDS = ("insufficient_quota", "exceeded your current quota")


def _is_quota_exhausted(error: object) -> bool:
    """Whether a 429's error object says the account has no quota left (and not that it is
    over its rate): ``insufficient_quota`` as the code or the type, or OpenAI's quota message
    anywhere in the message, as proxies forward it."""
    if not isinstance(error, dict):
        return False
    if "insufficient_quota" in (error.get("code"), error.get("type")):
        return True
    message = error.get("message")
    if not isinstance(message, str):
        return False
    text = message.lower()
    return any(words in text for words in _QUOTA_WORDS)


# A LiteLLM proxy's key, user or team over its budget: ``{"type": "budget_exceeded", "code":
# "<status>", "message": "Budget has been exceeded! Current cost: ..., Max budget: ..."}``,
# sent as 422 by LiteLLM 1.106 (``budget_exceeded_status_code``), 400 by older ones, 429 when
# configured so. Like an exhausted quota, it lasts until someone raises the budget.
_BUDGET_STATUSES = frozenset({400, 422, 429})
_BUDGET_CODE = "budget_exceeded"
_BUDGET_MESSAGE = "budget has been exceeded"


def _is_budget_exceeded(error: object) -> bool:
    """Whether an error object is a proxy's exceeded budget: the type or code
    ``budget_exceeded``, or LiteLLM's message."""
    if not isinstance(error, dict):
        return False
    if _BUDGET_CODE in (error.get("code"), error.get("type")):
        return True
    message = error.get("message")
    return isinstance(message, str) and message.lower().startswith(_BUDGET_MESSAGE)


def _str_or_none(value: object) -> str | None:
    return value if isinstance(value, str) else None
