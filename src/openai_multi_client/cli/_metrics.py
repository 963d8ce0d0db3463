"""``omc run --metrics-port``: the client's Prometheus metrics and the run's own.

Besides what :class:`~openai_multi_client.metrics.PrometheusCollector` reads from the engine,
a run serves its progress (input items, items done), tokens in and out, its estimated cost,
and its journal's counts. Everything is read when Prometheus scrapes, in the server's thread:
the journal through a read-only connection of its own (SQLite's WAL lets it read while the
run writes), the rest from counters the run keeps anyway.
"""

from __future__ import annotations

import sqlite3
import sys
from collections.abc import Iterator
from typing import Any

from .._engine import AsyncMultiClient
from .._errors import ConfigurationError, OpenAIMultiClientError
from ._config import RunConfig
from ._journal import open_status
from ._progress import RunProgress

__all__ = ["start_metrics"]


def start_metrics(config: RunConfig, client: AsyncMultiClient, progress: RunProgress) -> Any:
    """Start serving the metrics if ``--metrics-port`` asks for it: the server (``close()``
    it at the end), or ``None``."""
    if config.metrics_port is None:
        return None
    from ..metrics import MetricsServer, PrometheusCollector  # the metrics extra

    def extra() -> Iterator[Any]:
        return _run_families(config.journal, progress)

    collector = PrometheusCollector(client, extra=extra, prices=config.prices)
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
