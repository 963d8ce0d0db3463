"""``omc run --metrics-port``: the client's Prometheus metrics and the run's own.

Besides what :class:`~openai_multi_client.metrics.PrometheusCollector` reads from the engine,
a run serves its progress (input items, items done), tokens in and out, its estimated cost,
and its journal's counts. Everything is read when Prometheus scrapes, in the server's thread:
the journal through a read-only connection of its own (SQLite's WAL lets it read while the
run writes), the rest from counters the run keeps anyway.

``omc run --batch`` has no engine (no requests in flight, no key pacing, no retries): it serves
the run's own families and its batches': batches by status and key, the lines of the batches
not yet collected (total, completed, failed), and lines waiting for a new batch.
"""

from __future__ import annotations

import sqlite3
import sys
from collections.abc import Callable, Iterator
from typing import Any

from .._engine import AsyncMultiClient
from .._errors import ConfigurationError, OpenAIMultiClientError
from ._batch_journal import batch_counts
from ._config import RunConfig
from ._journal import open_status
from ._progress import RunProgress

__all__ = ["start_batch_metrics", "start_metrics"]


def start_metrics(config: RunConfig, client: AsyncMultiClient, progress: RunProgress) -> Any:
    """Start serving the metrics if ``--metrics-port`` asks for it: the server (``close()``
    it at the end), or ``None``."""
    if config.metrics_port is None:
        return None
    from ..metrics import PrometheusCollector  # the metrics extra

    def extra() -> Iterator[Any]:
        return _run_families(config.journal, progress)

    return _serve(config, PrometheusCollector(client, extra=extra, prices=config.prices))


def start_batch_metrics(config: RunConfig, progress: RunProgress) -> Any:
    """As :func:`start_metrics`, for ``omc run --batch``: the run's and its batches' metrics."""
    if config.metrics_port is None:
        return None

    def families() -> Iterator[Any]:
        yield from _run_families(config.journal, progress)
        if config.journal is not None:
            yield from _batch_families(config.journal)

    return _serve(config, _Families(families))


class _Families:
    """A custom collector of the families ``source`` makes at each scrape."""

    def __init__(self, source: Callable[[], Iterator[Any]]) -> None:
        self._source = source

    def describe(self) -> list[Any]:
        return []  # the registry then calls collect() only when scraped

    def collect(self) -> Iterator[Any]:
        return self._source()


def _serve(config: RunConfig, collector: Any) -> Any:
    from ..metrics import MetricsServer

    assert config.metrics_port is not None
    try:
        server = MetricsServer.start(collector, config.metrics_port, config.metrics_host)
    except OSError as exc:
        raise ConfigurationError(
            f"--metrics-port {config.metrics_port}: cannot listen on "
            f"{config.metrics_host}:{config.metrics_port} ({exc.strerror or exc}); "
            "choose another port, or 0 for any free one"
        ) from None
    host = config.metrics_host
    shown = f"[{host}]" if ":" in host else host
    print(f"omc run: metrics at http://{shown}:{server.port}/metrics", file=sys.stderr)
    return server


def _run_families(journal: str | None, progress: RunProgress) -> Iterator[Any]:
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    if progress.total is not None:
        yield GaugeMetricFamily(
            "omc_run_input_items", "Input items this run covers.", progress.total
        )
    yield GaugeMetricFamily(
        "omc_run_items_done",
        "Input items dealt with: succeeded, failed, bad lines, or done by an earlier run.",
        progress.done_items,
    )
    tokens = CounterMetricFamily(
        "omc_tokens", "Tokens the answers reported, by direction.", labels=["direction"]
    )
    tokens.add_metric(["input"], progress.tokens_in)
    tokens.add_metric(["output"], progress.tokens_out)
    yield tokens
    yield CounterMetricFamily(
        "omc_estimated_cost_dollars",
        "Estimated cost of the answers so far, in US dollars (models with a price).",
        progress.cost,
    )
    if journal is None:
        return
    try:
        status = open_status(journal)
    except (OpenAIMultiClientError, OSError, sqlite3.Error):
        return  # not readable at this moment: leave it out of this scrape
    requests = GaugeMetricFamily(
        "omc_journal_requests",
        "Requests the journal holds: done (an outcome committed) or in_doubt (sent, outcome "
        "unknown yet; after a crash, these may be sent twice).",
        labels=["state"],
    )
    requests.add_metric(["done"], status.done)
    requests.add_metric(["in_doubt"], status.in_doubt)
    yield requests
    yield GaugeMetricFamily(
        "omc_journal_failed_requests", "Done requests whose outcome is a failure.", status.failed
    )


def _batch_families(journal: str) -> Iterator[Any]:
    from prometheus_client.core import GaugeMetricFamily

    try:
        connection = sqlite3.connect(f"file:{journal}?mode=ro", uri=True)
        try:
            counts = batch_counts(connection)
        finally:
            connection.close()
    except sqlite3.Error:
        return  # not readable at this moment: leave it out of this scrape
    if counts is None:
        return
    batches = GaugeMetricFamily(
        "omc_batches",
        "Batches of the run by status ('new' and 'uploaded': not created yet) and by the "
        "redacted id of the key they go through.",
        labels=["status", "key"],
    )
    for (status, key), count in sorted(counts.batches.items()):
        batches.add_metric([status, key], count)
    yield batches
    lines = GaugeMetricFamily(
        "omc_batch_lines",
        "Lines of the batches not yet collected: total, and completed or failed so far by "
        "the server's counts.",
        labels=["state"],
    )
    for state, count in counts.lines.items():
        lines.add_metric([state], count)
    yield lines
    yield GaugeMetricFamily(
        "omc_batch_lines_waiting",
        "Lines waiting to go again in a new batch.",
        counts.waiting,
    )
