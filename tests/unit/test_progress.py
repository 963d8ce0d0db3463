"""Tests for the ``omc run`` progress display and summary (``_progress``), on a fake clock."""

from __future__ import annotations

import io
import itertools
import json
import math
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from openai_multi_client._prices import DEFAULT_PRICES, Price, load_prices, price_for
from openai_multi_client.cli._progress import RunProgress
from openai_multi_client.testing import FakeClock

CLEAR = "\x1b[K"


def make(
    *,
    total: int | None = 100,
    live: bool = True,
    prices: dict[str, Price] | None = None,
    interval: float | None = None,
    already_done: int = 0,
) -> tuple[RunProgress, FakeClock, io.StringIO]:
    now = FakeClock(1000.0)
    stream = io.StringIO()
    progress = RunProgress(
        total=total,
        stream=stream,
        clock=now,
        live=live,
        prices=DEFAULT_PRICES if prices is None else prices,
        interval=interval,
        already_done=already_done,
    )
    return progress, now, stream


def ok(
    progress: RunProgress, model: str | None = "gpt-4o-mini", usage: dict[str, Any] | None = None
) -> None:
    progress.started()
    progress.finished(ok=True, error_class=None, model=model, usage=usage)


def fail(progress: RunProgress, error_class: str | None) -> None:
    progress.started()
    progress.finished(ok=False, error_class=error_class, model="gpt-4o-mini", usage=None)


def field(line: str, pattern: str) -> str:
    match = re.search(pattern, line)
    assert match is not None, f"{pattern!r} not in {line!r}"
    return match.group(1)


# -- live mode ----------------------------------------------------------------------------------


def test_live_redraws_at_most_ten_times_a_second() -> None:
    progress, now, stream = make(total=50_000)
    draw_times: list[float] = []
    for _ in range(30_000):  # 30,000 events over 3 seconds, a tick after each
        now.advance(0.0001)
        ok(progress, usage={"prompt_tokens": 1, "completion_tokens": 1})
        before = stream.tell()
        progress.tick()
        if stream.tell() != before:
            draw_times.append(now.now())
    assert stream.getvalue().count("\r") == len(draw_times)
    assert 25 <= len(draw_times) <= 30
    for i, start in enumerate(draw_times):  # any one-second span holds at most 10 draws
        assert sum(1 for t in draw_times[i:] if t < start + 1.0) <= 10
    for earlier, later in itertools.pairwise(draw_times):
        assert later - earlier >= RunProgress.LIVE_MIN_GAP - 1e-9


def test_live_line_is_redrawn_in_place_and_cleared_on_close() -> None:
    progress, now, stream = make(total=10)
    progress.tick()  # the first tick draws at once
    first = stream.getvalue()
    assert first.startswith("\r")
    assert first.endswith(CLEAR)
    assert "\n" not in first
    now.advance(0.05)
    progress.tick()
    assert stream.getvalue() == first  # too soon
    now.advance(0.06)  # 0.11 s after the first draw
    ok(progress)
    progress.tick()
    assert stream.getvalue().count("\r") == 2
    assert "1/10 (10.0%)" in stream.getvalue().rsplit("\r", 1)[1]
    progress.close()
    assert stream.getvalue().endswith("\r" + CLEAR)
    size = stream.tell()
    now.advance(5)
    progress.tick()
    progress.close()
    assert stream.tell() == size  # nothing after close, and close is idempotent


def test_close_without_a_draw_writes_nothing() -> None:
    progress, _, stream = make()
    progress.close()
    assert stream.getvalue() == ""


def test_events_do_no_formatting(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = 0
    original = RunProgress.status_line

    def counting(self: RunProgress, t: float | None = None) -> str:
        nonlocal calls
        calls += 1
        return original(self, t)

    monkeypatch.setattr(RunProgress, "status_line", counting)
    progress, now, stream = make(total=None)
    for i in range(10_000):  # one second of events
        now.advance(0.0001)
        progress.started()
        progress.rate_limited()
        progress.waiting_retry(1)
        progress.waiting_retry(-1)
        progress.finished(
            ok=i % 2 == 0,
            error_class="RateLimitError",
            model="gpt-4o",
            usage={"prompt_tokens": 3, "completion_tokens": 4},
        )
        progress.bad_line()
    assert calls == 0
    assert stream.getvalue() == ""
    for _ in range(1000):
        progress.tick()  # same instant: one draw only
    assert calls == 1


# -- plain mode ---------------------------------------------------------------------------------


def test_plain_mode_logs_every_interval() -> None:
    progress, now, stream = make(live=False, interval=5)
    for _ in range(40):  # 20 seconds, a tick every half second
        now.advance(0.5)
        ok(progress)
        progress.tick()
    lines = stream.getvalue().splitlines(keepends=True)
    assert len(lines) == 4
    assert all(line.endswith("\n") and "\r" not in line and CLEAR not in line for line in lines)
    assert [line.split("]")[0] for line in lines] == [
        "[0:00:05",
        "[0:00:10",
        "[0:00:15",
        "[0:00:20",
    ]
    assert "10/100 (10.0%)" in lines[0]
    assert "40/100 (40.0%)" in lines[3]


def test_plain_mode_keeps_to_its_grid_when_ticks_are_late() -> None:
    progress, now, stream = make(live=False, interval=10)
    now.advance(9.9)
    progress.tick()
    assert stream.getvalue() == ""
    now.advance(3.1)  # 13 s: late, logs once
    progress.tick()
    now.advance(6.9)  # 19.9 s: not yet (next is due at 20, not 23)
    progress.tick()
    assert len(stream.getvalue().splitlines()) == 1
    now.advance(0.1)  # 20 s
    progress.tick()
    now.advance(25)  # 45 s: several intervals missed, still one line
    progress.tick()
    now.advance(4.9)  # 49.9 s: next is due at 50
    progress.tick()
    assert len(stream.getvalue().splitlines()) == 3
    now.advance(0.1)
    progress.tick()
    assert len(stream.getvalue().splitlines()) == 4


def test_default_interval_is_ten_seconds() -> None:
    progress, now, stream = make(live=False)
    now.advance(9.99)
    progress.tick()
    assert stream.getvalue() == ""
    now.advance(0.01)
    progress.tick()
    assert stream.getvalue().startswith("[0:00:10] ")


# -- rates and ETA ------------------------------------------------------------------------------


def test_rates_and_eta_come_from_the_recent_window() -> None:
    progress, now, _ = make(total=1000)
    usage = {"prompt_tokens": 40, "completion_tokens": 10}
    for _ in range(10):  # 10 req/s for the first 10 seconds
        for _ in range(10):
            ok(progress, usage=usage)
        now.advance(1)
    for _ in range(10):  # then 1 req/s for 10 seconds
        now.advance(1)
        ok(progress, usage=usage)
    line = progress.status_line()
    # The window (last 10 s) holds 10 requests: 1 req/s, 50 tokens/s, not the 5.5 req/s
    # average since the start. 890 remain at 1 req/s: 14m50s.
    assert field(line, r"\| ([\d.,]+) req/s") == "1.0"
    assert field(line, r"\| ([\d.,k]+) tok/s") == "50"
    assert "ETA 14m50s" in line
    now.advance(5)  # five quiet seconds: the window now holds 5 requests
    line = progress.status_line()
    assert field(line, r"\| ([\d.,]+) req/s") == "0.5"
    assert "ETA 29m40s" in line
    now.advance(10)  # nothing in the window
    line = progress.status_line()
    assert field(line, r"\| ([\d.,]+) req/s") == "0.0"
    assert "ETA ?" in line


def test_rates_early_in_the_run_use_the_elapsed_time() -> None:
    progress, now, _ = make(total=None)
    assert field(progress.status_line(), r"\| (\S+) req/s") == "-"
    assert field(progress.status_line(), r"\| (\S+) tok/s") == "-"
    now.advance(2)
    for _ in range(5):
        ok(progress, usage={"input_tokens": 1000, "output_tokens": 1000})
    line = progress.status_line()
    assert field(line, r"\| ([\d.,]+) req/s") == "2.5"
    assert field(line, r"\| ([\d.,k]+) tok/s") == "5.0k"
    assert line.startswith("5 done | ")
    assert "ETA" not in line  # no total, no ETA


def test_window_stays_bounded_without_ticks() -> None:
    progress, now, _ = make(total=None)
    for _ in range(5000):
        now.advance(0.01)  # 100 req/s for 50 s
        ok(progress)
    assert len(progress._window) <= 1001
    assert field(progress.status_line(), r"\| ([\d.,]+) req/s") == "100"


def test_status_line_counts() -> None:
    progress, now, _ = make(total=200, already_done=50)
    for _ in range(3):
        progress.started()
    progress.waiting_retry(2)
    progress.waiting_retry(-1)
    progress.finished(
        ok=False, error_class="RateLimitError", model=None, usage=None, rate_limited_attempts=4
    )
    progress.rate_limited()
    progress.bad_line()
    now.advance(1)
    line = progress.status_line()
    assert line.startswith("52/200 (26.0%) | 1 failed | 1 in flight | 1 retrying | ")
    assert "| 5x429 |" in line
    assert line.endswith("| $0.00")


def test_eta_zero_when_everything_is_done_and_total_zero() -> None:
    progress, _, _ = make(total=0)
    assert progress.status_line().startswith("0/0 (100.0%)")
    assert "ETA 0s" in progress.status_line()


# -- cost ---------------------------------------------------------------------------------------


def test_cost_from_chat_and_responses_usage() -> None:
    progress, now, _ = make()
    # Chat Completions shape: 1M in, 1M out on gpt-4o-mini (a dated snapshot) = 0.15 + 0.60.
    ok(
        progress,
        model="gpt-4o-mini-2024-07-18",
        usage={"prompt_tokens": 1_000_000, "completion_tokens": 1_000_000, "total_tokens": 2},
    )
    # Responses API shape: 1M in, 0.5M out on gpt-4.1 = 2.00 + 4.00.
    ok(
        progress,
        model="gpt-4.1",
        usage={"input_tokens": 1_000_000, "output_tokens": 500_000, "total_tokens": 1},
    )
    # Embeddings: prompt tokens only.
    ok(progress, model="text-embedding-3-small", usage={"prompt_tokens": 500_000})
    now.advance(1)
    assert progress.status_line().endswith("| $6.76")
    summary = progress.summary()
    assert "Tokens: 2,500,000 in, 1,500,000 out" in summary
    assert "Estimated cost: $6.76\n" in summary
    assert "  gpt-4.1: $6.00" in summary
    assert "  gpt-4o-mini-2024-07-18: $0.75" in summary
    assert "  text-embedding-3-small: $0.01" in summary
    assert "unknown" not in summary


def test_unknown_model_is_listed_as_unpriced() -> None:
    progress, now, _ = make()
    ok(progress, model="gpt-4o", usage={"prompt_tokens": 1000, "completion_tokens": 100})
    ok(progress, model="my-llama", usage={"prompt_tokens": 10, "completion_tokens": 10})
    ok(progress, model=None, usage={"prompt_tokens": 10, "completion_tokens": 10})
    now.advance(1)
    # 1000 * 2.50 / 1M + 100 * 10 / 1M = 0.0035
    assert progress.status_line().endswith("| $0.0035+?")
    summary = progress.summary()
    assert (
        "Estimated cost: $0.0035 for priced models; "
        "unknown for: (model not reported), my-llama (no price)"
    ) in summary


def test_cost_unknown_when_no_model_is_priced() -> None:
    progress, now, _ = make(prices={})
    ok(progress, model="gpt-4o", usage={"prompt_tokens": 5, "completion_tokens": 5})
    now.advance(1)
    assert progress.status_line().endswith("| $?")
    assert "Estimated cost: unknown (no price for: gpt-4o)" in progress.summary()


def test_usage_edge_cases() -> None:
    progress, _, _ = make()
    ok(progress, usage=None)  # a success without usage is noted
    ok(progress, usage={})  # empty usage: nothing to count
    ok(progress, usage={"prompt_tokens": None, "input_tokens": 7, "completion_tokens": "x"})
    ok(progress, usage={"prompt_tokens": True, "completion_tokens": -3})
    fail(progress, "BadRequestError")  # failures without usage are not noted
    summary = progress.summary()
    assert "Tokens: 7 in, 0 out" in summary
    assert "(1 successful results reported no usage and are not counted)" in summary


def test_custom_prices_are_used() -> None:
    progress, _, _ = make(prices={"local": Price(input=1.0, output=2.0)})
    ok(progress, model="local-7b", usage={"prompt_tokens": 2_000_000, "completion_tokens": 0})
    assert "Estimated cost: $2.00" in progress.summary()


def test_flex_requests_cost_flex_prices_beside_online_ones() -> None:
    progress, _, _ = make(prices={"gpt-4.1": Price(input=2.0, output=8.0)})
    usage = {"prompt_tokens": 1_000_000, "completion_tokens": 500_000}
    ok(progress, model="gpt-4.1", usage=usage)  # online: 2.00 + 4.00
    progress.started()
    progress.finished(ok=True, error_class=None, model="gpt-4.1", usage=usage, flex=True)
    assert progress.cost == pytest.approx(9.0)  # flex: half, 1.00 + 2.00
    summary = progress.summary()
    assert "Estimated cost: $9.00\n" in summary
    assert "  gpt-4.1: $6.00" in summary
    assert "  gpt-4.1 (flex): $3.00" in summary
    assert "Tokens: 2,000,000 in, 1,000,000 out" in summary


# -- summary ------------------------------------------------------------------------------------


def test_summary_counts_and_error_classes() -> None:
    progress, now, _ = make(total=20, already_done=4)
    for _ in range(7):
        ok(progress)
    for error in ["RateLimitError", "APITimeoutError", "RateLimitError", None]:
        fail(progress, error)
    progress.bad_line()
    progress.bad_line()
    progress.rate_limited(9)
    now.advance(3725)
    summary = progress.summary()
    lines = summary.splitlines()
    assert lines[0] == "Run finished in 1:02:05 (3,725.0 s)."
    table = [line.split() for line in lines[1:10]]
    assert table == [
        ["succeeded", "7"],
        ["failed", "4"],
        ["RateLimitError", "2"],
        ["APITimeoutError", "1"],
        ["unknown", "error", "1"],
        ["bad", "input", "lines", "2"],
        ["skipped", "(already", "done)", "4"],
        ["not", "processed", "3"],
        ["total", "20"],
    ]
    assert lines[3].startswith("    RateLimitError")  # error classes are indented under failed
    assert "Rate limited (429) responses: 9" in summary
    assert "Throughput: 0.00 requests/s" in summary  # 11 requests in 3725 s
    assert "interrupted" not in summary
    assert not summary.endswith("\n")


def test_summary_says_interrupted() -> None:
    progress, now, _ = make(total=None)
    for _ in range(30):
        ok(progress)
    now.advance(10)
    summary = progress.summary(interrupted=True)
    assert summary.startswith("Run interrupted after 0:00:10 (10.0 s).")
    assert "Throughput: 3.00 requests/s" in summary
    assert "not processed" not in summary
    assert "total" not in summary.split("Tokens")[0]


def test_summary_at_time_zero() -> None:
    progress, _, _ = make()
    summary = progress.summary()
    assert "Throughput: n/a requests/s" in summary
    assert "Estimated cost: $0.00" in summary


@pytest.mark.parametrize(
    "kwargs",
    [{"interval": 0.0}, {"interval": -1.0}, {"total": -1}, {"already_done": -1}],
)
def test_constructor_rejects_bad_arguments(kwargs: dict[str, Any]) -> None:
    arguments: dict[str, Any] = {"total": 10, "interval": None, "already_done": 0, **kwargs}
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        RunProgress(
            stream=io.StringIO(),
            clock=FakeClock(1000.0),
            live=False,
            prices=DEFAULT_PRICES,
            **arguments,
        )


# -- prices -------------------------------------------------------------------------------------


def test_default_prices_cover_the_common_models() -> None:
    expected = {
        "gpt-4o",
        "gpt-4o-mini",
        "gpt-4.1",
        "gpt-4.1-mini",
        "gpt-4.1-nano",
        "o3",
        "o4-mini",
        "gpt-3.5-turbo",
        "text-embedding-3-small",
        "text-embedding-3-large",
    }
    assert expected <= set(DEFAULT_PRICES)
    for price in DEFAULT_PRICES.values():
        assert price.input > 0
        assert price.output >= 0
    with pytest.raises(TypeError):
        DEFAULT_PRICES["gpt-4o"] = Price(0, 0)  # type: ignore[index]


def test_price_is_frozen_and_costs() -> None:
    price = Price(input=2.5, output=10.0)
    assert price.cost(1_000_000, 100_000) == pytest.approx(3.5)
    with pytest.raises(AttributeError):
        price.input = 1.0  # type: ignore[misc]


def test_load_prices_without_a_file_is_the_defaults() -> None:
    prices = load_prices(None)
    assert prices == dict(DEFAULT_PRICES)
    prices["x"] = Price(1, 1)  # a copy
    assert "x" not in DEFAULT_PRICES


def write(tmp_path: Path, content: Any, raw: bool = False) -> str:
    path = tmp_path / "prices.json"
    path.write_text(content if raw else json.dumps(content), encoding="utf-8")
    return str(path)


def test_load_prices_overrides_and_extends(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        {"gpt-4o": {"input": 1, "output": 4.5}, "my-model": {"input": 0, "output": 0.25}},
    )
    prices = load_prices(path)
    assert prices["gpt-4o"] == Price(1.0, 4.5)
    assert prices["my-model"] == Price(0.0, 0.25)
    assert prices["gpt-4o-mini"] == DEFAULT_PRICES["gpt-4o-mini"]
    assert isinstance(prices["gpt-4o"].input, float)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"gpt-4o": ', "not valid JSON"),
        ("[1, 2]", "must hold a JSON object"),
        ('{"m1": [0.1, 0.2]}', "entry 'm1': expected an object"),
        ('{"m2": {"input": 0.1}}', "entry 'm2': missing 'output'"),
        ('{"m3": {"output": 0.1}}', "entry 'm3': missing 'input'"),
        ('{"m4": {"input": "0.1", "output": 1}}', "entry 'm4': 'input' must be a number"),
        ('{"m5": {"input": true, "output": 1}}', "entry 'm5': 'input' must be a number"),
        ('{"m6": {"input": 1, "output": -2}}', "entry 'm6': 'output' must be a finite number"),
        ('{"m7": {"input": NaN, "output": 1}}', "entry 'm7': 'input' must be a finite number"),
        ('{"m8": {"input": 1, "ouput": 1}}', "entry 'm8': unexpected key"),
        ('{"": {"input": 1, "output": 1}}', "entry '': the model name is empty"),
    ],
)
def test_load_prices_errors_name_the_file_and_entry(
    tmp_path: Path, content: str, message: str
) -> None:
    path = write(tmp_path, content, raw=True)
    with pytest.raises(ValueError, match=re.escape(message)) as info:
        load_prices(path)
    assert path in str(info.value)


def test_load_prices_missing_file(tmp_path: Path) -> None:
    path = str(tmp_path / "nope.json")
    with pytest.raises(ValueError, match="cannot read price file") as info:
        load_prices(path)
    assert path in str(info.value)


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("gpt-4o", "gpt-4o"),
        ("gpt-4o-mini", "gpt-4o-mini"),
        ("gpt-4o-mini-2024-07-18", "gpt-4o-mini"),
        ("gpt-4o-2024-08-06", "gpt-4o"),
        ("gpt-4o-2024-05-13", "gpt-4o-2024-05-13"),
        ("gpt-4.1-nano-2025-04-14", "gpt-4.1-nano"),
        ("o3-2025-04-16", "o3"),
        ("o3-mini-2025-01-31", "o3-mini"),
        ("o4-mini-2025-04-16", "o4-mini"),
        ("gpt-3.5-turbo-0125", "gpt-3.5-turbo"),
        ("gpt-4.10", None),  # a prefix must end at a separator
        ("o30", None),
        ("ft:gpt-4o-mini:acme::abc123", None),
        ("claude-3", None),
        ("", None),
    ],
)
def test_price_for(model: str, expected: str | None) -> None:
    result = price_for(DEFAULT_PRICES, model)
    assert result == (None if expected is None else DEFAULT_PRICES[expected])


def test_price_for_prefers_the_longest_prefix_in_any_order() -> None:
    a, b, c = Price(1, 1), Price(2, 2), Price(3, 3)
    for table in ({"m": a, "m-x": b, "m-x-y": c}, {"m-x-y": c, "m-x": b, "m": a}):
        assert price_for(table, "m-x-y-z") is c
        assert price_for(table, "m-x-q") is b
        assert price_for(table, "m-q") is a
        assert price_for(table, "m") is a


@given(
    name=st.sampled_from(sorted(DEFAULT_PRICES)),
    suffix=st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-", max_size=12),
)
def test_snapshots_of_listed_models_are_priced(name: str, suffix: str) -> None:
    price = price_for(DEFAULT_PRICES, f"{name}-{suffix}")
    assert price is not None
    matched = [p for n, p in DEFAULT_PRICES.items() if f"{name}-{suffix}".startswith(n)]
    assert price in matched


def test_money_formats() -> None:
    # Visible through the status line: tiny amounts keep four decimals, larger ones two.
    results: dict[float, str] = {}
    for tokens in (100, 1_000_000_000):
        progress, _, _ = make(prices={"m": Price(1.0, 0.0)})
        ok(progress, model="m", usage={"prompt_tokens": tokens})
        results[tokens / 1e6] = progress.status_line().rsplit("| ", 1)[1]
    assert results == {0.0001: "$0.0001", 1000.0: "$1,000.00"}


def test_long_eta_formats() -> None:
    cases: list[tuple[int, str]] = [(59, "59s"), (7_500, "2h05m"), (3 * 86_400 + 4 * 3600, "3d04h")]
    for remaining, expected in cases:
        progress, now, _ = make(total=remaining + 10)
        now.advance(10)
        for _ in range(10):  # 10 requests in 10 s: 1 req/s
            ok(progress)
        assert f"ETA {expected}" in progress.status_line()


def test_the_injected_clock_is_the_only_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    def forbidden() -> float:
        raise AssertionError("real clock used")

    for name in ("time", "monotonic", "perf_counter"):
        monkeypatch.setattr(time, name, forbidden)
    progress, now, stream = make(live=False, interval=1)
    ok(progress, usage={"prompt_tokens": 1})
    now.advance(1)
    progress.tick()
    progress.summary()
    assert math.isfinite(now.now())
    assert stream.getvalue()


def test_requests_waiting_to_retry_are_not_in_flight() -> None:
    progress, _, _ = make(total=20)
    for _ in range(10):  # a concurrency of 10, all sent
        progress.started()
    progress.waiting_retry(4)  # 4 failed and wait; 4 others took their places
    for _ in range(4):
        progress.started()
    line = progress.status_line()
    assert "| 10 in flight | 4 retrying |" in line


def test_the_last_retry_error_shows_while_requests_wait_to_retry() -> None:
    progress, now, stream = make(total=20, live=False, interval=10)
    error = "ConnectError: cannot connect to http://127.0.0.1:9: [Errno 111] Connect call failed"
    progress.started()
    progress.waiting_retry(1)
    progress.retry_error(error)
    now.advance(10)
    progress.tick()
    assert f"| last error: {error}" in stream.getvalue()  # long before the run ends
    progress.waiting_retry(-1)
    progress.finished(ok=True, error_class=None, model=None, usage=None)
    assert "last error" not in progress.status_line()  # nothing is retrying any more


def test_cache_hits_are_successes_that_cost_nothing() -> None:
    progress, _, _ = make(total=3)
    usage = {"prompt_tokens": 1_000_000, "completion_tokens": 0}
    progress.started()
    progress.finished(ok=True, error_class=None, model="gpt-4o-mini", usage=usage)
    progress.cached()
    progress.cached()
    assert progress.tokens == 1_000_000
    assert progress.cost == pytest.approx(0.15)
    summary = progress.summary()
    assert re.search(r"succeeded\s+3\n\s+from the cache \(not sent\)\s+2\n", summary)
    assert "Tokens: 1,000,000 in, 0 out" in summary
    assert "Estimated cost: $0.15" in summary
    assert "0 in flight" in progress.status_line()
