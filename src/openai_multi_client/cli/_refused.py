"""The models that every key was refused during one ``omc run``: how many of their requests
were kept for the next run, and the end-of-run message naming each model, the keys (redacted)
and the server's words.

A :class:`~openai_multi_client.ModelRefusedError` is not the request's fault: the model's
access is wrong (a proxy's dead upstream key), or the key is (a 401 that did not say which), so
its lines are not recorded as outcomes and a plain rerun sends them again.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .._errors import ModelRefusedError

__all__ = ["RefusedModels"]


@dataclass
class _Refused:
    count: int = 0
    refusals: dict[str, str] = field(default_factory=dict)  # redacted key id -> server's words


class RefusedModels:
    """Counts, per model, the requests failed with :class:`ModelRefusedError`."""

    def __init__(self) -> None:
        self._models: dict[str, _Refused] = {}

    def __bool__(self) -> bool:
        return bool(self._models)

    def take(self, error: ModelRefusedError, model: object) -> None:
        """Count one request of ``model`` (the error's, else the body's) refused."""
        name = error.model if error.model is not None else model
        refused = self._models.setdefault(name if isinstance(name, str) else "?", _Refused())
        refused.count += 1
        refused.refusals.update(error.refusals)

    def messages(self, *, nothing_answered: bool) -> list[str]:
        """One line per refused model; with ``nothing_answered`` (no request of the run got an
        answer from the server), a last one saying the keys themselves may be wrong."""
        lines = []
        for model, refused in sorted(self._models.items()):
            reasons = "; ".join(f"key {key}: {why}" for key, why in refused.refusals.items())
            lines.append(
                f"omc run: {refused.count:,} requests for model {model!r} were not done: every "
                f"API key was refused that model ({reasons or 'no reason given'}); they are "
                "kept: fix that model's access and run the same command again"
            )
        if nothing_answered and lines:
            lines.append(
                "omc run: no request of this run was answered, so the keys themselves may be "
                "wrong (a mistyped key, a key for another server?): fix the keys and run the "
                "same command again"
            )
        return lines
