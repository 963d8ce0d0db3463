"""The client's arguments as one validated value: :class:`ClientOptions`.

Every face is built from it: :class:`~openai_multi_client.AsyncMultiClient`, the seed's sync
clients and :func:`~openai_multi_client.run_requests` / ``arun_requests``. The parameters are
written down once, here:

* the dataclass's fields are the truth (names, defaults, validation in ``__post_init__``);
* the faces' runtime signatures (``help()``, ``inspect.signature``) are derived from those fields
  by :func:`face_signature`;
* for mypy and IDEs the faces take ``**options: Unpack[ClientKeywords]`` (PEP 692), a TypedDict
  that mirrors the keyword-only fields. A TypedDict cannot be derived from a dataclass
  statically, so ``tests/unit/test_public_api.py`` checks that the two agree, name by name and
  type by type. ``Unpack`` comes from ``typing_extensions`` at type-checking time only (it is in
  ``typing`` from Python 3.12): no runtime dependency.

The seed's nine positional parameters stay positional on every client (the seed's README calls
``OpenAIMultiClient(concurrency=..., ...)`` with them); everything added since is keyword-only.
"""

from __future__ import annotations

import dataclasses
import inspect
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypedDict

from ._api import CustomAPI
from ._clock import Clock
from ._errors import ConfigurationError
from ._limits import Key, KeyPool, LimitsBackend
from ._request import ChunkCallback, Request, merge_template, resolve_endpoint
from ._retry import MAX_PACED_ATTEMPTS, RetryBudget, RetryPolicy
from ._tokens import TokenEstimator
from ._transport import (
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_MAX_RESPONSE_BYTES,
    DEFAULT_TIMEOUT,
    FLEX_TIMEOUT,
    Timeout,
    Transport,
    check_max_response_bytes,
)
from ._validate import check_positive, check_seconds

KeysArgument = str | Key | Sequence[str | Key] | KeyPool | None

#: Finished results an ordered client may hold while an earlier request is unfinished. A chat
#: result takes a few KB in memory, so the buffer stays in the tens of MB when full, and one
#: request hanging until its timeout does not stop the run (see ``_dispatch``).
DEFAULT_REORDER_BUFFER = 10_000

#: The seed's positional parameters, in the seed's order.
SEED_POSITIONAL = (
    "concurrency",
    "max_retries",
    "wait_interval",
    "retry_multiplier",
    "retry_max",
    "endpoint",
    "data_template",
    "metadata_template",
    "custom_api",
)


@dataclass(frozen=True, slots=True, kw_only=True)
class ClientOptions:
    """Every argument of a client, checked once (``ConfigurationError`` naming the argument).

    ``data_template`` and ``metadata_template`` are stored as fresh dicts; ``policy`` is the
    client-wide :class:`RetryPolicy` made from the retry arguments. See the README for what
    each option means.
    """

    concurrency: int = 10
    max_retries: int = 10
    wait_interval: float = 0
    retry_multiplier: float = 1
    retry_max: float = 60
    endpoint: str | None = None
    data_template: Mapping[str, Any] | None = None
    metadata_template: Mapping[str, Any] | None = None
    custom_api: CustomAPI | None = None
    ordered: bool = False
    api_key: KeysArgument = None
    base_url: str | None = None
    organization: str | None = None
    queue_size: int | None = None
    timeout: float | None = None
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    headers: Mapping[str, str] | None = None
    transport: Transport | None = None
    retry_budget: RetryBudget | int | None = 500
    token_estimator: TokenEstimator | None = None
    on_send: Callable[[Request], object] | None = None
    on_unbilled: Callable[[Request], object] | None = None
    on_chunk: ChunkCallback | None = None
    read_timeout: float | None = None
    max_server_delay: float = 120.0
    max_paced_retries: int = MAX_PACED_ATTEMPTS
    shared_limits: str | LimitsBackend | None = None
    clock: Clock | None = None
    rng: random.Random | None = None
    max_response_bytes: int | None = DEFAULT_MAX_RESPONSE_BYTES
    reorder_buffer: int = DEFAULT_REORDER_BUFFER
    telemetry: bool = True
    capture_message_content: bool | None = None
    progress: bool = False

    def __post_init__(self) -> None:
        check_positive("concurrency", self.concurrency)
        check_positive("reorder_buffer", self.reorder_buffer)
        check_max_response_bytes(self.max_response_bytes)
        if self.queue_size is not None:
            check_positive("queue_size", self.queue_size)
        check_seconds("wait_interval", self.wait_interval)
        self.policy  # noqa: B018 - validates the retry arguments
        self.timeouts()
        if self.endpoint is not None:
            resolve_endpoint(self.endpoint)
        for name in ("data_template", "metadata_template"):
            object.__setattr__(self, name, merge_template(None, getattr(self, name), name))
        budget = self.retry_budget
        if isinstance(budget, bool) or not isinstance(budget, int | RetryBudget | None):
            raise ConfigurationError(
                f"retry_budget must be a RetryBudget, a capacity or None, got {budget!r}"
            )
        for name in ("custom_api", "on_send", "on_unbilled", "on_chunk"):
            value = getattr(self, name)
            if value is not None and not callable(value):
                raise ConfigurationError(f"{name} must be callable, got {type(value).__name__}")
        if self.rng is not None and not isinstance(self.rng, random.Random):
            raise ConfigurationError(f"rng must be a random.Random or None, got {self.rng!r}")
        key_list(self.api_key)
        for name in ("telemetry", "progress"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigurationError(
                    f"{name} must be True or False, got {getattr(self, name)!r}"
                )
        if self.capture_message_content not in (None, True, False):
            raise ConfigurationError(
                "capture_message_content must be True, False or None (the environment decides), "
                f"got {self.capture_message_content!r}"
            )

    @property
    def policy(self) -> RetryPolicy:
        return RetryPolicy(
            self.max_retries,
            self.retry_multiplier,
            self.retry_max,
            self.max_server_delay,
            self.max_paced_retries,
        )

    @property
    def window(self) -> int:
        """Admitted requests that may be unconsumed at once (see ``_dispatch``)."""
        return self.concurrency + self.intake_size

    @property
    def intake_size(self) -> int:
        return self.concurrency if self.queue_size is None else self.queue_size

    def timeouts(self) -> tuple[Timeout, Timeout]:
        """The limits of one attempt, and those of a flex one (``service_tier: "flex"``):
        ``timeout`` for both when the user set it, else 600 s and, for flex, 900 s."""
        total = DEFAULT_TIMEOUT if self.timeout is None else self.timeout
        plain = Timeout(total, self.connect_timeout, self.read_timeout)
        if self.timeout is not None:
            return plain, plain
        return plain, Timeout(FLEX_TIMEOUT, self.connect_timeout, self.read_timeout)

    def budget(self) -> RetryBudget | None:
        """The client's retry budget (a new one when given as a capacity)."""
        if isinstance(self.retry_budget, int):
            return RetryBudget(self.retry_budget)
        return self.retry_budget


_FIELD_NAMES = frozenset(field.name for field in dataclasses.fields(ClientOptions))


class _SharedKeywords(TypedDict, total=False):
    """The keyword-only options every face takes (mirrors :class:`ClientOptions`)."""

    api_key: KeysArgument
    base_url: str | None
    organization: str | None
    queue_size: int | None
    timeout: float | None
    connect_timeout: float
    headers: Mapping[str, str] | None
    transport: Transport | None
    retry_budget: RetryBudget | int | None
    token_estimator: TokenEstimator | None
    on_send: Callable[[Request], object] | None
    on_unbilled: Callable[[Request], object] | None
    on_chunk: ChunkCallback | None
    read_timeout: float | None
    max_server_delay: float
    max_paced_retries: int
    shared_limits: str | LimitsBackend | None
    clock: Clock | None
    rng: random.Random | None
    max_response_bytes: int | None
    reorder_buffer: int
    telemetry: bool
    capture_message_content: bool | None
    progress: bool


class SyncKeywords(_SharedKeywords, total=False):
    """The keyword-only options of the sync clients (the class says whether results are
    ordered)."""


class ClientKeywords(_SharedKeywords, total=False):
    """The keyword-only options of :class:`~openai_multi_client.AsyncMultiClient`."""

    ordered: bool


class RunKeywords(_SharedKeywords, total=False):
    """The options of ``run_requests``: the seed's parameters, by keyword, and the rest."""

    concurrency: int
    max_retries: int
    wait_interval: float
    retry_multiplier: float
    retry_max: float
    data_template: Mapping[str, Any] | None
    metadata_template: Mapping[str, Any] | None
    custom_api: CustomAPI | None


def options_for(
    face: object, arguments: Mapping[str, Any], options: Mapping[str, Any], **fixed: Any
) -> ClientOptions:
    """:class:`ClientOptions` for a client's ``__init__``: the seed's positional parameters
    taken by name from ``arguments`` (its ``locals()``), its keyword ``options``, and what the
    face decides itself (``fixed``: the sync classes' ``ordered``). An unknown keyword is a
    ``TypeError`` naming the face, as Python's own would be."""
    name = type(face).__name__
    for option in options:
        if option not in _FIELD_NAMES or option in SEED_POSITIONAL or option in fixed:
            hint = " (the class says whether results are ordered)" if option == "ordered" else ""
            raise TypeError(f"{name}() got an unexpected keyword argument {option!r}{hint}")
    seed = {parameter: arguments[parameter] for parameter in SEED_POSITIONAL}
    return ClientOptions(**seed, **options, **fixed)


def face_signature(exclude: tuple[str, ...] = ()) -> inspect.Signature:
    """The signature of a client's ``__init__``, derived from :class:`ClientOptions`: ``self``,
    the seed's positional parameters, then every other field as keyword-only."""
    parameters = [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    for field in dataclasses.fields(ClientOptions):
        if field.name in exclude:
            continue
        kind = (
            inspect.Parameter.POSITIONAL_OR_KEYWORD
            if field.name in SEED_POSITIONAL
            else inspect.Parameter.KEYWORD_ONLY
        )
        parameters.append(
            inspect.Parameter(field.name, kind, default=field.default, annotation=field.type)
        )
    return inspect.Signature(parameters, return_annotation="None")


def key_list(api_key: KeysArgument) -> list[str | Key]:
    """``api_key`` as a list (empty for ``None`` or a shared :class:`KeyPool`)."""
    if api_key is None or isinstance(api_key, KeyPool):
        return []
    if isinstance(api_key, str | Key):
        return [api_key]
    if isinstance(api_key, Sequence):
        return list(api_key)
    raise ConfigurationError(
        f"api_key must be a string, a Key or a list of them, got {type(api_key).__name__}"
    )
