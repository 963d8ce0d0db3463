"""Which failures to retry, how long to wait, and when to stop retrying altogether.

Four pieces, all free of I/O so they can be tested exactly:

* :func:`classify` maps an error to an :class:`Action` (the classification table below);
* :class:`RetryPolicy` is a frozen dataclass whose :meth:`RetryPolicy.next_delay` is pure;
* :class:`RetryBudget` is a token bucket of retries shared by the whole client, in the manner of
  botocore's retry quota: retries spend from it, successes refill it, so in a total outage the
  client stops multiplying traffic after a bounded number of retries;
* :func:`decide` is the one retry decision, used by the engine and by ``@stable`` alike: a
  failed attempt, the request's :class:`Attempts` so far, the policy and the budget in, a
  :class:`Decision` out (retry after d, with the key cooled for c / retire the key / fail),
  in the manner of urllib3's ``Retry.increment()``: the state is a value and the next value is
  returned, never mutated.

Classification table (first matching row wins):

=========================================  ==========
error                                      action
=========================================  ==========
401, 403, 429 ``insufficient_quota``       RETIRE_KEY (the request moves to another key)
header ``x-should-retry: true|false``      RETRY / FAIL (the server knows best)
408, 409, 429, 5xx                         RETRY (a flex 429 "resource unavailable" too)
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
from dataclasses import dataclass, replace

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
from ._limits.health import Scope
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


def refusal_scope(error: RequestError) -> Scope:
    """What a RETIRE_KEY answer is about, as far as it says (:class:`~openai_multi_client.
    _limits.health.Scope`; the key pool weighs it with the models the key answered):

    * ``KEY``: an exhausted quota (the account's), OpenAI's code ``invalid_api_key`` (the key
      does not exist: a typo, a revoked key), or LiteLLM's check of its own key ("Invalid
      proxy server token");
    * ``MODEL``: a proxy reporting its upstream's error for the model asked: LiteLLM prefixes
      the upstream's exception with ``litellm.`` and adds "model group 'X' failed" (it also
      rewrites the code to the status, so OpenAI's ``invalid_api_key`` from the upstream does
      not reach us as such);
    * ``UNSURE``: any other 401 or 403.
    """
    if not isinstance(error, AuthenticationError | PermissionDeniedError):
        return Scope.KEY
    message = _error_message(error).lower()
    if error.code == "invalid_api_key" or "invalid proxy server token" in message:
        return Scope.KEY
    if message.startswith("litellm.") or "model group '" in message:
        return Scope.MODEL
    return Scope.UNSURE


def _error_message(error: APIStatusError) -> str:
    """The message of the answer's error object (empty without one)."""
    body = error.body
    details = body.get("error") if isinstance(body, dict) else None
    message = details.get("message") if isinstance(details, dict) else None
    return message if isinstance(message, str) else ""


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
    ``max_paced`` (the client's ``max_paced_retries``) bounds the recognised rate-limit answers
    one request may get without spending attempts (see :func:`decide`).
    """

    max_attempts: int = 10
    multiplier: float = 1.0
    max_delay: float = 60.0
    max_server_delay: float = 120.0
    max_paced: int = 100

    def __post_init__(self) -> None:
        check_count("max_retries", self.max_attempts)
        check_seconds("retry_multiplier", self.multiplier)
        check_seconds("retry_max", self.max_delay)
        check_seconds("max_server_delay", self.max_server_delay)
        check_count("max_paced_retries", self.max_paced)

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

    def cost(self, error: RequestError) -> int:
        """What one retry after ``error`` costs."""
        return self.timeout_cost if isinstance(error, RequestTimeoutError) else self.retry_cost

    def spend(self, cost: int) -> None:
        """Take ``cost`` (at most the level: :func:`decide` checked it)."""
        self._level = max(0, self._level - cost)

    def try_spend(self, error: RequestError) -> int | None:
        """Pay for one retry after ``error``; the cost paid, or ``None`` if the budget is empty."""
        cost = self.cost(error)
        if cost > self._level:
            return None
        self._level -= cost
        return cost

    def on_success(self, spent_on_request: int) -> None:
        """Refill after a success; ``spent_on_request`` is what this request's retries cost."""
        self._level = min(self.capacity, self._level + max(1, spent_on_request))

    def __repr__(self) -> str:
        return f"RetryBudget(level={self._level}, capacity={self.capacity})"


# A key's recognised 429 rate limit without a usable hint cools that key for this long.
DEFAULT_COOL_DOWN = 1.0
# The default of ``max_paced_retries``: recognised rate-limit answers one request may get
# before they count as failed attempts.
MAX_PACED_ATTEMPTS = 100


@dataclass(frozen=True, slots=True)
class Attempts:
    """What one request's failed attempts have cost so far (a value: :func:`decide` returns the
    next one). ``failures`` counts the attempts that count against ``max_attempts``; ``paced``
    the 429 ``rate_limit_exceeded`` answers that did not; ``retry_cost`` what the retries took
    from the :class:`RetryBudget` (returned to it when the request succeeds)."""

    failures: int = 0
    paced: int = 0
    retry_cost: int = 0


@dataclass(frozen=True, slots=True)
class Decision:
    """The answer of :func:`decide`.

    ``action`` is :attr:`Action.RETRY` (after ``delay`` seconds), :attr:`Action.RETIRE_KEY`
    (retire the key, then try again at once on another one) or :attr:`Action.FAIL`.
    ``cool_key`` (seconds), when set, pauses only the key that answered, whatever the action.
    ``attempts`` is the request's next state; ``budget_cost`` what the caller must take from the
    budget (:meth:`RetryBudget.spend`). ``reason`` says why a retryable failure fails anyway.
    ``paced``: a key's rate limit turned the request away; it waits for a key with room, not
    for a delay.
    """

    action: Action
    attempts: Attempts
    delay: float = 0.0
    cool_key: float | None = None
    budget_cost: int = 0
    reason: str | None = None
    paced: bool = False


def is_pacing(error: RequestError) -> bool:
    """A 429 recognised as a key's rate limit: the request did nothing wrong, the key needs a
    pause. Recognised means the server said so in a way only a rate limiter does: a retry hint
    (``retry-after``, ``retry-after-ms``, "try again in", a reset), ``x-ratelimit-*`` headers
    (LiteLLM's ``llm_provider-`` copies too), or OpenAI's ``rate_limit_exceeded`` code or
    "Rate limit reached" message. A bare 429 (a gateway's HTML page, "Rate limit exceeded" and
    nothing else) says nothing of when room comes back: it is an ordinary retryable failure."""
    if not isinstance(error, RateLimitError) or isinstance(error, InsufficientQuotaError):
        return False
    if error.code == "rate_limit_exceeded" or _RATE_LIMIT_MESSAGE in str(error).lower():
        return True
    if any("x-ratelimit-" in name.lower() for name in error.headers):
        return True
    return server_requested_delay(error) is not None


def is_capacity(error: RequestError) -> bool:
    """A 429 "resource unavailable": the flex tier (``service_tier: "flex"``) has no capacity
    for the request just now. It is the server's shortage, not the key's rate limit (OpenAI
    sends it with the usual ``x-ratelimit-*`` headers, which then say nothing about it), so it
    neither paces nor cools the key: :func:`decide` retries it as an ordinary failure.
    Recognised by the code or type ``resource_unavailable`` or the message "Resource
    unavailable"."""
    if not isinstance(error, RateLimitError) or isinstance(error, InsufficientQuotaError):
        return False
    if _CAPACITY_CODE in (error.code, error.type):
        return True
    text = str(error).lower()
    return _CAPACITY_CODE in text or "resource unavailable" in text


_CAPACITY_CODE = "resource_unavailable"


# How OpenAI's 429 messages begin ("Rate limit reached for gpt-4o in organization ...").
_RATE_LIMIT_MESSAGE = "rate limit reached"


def decide(
    error: RequestError,
    attempts: Attempts,
    policy: RetryPolicy,
    budget: RetryBudget | None,
    rng: random.Random,
) -> Decision:
    """The one retry decision after a failed attempt (pure: the budget is read, not spent).

    * :func:`classify` says RETIRE_KEY (401, 403, 429 ``insufficient_quota``): retire the key
      and try again on another one; no attempt is spent, since the request did nothing wrong.
    * It says FAIL: fail.
    * A 429 recognised as a rate limit (:func:`is_pacing`) cools that key (for the server's
      hint capped at ``max_server_delay``, else :data:`DEFAULT_COOL_DOWN`) and the request
      retries at once, waiting for a key with room in the limiter. It costs **no attempt and
      no budget**, up to ``policy.max_paced`` (the client's ``max_paced_retries``, default
      :data:`MAX_PACED_ATTEMPTS`) such answers; after that each counts as a failed attempt.
      The reason, for the engine and ``@stable`` alike: a rate-limit answer is pacing, not a
      failure of the request. A key shared by several threads, processes or clients is
      expected to say "not now" many times in a busy minute; spending attempts on it made a
      busy key fail calls that only had to wait (``@stable`` with its default 10 attempts
      failed them within seconds), while the limiter already makes the wait cheap. The cap
      keeps a key that refuses forever from holding a request forever.
    * A bare 429 (no hint, no rate-limit headers, no rate-limit code or message) is an
      ordinary retryable failure: it spends an attempt, waits out full jitter in a timer of
      its own (other requests start meanwhile) and cools no key, since nothing says for how
      long the key should rest; re-sending it at once, uncounted, is what let one such answer
      hold a run's only slot for 100 attempts whatever ``max_retries`` said.
    * A flex 429 "resource unavailable" (:func:`is_capacity`) is the same: an attempt, full
      jitter (or the server's ``retry-after``, if it sent one; its rate-limit headers describe
      the key, not the shortage), no key cooled or retired.
    * Any other retryable failure spends an attempt; when ``policy`` allows another one and
      the budget can pay for it, retry after :meth:`RetryPolicy.next_delay`, else fail.
    """
    action = classify(error)
    if action is not Action.RETRY:
        return Decision(action, attempts)
    cool_key: float | None = None
    capacity = is_capacity(error)
    if not capacity and is_pacing(error):
        hint = server_requested_delay(error)
        cool_key = min(DEFAULT_COOL_DOWN if hint is None else hint, policy.max_server_delay)
        if attempts.paced < policy.max_paced:
            paced = replace(attempts, paced=attempts.paced + 1)
            return Decision(Action.RETRY, paced, cool_key=cool_key, paced=True)
    failed = replace(attempts, failures=attempts.failures + 1)
    if not policy.should_retry(failed.failures):
        return Decision(Action.FAIL, failed, cool_key=cool_key, reason="attempts spent")
    cost = 0 if budget is None else budget.cost(error)
    if budget is not None and cost > budget.level:
        return Decision(Action.FAIL, failed, cool_key=cool_key, reason="retry budget exhausted")
    if capacity:
        hint = parse_retry_after(error.headers) if isinstance(error, APIStatusError) else None
        delay = (
            policy.backoff(failed.failures, rng)
            if hint is None
            else policy.next_delay(failed.failures, error, rng)
        )
    else:
        delay = policy.next_delay(failed.failures, error, rng)
    return Decision(
        Action.RETRY,
        replace(failed, retry_cost=failed.retry_cost + cost),
        delay=delay,
        cool_key=cool_key,
        budget_cost=cost,
    )
