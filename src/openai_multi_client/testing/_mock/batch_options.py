"""How the mock's Batch API behaves: processing speed, expiry, limits and line faults,
validated once (a :class:`ValueError` naming the field at fault)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from .options import is_real

__all__ = ["LINE_FAULT_KINDS", "BatchOptions"]

#: What a line fault answers instead of the line's answer (in the batch's error file).
LINE_FAULT_KINDS: Final = ("500", "429")


def _no_token_limits() -> dict[str, int]:
    return {}


@dataclass(frozen=True)
class BatchOptions:
    """The Batch API of a :class:`~.server.MockOpenAIServer`, timed by the server's clock.

    * ``validation_seconds``: how long a batch stays ``validating``;
    * ``lines_per_second``: processing speed while ``in_progress`` (``None``: every line at
      once, when validation ends);
    * ``finalizing_seconds``: how long ``finalizing`` lasts before ``completed``;
    * ``expire_seconds``: a batch not finished this long after creation becomes ``expired``
      (24 h as at OpenAI); its processed lines are in the output file, the others in the error
      file with ``batch_expired``;
    * ``cancel_seconds``: how long ``cancelling`` lasts before ``cancelled``;
    * ``max_lines`` and ``max_file_bytes``: the size limits of one input file (50,000 lines,
      200 MB);
    * ``enqueued_token_limits``: model -> input tokens that may be enqueued at once (batches
      validated but not finished); a batch that would go over fails with
      ``token_limit_exceeded``; models left out are unlimited;
    * ``line_fault_rate``: the probability that a processed line is answered with a fault
      instead (one of ``line_fault_kinds``, equally likely: ``"500"`` or ``"429"``), which goes
      to the error file; drawn from the server's seed;
    * ``shuffle_output``: write the output lines in an order other than the input's (as
      OpenAI does; on by default).
    """

    validation_seconds: float = 1.0
    lines_per_second: float | None = 1000.0
    finalizing_seconds: float = 1.0
    expire_seconds: float = 24 * 3600.0
    cancel_seconds: float = 1.0
    max_lines: int = 50_000
    max_file_bytes: int = 200 * 1024 * 1024
    enqueued_token_limits: Mapping[str, int] = field(default_factory=_no_token_limits)
    line_fault_rate: float = 0.0
    line_fault_kinds: tuple[str, ...] = LINE_FAULT_KINDS
    shuffle_output: bool = True

    def __post_init__(self) -> None:
        for name in ("validation_seconds", "finalizing_seconds", "cancel_seconds"):
            _check_seconds(name, getattr(self, name), zero=True)
        _check_seconds("expire_seconds", self.expire_seconds, zero=False)
        speed = self.lines_per_second
        if speed is not None and (not is_real(speed) or not 0 < speed < math.inf):
            raise ValueError(
                f"BatchOptions.lines_per_second must be a positive number or None, not {speed!r}"
            )
        for name in ("max_lines", "max_file_bytes"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"BatchOptions.{name} must be a positive integer, not {value!r}")
        for model, limit in self.enqueued_token_limits.items():
            if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
                raise ValueError(
                    f"BatchOptions.enqueued_token_limits[{model!r}] must be a positive integer, "
                    f"not {limit!r}"
                )
        rate = self.line_fault_rate
        if not is_real(rate) or not 0.0 <= rate <= 1.0:
            raise ValueError(f"BatchOptions.line_fault_rate must be in [0, 1], not {rate!r}")
        kinds = tuple(self.line_fault_kinds)
        if not kinds or any(kind not in LINE_FAULT_KINDS for kind in kinds):
            raise ValueError(
                f"BatchOptions.line_fault_kinds must be some of {LINE_FAULT_KINDS}, not {kinds!r}"
            )
        object.__setattr__(self, "line_fault_kinds", kinds)
        object.__setattr__(self, "enqueued_token_limits", dict(self.enqueued_token_limits))


def _check_seconds(name: str, value: object, *, zero: bool) -> None:
    seconds = float(value) if is_real(value) else math.nan  # type: ignore[arg-type]
    if not (0 <= seconds < math.inf) or (not zero and seconds == 0):
        low = ">= 0" if zero else "> 0"
        raise ValueError(
            f"BatchOptions.{name} must be a finite number of seconds {low}, not {value!r}"
        )
