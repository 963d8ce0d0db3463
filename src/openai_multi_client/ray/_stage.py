"""The stage: a callable class for ``Dataset.map_batches``, one :class:`AsyncMultiClient` per
actor for the actor's lifetime.

Ray Data builds the class once per actor and calls it with each batch on the actor's one event
loop, several batches at a time. Every batch's rows go to the same client (so the actor's
``concurrency``, its keys' limits and its retry budget cover all of them); one task per actor
reads the client's results and hands each to the queue of the batch it came from, and each
call yields its batch's rows as they finish, so one slow request does not hold the others
back. A row whose body cannot be made or is refused becomes a row with its error; a request that
fails becomes a row with its error: neither fails the Ray task.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import pyarrow as pa

from .. import AsyncMultiClient, ConfigurationError, Result
from ._options import check_options, check_workers, make_client
from ._rows import Outcome, as_table, check_columns, from_error, from_result, output_table

Preprocess = Callable[[dict[str, Any]], Mapping[str, Any]]

# Where a result's batch and row are kept, in the request's metadata (never sent).
_BATCH = "omc_ray_batch"
_ROW = "omc_ray_row"
_CLOSE_SECONDS = 10.0  # to give leases back when the actor shuts down


def body_column(row: dict[str, Any]) -> Mapping[str, Any]:
    """The default ``preprocess``: the row's ``body`` column (as in the Batch API's files)."""
    if "body" not in row:
        raise ConfigurationError(
            "the row has no 'body' column: give preprocess=, a function from a row to a "
            "request body"
        )
    body: Mapping[str, Any] = row["body"]
    return body


class OpenAIStage:
    """A Ray Data stage that sends one request per row through openai-multi-client::

        ds.map_batches(
            OpenAIStage,
            fn_constructor_kwargs={"preprocess": make_body, "workers": 4, "endpoint": "chats",
                                   "api_key": keys, "shared_limits": "redis://..."},
            compute=ray.data.ActorPoolStrategy(
                size=4, max_concurrent_calls_per_actor=4, max_tasks_in_flight_per_actor=4
            ),
            batch_size=64,
            batch_format="pyarrow",
        )

    Let each actor run several of Ray's tasks at once (``max_concurrent_calls_per_actor``, or
    ``max_concurrency=`` on older Ray): with Ray's default of one, the actor's client drains
    at the end of every task (a bundle of blocks) and a task queued behind a busy actor waits
    while another idles; and queue none behind them (``max_tasks_in_flight_per_actor``), so
    that an actor takes the next batch when it has room. ``preprocess(row) -> body`` makes the
    request body from a row (default: the ``body`` column); ``workers`` is the number of actors
    (the pool's size): without ``shared_limits``, each actor uses 1/``workers`` of every key's
    limits. Every other keyword is :class:`~openai_multi_client.AsyncMultiClient`'s
    (``endpoint``, ``api_key``,
    ``base_url``, ``concurrency`` within the actor, ``shared_limits``, ``max_retries``,
    ``timeout``, ...). Output rows: see :mod:`openai_multi_client.ray`.
    """

    def __init__(
        self, preprocess: Preprocess | None = None, *, workers: int = 1, **client_options: Any
    ) -> None:
        if preprocess is not None and not callable(preprocess):
            raise ConfigurationError(
                f"preprocess must be a function from a row to a request body, got {preprocess!r}"
            )
        self._preprocess: Preprocess = preprocess or body_column
        self._workers = check_workers(workers)
        self._options = check_options(client_options)
        self._client: AsyncMultiClient | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._reader: asyncio.Task[None] | None = None
        self._batches: dict[int, asyncio.Queue[Outcome | BaseException]] = {}
        self._batch_ids = itertools.count()

    def __repr__(self) -> str:
        endpoint = self._options.get("endpoint")
        return f"OpenAIStage(workers={self._workers}, endpoint={endpoint!r})"

    async def __call__(self, batch: Any) -> AsyncIterator[pa.Table]:
        table = as_table(batch)
        check_columns(table)
        if table.num_rows == 0:
            yield output_table(table, [])
            return
        client = self._started()
        batch_id = next(self._batch_ids)
        queue: asyncio.Queue[Outcome | BaseException] = asyncio.Queue()
        self._batches[batch_id] = queue
        producer = asyncio.create_task(self._produce(client, table, batch_id, queue))
        try:
            remaining = table.num_rows
            while remaining:
                ready = [await queue.get()]
                while not queue.empty():
                    ready.append(queue.get_nowait())
                outcomes: list[Outcome] = []
                for item in ready:
                    if isinstance(item, BaseException):
                        raise item
                    outcomes.append(item)
                remaining -= len(outcomes)
                yield output_table(table, outcomes)
        finally:
            del self._batches[batch_id]
            producer.cancel()

    def _started(self) -> AsyncMultiClient:
        """The actor's client, made on the first batch (in the actor's event loop)."""
        if self._client is None:
            self._client = make_client(self._options, self._workers)
            self._loop = asyncio.get_running_loop()
            self._reader = asyncio.create_task(self._read(self._client), name="omc-ray-results")
        return self._client

    async def _produce(
        self,
        client: AsyncMultiClient,
        table: pa.Table,
        batch_id: int,
        queue: asyncio.Queue[Outcome | BaseException],
    ) -> None:
        for position, row in enumerate(table.to_pylist()):
            try:
                body = self._preprocess(row)
                if not isinstance(body, Mapping):
                    raise ConfigurationError(
                        f"preprocess must return a request body (a dict), got {type(body).__name__}"
                    )
                await client.request(body, metadata={_BATCH: batch_id, _ROW: position})
            except Exception as exc:  # a bad row is a row with its error, not a failed task
                queue.put_nowait(from_error(position, exc))

    async def _read(self, client: AsyncMultiClient) -> None:
        """Hand every result to its batch; if the client fails, fail the batches waiting."""
        try:
            async for result in client:
                self._deliver(result)
        except Exception as exc:
            for queue in self._batches.values():
                queue.put_nowait(exc)
            raise

    def _deliver(self, result: Result) -> None:
        queue = self._batches.get(result.metadata[_BATCH])
        if queue is not None:  # else its batch was abandoned (Ray cancelled the call)
            queue.put_nowait(from_result(result.metadata[_ROW], result))

    async def _aclose(self) -> None:
        client, reader = self._client, self._reader
        if client is not None:
            await client.aclose()
        if reader is not None:
            reader.cancel()
            with contextlib.suppress(BaseException):
                await reader

    def __del__(self) -> None:
        """Ray Data calls this when the actor shuts down gracefully: close the client on its
        loop, so that leases of shared limits are given back at once, not after their TTL."""
        loop = getattr(self, "_loop", None)  # None: __init__ failed or no batch came
        if loop is None or loop.is_closed() or not loop.is_running():
            return
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(self._aclose(), loop).result(_CLOSE_SECONDS)
