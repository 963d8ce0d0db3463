"""The public surface is deliberate: adding or removing a name must be done here too."""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any

import pytest

import openai_multi_client
import openai_multi_client.testing
from openai_multi_client import AsyncMultiClient, OpenAIMultiClient, OpenAIMultiOrderedClient
from openai_multi_client._options import (
    SEED_POSITIONAL,
    ClientKeywords,
    ClientOptions,
    RunKeywords,
    SyncKeywords,
)

PUBLIC = {
    "ENDPOINTS", "APIStatusError", "AiohttpTransport", "AsyncMultiClient", "AuthenticationError",
    "BadRequestError", "CallbackError", "ClientClosedError", "Clock", "ConfigurationError",
    "ConflictError", "ConnectError", "ConnectionClosedError", "CustomAPIError",
    "EndpointRemovedError", "HTTPRequest", "HTTPResponse", "InsufficientQuotaError",
    "InternalServerError", "InvalidResponseError", "Key", "LoopClock", "ModelRefusedError",
    "NoUsableKeyError",
    "NotFoundError", "OpenAIMultiClient", "OpenAIMultiClientError", "OpenAIMultiOrderedClient",
    "Payload", "PermissionDeniedError", "RateLimitError", "Request", "RequestError",
    "RequestTimeoutError", "RequestTimeoutStatusError", "Result", "RetryBudget", "RetryPolicy",
    "Statistics", "Timeout", "Transport", "TransportError", "UnprocessableEntityError",
    "__version__", "arun_requests", "run_requests", "RequestTooLargeError", "KeyPool",
    "KeyStatistics", "PoolStatistics", "CharacterEstimator", "TokenEstimator", "KeyManager",
    "stable", "AbandonedRequestError", "Grant", "InMemoryLimits", "LimitsBackend", "RedisLimits",
    "SharedLimitsError", "SharedLimitsStatistics", "KeyUsage",
    "StreamInterruptedError", "ChunkCallback", "RedirectError",
    "ResponseTooLargeError",
    "AsyncBatchClient", "BatchClient", "BatchJob", "SyncBatchJob", "BatchResult", "BatchInfo",
    "BatchFailedError", "BatchLineError",
}  # fmt: skip

TESTING = {
    "FakeClock", "Faults", "KeyLimits", "MockOpenAIServer", "MockTransport", "error_response",
    "json_response", "RedisServer", "RedisServerError",
    "sse_response",
    "BatchOptions",
}  # fmt: skip


def test_public_names_do_not_drift() -> None:
    assert set(openai_multi_client.__all__) == PUBLIC
    assert len(openai_multi_client.__all__) == len(PUBLIC)  # no duplicates
    for name in PUBLIC:
        assert getattr(openai_multi_client, name) is not None


def test_testing_names_do_not_drift() -> None:
    assert set(openai_multi_client.testing.__all__) == TESTING
    for name in TESTING:
        assert getattr(openai_multi_client.testing, name) is not None


def test_every_error_derives_from_the_one_base() -> None:
    for name in PUBLIC:
        value = getattr(openai_multi_client, name)
        if inspect.isclass(value) and issubclass(value, BaseException):
            assert issubclass(value, openai_multi_client.OpenAIMultiClientError), name


def test_seed_signatures_are_kept() -> None:
    expected = [
        ("concurrency", 10),
        ("max_retries", 10),
        ("wait_interval", 0),
        ("retry_multiplier", 1),
        ("retry_max", 60),
        ("endpoint", None),
        ("data_template", None),
        ("metadata_template", None),
        ("custom_api", None),
    ]
    for cls in (OpenAIMultiClient, OpenAIMultiOrderedClient):
        parameters = list(inspect.signature(cls).parameters.values())
        positional = [(p.name, p.default) for p in parameters if p.kind is p.POSITIONAL_OR_KEYWORD]
        assert positional == expected
    request = inspect.signature(OpenAIMultiClient.request).parameters
    assert [name for name, p in request.items() if p.kind is p.POSITIONAL_OR_KEYWORD][1:] == [
        "data", "endpoint", "metadata", "callback", "max_retries", "retry_multiplier", "retry_max",
    ]  # fmt: skip
    assert request["on_chunk"].kind is inspect.Parameter.KEYWORD_ONLY  # additions: keyword-only
    run = inspect.signature(OpenAIMultiClient.run_request_function).parameters
    assert run["stop_at_end"].default is True
    assert issubclass(OpenAIMultiOrderedClient, OpenAIMultiClient)


def _keywords(face: Any) -> set[str]:
    """The parameters ``face`` accepts by keyword."""
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return {name for name, p in inspect.signature(face).parameters.items() if p.kind in kinds}


def test_sync_and_async_faces_accept_the_same_keyword_arguments() -> None:
    async_face = _keywords(AsyncMultiClient)
    assert async_face == {field.name for field in dataclasses.fields(ClientOptions)}
    for cls in (OpenAIMultiClient, OpenAIMultiOrderedClient):
        assert _keywords(cls) == async_face - {"ordered"}  # the class says whether it is ordered
    # The ones the sync face once lacked, silently.
    assert {"on_send", "max_server_delay", "rng"} <= _keywords(OpenAIMultiClient)
    # run_requests takes every option but the two it fixes itself.
    run = set(RunKeywords.__annotations__) | {"endpoint", "ordered"}
    assert run == async_face


def test_the_typed_keywords_mirror_the_options() -> None:
    """mypy sees ``**options: Unpack[...]``; the truth is the dataclass: they must agree."""
    fields = {field.name: field.type for field in dataclasses.fields(ClientOptions)}

    def typed(keywords: Any) -> dict[str, str]:
        return {
            name: getattr(hint, "__forward_arg__", hint)
            for name, hint in keywords.__annotations__.items()
        }

    keyword_only = {name: t for name, t in fields.items() if name not in SEED_POSITIONAL}
    assert typed(ClientKeywords) == keyword_only
    assert typed(SyncKeywords) == {k: t for k, t in keyword_only.items() if k != "ordered"}
    assert typed(RunKeywords) == {
        k: t for k, t in fields.items() if k not in ("endpoint", "ordered")
    }
    for face in (AsyncMultiClient, OpenAIMultiClient):
        defaults = {n: p.default for n, p in inspect.signature(face).parameters.items()}
        for field in dataclasses.fields(ClientOptions):
            if field.name in defaults:
                assert defaults[field.name] == field.default, field.name


def test_an_unknown_keyword_names_the_face() -> None:
    for cls in (AsyncMultiClient, OpenAIMultiClient, OpenAIMultiOrderedClient):
        # The real parameters are the seed's, in the seed's order (the signature is derived).
        code = cls.__init__.__code__
        assert code.co_varnames[1 : code.co_argcount] == SEED_POSITIONAL
        with pytest.raises(TypeError, match=rf"^{cls.__name__}\(\) got an unexpected keyword"):
            cls(custom_api=print, concurrenc=3)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="'ordered' \\(the class says"):
        OpenAIMultiClient(custom_api=print, ordered=True)  # type: ignore[call-arg]
