"""Delivery: outcomes become :class:`Result` objects and wait, in order if asked, for the consumer.

The dispatcher calls :meth:`Delivery.deliver` once per request (success or failure), which
makes its :class:`Result`; the client's consumer calls :meth:`Delivery.pop` for up to n
results. In ordered mode a result that finished early waits in the reorder buffer until every
earlier one was delivered. The buffer has its own bound, ``reorder_buffer`` results: the
dispatcher admits a request only while it lies at most that many places after the oldest
unfinished one (see ``_dispatch``), so a slow head request lets the others go on until the buffer
is full instead of stopping the run.
"""

from __future__ import annotations

import asyncio
from collections import deque

from ._api import Outcome
from ._errors import RequestError
from ._request import Request, Result
from ._usage import UsageCounter


class Delivery:
    """The results not yet taken by the consumer, and the counters of outcomes."""

    __slots__ = (
        "_next",
        "_ordered",
        "_reorder",
        "consumed",
        "failed",
        "failed_by_class",
        "output",
        "succeeded",
        "usage",
        "wakeup",
    )  # fmt: skip

    def __init__(self, ordered: bool) -> None:
        self._ordered = ordered
        self.output: deque[Result] = deque()  # ready for the consumer (who takes with pop)
        self._reorder: dict[int, Result] = {}
        self._next = 0  # the index the ordered output waits for
        self.succeeded = 0
        self.failed = 0
        self.failed_by_class: dict[str, int] = {}  # error class name -> failed requests
        self.consumed = 0
        self.usage = UsageCounter()  # tokens in and out by key, from each answer's usage
        self.wakeup = asyncio.Event()  # set when a result arrives (or the client changes state)

    @property
    def held(self) -> int:
        """Finished results held back until an earlier request finishes (ordered mode)."""
        return len(self._reorder)

    @property
    def head(self) -> int:
        """The index of the oldest unfinished request (ordered mode)."""
        return self._next

    @property
    def finished(self) -> int:
        return self.succeeded + self.failed

    def deliver(
        self,
        request: Request,
        outcome: Outcome | None,
        error: RequestError | None,
        latency: float | None,
    ) -> None:
        """Make the result of ``request`` (its ``outcome``, or its ``error`` when it failed)
        and queue it for the consumer."""
        if outcome is not None:  # (positional, in Result's field order: made once per request)
            result = Result(
                request.index,
                request.endpoint,
                request.data,
                request.metadata,
                outcome.response,
                False,
                request.attempt,
                None,
                outcome.status_code,
                outcome.request_id,
                latency,
                request.key,
                request.callback,
                request.chunk_error,
            )
            self.succeeded += 1
            self.usage.add(request.key, outcome.response)
        else:
            result = Result(
                request.index,
                request.endpoint,
                request.data,
                request.metadata,
                attempt=request.attempt,
                latency=latency,
                key=request.key,
                callback=request.callback,
                _chunk_error=request.chunk_error,
            )
            result.failed = True
            result.error = error
            result.status_code = getattr(error, "status_code", None)
            result.request_id = getattr(error, "request_id", None)
            result.response = getattr(error, "body", None)
            self.failed += 1
            name = "unknown" if error is None else type(error).__name__
            self.failed_by_class[name] = self.failed_by_class.get(name, 0) + 1
        if self._ordered:
            self._reorder[result.index] = result
            while self._next in self._reorder:
                self.output.append(self._reorder.pop(self._next))
                self._next += 1
        else:
            self.output.append(result)
        self.wakeup.set()

    def pop_one(self) -> Result:
        """The next result ready now (there must be one)."""
        self.consumed += 1
        return self.output.popleft()

    def pop(self, limit: int) -> list[Result]:
        """Up to ``limit`` results ready now (in order when ordered)."""
        output = self.output
        count = min(limit, len(output))
        batch = [output.popleft() for _ in range(count)]
        self.consumed += count
        return batch
