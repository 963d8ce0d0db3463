"""The producer of ``omc run``: turns input items into requests for the engine.

For each batch of input items it asks the journal what it holds about their ids, then, item by
item: reports a bad line; skips a request already done (unless ``--retry-failed`` selects it);
answers one from the cache; or builds the request and submits it (waiting while the engine's
intake is full, which is what keeps memory flat). It stops reading at a stop or at
``--max-requests``, and closes the engine's intake when it is done (with the reason, if it
failed, so that the consumer raises it after the last result).
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from typing import Any

from .._engine import AsyncMultiClient
from .._errors import ClientClosedError, ConfigurationError, JournalError
from ._batch import BadLine, BatchRequest, error_line, output_line
from ._cache import ResponseCache, cache_key
from ._commit import Committer
from ._config import RunConfig
from ._files import Outputs
from ._journal import Journal, Known, request_digest
from ._progress import RunProgress
from ._reader import Item
from ._stop import RunStop

__all__ = ["BadLines", "Producer"]

_BAD_LINES_SHOWN = 20  # bad lines printed when there is no --errors file


class BadLines:
    """Reports bad input lines: to the ``--errors`` file, else the first few on stderr."""

    def __init__(self, outputs: Outputs, progress: RunProgress) -> None:
        self._outputs = outputs
        self._progress = progress
        self._shown = 0
        self.count = 0

    def report(self, item: BadLine) -> None:
        self.count += 1
        self._progress.bad_line()
        data = error_line(item.custom_id, code=item.code, message=item.message, line=item.line)
        if self._outputs.errors is not None:
            self._outputs.write_error(data)
        elif self._shown < _BAD_LINES_SHOWN:
            self._shown += 1
            print(f"omc run: {item.message}", file=sys.stderr)


class Producer:
    """Feeds the input's requests to ``client``; counts what it sent."""

    def __init__(
        self,
        config: RunConfig,
        *,
        client: AsyncMultiClient,
        journal: Journal,
        committer: Committer,
        cache: ResponseCache | None,
        progress: RunProgress,
        bad_lines: BadLines,
        stop: RunStop,
    ) -> None:
        self._config = config
        self._client = client
        self._journal = journal
        self._committer = committer
        self._cache = cache
        self._progress = progress
        self._bad_lines = bad_lines
        self._stop = stop
        self.sent = 0
        self.capped: str | None = None  # the --max-requests limit, once reached
        self.read_all = False  # the whole input was read

    async def run(self, batches: AsyncIterator[list[Item]]) -> None:
        """Feed ``batches``, then close the client's intake (with the reason if feeding
        failed: the consumer re-raises it after the last result)."""
        try:
            await self._feed(batches)
        except BaseException as exc:
            self._client.close(exc)
            if isinstance(exc, asyncio.CancelledError):
                raise
        else:
            self._client.close()

    async def _feed(self, batches: AsyncIterator[list[Item]]) -> None:
        async for batch in batches:
            known = self._journal.lookup(
                [item.custom_id for item in batch if isinstance(item, BatchRequest)]
            )
            for item in batch:
                if self._stop.stopping or self.capped:
                    return
                if isinstance(item, BadLine):
                    self._bad_lines.report(item)
                    continue
                digest = request_digest(item.url, item.body)
                if self._should_send(item, digest, known.get(item.custom_id)):
                    await self._send(item, digest)
        self.read_all = True

    def _should_send(self, item: BatchRequest, digest: bytes, known: Known | None) -> bool:
        """Whether to send ``item``, given what the journal holds about its ``custom_id``.
        Refuses (:class:`JournalError`) a request that the journal holds with another url or
        body: the input is not the one the journal was made for (the only check for stdin)."""
        if known is None:
            return True
        if known.digest is not None and known.digest != digest and not self._config.force:
            shown = repr(item.custom_id[:60]) + ("..." if len(item.custom_id) > 60 else "")
            raise JournalError(
                f"line {item.line}: custom_id {shown} was sent before with another url or body "
                f"({self._journal.path}): this input is not the one the journal was made for. "
                "Use another --journal (or -o), or --force to resume anyway"
            )
        if not known.done:
            return True  # sent, outcome unknown: send again
        return known.to_retry(self._config.retry_failed)

    async def _send(self, item: BatchRequest, digest: bytes) -> None:
        if self._answered_from_cache(item, digest):
            return
        limit = self._config.max_requests
        if limit is not None and self.sent >= limit:
            self.capped = f"--max-requests {limit}"
            return
        metadata = {
            "custom_id": item.custom_id,
            "line": item.line,
            "digest": digest,
            "url": item.url,
        }
        try:
            request = self._client.build_request(
                _with_tier(item, self._config.flex), endpoint=item.url, metadata=metadata
            )
        except ConfigurationError as exc:  # e.g. NaN, which only JSON's superset allows
            message = f"line {item.line}: the body cannot be sent: {exc}"
            self._bad_lines.report(BadLine(item.line, item.custom_id, "invalid_body", message))
            return
        self.sent += 1
        try:
            await self._client.submit(request)
        except ClientClosedError:
            if self._stop.stopping:  # a signal or a budget closed the client meanwhile
                return
            raise

    def _answered_from_cache(self, item: BatchRequest, digest: bytes) -> bool:
        if self._cache is None:
            return False
        hit = self._cache.get(cache_key(item.url, item.body))
        if hit is None:
            return False
        status_code, request_id, body = hit
        data = output_line(
            item.custom_id, status_code=status_code, request_id=request_id, body=body
        )
        self._committer.record(
            item.custom_id, item.line, data, digest, failed=False, retryable=False
        )
        self._progress.cached()  # not sent: no tokens spent, no cost
        return True


# The endpoints that take ``"service_tier": "flex"`` (API-FACTS: chat completions, responses).
_FLEX_ENDPOINTS = frozenset({"/v1/chat/completions", "/v1/responses"})


def _with_tier(item: BatchRequest, flex: bool) -> dict[str, Any]:
    """The body to send: with ``--flex``, ``service_tier`` set to flex where the endpoint takes
    it and the line did not choose a tier itself."""
    if not flex or item.url not in _FLEX_ENDPOINTS or "service_tier" in item.body:
        return item.body
    return {**item.body, "service_tier": "flex"}
