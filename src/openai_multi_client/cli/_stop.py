"""How one ``omc run`` stops early: a stop signal (the first stops it cleanly, a second aborts
it), or a part of the run that asks (a budget reached, the keys dead).

Stopping cleanly means: send nothing more; requests in flight finish and are recorded. The
engine is told with :meth:`~openai_multi_client.AsyncMultiClient.abandon_unsent`; the producer
sees :attr:`RunStop.stopping` and reads no further.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from typing import Any

from .._engine import AsyncMultiClient

__all__ = ["RunStop"]


class RunStop:
    """The stop state of one run, shared by its parts; signals arrive on :meth:`on_signal`."""

    def __init__(self, main_task: asyncio.Task[Any] | None) -> None:
        self._main_task = main_task  # cancelled by a second signal
        self._client: AsyncMultiClient | None = None
        self.stopping = False
        self.signal: signal.Signals | None = None

    @property
    def interrupted(self) -> bool:
        """Whether a stop signal came."""
        return self.signal is not None

    def attach(self, client: AsyncMultiClient) -> None:
        """The run's client exists: stop it now if a signal came while the run was starting."""
        self._client = client
        if self.stopping:
            client.abandon_unsent()

    def stop(self) -> None:
        """Send nothing more; requests in flight finish and are recorded."""
        self.stopping = True
        if self._client is not None:
            self._client.abandon_unsent()

    def on_signal(self, signum: signal.Signals) -> None:
        """The first stop signal stops the run cleanly; a second one aborts it."""
        if self.signal is not None:
            if self._main_task is not None:
                self._main_task.cancel()
            return
        self.signal = signum
        again = "Ctrl-C" if signum == signal.SIGINT else signum.name
        print(
            f"\nomc run: {signum.name}: stopping: no new requests; waiting for those in flight "
            f"({again} again to abort)",
            file=sys.stderr,
        )
        self.stop()
