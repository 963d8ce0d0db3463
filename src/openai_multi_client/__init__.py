"""openai-multi-client: very many concurrent requests to the OpenAI API and compatible servers,
rate-limited, retried and accounted for.

The public names are listed in ``__all__``; everything in modules whose names start with an
underscore is private and may change.
"""

from ._clock import Clock, LoopClock
from ._engine import AsyncMultiClient, Statistics
from ._errors import (
    AbandonedRequestError,
    APIStatusError,
    AuthenticationError,
    BadRequestError,
    CallbackError,
    ClientClosedError,
    ConfigurationError,
    ConflictError,
    ConnectError,
    ConnectionClosedError,
    CustomAPIError,
    EndpointRemovedError,
    InsufficientQuotaError,
    InternalServerError,
    InvalidResponseError,
    NotFoundError,
    NoUsableKeyError,
    OpenAIMultiClientError,
    PermissionDeniedError,
    RateLimitError,
    RedirectError,
    RequestError,
    RequestTimeoutError,
    RequestTimeoutStatusError,
    RequestTooLargeError,
    ResponseTooLargeError,
    SharedLimitsError,
    StreamInterruptedError,
    TransportError,
    UnprocessableEntityError,
)
from ._limits import (
    Grant,
    InMemoryLimits,
    Key,
    KeyPool,
    KeyStatistics,
    LimitsBackend,
    PoolStatistics,
    RedisLimits,
    SharedLimitsStatistics,
)
from ._oneshot import arun_requests, run_requests
from ._request import ENDPOINTS, Payload, Request, Result
from ._retry import RetryBudget, RetryPolicy
from ._stable import KeyManager, stable
from ._stream import ChunkCallback
from ._sync import OpenAIMultiClient, OpenAIMultiOrderedClient
from ._tokens import CharacterEstimator, TokenEstimator
from ._transport import AiohttpTransport, HTTPRequest, HTTPResponse, Timeout, Transport

__version__ = "0.2.0.dev0"

__all__ = [
    "ENDPOINTS",
    "APIStatusError",
    "AbandonedRequestError",
    "AiohttpTransport",
    "AsyncMultiClient",
    "AuthenticationError",
    "BadRequestError",
    "CallbackError",
    "CharacterEstimator",
    "ChunkCallback",
    "ClientClosedError",
    "Clock",
    "ConfigurationError",
    "ConflictError",
    "ConnectError",
    "ConnectionClosedError",
    "CustomAPIError",
    "EndpointRemovedError",
    "Grant",
    "HTTPRequest",
    "HTTPResponse",
    "InMemoryLimits",
    "InsufficientQuotaError",
    "InternalServerError",
    "InvalidResponseError",
    "Key",
    "KeyManager",
    "KeyPool",
    "KeyStatistics",
    "LimitsBackend",
    "LoopClock",
    "NoUsableKeyError",
    "NotFoundError",
    "OpenAIMultiClient",
    "OpenAIMultiClientError",
    "OpenAIMultiOrderedClient",
    "Payload",
    "PermissionDeniedError",
    "PoolStatistics",
    "RateLimitError",
    "RedirectError",
    "RedisLimits",
    "Request",
    "RequestError",
    "RequestTimeoutError",
    "RequestTimeoutStatusError",
    "RequestTooLargeError",
    "ResponseTooLargeError",
    "Result",
    "RetryBudget",
    "RetryPolicy",
    "SharedLimitsError",
    "SharedLimitsStatistics",
    "Statistics",
    "StreamInterruptedError",
    "Timeout",
    "TokenEstimator",
    "Transport",
    "TransportError",
    "UnprocessableEntityError",
    "__version__",
    "arun_requests",
    "run_requests",
    "stable",
]
