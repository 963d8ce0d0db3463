"""The price table: what a model costs, the built-in list prices, a JSON file that overrides
them, and how a dated model name finds its family's price (used by ``omc run`` and by the
Batch API client).

Prices only feed the estimated cost (the progress display, the summary, ``--budget-dollars``);
no request depends on them.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

__all__ = ["DEFAULT_PRICES", "FLEX_DISCOUNT", "Price", "flex_price", "load_prices", "price_for"]


@dataclass(frozen=True, slots=True)
class Price:
    """What a model costs, in US dollars per one million tokens."""

    input: float
    output: float

    def cost(self, input_tokens: int, output_tokens: int) -> float:
        """The price of ``input_tokens`` in and ``output_tokens`` out, in US dollars."""
        return (input_tokens * self.input + output_tokens * self.output) / 1_000_000


DEFAULT_PRICES: Mapping[str, Price] = MappingProxyType(
    {
        "gpt-4o": Price(2.50, 10.00),
        # The first gpt-4o snapshot kept its launch price; without this entry the prefix match
        # would give it the (lower) price of "gpt-4o".
        "gpt-4o-2024-05-13": Price(5.00, 15.00),
        "gpt-4o-mini": Price(0.15, 0.60),
        "gpt-4.1": Price(2.00, 8.00),
        "gpt-4.1-mini": Price(0.40, 1.60),
        "gpt-4.1-nano": Price(0.10, 0.40),
        "o3": Price(2.00, 8.00),
        # Listed so that the prefix match does not price them as "o3".
        "o3-mini": Price(1.10, 4.40),
        "o3-pro": Price(20.00, 80.00),
        "o4-mini": Price(1.10, 4.40),
        "gpt-3.5-turbo": Price(0.50, 1.50),
        "text-embedding-3-small": Price(0.02, 0.0),
        "text-embedding-3-large": Price(0.13, 0.0),
    }
)
"""Estimated prices for common models, in US dollars per 1M tokens.

These are OpenAI's public list prices for standard requests as of June 2025 (after that month's
o3 price cut). They are estimates: they ignore discounts for cached input tokens and for the
Batch API, other providers and fine-tuned models are not listed, and prices change. Users can
override or extend the table with a JSON file (see :func:`load_prices`).
"""

_PRICE_KEYS = frozenset({"input", "output"})


def load_prices(path: str | None) -> dict[str, Price]:
    """The price table: :data:`DEFAULT_PRICES`, overridden and extended by the JSON file at
    ``path`` when one is given.

    The file maps model names to prices in US dollars per 1M tokens::

        {"gpt-4o-mini": {"input": 0.15, "output": 0.6}, "my-local-model": {"input": 0, "output": 0}}

    Both ``input`` and ``output`` are required, must be finite non-negative numbers, and no other
    keys are allowed (so a misspelt key is an error rather than a silent zero). Raises
    :class:`ValueError` naming the file, and the entry when one is at fault.
    """
    prices = dict(DEFAULT_PRICES)
    if path is None:
        return prices
    try:
        with open(path, encoding="utf-8") as file:
            text = file.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot read price file {path!r}: {exc}") from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"price file {path!r} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ValueError(
            f"price file {path!r} must hold a JSON object mapping model names to prices, "
            f'like {{"gpt-4o-mini": {{"input": 0.15, "output": 0.6}}}}; '
            f"found {type(data).__name__}"
        )
    for model, entry in data.items():
        prices[model] = _parse_price(path, model, entry)
    return prices


def _parse_price(path: str, model: str, entry: object) -> Price:
    where = f"price file {path!r}, entry {model!r}"
    if not model:
        raise ValueError(f"{where}: the model name is empty")
    if not isinstance(entry, dict):
        raise ValueError(
            f'{where}: expected an object like {{"input": 0.15, "output": 0.6}}, '
            f"found {json.dumps(entry)}"
        )
    unknown = sorted(set(entry) - _PRICE_KEYS)
    if unknown:
        raise ValueError(
            f"{where}: unexpected key(s) {', '.join(map(repr, unknown))}; "
            "only 'input' and 'output' are allowed"
        )
    values: dict[str, float] = {}
    for key in ("input", "output"):
        if key not in entry:
            raise ValueError(f"{where}: missing {key!r} (US dollars per 1M tokens)")
        value = entry[key]
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"{where}: {key!r} must be a number, found {json.dumps(value)}")
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"{where}: {key!r} must be a finite number >= 0, found {value}")
        values[key] = float(value)
    return Price(values["input"], values["output"])


#: What a flex request (``"service_tier": "flex"``) costs, as a fraction of the online price:
#: the Batch API's prices, online.
FLEX_DISCOUNT = 0.5


def flex_price(price: Price) -> Price:
    """The price of a flex request to a model whose online price is ``price``."""
    return Price(price.input * FLEX_DISCOUNT, price.output * FLEX_DISCOUNT)


def price_for(prices: Mapping[str, Price], model: str) -> Price | None:
    """The price of ``model``: an exact entry, else the entry with the longest name that
    ``model`` starts with, else ``None``.

    A prefix only counts when the model name continues with a separator such as ``-``, so dated
    snapshots find their family (``"gpt-4o-mini-2024-07-18"`` is priced as ``"gpt-4o-mini"``)
    but ``"gpt-4.10"`` is not priced as ``"gpt-4.1"``.
    """
    exact = prices.get(model)
    if exact is not None:
        return exact
    best: str | None = None
    for name in prices:
        if (
            len(name) < len(model)
            and model.startswith(name)
            and not model[len(name)].isalnum()
            and (best is None or len(name) > len(best))
        ):
            best = name
    return None if best is None else prices[best]
