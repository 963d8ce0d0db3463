"""How one ``omc run`` stops early: a stop signal (the first stops it cleanly, a second aborts
it), or a part of the run that asks (a budget reached, the keys dead).

Stopping cleanly means: send nothing more; requests in flight finish and are recorded. The
engine is told with :meth:`~openai_multi_client.AsyncMultiClient.abandon_unsent`; the producer
sees :attr:`RunStop.stopping` and reads no further. After a stop signal, requests in flight have
``grace`` seconds (on the run's clock); then
:meth:`~openai_multi_client.AsyncMultiClient.abandon_in_flight` ends those still in request, and
the journal keeps them as of unknown outcome (a later run sends them again).
"""

from __future__ import annotations

import asyncio
import signal
import sys
from typing import Any

from .._clock import Clock, LoopClock
from .._engine import AsyncMultiClient

__all__ = ["DEFAULT_GRACE", "RunStop"]

DEFAULT_GRACE = 10.0
"""Seconds requests in flight may take to finish after the first stop signal."""


class RunStop:
    """The stop state of one run, shared by its parts; signals arrive on :meth:`on_signal`."""

    def __init__(
        self,
        main_task: asyncio.Task[Any] | None,
        clock: Clock | None = None,
        grace: float = DEFAULT_GRACE,
    ) -> None:
        self._main_task = main_task  # cancelled by a second signal
        self._clock: Clock = LoopClock() if clock is None else clock
        self._grace = grace
        self._grace_timer: asyncio.Task[None] | None = None
        self._client: AsyncMultiClient | None = None
        self.abandoned_in_flight = 0
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
        if self.signal is not None:
            self._start_grace()

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
            f"\nomc run: {signum.name}: stopping: no new requests; waiting up to "
            f"{self._grace:g} s for those in flight ({again} again to abort)",
            file=sys.stderr,
        )
        self.stop()
        if self._client is not None:
            self._start_grace()

    def _start_grace(self) -> None:
        if self._grace_timer is None:
            self._grace_timer = asyncio.get_running_loop().create_task(self._after_grace())

    async def _after_grace(self) -> None:
        await self._clock.sleep(self._grace)
        if self._client is not None:
            self.abandoned_in_flight = self._client.abandon_in_flight()
        if self.abandoned_in_flight:
            print(
                f"omc run: {self.abandoned_in_flight} requests still in flight after "
                f"{self._grace:g} s abandoned; their outcome is unknown, the next run sends them "
                "again",
                file=sys.stderr,
            )

    async def aclose(self) -> None:
        """The run is over: the grace timer, if any, is no longer needed."""
        timer, self._grace_timer = self._grace_timer, None
        if timer is not None:
            timer.cancel()
            await asyncio.gather(timer, return_exceptions=True)
