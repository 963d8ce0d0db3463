"""What one Batch-format output line means: answered, failed for good, or to be sent again."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from .._errors import BatchLineError, RequestError, status_error

#: Statuses of a failed line worth sending again (in a new batch).
RETRYABLE_STATUSES: Final = frozenset({408, 409, 429})
#: ``error.code`` s of lines the batch never ran: always worth sending again.
NOT_RUN_CODES: Final = frozenset({"batch_expired", "batch_cancelled", "request_timeout"})


@dataclass(frozen=True)
class BatchResult:
    """The outcome of one line, matched by ``custom_id``.

    ``record`` is the Batch-format output line exactly as the Batch API wrote it (what ``omc
    run`` writes to its output); ``error`` is ``None`` for a 200, else the library's
    classified error (an :class:`~openai_multi_client.APIStatusError` subclass for an HTTP
    failure, :class:`~openai_multi_client.BatchLineError` for a line never run);
    ``retryable`` says whether sending it again may succeed; ``attempts`` counts the batches
    the line went through."""

    custom_id: str
    record: Mapping[str, Any]
    error: RequestError | None
    retryable: bool
    attempts: int = 1

    @property
    def failed(self) -> bool:
        return self.error is not None

    @property
    def status_code(self) -> int | None:
        response = self.record.get("response")
        status = response.get("status_code") if isinstance(response, Mapping) else None
        return status if isinstance(status, int) else None

    @property
    def response(self) -> Any:
        """The answer's body (a dict) for a 200, else ``None``."""
        response = self.record.get("response")
        if self.error is None and isinstance(response, Mapping):
            return response.get("body")
        return None


def classify(record: Mapping[str, Any], attempts: int = 1) -> BatchResult:
    """The :class:`BatchResult` of one output or error file line."""
    custom_id = str(record.get("custom_id"))
    response = record.get("response")
    if isinstance(response, Mapping) and isinstance(response.get("status_code"), int):
        status = int(response["status_code"])
        if 200 <= status < 300:
            return BatchResult(custom_id, record, None, False, attempts)
        error = status_error(status, response.get("body"), None, response.get("request_id"))
        retryable = (status in RETRYABLE_STATUSES or status >= 500) and getattr(
            error, "code", None
        ) != "insufficient_quota"
        return BatchResult(custom_id, record, error, retryable, attempts)
    problem = record.get("error")
    code = problem.get("code") if isinstance(problem, Mapping) else None
    message = problem.get("message") if isinstance(problem, Mapping) else None
    line_error = BatchLineError(f"{code or 'error'}: {message or 'no answer for this line'}", code)
    return BatchResult(custom_id, record, line_error, code in NOT_RUN_CODES, attempts)
