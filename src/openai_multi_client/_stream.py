"""Streamed answers (``"stream": true``): from server-sent events to one ordinary response.

A :class:`StreamReader` takes the body of one attempt piece by piece (from the transport, as it
arrives), decodes its events (:mod:`._sse`), hands each parsed chunk to the request's
``on_chunk`` callback and folds it into the response a non-streamed request would have got:

* chat completions: ``chat.completion`` with each choice's message assembled from its deltas
  (``content``, ``refusal`` and other text concatenated, ``tool_calls`` merged by ``index``),
  its ``finish_reason``, choices ordered by ``index``, and the ``usage`` of the final chunk;
* completions: ``text_completion`` with each choice's ``text`` concatenated;
* responses: the ``response`` of the final ``response.completed`` (or ``.incomplete``) event.

A stream is complete after ``data: [DONE]`` with a ``finish_reason`` on every choice (for the
Responses API: its final event). Anything less raises :class:`StreamInterruptedError`; an event
that is not JSON raises :class:`InvalidResponseError`; an error event
(``data: {"error": {...}}``, or the Responses API's ``error`` and ``response.failed``) raises the
:class:`APIStatusError` the matching HTTP status would have.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

from . import _json
from ._errors import (
    APIStatusError,
    CallbackError,
    ConfigurationError,
    InvalidResponseError,
    StreamInterruptedError,
    status_error,
)
from ._redact import Redactor
from ._request import Request, Result
from ._sse import ServerSentEvent, SSEDecoder
from ._transport import response_too_large

_CHAT = "chat"
_COMPLETIONS = "completions"
_RESPONSES = "responses"
# Delta fields whose string values are replaced, not concatenated.
_REPLACED = frozenset({"role", "id", "type", "name", "expires_at", "object"})


def stream_kind(path: str) -> str | None:
    """Which assembler a streamed request to ``path`` needs (``None``: not streamable)."""
    for suffix, kind in (
        ("chat/completions", _CHAT),
        ("completions", _COMPLETIONS),
        ("responses", _RESPONSES),
    ):
        if path == suffix or path.endswith("/" + suffix):
            return kind
    return None


def prepare_stream(request: Request) -> None:
    """Mark a ``"stream": true`` request and ask for usage: unless ``stream_options`` is given
    (``None`` included), chat completions and completions get ``{"include_usage": true}`` so
    the final chunk carries the token counts the key pool settles on."""
    if stream_kind(request.path) is None:
        raise ConfigurationError(
            f"data['stream']=True: only chat completions, completions and responses can be "
            f"streamed, not endpoint {request.endpoint!r}; remove 'stream' to get the answer whole"
        )
    request.stream = True
    if stream_kind(request.path) != _RESPONSES and "stream_options" not in request.data:
        request.data["stream_options"] = {"include_usage": True}


def raise_chunk_error(result: Result) -> None:
    """After a result is handed to the consumer: raise :class:`CallbackError` if its
    ``on_chunk`` callback raised (the result is complete; iteration can go on)."""
    error = result._chunk_error
    if error is not None:
        raise CallbackError(
            f"the on_chunk callback of request {result.index} raised "
            f"{type(error).__name__}: {error}",
            result,
        ) from error


class StreamReader:
    """One attempt's streamed body: ``feed(piece)`` as it arrives, ``finish()`` at its end.

    ``secret`` (the key, as the server might echo it, whole or its start) is replaced by
    ``key_id`` in every event before it is parsed, passed on or quoted in an error.
    ``max_bytes`` caps the whole body (``None``: no cap); beyond it ``feed`` raises
    :class:`ResponseTooLargeError`."""

    __slots__ = (
        "_assembler",
        "_decoder",
        "_done",
        "_error",
        "_kind",
        "_max_bytes",
        "_plain",
        "_redactor",
        "_request",
        "_size",
        "events",
        "started",
    )

    def __init__(
        self, request: Request, secret: str = "", key_id: str = "", max_bytes: int | None = None
    ) -> None:
        self._request = request
        self._max_bytes = max_bytes
        self._size = 0
        self._kind = stream_kind(request.path) or _CHAT
        self._assembler: _ChoicesAssembler | _ResponsesAssembler = (
            _ResponsesAssembler() if self._kind == _RESPONSES else _ChoicesAssembler(self._kind)
        )
        self._decoder = SSEDecoder()
        self._redactor = Redactor(secret, key_id)
        self._done = False
        self._error: dict[str, Any] | None = None
        self._plain: bytearray | None = None  # a server that ignored "stream": a JSON body
        self.started = False  # some of the body arrived
        self.events = 0  # events parsed

    @property
    def done(self) -> bool:
        """Whether the stream's last event arrived (``[DONE]``, or the final response)."""
        return self._done and self._error is None

    def feed(self, piece: bytes) -> None:
        """Take the next piece of the body; raises :class:`InvalidResponseError` on an event
        that is not a JSON object (stop reading: the stream is broken), and
        :class:`ResponseTooLargeError` past ``max_bytes``."""
        self._size += len(piece)
        if self._max_bytes is not None and self._size > self._max_bytes:
            raise response_too_large(self._max_bytes)
        if self._plain is not None:
            self._plain += piece
            return
        if not self.started:
            start = piece.lstrip()[:1]
            self.started = bool(start)
            if start in (b"{", b"["):  # no event starts so: a plain JSON body
                self._plain = bytearray(piece)
                return
        for event in self._decoder.feed(piece):
            self._event(event)

    def finish(self, headers: Mapping[str, str], request_id: str | None) -> dict[str, Any]:
        """The assembled response, once the body has ended; raises what the stream says."""
        if self._plain is not None:
            return self._plain_response(headers, request_id)
        for event in self._decoder.close():
            self._event(event)
        if self._error is not None:
            raise _stream_error(self._error, headers, request_id)
        if self._kind != _RESPONSES and not self._done:
            raise StreamInterruptedError(
                f"the stream ended after {self.events} events without 'data: [DONE]'"
            )
        return self._assembler.result()

    def _event(self, event: ServerSentEvent) -> None:
        if self._done or self._error is not None:
            return  # nothing after the end or an error counts
        data = event.data
        data = self._redactor.in_text(data)
        if data == "[DONE]":
            self._done = True
            return
        try:
            chunk = _json.loads(data)
        except (ValueError, RecursionError):
            chunk = None
        if not isinstance(chunk, dict):
            raise InvalidResponseError(
                f"event {self.events + 1} of the stream is not a JSON object "
                f"({len(data)} characters: {data[:80]!r})"
            )
        self.events += 1
        request = self._request
        if self.events == 1 and request.first_chunk is not None:
            request.first_chunk()
        error = _error_of(chunk, self._kind)
        if error is not None:
            self._error = error
            return
        self._assembler.add(chunk)
        if self._assembler.done:
            self._done = True
        if request.on_chunk is not None and request.chunk_error is None:
            self._deliver(request, chunk)

    def _deliver(self, request: Request, chunk: dict[str, Any]) -> None:
        assert request.on_chunk is not None
        try:
            returned = request.on_chunk(chunk, request)
            if inspect.isawaitable(returned):
                close = getattr(returned, "close", None)
                if close is not None:
                    close()  # a coroutine never awaited would warn
                raise TypeError("on_chunk must be a plain function: it returned an awaitable")
        except Exception as exc:  # kept for the consumer; the stream goes on
            request.chunk_error = exc

    def _plain_response(self, headers: Mapping[str, str], request_id: str | None) -> dict[str, Any]:
        content = bytes(self._plain or b"")
        content = self._redactor.in_bytes(content)
        try:
            body = _json.loads(content)
        except (ValueError, RecursionError):
            raise InvalidResponseError(
                f"a streamed request got a body that is neither events nor JSON "
                f"({len(content)} bytes: {content[:80]!r})"
            ) from None
        if not isinstance(body, dict):
            raise InvalidResponseError(f"a JSON body that is not an object: {type(body).__name__}")
        error = body.get("error")
        if isinstance(error, dict):
            raise _stream_error(error, headers, request_id)
        return body


def _error_of(chunk: dict[str, Any], kind: str) -> dict[str, Any] | None:
    """OpenAI's error object when ``chunk`` reports an error, else ``None``."""
    if kind == _RESPONSES:
        event = chunk.get("type")
        if event == "error":
            return {key: chunk.get(key) for key in ("message", "type", "code", "param")}
        if event == "response.failed":
            response = chunk.get("response")
            error = response.get("error") if isinstance(response, dict) else None
            return error if isinstance(error, dict) else {"message": "response.failed"}
        return None
    error = chunk.get("error")
    if error is None:
        return None
    return error if isinstance(error, dict) else {"message": str(error)}


def _error_status(error: Mapping[str, Any]) -> int:
    """The HTTP status an error object would have come with."""
    code, kind = error.get("code"), error.get("type")
    if isinstance(code, int) and not isinstance(code, bool) and 400 <= code <= 599:
        return code  # vLLM and others put the status here
    if code in ("insufficient_quota", "rate_limit_exceeded") or kind in (
        "insufficient_quota",
        "rate_limit_error",
        "requests",
        "tokens",
    ):
        return 429
    if code == "invalid_api_key" or kind == "authentication_error":
        return 401
    if kind == "invalid_request_error":
        return 400
    return 500


def _stream_error(
    error: dict[str, Any], headers: Mapping[str, str], request_id: str | None
) -> APIStatusError:
    exc = status_error(_error_status(error), {"error": error}, headers, request_id)
    exc.args = (f"the stream carried an error event, classified as {exc}",)
    return exc


# ------------------------------------------------------------------------------ assembly


class _ChoicesAssembler:
    """``chat.completion.chunk``s into a ``chat.completion``, or completions chunks into a
    ``text_completion``."""

    __slots__ = ("_chat", "_choices", "_head", "_usage", "done")

    def __init__(self, kind: str) -> None:
        self._chat = kind == _CHAT
        self._head: dict[str, Any] = {}
        self._choices: dict[int, dict[str, Any]] = {}
        self._usage: Any = None
        self.done = False  # only [DONE] ends these streams

    def add(self, chunk: dict[str, Any]) -> None:
        head = self._head
        for key, value in chunk.items():
            if key == "choices":
                if isinstance(value, list):
                    for choice in value:
                        if isinstance(choice, dict):
                            self._add_choice(choice)
            elif key == "usage":
                if value is not None:
                    self._usage = value
            elif key not in ("object", "obfuscation") and (value is not None or key not in head):
                head[key] = value

    def _add_choice(self, delta: dict[str, Any]) -> None:
        index = delta.get("index", 0)
        index = index if isinstance(index, int) else 0
        choice = self._choices.get(index)
        if choice is None:
            if self._chat:
                choice = {
                    "index": index,
                    "message": {"role": "assistant", "content": None, "refusal": None},
                    "logprobs": None,
                    "finish_reason": None,
                }
            else:
                choice = {"text": "", "index": index, "logprobs": None, "finish_reason": None}
            self._choices[index] = choice
        for key, value in delta.items():
            if value is None or key == "index":
                continue
            if key == "delta" and self._chat and isinstance(value, dict):
                _merge(choice["message"], value)
            elif key == "text" and isinstance(value, str):
                choice["text"] += value
            elif key == "logprobs" and isinstance(value, dict):
                if choice["logprobs"] is None:
                    choice["logprobs"] = {}
                _merge(choice["logprobs"], value)
            elif key != "delta":
                choice[key] = value  # finish_reason, and extras such as vLLM's stop_reason

    def result(self) -> dict[str, Any]:
        unfinished = [i for i, c in self._choices.items() if c.get("finish_reason") is None]
        if not self._choices or unfinished:
            what = f"choice {unfinished[0]} has" if unfinished else "no choice has"
            raise StreamInterruptedError(f"the stream ended but {what} no finish_reason")
        choices = [self._choices[index] for index in sorted(self._choices)]
        if self._chat:
            for choice in choices:
                calls = choice["message"].get("tool_calls")
                if isinstance(calls, list):
                    for call in calls:
                        call.pop("index", None)
        head = dict(self._head)
        response: dict[str, Any] = {
            "id": head.pop("id", None),
            "object": "chat.completion" if self._chat else "text_completion",
        }
        response.update(head)
        response["choices"] = choices
        response["usage"] = self._usage
        return response


class _ResponsesAssembler:
    """The Responses API's events: the final event carries the whole response."""

    __slots__ = ("_response", "done")

    def __init__(self) -> None:
        self._response: dict[str, Any] | None = None
        self.done = False

    def add(self, event: dict[str, Any]) -> None:
        if event.get("type") in ("response.completed", "response.incomplete"):
            response = event.get("response")
            if isinstance(response, dict):
                self._response = response
                self.done = True

    def result(self) -> dict[str, Any]:
        if self._response is None:
            raise StreamInterruptedError(
                "the stream ended without a response.completed or response.incomplete event"
            )
        return self._response


def _merge(target: dict[str, Any], delta: Mapping[str, Any]) -> None:
    """Fold a delta into ``target``: text concatenated, objects merged, lists extended,
    ``tool_calls`` merged by ``index``; identifiers and other values replaced. Containers are
    copied, never shared with the chunk (which the ``on_chunk`` callback holds)."""
    for key, value in delta.items():
        old = target.get(key)
        if value is None:
            target.setdefault(key, None)
        elif key == "tool_calls" and isinstance(value, list):
            _merge_tool_calls(target, value)
        elif isinstance(value, str):
            target[key] = old + value if isinstance(old, str) and key not in _REPLACED else value
        elif isinstance(value, dict):
            if not isinstance(old, dict):
                old = target[key] = {}
            _merge(old, value)
        elif isinstance(value, list):
            if isinstance(old, list):
                old.extend(value)
            else:
                target[key] = list(value)
        else:
            target[key] = value


def _merge_tool_calls(message: dict[str, Any], deltas: list[Any]) -> None:
    calls = message.get("tool_calls")
    if not isinstance(calls, list):
        calls = message["tool_calls"] = []
    for delta in deltas:
        if not isinstance(delta, dict):
            continue
        index = delta.get("index")
        call = next((c for c in calls if index is not None and c.get("index") == index), None)
        if call is None:
            call = {"index": index if index is not None else len(calls)}
            calls.append(call)
        _merge(call, {key: value for key, value in delta.items() if key != "index"})
