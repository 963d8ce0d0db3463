"""Which failures to retry, how long to wait, and when to stop retrying altogether.

Three pieces, all free of I/O so they can be tested exactly:

* :func:`classify` maps an error to an :class:`Action` (the classification table below);
* :class:`RetryPolicy` is a frozen dataclass whose :meth:`RetryPolicy.next_delay` is pure;
* :class:`RetryBudget` is a token bucket of retries shared by the whole client, in the manner of
  botocore's retry quota: retries spend from it, successes refill it, so in a total outage the
  client stops multiplying traffic after a bounded number of retries.

Classification table (first matching row wins):

=========================================  ==========
error                                      action
=========================================  ==========
401, 403, 429 ``insufficient_quota``       RETIRE_KEY (the request moves to another key)
header ``x-should-retry: true|false``      RETRY / FAIL (the server knows best)
408, 409, 429, 5xx                         RETRY
any other HTTP status (400, 404, 422, ...) FAIL
connect error, timeout, connection reset   RETRY
body over ``max_response_bytes``           FAIL
unparseable response body (empty too)      RETRY
``custom_api`` raised                      RETRY (the seed retried every exception)
no usable key, cancelled                   FAIL
=========================================  ==========
"""

from __future__ import annotations

import enum
import random
from dataclasses import dataclass

from ._errors import (
    APIStatusError,
    AuthenticationError,
    CustomAPIError,
    InsufficientQuotaError,
    InvalidResponseError,
    PermissionDeniedError,
    RateLimitError,
    RequestError,
    RequestTimeoutError,
    ResponseTooLargeError,
    TransportError,
)
from ._headers import (
    parse_rate_limit_reset,
    parse_retry_after,
    parse_should_retry,
    parse_try_again_message,
)
from ._validate import check_count, check_seconds


class Action(enum.Enum):
    """What to do after a failed attempt."""

    RETRY = "retry"
    FAIL = "fail"
    RETIRE_KEY = "retire_key"


_RETRY_STATUSES = frozenset({408, 409, 429})


def classify(error: RequestError) -> Action:
    """The action for one failed attempt (see the module's table)."""
    if isinstance(error, AuthenticationError | PermissionDeniedError | InsufficientQuotaError):
        return Action.RETIRE_KEY
    if isinstance(error, APIStatusError):
        should_retry = parse_should_retry(error.headers)
        if should_retry is not None:
            return Action.RETRY if should_retry else Action.FAIL
        if error.status_code in _RETRY_STATUSES or error.status_code >= 500:
            return Action.RETRY
        return Action.FAIL
    if isinstance(error, ResponseTooLargeError):
        return Action.FAIL
    if isinstance(error, TransportError | InvalidResponseError | CustomAPIError):
        return Action.RETRY
    return Action.FAIL


def is_overload(error: RequestError) -> bool:
    """Whether the failure says the server is overloaded (429, 503, timeout): the signal that
    makes adaptive concurrency back off."""
    if isinstance(error, RateLimitError) and not isinstance(error, InsufficientQuotaError):
        return True
    if isinstance(error, APIStatusError):
        return error.status_code == 503
    return isinstance(error, RequestTimeoutError)


def server_requested_delay(error: RequestError) -> float | None:
    """The wait the server asked for, in seconds, or ``None`` when it said nothing usable."""
    if not isinstance(error, APIStatusError):
        return None
    delay = parse_retry_after(error.headers)
    if delay is None and isinstance(error, RateLimitError):
        # "Please try again in 1.2s" is precise; the reset headers are a fallback.
        delay = parse_try_again_message(str(error))
        if delay is None:
            delay = parse_rate_limit_reset(error.headers)
    return delay


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How one request is retried.

    ``max_attempts`` counts attempts in total, as the seed's ``max_retries`` did (tenacity's
    ``stop_after_attempt``): 3 means one try and up to two retries; 0 and 1 both mean a single
    attempt. Without a server hint the wait before retry ``n`` (1-based) is full jitter,
    ``uniform(0, min(max_delay, multiplier * 2 ** (n - 1)))``. A server hint (``retry-after-ms``,
    ``retry-after``, or on a 429 the rate-limit reset) is obeyed up to ``max_server_delay``,
    plus up to 10 % so that many requests told the same time do not return at once.
    """

    max_attempts: int = 10
    multiplier: float = 1.0
    max_delay: float = 60.0
    max_server_delay: float = 120.0

    def __post_init__(self) -> None:
        check_count("max_retries", self.max_attempts)
        check_seconds("retry_multiplier", self.multiplier)
        check_seconds("retry_max", self.max_delay)
        check_seconds("max_server_delay", self.max_server_delay)

    def should_retry(self, attempts_made: int) -> bool:
        """Whether another attempt is allowed after ``attempts_made`` attempts."""
        return attempts_made < self.max_attempts

    def backoff(self, attempts_made: int, rng: random.Random) -> float:
        """Full-jitter exponential backoff before attempt ``attempts_made + 1``."""
        exponent = max(0, attempts_made - 1)
        if self.multiplier == 0 or self.max_delay == 0:
            return 0.0
        # 2**exponent overflows a float past 1023; long before that the cap applies.
        ceiling = (
            self.max_delay
            if exponent >= 64
            else min(self.max_delay, self.multiplier * float(2**exponent))
        )
        return rng.uniform(0.0, ceiling)

    def next_delay(self, attempts_made: int, error: RequestError, rng: random.Random) -> float:
        """Seconds to wait before the next attempt."""
        hint = server_requested_delay(error)
        if hint is not None:
            capped = min(hint, self.max_server_delay)
            return capped + rng.uniform(0.0, 0.1 * capped)
        return self.backoff(attempts_made, rng)


class RetryBudget:
    """A client-wide allowance of retries (botocore's retry quota, simplified).

    It starts full at ``capacity``. Each retry spends ``retry_cost`` (``timeout_cost`` after a
    timeout, which is the most expensive kind of failure to repeat); a request that succeeds
    without retrying returns 1, and one that succeeds after retrying returns what its retries
    cost. When a retry cannot be paid for, the request fails with its last error instead of
    retrying. With the defaults a total outage costs at most about 100 extra requests.
    """

    __slots__ = ("_level", "capacity", "retry_cost", "timeout_cost")

    def __init__(self, capacity: int = 500, retry_cost: int = 5, timeout_cost: int = 10) -> None:
        check_count("retry_budget capacity", capacity)
        check_count("retry_budget retry_cost", retry_cost)
        check_count("retry_budget timeout_cost", timeout_cost)
        self.capacity = capacity
        self.retry_cost = retry_cost
        self.timeout_cost = timeout_cost
        self._level = capacity

    @property
    def level(self) -> int:
        return self._level

    def try_spend(self, error: RequestError) -> int | None:
        """Pay for one retry after ``error``; the cost paid, or ``None`` if the budget is empty."""
        cost = self.timeout_cost if isinstance(error, RequestTimeoutError) else self.retry_cost
        if cost > self._level:
            return None
        self._level -= cost
        return cost

    def on_success(self, spent_on_request: int) -> None:
        """Refill after a success; ``spent_on_request`` is what this request's retries cost."""
        self._level = min(self.capacity, self._level + max(1, spent_on_request))

    def __repr__(self) -> str:
        return f"RetryBudget(level={self._level}, capacity={self.capacity})"
