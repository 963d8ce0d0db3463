"""Batch prices: half the online price table (OpenAI's Batch API discount), overridable."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Final

from .._prices import DEFAULT_PRICES, Price, price_for

#: What the Batch API charges, as a fraction of the online price.
BATCH_DISCOUNT: Final = 0.5


def batch_prices(online: Mapping[str, Price] | None = None) -> dict[str, Price]:
    """The batch price table: every entry of ``online`` (default: the built-in online table)
    at :data:`BATCH_DISCOUNT` of its price."""
    table = DEFAULT_PRICES if online is None else online
    return {
        model: Price(price.input * BATCH_DISCOUNT, price.output * BATCH_DISCOUNT)
        for model, price in table.items()
    }


def batch_cost(
    spent: Iterable[tuple[str | None, Mapping[str, Any] | None]],
    prices: Mapping[str, Price] | None = None,
) -> float | None:
    """The estimated cost in US dollars of batches, each given as (model, its ``usage``
    object), at batch ``prices`` (default: :func:`batch_prices`); ``None`` when a model with
    usage has no price."""
    table = batch_prices() if prices is None else prices
    total = 0.0
    for model, usage in spent:
        if not usage:
            continue
        price = price_for(table, model) if model is not None else None
        if price is None:
            return None
        total += price.cost(
            int(usage.get("input_tokens") or 0), int(usage.get("output_tokens") or 0)
        )
    return total
