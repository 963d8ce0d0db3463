"""Adaptive concurrency (AIMD) for servers that publish no limits: pure, on an explicit ``now``."""

from __future__ import annotations

import math


class AdaptiveConcurrency:
    """Concurrency found by AIMD for servers that publish no limits (vLLM, Ollama, ...).

    Like TCP: a slow start from 1 doubles the limit every round trip (+1 per success) until the
    first overload; from then on each success adds ``1 / limit`` (about +1 per round trip) and a
    429, 503 or timeout halves the limit, at most once per ``cooldown`` seconds so that a burst
    of failures from one overload counts once. Between 1 and ``maximum``.
    """

    __slots__ = ("_last_decrease", "cooldown", "limit", "maximum", "slow_start")

    def __init__(self, maximum: int, cooldown: float = 1.0) -> None:
        self.maximum = maximum
        self.limit = 1.0
        self.slow_start = True
        self.cooldown = cooldown
        self._last_decrease = -math.inf

    @property
    def allowed(self) -> int:
        return max(1, int(self.limit))

    def on_success(self) -> None:
        step = 1.0 if self.slow_start else 1.0 / max(1.0, self.limit)
        self.limit = min(float(self.maximum), self.limit + step)

    def on_overload(self, now: float) -> None:
        self.slow_start = False
        if now - self._last_decrease >= self.cooldown:
            self.limit = max(1.0, self.limit / 2.0)
            self._last_decrease = now

    def __repr__(self) -> str:
        phase = "slow start" if self.slow_start else "AIMD"
        return f"AdaptiveConcurrency({self.limit:.1f} of {self.maximum}, {phase})"
