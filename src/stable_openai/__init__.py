"""Compatibility package for code written for the StableOpenai library.

``from stable_openai import KeyManager, stable`` works as StableOpenai's README shows; both
names are implemented by :mod:`openai_multi_client` (see ``openai_multi_client._stable``),
which adds thread-safe key reservation, key retirement, per-key cool-downs and bounded retries.
"""

from openai_multi_client._stable import KeyManager, stable

__all__ = ["KeyManager", "stable"]
