"""The consumer of ``omc run``: takes the engine's results, turns each into its output line,
hands it to the committer, and keeps the run's accounts (failures, tokens, cost, budgets).

Three kinds of result are not outcomes and are never recorded: a request abandoned before it
was sent (a later run sends it); a failure that says the keys are dead (401, 403, 429
``insufficient_quota``, every key retired), which stops the run so that a run with working
keys can go on; and a request whose model every key was refused (``ModelRefusedError``), which
is counted per model while the other models' requests go on (a later run sends it).
"""

from __future__ import annotations

from .._engine import AsyncMultiClient
from .._errors import (
    AbandonedRequestError,
    AuthenticationError,
    InsufficientQuotaError,
    ModelRefusedError,
    NoUsableKeyError,
    PermissionDeniedError,
)
from .._request import Result
from .._retry import Action, classify
from ._batch import result_line
from ._cache import ResponseCache, cache_key
from ._commit import Committer
from ._config import RunConfig
from ._progress import RunProgress
from ._refused import RefusedModels
from ._stop import RunStop

__all__ = ["Consumer"]

# Failures that say nothing about the request: the keys are dead. Never recorded as outcomes.
_KEY_ERRORS = (AuthenticationError, PermissionDeniedError, InsufficientQuotaError, NoUsableKeyError)


class Consumer:
    """Records the results of ``client`` until it has no more."""

    def __init__(
        self,
        config: RunConfig,
        *,
        client: AsyncMultiClient,
        committer: Committer,
        cache: ResponseCache | None,
        progress: RunProgress,
        stop: RunStop,
    ) -> None:
        self._config = config
        self._client = client
        self._committer = committer
        self._cache = cache
        self._progress = progress
        self._stop = stop
        self.failed = 0
        self.abandoned = 0  # requests stopped before they were sent
        self.budget_hit: str | None = None  # the budget reached, as its option
        self.no_key: str | None = None  # why the keys stopped working
        self.refused = RefusedModels()  # requests kept because every key was refused the model
        self.answered = 0  # results recorded with the server's answer (a status code)

    async def run(self) -> None:
        """Take every result (the producer's failure, if any, is raised after the last)."""
        async for result in self._client:
            self.take(result)

    def take(self, result: Result) -> None:
        metadata = result.metadata
        if isinstance(result.error, AbandonedRequestError):
            self.abandoned += 1
            return  # stopped before an outcome: a later run sends it
        if isinstance(result.error, _KEY_ERRORS):
            # Not the request's fault: keep it for a run with working keys.
            if not self._stop.stopping:
                self.no_key = str(result.error)
                self._stop.stop()
            return
        if isinstance(result.error, ModelRefusedError):
            # Not the request's fault either, but the other models' requests go on.
            model = result.data.get("model") if isinstance(result.data, dict) else None
            self.refused.take(result.error, model)
            return
        custom_id = metadata["custom_id"]
        data, failed = result_line(custom_id, result)
        retryable = result.error is not None and classify(result.error) is Action.RETRY
        if self._cache is not None and not failed and result.status_code is not None:
            key = cache_key(metadata["url"], result.data)
            self._cache.put(key, result.status_code, result.request_id, result.response)
        self._committer.record(
            custom_id,
            metadata["line"],
            data,
            metadata["digest"],
            failed=failed,
            retryable=retryable,
        )
        self._account(result)
        if not self._stop.stopping and self._over_budget():
            self._stop.stop()

    def _account(self, result: Result) -> None:
        model = result.data.get("model") if isinstance(result.data, dict) else None
        if result.failed:
            self.failed += 1
        if result.status_code is not None:
            self.answered += 1
        self._progress.finished(
            ok=not result.failed,
            error_class=None if result.error is None else type(result.error).__name__,
            model=model if isinstance(model, str) else None,
            usage=result.usage,
            flex=_is_flex(result),
        )

    def _over_budget(self) -> bool:
        tokens, dollars = self._config.budget_tokens, self._config.budget_dollars
        if tokens is not None and self._progress.tokens >= tokens:
            self.budget_hit = f"--budget-tokens {tokens}"
        elif dollars is not None and self._progress.cost >= dollars:
            self.budget_hit = f"--budget-dollars {dollars}"
        return self.budget_hit is not None


def _is_flex(result: Result) -> bool:
    """Whether the request went at the flex tier: as the answer says (OpenAI reports the tier
    that served it), else as the request asked."""
    response = result.response
    tier = response.get("service_tier") if isinstance(response, dict) else None
    if not isinstance(tier, str) and isinstance(result.data, dict):
        tier = result.data.get("service_tier")
    return tier == "flex"
