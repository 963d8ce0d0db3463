"""Progress display and final summary for ``omc run``.

:class:`RunProgress` counts what happens during a run (requests sent, finished, failed, waiting
to retry, 429s, tokens) and shows it either as one status line redrawn in place on a terminal,
or as a plain log line every few seconds when the output is a pipe or a CI log. At the end,
:meth:`RunProgress.summary` gives a multi-line report with an estimated cost.

The module does no I/O of its own beyond writing to the stream it is given, and reads time
from an injected :class:`~openai_multi_client.Clock`, so tests drive it exactly with a
:class:`~openai_multi_client.testing.FakeClock` and an :class:`io.StringIO`. The prices the cost
estimate uses are in :mod:`._prices`.

The recording methods (:meth:`~RunProgress.started`, :meth:`~RunProgress.finished`, ...) run
once per request in runs of hundreds of thousands of requests, so they only update counters; all
formatting happens in :meth:`~RunProgress.tick` when a redraw is due, and in
:meth:`~RunProgress.summary`.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping
from typing import Any, TextIO

from .._clock import Clock
from .._prices import Price, flex_price, price_for
from .._usage import usage_tokens

__all__ = ["RunProgress"]


_UNKNOWN_MODEL = "(model not reported)"
# Marks a model's tokens spent by flex requests (priced at flex prices) in the cost table.
_FLEX = " (flex)"
_CLEAR_TO_EOL = "\x1b[K"


class RunProgress:
    """Counts the events of a run and reports them on ``stream``.

    ``total`` is the number of input items the run covers, counting those ``already_done`` (by
    an earlier, resumed run) and bad input lines, or ``None`` when unknown (input from a pipe).
    "Done" on the status line counts every item dealt with: succeeded, failed, rejected as a bad
    line, or already done.

    With ``live=True`` (a terminal) :meth:`tick` redraws one status line in place, at most 10
    times a second. With ``live=False`` (a pipe, a CI log) it writes a plain log line every
    ``interval`` seconds (default 10). Only :meth:`tick` and :meth:`close` write; call
    :meth:`tick` often (after each event, or from a timer): it is cheap when nothing is due.

    Requests per second and tokens per second are measured over the last ``WINDOW`` seconds,
    so they follow the current pace rather than the average since the start; the ETA is the
    remaining items at that pace.

    Call :meth:`close` before printing :meth:`summary`, so the summary does not land on the
    status line.
    """

    WINDOW = 10.0
    """Seconds over which the live rates and the ETA are measured."""
    LIVE_MIN_GAP = 0.1
    """Minimum seconds between two redraws of the live line (at most 10 a second)."""
    DEFAULT_INTERVAL = 10.0
    """Seconds between log lines in plain (``live=False``) mode."""

    __slots__ = (
        "_already_done",
        "_bad_lines",
        "_cached",
        "_closed",
        "_drawn",
        "_errors",
        "_failed",
        "_in_flight",
        "_interval",
        "_last_error",
        "_live",
        "_next_due",
        "_no_usage",
        "_now",
        "_ok",
        "_price_cache",
        "_prices",
        "_rate_limited",
        "_start",
        "_stream",
        "_tokens",
        "_tokens_in",
        "_tokens_out",
        "_total",
        "_waiting_retry",
        "_window",
        "_window_tokens",
    )

    def __init__(
        self,
        *,
        total: int | None,
        stream: TextIO,
        clock: Clock,
        live: bool,
        prices: Mapping[str, Price],
        interval: float | None = None,
        already_done: int = 0,
    ) -> None:
        if interval is None:
            interval = self.DEFAULT_INTERVAL
        if not interval > 0:
            raise ValueError(f"interval must be > 0 seconds, got {interval!r}")
        if total is not None and total < 0:
            raise ValueError(f"total must be >= 0 or None, got {total!r}")
        if already_done < 0:
            raise ValueError(f"already_done must be >= 0, got {already_done!r}")
        self._total = total
        self._stream = stream
        self._now = clock.now
        self._live = live
        self._prices = prices
        self._interval = interval
        self._already_done = already_done

        self._start = clock.now()
        # Live: draw at the first tick. Plain: first log line after one interval.
        self._next_due = self._start if live else self._start + interval
        self._drawn = False
        self._closed = False

        self._ok = 0
        self._failed = 0
        self._bad_lines = 0
        self._in_flight = 0
        self._waiting_retry = 0
        self._last_error: str | None = None
        self._cached = 0
        self._rate_limited = 0
        self._no_usage = 0
        self._errors: dict[str, int] = {}
        self._tokens_in = 0
        self._tokens_out = 0
        # model -> [tokens in, tokens out]; only models that reported tokens.
        self._tokens: dict[str, list[int]] = {}
        self._price_cache: dict[str, Price | None] = {}
        # (time, tokens) of each request finished in the last WINDOW seconds, with running sums.
        self._window: deque[tuple[float, int]] = deque()
        self._window_tokens = 0

    # -- events (cheap: counters only) -------------------------------------------------------

    def started(self) -> None:
        """A request went out (one more in flight)."""
        self._in_flight += 1

    def waiting_retry(self, delta: int) -> None:
        """``delta`` more (or, negative, fewer) requests are waiting to be retried. They are
        shown as "retrying", not "in flight" (they were :meth:`started` and are not finished)."""
        self._waiting_retry += delta

    def retry_error(self, message: str | None) -> None:
        """The error of the last attempt to be retried (class and message, no key): shown on
        the status line while requests wait to be retried, so a wrong URL or a server down shows
        long before the run ends."""
        self._last_error = message

    def cached(self) -> None:
        """An input item was answered from the cache: a success that was not sent, so it
        spends no tokens and costs nothing."""
        self._ok += 1
        self._cached += 1

    def finished(
        self,
        *,
        ok: bool,
        error_class: str | None,
        model: str | None,
        usage: Mapping[str, Any] | None,
        rate_limited_attempts: int = 0,
        flex: bool = False,
    ) -> None:
        """A request finished (one fewer in flight): succeeded when ``ok``, else failed with
        ``error_class`` (an exception class name such as ``"RateLimitError"``).

        ``usage`` is the response's ``usage`` object, in the Chat Completions shape
        (``prompt_tokens``/``completion_tokens``) or the Responses API shape
        (``input_tokens``/``output_tokens``); ``model`` is the model that served it, for the
        price. ``rate_limited_attempts`` adds 429 responses this request met, for callers that
        do not report them through :meth:`rate_limited` as they happen (do not do both).
        ``flex``: the request went at the flex tier, so its tokens cost flex prices.
        """
        t = self._now()
        if self._in_flight > 0:
            self._in_flight -= 1
        if ok:
            self._ok += 1
        else:
            self._failed += 1
            name = error_class or "unknown error"
            self._errors[name] = self._errors.get(name, 0) + 1
        if rate_limited_attempts:
            self._rate_limited += rate_limited_attempts
        tokens = 0
        if usage is None:
            if ok:
                self._no_usage += 1
        else:
            tokens_in, tokens_out = usage_tokens(usage)
            tokens = tokens_in + tokens_out
            if tokens:
                self._tokens_in += tokens_in
                self._tokens_out += tokens_out
                key = (_UNKNOWN_MODEL if model is None else model) + (_FLEX if flex else "")
                counts = self._tokens.get(key)
                if counts is None:
                    self._tokens[key] = [tokens_in, tokens_out]
                else:
                    counts[0] += tokens_in
                    counts[1] += tokens_out
        window = self._window
        window.append((t, tokens))
        self._window_tokens += tokens
        # Keep the window bounded even if tick() is rarely called.
        if window[0][0] <= t - self.WINDOW:
            self._prune(t)

    def rate_limited(self, count: int = 1) -> None:
        """``count`` more 429 (rate limited) responses were seen."""
        self._rate_limited += count

    def bad_line(self) -> None:
        """An input line was rejected before sending (malformed JSON, invalid request)."""
        self._bad_lines += 1

    # -- output ------------------------------------------------------------------------------

    def tick(self) -> None:
        """Redraw the live line, or write a log line, if one is due; else return at once."""
        t = self._now()
        if t < self._next_due or self._closed:
            return
        if self._live:
            self._next_due = t + self.LIVE_MIN_GAP
            self._stream.write("\r" + self.status_line(t) + _CLEAR_TO_EOL)
            self._drawn = True
        else:
            # Keep to a fixed grid (start + k * interval) so late ticks do not drift.
            missed = math.floor((t - self._next_due) / self._interval) + 1
            self._next_due += missed * self._interval
            self._stream.write(f"[{_clock(t - self._start)}] {self.status_line(t)}\n")
        self._stream.flush()

    def close(self) -> None:
        """Clear the live status line, if one was drawn; no more output after this."""
        if self._closed:
            return
        self._closed = True
        if self._drawn:
            self._stream.write("\r" + _CLEAR_TO_EOL)
            self._stream.flush()

    @property
    def total(self) -> int | None:
        """Input items the run covers (``None``: unknown)."""
        return self._total

    @property
    def done_items(self) -> int:
        """Input items dealt with (as "done" on the status line)."""
        return self._done()

    @property
    def tokens_in(self) -> int:
        return self._tokens_in

    @property
    def tokens_out(self) -> int:
        return self._tokens_out

    @property
    def tokens(self) -> int:
        """Tokens in and out so far (for ``--budget-tokens``)."""
        return self._tokens_in + self._tokens_out

    @property
    def cost(self) -> float:
        """Estimated dollars so far, over the models that have a price (for
        ``--budget-dollars``)."""
        costs, _ = self._costs()
        return sum(costs.values())

    def status_line(self, t: float | None = None) -> str:
        """The one-line status, as drawn by :meth:`tick` (at time ``t``, default now)."""
        if t is None:
            t = self._now()
        request_rate, token_rate, eta = self.pace(t)
        done = self._done()
        parts: list[str] = []
        if self._total is None:
            parts.append(f"{done:,} done")
        else:
            percent = 100.0 * done / self._total if self._total else 100.0
            parts.append(f"{done:,}/{self._total:,} ({percent:.1f}%)")
        parts.append(f"{self._failed:,} failed")
        # Started and not finished, less those waiting to be retried: at most the concurrency.
        parts.append(f"{max(0, self._in_flight - self._waiting_retry):,} in flight")
        parts.append(f"{self._waiting_retry:,} retrying")
        parts.append(f"{_rate(request_rate)} req/s")
        parts.append(f"{_si(token_rate)} tok/s")
        parts.append(f"{self._rate_limited:,}x429")
        if eta is not None:
            parts.append(f"ETA {eta}")
        parts.append(self.cost_text())
        if self._waiting_retry > 0 and self._last_error:
            error = self._last_error
            parts.append("last error: " + (error if len(error) <= 160 else error[:157] + "..."))
        return " | ".join(parts)

    def pace(self, t: float) -> tuple[float | None, float | None, str | None]:
        """Requests and tokens per second over the last ``WINDOW`` seconds (``None`` at the
        start), and the ETA at that pace (``"?"`` without one; ``None`` when the total is
        unknown)."""
        self._prune(t)
        span = min(self.WINDOW, t - self._start)
        if span > 0:
            request_rate: float | None = len(self._window) / span
            token_rate: float | None = self._window_tokens / span
        else:
            request_rate = token_rate = None
        if self._total is None:
            return request_rate, token_rate, None
        remaining = max(0, self._total - self._done())
        if remaining == 0:
            return request_rate, token_rate, "0s"
        if request_rate:
            return request_rate, token_rate, _duration(remaining / request_rate)
        return request_rate, token_rate, "?"

    def cost_text(self) -> str:
        """The estimated cost so far: ``$1.23``, ``$1.23+?`` (some models without a price) or
        ``$?``."""
        cost, unpriced = self._cost()
        if cost is None:
            return "$?"
        return _money(cost) + ("+?" if unpriced else "")

    def summary(self, *, interrupted: bool = False) -> str:
        """The final report, several lines without a trailing newline (not printed).

        Gives the counts by outcome, failures by error class, 429s, tokens in and out, the
        estimated cost (per model when there are several; "unknown", naming them, for models
        without a price), wall time and average requests per second. Says "interrupted" when
        ``interrupted`` is true.
        """
        t = self._now()
        wall = max(0.0, t - self._start)
        lines: list[str] = []
        verb = "interrupted after" if interrupted else "finished in"
        lines.append(f"Run {verb} {_clock(wall)} ({wall:,.1f} s).")

        rows: list[tuple[str, int]] = [("succeeded", self._ok)]
        if self._cached:
            rows.append(("  from the cache (not sent)", self._cached))
        rows.append(("failed", self._failed))
        errors = sorted(self._errors.items(), key=lambda item: (-item[1], item[0]))
        rows.extend((f"  {name}", count) for name, count in errors)
        rows.append(("bad input lines", self._bad_lines))
        rows.append(("skipped (already done)", self._already_done))
        if self._total is not None:
            not_processed = self._total - self._done()
            if not_processed > 0:
                rows.append(("not processed", not_processed))
            rows.append(("total", self._total))
        label_width = max(len(label) for label, _ in rows)
        number_width = max(len(f"{count:,}") for _, count in rows)
        lines.extend(f"  {label:<{label_width}}  {count:>{number_width},}" for label, count in rows)

        lines.append(f"Rate limited (429) responses: {self._rate_limited:,}")
        lines.append(f"Tokens: {self._tokens_in:,} in, {self._tokens_out:,} out")
        lines.extend(_cost_lines(*self._costs(), self._no_usage))
        requests = self._ok + self._failed
        if wall > 0:
            lines.append(f"Throughput: {requests / wall:,.2f} requests/s")
        else:
            lines.append("Throughput: n/a requests/s")
        return "\n".join(lines)

    # -- helpers -----------------------------------------------------------------------------

    def _done(self) -> int:
        return self._ok + self._failed + self._bad_lines + self._already_done

    def _prune(self, t: float) -> None:
        window = self._window
        cutoff = t - self.WINDOW
        while window and window[0][0] <= cutoff:
            self._window_tokens -= window.popleft()[1]

    def _price(self, model: str) -> Price | None:
        try:
            return self._price_cache[model]
        except KeyError:
            name = model.removesuffix(_FLEX)
            price = None if name == _UNKNOWN_MODEL else price_for(self._prices, name)
            if price is not None and name != model:
                price = flex_price(price)
            self._price_cache[model] = price
            return price

    def _costs(self) -> tuple[dict[str, float], list[str]]:
        """Cost by priced model, and the models that reported tokens but have no price."""
        costs: dict[str, float] = {}
        unpriced: list[str] = []
        # A copy: the metrics server reads this from its own thread.
        for model, (tokens_in, tokens_out) in list(self._tokens.items()):
            price = self._price(model)
            if price is None:
                unpriced.append(model)
            else:
                costs[model] = price.cost(tokens_in, tokens_out)
        return costs, sorted(unpriced)

    def _cost(self) -> tuple[float | None, bool]:
        """Estimated cost so far (``None`` if only unpriced models reported tokens), and whether
        some tokens are not priced."""
        costs, unpriced = self._costs()
        if unpriced and not costs:
            return None, True
        return sum(costs.values()), bool(unpriced)


def _cost_lines(costs: dict[str, float], unpriced: list[str], no_usage: int) -> list[str]:
    """The cost lines of the summary."""
    lines: list[str] = []
    if unpriced and not costs:
        lines.append(f"Estimated cost: unknown (no price for: {', '.join(unpriced)})")
    else:
        total = _money(sum(costs.values()))
        if unpriced:
            total += f" for priced models; unknown for: {', '.join(unpriced)} (no price)"
        lines.append(f"Estimated cost: {total}")
        if len(costs) > 1:
            lines.extend(
                f"  {model}: {_money(cost)}"
                for model, cost in sorted(costs.items(), key=lambda item: -item[1])
            )
    if no_usage:
        lines.append(f"  ({no_usage:,} successful results reported no usage and are not counted)")
    return lines


def _money(dollars: float) -> str:
    if 0 < dollars < 0.01:
        return f"${dollars:.4f}"
    return f"${dollars:,.2f}"


def _rate(value: float | None) -> str:
    if value is None:
        return "-"
    if value < 100:
        return f"{value:.1f}"
    return f"{value:,.0f}"


def _si(value: float | None) -> str:
    if value is None:
        return "-"
    if value < 1_000:
        return f"{value:.0f}"
    if value < 1_000_000:
        return f"{value / 1_000:.1f}k"
    return f"{value / 1_000_000:.1f}M"


def _duration(seconds: float) -> str:
    """A short duration for the ETA: ``45s``, ``13m20s``, ``2h05m``, ``3d04h``."""
    s = math.ceil(seconds - 1e-9)  # rounded up, but not 6.000000001 -> 7
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def _clock(seconds: float) -> str:
    """``H:MM:SS`` (to the nearest second)."""
    s = round(seconds)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"
