"""Tokens in and out per key, counted from each answer's ``usage`` (for statistics and metrics).

:class:`UsageCounter` is fed by :class:`~openai_multi_client._delivery.Delivery` once per
successful request: one dict look-up and two additions, keyed by the key's id (its name or
redacted id, never the secret), the model the answer names and whether it went at the flex
tier (which the estimated cost prices at half). :meth:`UsageCounter.snapshot` gives immutable
:class:`KeyUsage` objects for :meth:`~openai_multi_client.AsyncMultiClient.statistics`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from ._prices import Price, flex_price, price_for

__all__ = ["KeyUsage", "UsageCounter", "usage_tokens"]


@dataclass(frozen=True, slots=True)
class KeyUsage:
    """Tokens one key's answers reported. ``by_model`` splits them by ``(model, flex)``:
    the model the answer named (``None`` when it named none) and whether it was served at the
    flex tier; each value is ``(input_tokens, output_tokens)``."""

    input_tokens: int
    output_tokens: int
    by_model: Mapping[tuple[str | None, bool], tuple[int, int]]

    def cost(self, prices: Mapping[str, Price]) -> float:
        """Estimated US dollars of these tokens under ``prices`` (see
        :mod:`openai_multi_client._prices`); models without a price count for nothing."""
        total = 0.0
        for (model, flex), (tokens_in, tokens_out) in self.by_model.items():
            price = None if model is None else price_for(prices, model)
            if price is not None:
                total += (flex_price(price) if flex else price).cost(tokens_in, tokens_out)
        return total


def usage_tokens(usage: Mapping[str, Any]) -> tuple[int, int]:
    """Tokens in and out from a ``usage`` object: Chat Completions / Completions / Embeddings
    (``prompt_tokens``, ``completion_tokens``) or the Responses API (``input_tokens``,
    ``output_tokens``). Missing or malformed counts are 0."""
    tokens_in = usage.get("prompt_tokens")
    if tokens_in is None:
        tokens_in = usage.get("input_tokens")
    tokens_out = usage.get("completion_tokens")
    if tokens_out is None:
        tokens_out = usage.get("output_tokens")
    # A count is a positive int (``type() is int`` leaves out bools); anything else is 0.
    return (
        tokens_in if type(tokens_in) is int and tokens_in > 0 else 0,
        tokens_out if type(tokens_out) is int and tokens_out > 0 else 0,
    )


class UsageCounter:
    """Running token counts by key, model and tier (mutated only on the event loop)."""

    __slots__ = ("_counts",)

    def __init__(self) -> None:
        self._counts: dict[tuple[str, str | None, bool], list[int]] = {}

    def add(self, key: str | None, response: Any) -> None:
        """Count the ``usage`` of ``response`` (an answer's JSON body) against ``key``."""
        if key is None or type(response) is not dict:
            return
        usage = response.get("usage")
        if type(usage) is not dict:
            return
        tokens_in, tokens_out = usage_tokens(usage)
        if not (tokens_in or tokens_out):
            return
        model = response.get("model")
        flex = response.get("service_tier") == "flex"
        slot = (key, model if isinstance(model, str) else None, flex)
        counts = self._counts.get(slot)
        if counts is None:
            self._counts[slot] = [tokens_in, tokens_out]
        else:
            counts[0] += tokens_in
            counts[1] += tokens_out

    def snapshot(self) -> Mapping[str, KeyUsage]:
        """The counts so far, by key id."""
        grouped: dict[str, dict[tuple[str | None, bool], tuple[int, int]]] = {}
        for (key, model, flex), (tokens_in, tokens_out) in list(self._counts.items()):
            grouped.setdefault(key, {})[model, flex] = (tokens_in, tokens_out)
        return MappingProxyType(
            {
                key: KeyUsage(
                    sum(counts[0] for counts in models.values()),
                    sum(counts[1] for counts in models.values()),
                    MappingProxyType(models),
                )
                for key, models in grouped.items()
            }
        )
