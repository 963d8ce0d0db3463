"""The clients' arguments as the stage takes them: checked on the driver, carried to the actors
without a secret in any repr, and turned into one :class:`AsyncMultiClient` per actor.

Keys travel to the actors inside :class:`~openai_multi_client.Key` objects (whose repr is the
redacted id), in the actor's constructor arguments, never in the dataset. Without shared limits,
an actor that is one of ``workers`` runs on a :class:`~openai_multi_client.KeyPool` of the keys
whose shares are set to ``1 / workers`` (:meth:`KeyPool.set_shares`): the limits the keys are
configured with (``Key(requests_per_minute=...)``) and those learned from the server's
``x-ratelimit-*`` headers alike are divided, so that the actors together keep each key's limits.
"""

from __future__ import annotations

import inspect
import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any

from .. import AsyncMultiClient, ConfigurationError, Key, KeyPool
from .._limits import as_keys

logger = logging.getLogger("openai_multi_client.ray")

# The client's arguments the stage sets itself, or that cannot cross to another process.
_NOT_OPTIONS = frozenset({"ordered", "clock", "transport", "on_send", "on_unbilled", "rng"})

SPLIT_WARNING = (
    "{workers} actors share the keys without shared_limits: each actor is given 1/{workers} "
    "of every key's limits, so an idle actor's part is wasted and a 429 or a dead key seen by "
    "one actor is not known to the others. Give shared_limits='redis://...' so that the actors "
    "lease what each needs and share cool-downs and retirements."
)


def check_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """The client's arguments, checked (by name, then by making a client); string keys become
    :class:`Key` objects so that no repr shows a secret, and a key pool's keys are taken out of
    it (a pool lives in one process)."""
    parameters = inspect.signature(AsyncMultiClient.__init__).parameters
    for name in options:
        if name in _NOT_OPTIONS or name not in parameters or name == "self":
            allowed = sorted(set(parameters) - _NOT_OPTIONS - {"self"})
            raise ConfigurationError(
                f"{name!r} is not an argument the stage passes to its clients; "
                f"expected some of: {', '.join(allowed)}"
            )
    checked = dict(options)
    if "api_key" in checked:
        checked["api_key"] = _portable_keys(checked["api_key"])
    # The values are checked by making a client, which starts nothing until it is used. Without
    # api_key, the actors' own environment (OPENAI_API_KEY) gives the key, not the driver's.
    AsyncMultiClient(**{**checked, "api_key": checked.get("api_key") or [Key.keyless()]})
    return checked


def _portable_keys(api_key: object) -> list[Key] | None:
    if api_key is None:
        return None
    if isinstance(api_key, KeyPool):
        return list(api_key.keys)
    if isinstance(api_key, str) and not api_key.strip():
        return [Key.keyless()]  # api_key="" alone: no key, for a local server
    if isinstance(api_key, str | Key):
        api_key = [api_key]
    if not isinstance(api_key, Sequence):
        raise ConfigurationError(
            "api_key must be a key, a Key, a list of them or a KeyPool, "
            f"got {type(api_key).__name__}"
        )
    return as_keys(api_key)  # the clients' own rule (the client made below checks it too)


def check_workers(workers: object) -> int:
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ConfigurationError(f"workers must be a whole number >= 1, got {workers!r}")
    return workers


def split_needed(workers: int, options: Mapping[str, Any]) -> bool:
    """Whether each actor must be given 1/workers of the keys (no shared limits)."""
    return workers > 1 and options.get("shared_limits") is None


def make_client(options: Mapping[str, Any], workers: int) -> AsyncMultiClient:
    """The actor's client; with several actors and no shared limits, on 1/workers of each key."""
    if not split_needed(workers, options):
        return AsyncMultiClient(**options)
    keys: list[Key] | None = options.get("api_key")
    if keys is None:
        secret = os.environ.get("OPENAI_API_KEY")
        keys = [Key(secret)] if secret else None
    if not keys:
        logger.warning(
            "no key to divide among %d actors: each actor runs as if alone (give api_key=...)",
            workers,
        )
        return AsyncMultiClient(**options)
    pool = KeyPool(keys, concurrency=options.get("concurrency", 10))
    pool.set_shares(1.0 / workers)
    logger.warning(SPLIT_WARNING.format(workers=workers))
    return AsyncMultiClient(**{**options, "api_key": pool})
