"""Prometheus metrics of a client, read from :meth:`statistics` when Prometheus scrapes.

::

    from prometheus_client import REGISTRY, start_http_server
    from openai_multi_client import OpenAIMultiClient
    from openai_multi_client.metrics import PrometheusCollector

    client = OpenAIMultiClient(...)
    REGISTRY.register(PrometheusCollector(client))
    start_http_server(9464, addr="127.0.0.1")

or, for a server of its own that :meth:`MetricsServer.close` stops,
``MetricsServer.start(PrometheusCollector(client), 9464)``.

The collector costs nothing per request: the engine keeps its counters anyway, and this module
turns a :class:`~openai_multi_client.Statistics` snapshot into metric families only when
scraped (in the scraping thread; ``statistics()`` is safe to call from any thread). Names follow
the Prometheus conventions (``_total`` counters, ``_seconds``); labels have few values: the
outcome, an error class name from the library's exception tree, the kind of 429, and the key's
redacted id or its ``name`` (never its secret). Needs the ``metrics`` extra
(``pip install 'openai-multi-client[metrics]'``, which installs ``prometheus-client``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from ._errors import ConfigurationError

if TYPE_CHECKING:
    from prometheus_client.registry import CollectorRegistry

    from ._engine import Statistics
    from ._limits.pool import KeyStatistics
    from ._prices import Price

try:
    from prometheus_client import CollectorRegistry as _Registry
    from prometheus_client import start_http_server
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
except ImportError:  # pragma: no cover - depends on the environment
    raise ConfigurationError(
        "openai_multi_client.metrics needs prometheus-client: "
        "pip install 'openai-multi-client[metrics]'"
    ) from None

__all__ = ["KEY_STATES", "MetricsServer", "PrometheusCollector"]

KEY_STATES = ("active", "cooling", "retired")
"""The values of the ``state`` label of ``omc_key_state``."""


class Collects(Protocol):
    """What :meth:`MetricsServer.start` serves: a Prometheus custom collector."""

    def describe(self) -> list[Metric]: ...
    def collect(self) -> Iterator[Metric]: ...


class HasStatistics(Protocol):
    """Any client: the async one, the sync faces."""

    def statistics(self) -> Statistics: ...


class PrometheusCollector:
    """A custom Prometheus collector of one client's counters, read at scrape time.

    ``extra`` is called at each scrape too and may add metric families of its own (``omc
    run`` adds its journal's counts, tokens and estimated cost). ``prefix`` starts every name
    (default ``omc``). ``prices`` (model name to :class:`~openai_multi_client._prices.Price`,
    such as ``DEFAULT_PRICES`` or what ``load_prices`` read) adds each key's estimated cost.
    """

    def __init__(
        self,
        client: HasStatistics,
        *,
        prefix: str = "omc",
        extra: Callable[[], Iterable[Metric]] | None = None,
        prices: Mapping[str, Price] | None = None,
    ) -> None:
        if not prefix.replace("_", "").isalnum() or prefix[0].isdigit():
            raise ConfigurationError(f"prefix must be a Prometheus name, got {prefix!r}")
        self._client = client
        self._prefix = prefix
        self._extra = extra
        self._prices = prices

    def describe(self) -> list[Metric]:
        """Nothing: the registry then calls :meth:`collect` only when scraped."""
        return []

    def collect(self) -> Iterator[Metric]:
        stats = self._client.statistics()
        yield from self._requests(stats)
        yield from self._keys(stats)
        yield from self._usage(stats)
        if self._extra is not None:
            yield from self._extra()

    def _name(self, name: str) -> str:
        return f"{self._prefix}_{name}"

    def _requests(self, stats: Statistics) -> Iterator[Metric]:
        name = self._name
        yield CounterMetricFamily(
            name("requests_submitted"), "Requests submitted to the client.", stats.submitted
        )
        finished = CounterMetricFamily(
            name("requests"), "Requests finished, by outcome.", labels=["outcome"]
        )
        finished.add_metric(["succeeded"], stats.succeeded)
        finished.add_metric(["failed"], stats.failed)
        yield finished
        yield _labelled(
            CounterMetricFamily(
                name("request_failures"), "Failed requests by error class.", labels=["error"]
            ),
            stats.failed_by_class,
        )
        yield CounterMetricFamily(name("attempts"), "Attempts sent (first tries and retries).",
                                  stats.attempts)  # fmt: skip
        yield _labelled(
            CounterMetricFamily(
                name("retries"),
                "Retries, by the error class that caused them (RateLimitError: a paced 429).",
                labels=["reason"],
            ),
            stats.retries_by_reason,
        )
        yield _labelled(
            CounterMetricFamily(
                name("rate_limited_responses"),
                "429 responses by kind: rate_limit (the key cools down) or insufficient_quota "
                "(the key is retired).",
                labels=["kind"],
            ),
            stats.rate_limited_by_kind,
        )
        yield GaugeMetricFamily(name("requests_in_flight"), "Attempts in flight now.",
                                stats.in_flight)  # fmt: skip
        yield GaugeMetricFamily(
            name("requests_waiting_to_retry"),
            "Requests waiting for their retry delay.",
            stats.waiting_to_retry,
        )
        yield GaugeMetricFamily(
            name("intake_requests"), "Requests submitted and not yet admitted.", stats.queued
        )
        yield CounterMetricFamily(
            name("key_wait_seconds"),
            "Seconds spent waiting for a key with room (every key at its limits).",
            stats.key_wait_seconds,
        )
        if stats.retry_budget_level is not None:
            yield GaugeMetricFamily(
                name("retry_budget"), "What the retry budget has left.", stats.retry_budget_level
            )

    def _keys(self, stats: Statistics) -> Iterator[Metric]:
        name = self._name
        families = {
            "state": GaugeMetricFamily(
                name("key_state"),
                "1 for the state each key is in (active, cooling, retired), else 0.",
                labels=["key", "state"],
            ),
            "rpm": GaugeMetricFamily(
                name("key_limit_requests_per_minute"),
                "Requests per minute each key is paced at (learned from the server's headers, "
                "or configured).",
                labels=["key"],
            ),
            "tpm": GaugeMetricFamily(
                name("key_limit_tokens_per_minute"),
                "Tokens per minute each key is paced at (learned or configured).",
                labels=["key"],
            ),
            "rpm_conf": GaugeMetricFamily(
                name("key_configured_requests_per_minute"),
                "Requests per minute configured for each key (only keys with one).",
                labels=["key"],
            ),
            "tpm_conf": GaugeMetricFamily(
                name("key_configured_tokens_per_minute"),
                "Tokens per minute configured for each key (only keys with one).",
                labels=["key"],
            ),
            "rem_r": GaugeMetricFamily(
                name("key_remaining_requests"),
                "Requests each key's limiter admits now (its one-second window).",
                labels=["key"],
            ),
            "rem_t": GaugeMetricFamily(
                name("key_remaining_tokens"),
                "Tokens each key's limiter admits now (its one-second window).",
                labels=["key"],
            ),
            "learned": GaugeMetricFamily(
                name("key_limits_learned"),
                "1 once a key's limits were read from the server's headers.",
                labels=["key"],
            ),
            "in_flight": GaugeMetricFamily(
                name("key_requests_in_flight"), "Attempts in flight on each key.", labels=["key"]
            ),
            "requests": CounterMetricFamily(
                name("key_requests"), "Attempts sent with each key.", labels=["key"]
            ),
            "tokens": CounterMetricFamily(
                name("key_charged_tokens"),
                "Tokens charged to each key's limits (used, or reserved when unreported).",
                labels=["key"],
            ),
            "limited": CounterMetricFamily(
                name("key_rate_limited_responses"), "429s each key received.", labels=["key"]
            ),
            "failures": CounterMetricFamily(
                name("key_failures"), "Failed attempts on each key.", labels=["key"]
            ),
        }
        for key in stats.keys.keys:
            _add_key(families, key)
        yield from families.values()

    def _usage(self, stats: Statistics) -> Iterator[Metric]:
        tokens = CounterMetricFamily(
            self._name("key_tokens"),
            "Tokens the answers reported, by key and direction (input, output).",
            labels=["key", "direction"],
        )
        usage = sorted(stats.usage_by_key.items())
        for key, counts in usage:
            tokens.add_metric([key, "input"], counts.input_tokens)
            tokens.add_metric([key, "output"], counts.output_tokens)
        yield tokens
        if self._prices is not None:
            cost = CounterMetricFamily(
                self._name("key_estimated_cost_dollars"),
                "Estimated cost of each key's answers, in US dollars (models with a price).",
                labels=["key"],
            )
            for key, counts in usage:
                cost.add_metric([key], counts.cost(self._prices))
            yield cost


def _add_key(families: dict[str, Any], key: KeyStatistics) -> None:
    label = [key.key]
    for state in KEY_STATES:
        families["state"].add_metric([key.key, state], 1.0 if key.state == state else 0.0)
    for family, value in (
        ("rpm", key.requests_per_minute),
        ("tpm", key.tokens_per_minute),
        ("rpm_conf", key.configured_requests_per_minute),
        ("tpm_conf", key.configured_tokens_per_minute),
        ("rem_r", key.requests_remaining),
        ("rem_t", key.tokens_remaining),
    ):
        if value is not None:
            families[family].add_metric(label, value)
    families["learned"].add_metric(label, 1.0 if key.limits_learned else 0.0)
    families["in_flight"].add_metric(label, key.in_flight)
    families["requests"].add_metric(label, key.requests)
    families["tokens"].add_metric(label, key.tokens)
    families["limited"].add_metric(label, key.rate_limited)
    families["failures"].add_metric(label, key.failures)


def _labelled(family: Any, counts: Any) -> Metric:
    for label, count in sorted(counts.items()):
        family.add_metric([label], count)
    result: Metric = family
    return result


class MetricsServer:
    """An HTTP server of its own serving one collector's ``/metrics``, in a daemon thread."""

    def __init__(self, server: Any, thread: threading.Thread, registry: CollectorRegistry):
        self._server = server
        self._thread = thread
        self.registry = registry

    @classmethod
    def start(cls, collector: Collects, port: int, addr: str = "127.0.0.1") -> MetricsServer:
        """Serve ``collector`` (a :class:`PrometheusCollector`, or any custom collector: ``omc
        run --batch`` serves its own) and nothing else on ``addr:port`` (port 0: any free
        port)."""
        registry = _Registry(auto_describe=False)
        registry.register(collector)
        server, thread = start_http_server(port, addr=addr, registry=registry)
        return cls(server, thread, registry)

    @property
    def port(self) -> int:
        """The port it listens on."""
        port: int = self._server.server_address[1]
        return port

    def close(self) -> None:
        """Stop serving and wait for the thread."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()
