"""omc run's live view (rich): the bar with pace and ETA, the keys and the errors, drawn into a
buffer as on a terminal, and redrawn in place at most four times a second."""

from __future__ import annotations

import io
import re

import pytest

from openai_multi_client import Statistics
from openai_multi_client._limits.pool import KeyStatistics, PoolStatistics
from openai_multi_client._prices import DEFAULT_PRICES
from openai_multi_client.cli._progress import RunProgress
from openai_multi_client.testing import FakeClock

pytest.importorskip("rich")

from openai_multi_client.cli._live import LiveView

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def key(name: str, state: str, **fields: float | int | None) -> KeyStatistics:
    base: dict[str, object] = {
        "requests": 120, "tokens": 5000, "rate_limited": 0, "failures": 0, "in_flight": 2,
        "requests_per_minute": 600.0, "tokens_per_minute": 150_000.0, "limits_learned": True,
        "concurrency_limit": None, "cooling_until": None, "retired_reason": None,
        "requests_remaining": 5.0, "tokens_remaining": 2500.0,
    }  # fmt: skip
    base.update(fields)
    return KeyStatistics(key=name, state=state, **base)  # type: ignore[arg-type]


def statistics() -> Statistics:
    keys = (
        key("key-aaaa1111", "active"),
        key("key-bbbb2222", "cooling", rate_limited=7, requests_remaining=0.0),
        key("spare", "retired", requests_per_minute=None, tokens_per_minute=None,
            limits_learned=False, requests_remaining=None, tokens_remaining=None),
    )  # fmt: skip
    pool = PoolStatistics(keys, active=1, cooling=1, retired=1, requests=360, tokens=15000,
                          rate_limited=7)  # fmt: skip
    return Statistics(
        submitted=60, queued=4, in_flight=6, waiting_to_retry=3, succeeded=40, failed=2,
        attempts=70, retries=9, consumed=42, retry_budget_level=480, keys=pool,
        failed_by_class={"BadRequestError": 2},
        retries_by_reason={"RateLimitError": 7, "InternalServerError": 2},
        key_wait_seconds=12.4,
    )  # fmt: skip


def run_progress(clock: FakeClock) -> RunProgress:
    progress = RunProgress(total=200, stream=io.StringIO(), clock=clock, live=True,
                           prices=DEFAULT_PRICES)  # fmt: skip
    usage = {"prompt_tokens": 100, "completion_tokens": 50}
    for _ in range(50):
        clock.advance(0.1)
        progress.started()
        progress.finished(ok=True, error_class=None, model="gpt-4o-mini", usage=usage)
    return progress


def test_the_view_shows_pace_keys_and_errors() -> None:
    clock = FakeClock(100.0)
    progress = run_progress(clock)
    stream = io.StringIO()
    view = LiveView(progress, stream, clock, force_terminal=True, width=110)
    view.update(statistics())
    view.close()
    text = ANSI.sub("", stream.getvalue())
    lines = [line.strip() for line in text.splitlines()]
    # 50 of 200 done in 5 s: 10 a second, 150 left: 15 s.
    assert any("50/200  25.0% • 10.0 req/s • 1.5k tok/s • ETA 15s • $" in line for line in lines)
    assert "━" in text  # the bar
    assert "6 in flight" in text
    assert "3 waiting to retry" in text
    assert "12 s waiting for a key" in text
    rows = {line.split()[0]: line.split() for line in lines if line.startswith(("key-", "spare"))}
    # key, state, req/min, tok/min, headroom, 429s, in flight, sent; trouble first.
    assert rows["spare"][:5] == ["spare", "retired", "-?", "-?", "-"]
    assert rows["key-bbbb2222"][:6] == ["key-bbbb2222", "cooling", "600", "150.0k", "0%", "7"]
    assert rows["key-aaaa1111"][:5] == ["key-aaaa1111", "active", "600", "150.0k", "50%"]
    order = [line.split()[0] for line in lines if line.startswith(("key-", "spare"))]
    assert order[:3] == ["spare", "key-bbbb2222", "key-aaaa1111"]  # (close() draws it again)
    errors = [line.split() for line in lines if line.startswith(("BadRequest", "RateLimit", "Int"))]
    assert errors[:3] == [
        ["BadRequestError", "2", "0"],
        ["InternalServerError", "0", "2"],
        ["RateLimitError", "0", "7"],
    ]


def test_redrawn_in_place_at_most_four_times_a_second() -> None:
    clock = FakeClock(100.0)
    progress = run_progress(clock)
    stream = io.StringIO()
    view = LiveView(progress, stream, clock, force_terminal=True, width=110)
    view.update(statistics())
    first = len(stream.getvalue())
    view.update(statistics())  # too soon: nothing drawn
    assert len(stream.getvalue()) == first
    clock.advance(LiveView.MIN_GAP / 2)
    view.update(statistics())  # still too soon
    assert len(stream.getvalue()) == first
    clock.advance(LiveView.MIN_GAP / 2)
    view.update(statistics())
    redraw = stream.getvalue()[first:]
    view.close()
    assert "\x1b[1A" in redraw or "\x1b[2K" in redraw  # moves up and rewrites, not scrolls
    assert redraw.count("key-aaaa1111") == 1
