"""``omc run``'s live view on a terminal: a progress bar with the pace and the ETA, a table of
the keys and a table of the errors, redrawn in place.

Drawn with `rich <https://github.com/Textualize/rich>`_ (the ``live`` extra): a well-kept
library that already knows terminals (widths, colours, redrawing a block of lines in place,
Windows consoles), so none of that is written here. Without rich, or when stderr is not a
terminal, :class:`~._progress.RunProgress` keeps its one status line or its log lines.

The view reads the run's counters (:class:`~._progress.RunProgress`) and a
:class:`~openai_multi_client.Statistics` snapshot that the run's display task takes anyway;
it redraws at most every :attr:`LiveView.MIN_GAP` seconds, on the run's clock. It never
shows a key's secret: keys are shown by their redacted id or name.
"""

from __future__ import annotations

import importlib.util
from typing import Any, TextIO

from .._clock import Clock
from .._engine import Statistics
from .._limits.pool import KeyStatistics
from ._progress import RunProgress, _rate, _si

__all__ = ["LiveView", "rich_available"]

_MAX_KEY_ROWS = 12
_MAX_ERROR_ROWS = 8


def rich_available() -> bool:
    """Whether rich is installed (the ``live`` extra)."""
    return importlib.util.find_spec("rich") is not None


class LiveView:
    """The live view of one run on ``stream`` (a terminal; ``force_terminal`` and ``width``
    are for tests drawing into a buffer)."""

    MIN_GAP = 0.25
    """Minimum seconds between two redraws (four a second, as rich's own default: a redraw of
    a dozen keys costs a few milliseconds of the loop's time)."""

    def __init__(
        self,
        progress: RunProgress,
        stream: TextIO,
        clock: Clock,
        *,
        force_terminal: bool | None = None,
        width: int | None = None,
    ) -> None:
        from rich.console import Console
        from rich.live import Live

        self._progress = progress
        self._clock = clock
        self.console = Console(file=stream, force_terminal=force_terminal, width=width)
        self._live = Live(
            console=self.console,
            auto_refresh=False,  # redrawn by update(): no thread of its own
            redirect_stdout=False,
            redirect_stderr=False,
        )
        self._next_due = clock.now()
        self._started = False
        self._closed = False

    def update(self, statistics: Statistics, *, force: bool = False) -> None:
        """Redraw with ``statistics`` if a redraw is due (or ``force``); else return at once."""
        now = self._clock.now()
        if self._closed or (now < self._next_due and not force):
            return
        self._next_due = now + self.MIN_GAP
        if not self._started:
            self._live.start()
            self._started = True
        self._live.update(self.render(statistics, now), refresh=True)

    def close(self) -> None:
        """Stop redrawing; the last frame stays on the screen, above what follows."""
        if self._closed:
            return
        self._closed = True
        if self._started:
            self._live.stop()

    def render(self, statistics: Statistics, now: float) -> Any:
        """The whole view at ``now``: bar, keys, errors."""
        from rich.console import Group

        parts: list[Any] = [self._bar(statistics, now)]
        keys = statistics.keys.keys
        if keys:
            parts.append(_keys_table(keys))
        errors = _errors_table(statistics)
        if errors is not None:
            parts.append(errors)
        return Group(*parts)

    def _bar(self, statistics: Statistics, now: float) -> Any:
        from rich.progress_bar import ProgressBar
        from rich.table import Table

        progress = self._progress
        request_rate, token_rate, eta = progress.pace(now)
        done, total = progress.done_items, progress.total
        if total is None:
            count = f"{done:,} done"
        else:
            percent = 100.0 * done / total if total else 100.0
            count = f"{done:,}/{total:,} {percent:5.1f}%"
        figures = [
            count,
            f"{_rate(request_rate)} req/s",
            f"{_si(token_rate)} tok/s",
            f"ETA {eta}" if eta is not None else None,
            progress.cost_text(),
        ]
        line = Table.grid(padding=(0, 1))
        line.add_column(width=30)
        line.add_column()
        bar = ProgressBar(total=float(total) if total else None, completed=done, width=30)
        line.add_row(bar, " • ".join(f for f in figures if f is not None))
        state = Table.grid(padding=(0, 1))
        state.add_row(
            f"{statistics.in_flight:,} in flight",
            f"{statistics.waiting_to_retry:,} waiting to retry",
            f"{statistics.queued:,} queued",
            f"{statistics.failed:,} failed",
            f"{statistics.keys.rate_limited:,}x429",
            f"{statistics.key_wait_seconds:,.0f} s waiting for a key",
        )
        from rich.console import Group

        return Group(line, state)


def _keys_table(keys: tuple[KeyStatistics, ...]) -> Any:
    from rich import box
    from rich.table import Table

    table = Table(box=box.SIMPLE_HEAD, title="keys", title_justify="left", show_edge=False)
    for header in ("key", "state", "req/min", "tok/min", "headroom", "429s", "in flight", "sent"):
        table.add_column(header, justify="left" if header in ("key", "state") else "right")
    # Keys in trouble first; a pool of hundreds of keys shows the first rows and a count.
    order = {"retired": 0, "cooling": 1, "active": 2}
    ranked = sorted(keys, key=lambda k: (order.get(k.state, 3), -k.rate_limited, k.key))
    for key in ranked[:_MAX_KEY_ROWS]:
        style = {"retired": "red", "cooling": "yellow"}.get(key.state, "")
        learned = "" if key.limits_learned or key.configured_requests_per_minute else "?"
        table.add_row(
            key.key,
            key.state,
            _limit(key.requests_per_minute) + learned,
            _limit(key.tokens_per_minute) + learned,
            _headroom(key),
            f"{key.rate_limited:,}",
            f"{key.in_flight:,}",
            f"{key.requests:,}",
            style=style,
        )
    if len(ranked) > _MAX_KEY_ROWS:
        more = len(ranked) - _MAX_KEY_ROWS
        table.add_row(f"... {more:,} more", "", "", "", "", "", "", "")
    return table


def _errors_table(statistics: Statistics) -> Any:
    failed, retried = statistics.failed_by_class, statistics.retries_by_reason
    if not failed and not retried:
        return None
    from rich import box
    from rich.table import Table

    table = Table(box=box.SIMPLE_HEAD, title="errors", title_justify="left", show_edge=False)
    table.add_column("error")
    table.add_column("failed", justify="right")
    table.add_column("retried", justify="right")
    names = sorted(set(failed) | set(retried), key=lambda n: (-failed.get(n, 0), n))
    for name in names[:_MAX_ERROR_ROWS]:
        table.add_row(name, f"{failed.get(name, 0):,}", f"{retried.get(name, 0):,}")
    return table


def _headroom(key: KeyStatistics) -> str:
    """The part of the key's requests window free now (the tighter of requests and tokens)."""
    fractions = []
    for limit, remaining in (
        (key.requests_per_minute, key.requests_remaining),
        (key.tokens_per_minute, key.tokens_remaining),
    ):
        if limit and remaining is not None and key.share > 0:
            fractions.append(min(1.0, remaining / (limit * key.share / 60.0)))
    if key.state == "retired" or not fractions:
        return "-"
    return f"{100 * min(fractions):.0f}%"


def _limit(value: float | None) -> str:
    # The mock server and some proxies announce 10**12 for "no limit".
    return "∞" if value is not None and value >= 1e12 else _si(value)
