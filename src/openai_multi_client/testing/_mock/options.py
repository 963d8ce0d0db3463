"""The mock server's configuration: per-key limits, the fault plan, and all its options,
validated once.

:class:`ServerOptions` holds what ``MockOpenAIServer(...)`` was given, checked on creation with
a message naming the argument at fault; the rest of the mock trusts it.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final

from ..._clock import Clock, LoopClock
from .errors import redact

__all__ = [
    "ANSWER_FAULTS",
    "DEFAULT_HANG_SECONDS",
    "FAULT_KINDS",
    "MAX_EMBEDDING_DIMENSIONS",
    "Faults",
    "KeyLimits",
    "ServerOptions",
    "is_real",
]

#: How long a ``hang`` or ``stream_stall`` fault lasts by default: far less than the 600 s
#: default timeout of this library's client and of the official SDK, so a hang costs seconds.
DEFAULT_HANG_SECONDS: Final = 5.0
#: The kinds of fault :class:`Faults` can inject.
FAULT_KINDS: Final[tuple[str, ...]] = (
    "500",
    "502",
    "503",
    "reset",
    "hang",
    "malformed",
    "stream_cut",
    "stream_stall",
    "stream_error",
)
# The kinds a plain Faults() injects; the mid-answer kinds are asked for by name.
_DEFAULT_FAULT_KINDS: Final = FAULT_KINDS[:6]
# Kinds that send part of the answer, so they are injected while answering.
ANSWER_FAULTS: Final = frozenset({"malformed", "stream_cut", "stream_stall", "stream_error"})
MAX_EMBEDDING_DIMENSIONS: Final = 8192


def is_real(value: object) -> bool:
    """A number that JSON can carry as such: int or float, not bool, not NaN."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and not math.isnan(value)


@dataclass(frozen=True)
class KeyLimits:
    """Per-minute limits of one API key; ``None`` means unlimited.

    ``organization`` models OpenAI's limits, which belong to the organization, not the key:
    keys of one organization share one set of buckets (so they must be given the same limits),
    and their responses carry it in ``openai-organization``, and ``project`` (default
    ``proj_default``) in ``openai-project``. A key without one has buckets of its own, in an
    organization of its own (``org-`` and a hash of the key).
    """

    requests_per_minute: int | None = None
    tokens_per_minute: int | None = None
    organization: str | None = None
    project: str | None = None

    def __post_init__(self) -> None:
        for name in ("organization", "project"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value.strip()):
                raise ValueError(
                    f"KeyLimits.{name} must be a non-empty string or None, not {value!r}"
                )
        for name in ("requests_per_minute", "tokens_per_minute"):
            value = getattr(self, name)
            if value is None:
                continue
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(
                    f"KeyLimits.{name} must be a positive integer or None, not {value!r}"
                )


def _default_fault_weights() -> dict[str, float]:
    return dict.fromkeys(_DEFAULT_FAULT_KINDS, 1.0)


@dataclass(frozen=True)
class Faults:
    """A seeded plan of faults.

    ``rate`` is the probability that a request (one that got past authentication, validation and
    rate limits) meets a fault; ``kinds`` gives the relative weights of the kinds of fault
    (see :data:`FAULT_KINDS`; kinds left out weigh 0; default: the first six, equally); a
    collection of kinds (``{"500", "reset"}``) weighs them equally:

    * ``"500"``, ``"502"``, ``"503"``: that status (500 and 503 with OpenAI's JSON error body,
      502 with an HTML page, as a proxy in front of the API sends);
    * ``"reset"``: the TCP connection is aborted (RST) without a response;
    * ``"hang"``: no answer for ``hang_seconds`` (or until the server stops), then the
      connection is aborted; a client waits ``min(hang_seconds, its timeout)`` for it (default
      :data:`DEFAULT_HANG_SECONDS`, 5 s, well under the usual 600 s default timeouts, so a test
      with faults does not stall; raise it above your timeout to exercise timeouts);
    * ``"malformed"``: HTTP 200 with a truncated JSON body (a stream: one truncated event
      midway, the rest as usual);
    * ``"stream_cut"``: HTTP 200 and half the answer's bytes (a stream: half its events, cut
      mid-event), then the connection is aborted;
    * ``"stream_stall"``: the same half, then nothing for ``hang_seconds`` (or until the server
      stops), then the connection is aborted;
    * ``"stream_error"``: a stream sends half its events, then an error event
      (``data: {"error": {... "server_error"}}``) and ends; a plain request gets a 500.

    ``flex_unavailable`` is the probability that a flex request (``"service_tier": "flex"``)
    is refused with OpenAI's 429 "resource unavailable" (code ``resource_unavailable``, the
    key's usual headers, no retry hint): the flex tier out of capacity, not the key's rate
    limit. It is drawn before the other faults, and is 0 by default.
    """

    rate: float = 0.0
    kinds: Mapping[str, float] | Iterable[str] = field(
        default_factory=_default_fault_weights, hash=False
    )
    hang_seconds: float = DEFAULT_HANG_SECONDS
    flex_unavailable: float = 0.0

    def __post_init__(self) -> None:
        for name in ("rate", "flex_unavailable"):
            value = getattr(self, name)
            if not is_real(value) or not 0.0 <= value <= 1.0:
                raise ValueError(f"Faults.{name} must be a probability in [0, 1], not {value!r}")
        if not is_real(self.hang_seconds) or not 0 < self.hang_seconds < math.inf:
            raise ValueError(
                "Faults.hang_seconds must be a positive number of seconds, "
                f"not {self.hang_seconds!r}"
            )
        object.__setattr__(self, "kinds", _fault_weights(self.kinds))

    @property
    def weights(self) -> dict[str, float]:
        """The kinds and their weights as validated (a collection of kinds: 1.0 each)."""
        assert isinstance(self.kinds, dict)  # __post_init__ made it so
        return dict(self.kinds)


def _fault_weights(kinds: object) -> dict[str, float]:
    if isinstance(kinds, str) or not isinstance(kinds, Iterable):
        raise ValueError(
            "Faults.kinds must be a mapping of kind to weight or a collection of kinds, "
            f"not {kinds!r}"
        )
    if not isinstance(kinds, Mapping):
        kinds = dict.fromkeys(sorted(kinds, key=str), 1.0)  # sorted: sets are unordered
    weights: dict[str, float] = {}
    for kind, weight in kinds.items():
        if kind not in FAULT_KINDS:
            raise ValueError(
                f"Faults.kinds: unknown fault kind {kind!r}; expected some of {FAULT_KINDS}"
            )
        if not is_real(weight) or weight < 0 or math.isinf(weight):
            raise ValueError(f"Faults.kinds[{kind!r}] must be a finite weight >= 0, not {weight!r}")
        weights[kind] = float(weight)
    if sum(weights.values()) <= 0:
        raise ValueError("Faults.kinds needs at least one kind with a positive weight")
    return weights


@dataclass(frozen=True)
class ServerOptions:
    """Everything a :class:`~.server.MockOpenAIServer` is configured with, validated once.

    The fields are the server's keyword arguments (see its docstring); ``latency`` is
    floats, the key collections frozensets, ``keys`` a dict.
    """

    host: str = "127.0.0.1"
    port: int = 0
    keys: Mapping[str, KeyLimits] | None = None
    default_limits: KeyLimits = KeyLimits()  # frozen, so safe to share
    invalid_keys: Collection[str] = frozenset()
    no_quota_keys: Collection[str] = frozenset()
    require_key: bool = True
    latency: float | tuple[float, float] = 0.0
    faults: Faults | None = None
    seed: int = 0
    retry_after: bool = True
    rate_limit_headers: bool = True
    embedding_dimensions: int | None = None
    clock: Clock = field(default_factory=LoopClock)
    count_rejected: bool = True

    def __post_init__(self) -> None:
        _check_address(self.host, self.port)
        _check_keys(self.keys, self.default_limits, self.invalid_keys, self.no_quota_keys)
        latency = _normal_latency(self.latency)
        _check_others(self)
        normal = {
            "keys": dict(self.keys) if self.keys is not None else None,
            "invalid_keys": frozenset(self.invalid_keys),
            "no_quota_keys": frozenset(self.no_quota_keys),
            "latency": latency,
        }
        for name, value in normal.items():
            object.__setattr__(self, name, value)

    def limits_of(self, key: str) -> KeyLimits:
        """The limits of ``key``: its own when ``keys`` names it, else ``default_limits``."""
        if self.keys is not None:
            return self.keys.get(key, self.default_limits)
        return self.default_limits


def _check_address(host: object, port: object) -> None:
    if not isinstance(host, str) or not host:
        raise ValueError(f"host must be a non-empty string, not {host!r}")
    if not isinstance(port, int) or isinstance(port, bool) or not 0 <= port <= 65535:
        raise ValueError(f"port must be an integer in [0, 65535], not {port!r}")


def _check_keys(
    keys: Mapping[str, KeyLimits] | None,
    default_limits: object,
    invalid_keys: object,
    no_quota_keys: object,
) -> None:
    if keys is not None:
        for key, limits in keys.items():
            if not isinstance(key, str) or not key:
                raise ValueError(f"keys: every key must be a non-empty string, not {key!r}")
            if not isinstance(limits, KeyLimits):
                raise ValueError(f"keys[{redact(key)!r}] must be a KeyLimits, not {limits!r}")
        _check_organizations(keys)
    if not isinstance(default_limits, KeyLimits):
        raise ValueError(f"default_limits must be a KeyLimits, not {default_limits!r}")
    if isinstance(invalid_keys, str) or isinstance(no_quota_keys, str):
        raise ValueError("invalid_keys and no_quota_keys must be collections of keys, not a str")


def _check_organizations(keys: Mapping[str, KeyLimits]) -> None:
    """Keys of one organization share its buckets, so they must agree on its limits."""
    limits: dict[str, tuple[int | None, int | None]] = {}
    for key_limits in keys.values():
        if key_limits.organization is None:
            continue
        pair = (key_limits.requests_per_minute, key_limits.tokens_per_minute)
        known = limits.setdefault(key_limits.organization, pair)
        if known != pair:
            raise ValueError(
                f"keys: the keys of organization {key_limits.organization!r} share its limits, "
                f"so they must all give the same ones, not {known} and {pair} "
                "(requests_per_minute, tokens_per_minute)"
            )


def _check_others(options: ServerOptions) -> None:
    if options.faults is not None and not isinstance(options.faults, Faults):
        raise ValueError(f"faults must be a Faults or None, not {options.faults!r}")
    seed = options.seed
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise ValueError(f"seed must be an integer, not {seed!r}")
    dimensions = options.embedding_dimensions
    if dimensions is not None and (
        not isinstance(dimensions, int)
        or isinstance(dimensions, bool)
        or not 1 <= dimensions <= MAX_EMBEDDING_DIMENSIONS
    ):
        raise ValueError(
            f"embedding_dimensions must be an integer in [1, {MAX_EMBEDDING_DIMENSIONS}], "
            f"not {dimensions!r}"
        )
    if not isinstance(options.clock, Clock):
        raise ValueError(
            "clock must be a Clock (now() and async sleep(), like "
            f"openai_multi_client.testing.FakeClock), not {options.clock!r}"
        )


def _normal_latency(latency: object) -> float | tuple[float, float]:
    if isinstance(latency, tuple):
        if (
            len(latency) != 2
            or not all(is_real(value) and math.isfinite(value) for value in latency)
            or not 0 <= latency[0] <= latency[1]
        ):
            raise ValueError(
                f"latency must be seconds >= 0 or a (min, max) pair with 0 <= min <= max, "
                f"not {latency!r}"
            )
        return (float(latency[0]), float(latency[1]))
    if not is_real(latency) or not 0 <= latency < math.inf:  # type: ignore[operator]
        raise ValueError(f"latency must be a finite number of seconds >= 0, not {latency!r}")
    return float(latency)  # type: ignore[arg-type]
