"""Tokens in and out per key from each answer's usage, and their estimated cost."""

from __future__ import annotations

from typing import Any

import pytest

from openai_multi_client._prices import Price
from openai_multi_client._usage import UsageCounter

PRICES = {"gpt-4o-mini": Price(1.0, 2.0)}


def answer(tokens_in: int, tokens_out: int, **extra: Any) -> dict[str, Any]:
    return {"usage": {"prompt_tokens": tokens_in, "completion_tokens": tokens_out}, **extra}


def test_counts_by_key_model_and_tier() -> None:
    counter = UsageCounter()
    counter.add("a", answer(10, 20, model="gpt-4o-mini-2024-07-18"))
    counter.add("a", answer(1, 2, model="gpt-4o-mini-2024-07-18"))
    counter.add("a", answer(100, 200, model="gpt-4o-mini", service_tier="flex"))
    counter.add("a", answer(5, 5))  # no model: counted, not priced
    counter.add("b", {"usage": {"input_tokens": 7, "output_tokens": 3}, "model": "other"})
    usage = counter.snapshot()
    assert (usage["a"].input_tokens, usage["a"].output_tokens) == (116, 227)
    assert usage["a"].by_model[("gpt-4o-mini-2024-07-18", False)] == (11, 22)
    assert usage["a"].by_model[("gpt-4o-mini", True)] == (100, 200)
    # 11 in and 22 out at 1 and 2 $/1M, plus 100 in and 200 out at half (flex).
    assert usage["a"].cost(PRICES) == pytest.approx((11 + 44 + 50 + 200) / 1e6)
    assert (usage["b"].input_tokens, usage["b"].output_tokens) == (7, 3)
    assert usage["b"].cost(PRICES) == 0


@pytest.mark.parametrize(
    "response",
    [None, [], {"usage": None}, {"usage": {"prompt_tokens": True}}, answer(0, 0), answer(-3, 0)],
)
def test_answers_without_usable_usage_count_nothing(response: Any) -> None:
    counter = UsageCounter()
    counter.add("a", response)
    counter.add(None, answer(1, 1))  # no key (a custom_api client without keys)
    assert dict(counter.snapshot()) == {}


def test_a_snapshot_does_not_change_afterwards() -> None:
    counter = UsageCounter()
    counter.add("a", answer(1, 1, model="m"))
    before = counter.snapshot()
    counter.add("a", answer(1, 1, model="m"))
    assert before["a"].input_tokens == 1
    assert counter.snapshot()["a"].input_tokens == 2
