"""``progress=True``: a progress bar of a client's requests, in a terminal or in Jupyter.

Drawn by ``tqdm`` (the ``progress`` extra): a well-kept library whose ``tqdm.auto`` picks a
notebook widget in Jupyter and a text bar elsewhere, and limits its own redraws (at most ten a
second), so updating it for every result costs little. Off by default: the library never
prints unless asked. The bar counts finished requests out of those submitted so far (the total
grows while requests come in), shows the rate and, once the input is closed, the time left;
failures are counted beside it.
"""

from __future__ import annotations

from typing import Any

from ._errors import ConfigurationError


class ProgressBar:
    """One client's bar (loop thread only)."""

    def __init__(self) -> None:
        try:
            from tqdm.auto import tqdm
        except ImportError:
            raise ConfigurationError(
                "progress=True needs tqdm: pip install 'openai-multi-client[progress]'"
            ) from None

        class _Bar(tqdm):  # type: ignore[misc]
            monitor_interval = 0  # no monitor thread: nothing outlives the client

        self._bar: Any = _Bar(total=0, unit="req", dynamic_ncols=True, leave=True)
        self._failed = 0

    def finished(self, submitted: int, failed: bool) -> None:
        """One more request has its final outcome; ``submitted`` so far."""
        bar = self._bar
        bar.total = submitted
        if failed:
            self._failed += 1
            bar.set_postfix_str(f"failed={self._failed}", refresh=False)
        bar.update(1)

    def close(self) -> None:
        self._bar.close()
