"""``build_processor``: the stage wrapped as Ray Data's own processors are, a callable from a
dataset to the dataset of results (``ray.data.llm.build_processor``'s shape)."""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import ray.data

from .. import ConfigurationError, _json
from ._options import SPLIT_WARNING, split_needed
from ._stage import OpenAIStage, Preprocess

Postprocess = Callable[[dict[str, Any]], dict[str, Any]]

#: CPUs Ray reserves for each actor: the stage mostly waits on the network.
DEFAULT_NUM_CPUS = 0.25
DEFAULT_BATCH_SIZE = 64
#: Ray Data tasks (each one a bundle of blocks, several batches) an actor runs at once. With 1,
#: Ray's default for actors, an actor takes its next task only when the last one has finished:
#: its client drains at every task's end, and a task queued behind a busy actor waits there
#: while another actor idles (its share of the keys unused until its lease shrinks).
DEFAULT_MAX_CONCURRENT_BATCHES = 4


class Processor:
    """Call it with a ``ray.data.Dataset``; it returns the (lazy) dataset of results."""

    def __init__(
        self,
        stage_kwargs: dict[str, Any],
        postprocess: Postprocess | None,
        map_batches_kwargs: dict[str, Any],
    ) -> None:
        self._stage_kwargs = stage_kwargs
        self._postprocess = postprocess
        self._map_batches_kwargs = map_batches_kwargs

    def __call__(self, dataset: ray.data.Dataset) -> ray.data.Dataset:
        results = one_batch_blocks(dataset, self._map_batches_kwargs.get("batch_size")).map_batches(
            OpenAIStage,
            fn_constructor_kwargs=self._stage_kwargs,
            batch_format="pyarrow",
            **self._map_batches_kwargs,
        )
        if self._postprocess is not None:
            results = results.map(_Postprocess(self._postprocess))
        return results

    def __repr__(self) -> str:
        return (
            f"Processor(workers={self._stage_kwargs['workers']}, "
            f"endpoint={self._stage_kwargs.get('endpoint')!r})"
        )


class _Postprocess:
    """Calls ``postprocess`` with the row's ``response`` parsed back into a dict."""

    def __init__(self, postprocess: Postprocess) -> None:
        self._postprocess = postprocess

    def __call__(self, row: dict[str, Any]) -> dict[str, Any]:
        text = row.get("response")
        parsed = dict(row, response=None if text is None else _json.loads(text))
        kept = self._postprocess(parsed)
        if not isinstance(kept, dict):
            raise ConfigurationError(
                f"postprocess must return a row (a dict), got {type(kept).__name__}"
            )
        return kept


def build_processor(
    preprocess: Preprocess | None = None,
    postprocess: Postprocess | None = None,
    *,
    workers: int = 1,
    batch_size: int = DEFAULT_BATCH_SIZE,
    num_cpus: float = DEFAULT_NUM_CPUS,
    max_concurrent_batches: int = DEFAULT_MAX_CONCURRENT_BATCHES,
    map_batches_kwargs: Mapping[str, Any] | None = None,
    **client_options: Any,
) -> Processor:
    """A processor that sends one request per row with ``workers`` actors, each with one
    :class:`~openai_multi_client.AsyncMultiClient` made of ``client_options`` (``endpoint``,
    ``api_key``, ``base_url``, ``concurrency`` per actor, ``shared_limits``, ``max_retries``,
    ``timeout``, ...).

    ``preprocess(row) -> body`` (default: the ``body`` column); ``postprocess(row) -> row``
    (optional) sees the row with ``response`` parsed into a dict. ``max_concurrent_batches``:
    the Ray Data tasks each actor runs at once (its Ray ``max_concurrency``, as in
    ``ray.data.llm``'s processors), all on the actor's one client. ``map_batches_kwargs`` go to
    ``Dataset.map_batches`` as they are (``compute=`` replaces the stage's actor pool).
    Arguments are checked here, on the driver.
    """
    if postprocess is not None and not callable(postprocess):
        raise ConfigurationError(f"postprocess must be a function of a row, got {postprocess!r}")
    # Checks every argument now (nothing is started): a mistake fails here, not in each actor.
    stage = OpenAIStage(preprocess, workers=workers, **client_options)
    options = stage._options  # checked, with keys in redacting Key objects
    if split_needed(workers, options):
        warnings.warn(SPLIT_WARNING.format(workers=workers), UserWarning, stacklevel=2)
    extra = dict(map_batches_kwargs or {})
    for name in ("fn_constructor_kwargs", "batch_format"):
        if name in extra:
            raise ConfigurationError(f"map_batches_kwargs must not set {name!r}: the stage does")
    calls = max_concurrent_batches
    if isinstance(calls, bool) or not isinstance(calls, int) or calls < 1:
        raise ConfigurationError(
            f"max_concurrent_batches must be a whole number >= 1, got {calls!r}"
        )
    # The user's own actor pool (compute= or the older concurrency=) replaces the stage's.
    pool = {} if {"compute", "concurrency"} & set(extra) else actor_pool(workers, calls)
    map_kwargs = {**pool, "batch_size": batch_size, "num_cpus": num_cpus, **extra}
    stage_kwargs = {"preprocess": preprocess, "workers": workers, **options}
    return Processor(stage_kwargs, postprocess, map_kwargs)


def one_batch_blocks(dataset: ray.data.Dataset, batch_size: object) -> ray.data.Dataset:
    """``dataset`` in blocks of at most one batch (Ray's streaming repartition: no shuffle, no
    barrier), so that each Ray task is one batch. Ray hands a whole block to one actor: from
    ``range(1200)``'s 4 blocks of 300 rows, one of 3 actors got twice the work and finished
    alone, the keys' shares idle in the others' hands until the leases moved them. Unchanged
    when the batch is the whole block (``batch_size=None``) or Ray is older."""
    parameters = inspect.signature(dataset.repartition).parameters
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        return dataset
    if "target_num_rows_per_block" not in parameters:
        return dataset
    return dataset.repartition(target_num_rows_per_block=batch_size)


def actor_pool(workers: int, calls_per_actor: int) -> dict[str, Any]:
    """``map_batches`` arguments for a pool of ``workers`` actors that each run
    ``calls_per_actor`` tasks at once: ``ActorPoolStrategy(max_concurrent_calls_per_actor=)``
    where Ray has it, else the actor's ``max_concurrency`` as a remote argument (older Ray).
    No task waits in a busy actor's queue (``max_tasks_in_flight_per_actor`` equal to the
    tasks it runs, where Ray's default is twice that): an actor takes its next batch when it
    has room, so the actors, paced by their shares of the keys, finish together."""
    strategy = ray.data.ActorPoolStrategy
    parameters = inspect.signature(strategy).parameters
    options: dict[str, Any] = {"size": workers}
    if "max_tasks_in_flight_per_actor" in parameters:
        options["max_tasks_in_flight_per_actor"] = calls_per_actor
    if "max_concurrent_calls_per_actor" not in parameters:
        return {"compute": strategy(**options), "max_concurrency": calls_per_actor}
    options["max_concurrent_calls_per_actor"] = calls_per_actor
    return {"compute": strategy(**options)}
