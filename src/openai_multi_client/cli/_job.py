"""One ``omc run``, wired: the resources it opens and the pipeline it runs.

::

    InputReader --batches--> Producer --submit()--> AsyncMultiClient --results--> Consumer
                                |                        | on_send: sent_marker       |
                                +-- cache hits, bad lines --> Committer <-------------+
                                                              journal, then Outputs

The reader (a thread) parses the input; the producer skips ids the journal has finished and
answers from the cache; the engine's ``on_send`` hook commits each request as sent before it
leaves; the consumer turns results into output lines; the committer records them in the
journal, commits (:class:`~._commit.CommitPolicy`), and only then appends them to the output
files. A display task feeds the engine's gauges to the progress line and lets the committer
commit results that waited too long. :class:`Job` opens and closes what they share and turns
how the run ended into messages and an exit code (:mod:`._outcome`).

The output files are a projection of the journal: a resumed run first rewrites them from the
journal, then appends.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Callable
from dataclasses import dataclass

from .._clock import Clock, LoopClock
from .._engine import AsyncMultiClient
from .._errors import OpenAIMultiClientError
from .._limits import RedisLimits
from .._request import Request
from ._cache import ResponseCache
from ._commit import CommitPolicy, Committer, sent_marker, unbilled_marker
from ._config import RunConfig
from ._consumer import Consumer
from ._files import Outputs
from ._journal import Journal, JournalStatus, NullJournal
from ._live import LiveView, rich_available
from ._metrics import start_metrics
from ._outcome import Outcome
from ._producer import BadLines, Producer
from ._progress import RunProgress
from ._reader import InputReader, scan_input
from ._signals import stop_signals
from ._stop import RunStop

__all__ = ["Job"]

_PROGRESS_SECONDS = 0.1  # how often the display is fed and redrawn


@dataclass(frozen=True, slots=True)
class _Opened:
    """What a run opens before its pipeline starts."""

    journal: Journal
    cache: ResponseCache | None
    base_url: str | None
    total: int | None


class Job:
    """One ``omc run`` of ``config``, timed by ``clock``."""

    def __init__(self, config: RunConfig, clock: Clock | None = None) -> None:
        self.config = config
        self.clock: Clock = LoopClock() if clock is None else clock
        self.shared_limits = (
            RedisLimits(
                config.redis,
                namespace=config.redis_namespace,
                on_unavailable=config.redis_unavailable,
            )
            if config.redis
            else None
        )

    async def main(self) -> int:
        """Run; the exit code."""
        config = self.config
        stop = RunStop(asyncio.current_task(), self.clock, config.grace)
        fingerprint, total = scan_input(config.input, config.shaping())
        journal = (
            NullJournal()
            if config.journal is None
            else Journal.open(config.journal, fingerprint, force=config.force)
        )
        mock = None
        cache = None
        try:
            cache = ResponseCache(config.cache) if config.cache else None
            base_url = config.base_url
            if config.mock:
                from ..testing import MockOpenAIServer

                mock = MockOpenAIServer()
                await mock.start()
                base_url = mock.base_url
                print(f"omc run: using the built-in mock server at {base_url}", file=sys.stderr)
            with stop_signals(asyncio.get_running_loop(), stop.on_signal):
                return await self._run(_Opened(journal, cache, base_url, total), stop)
        finally:
            await stop.aclose()
            journal.close()
            if cache is not None:
                cache.close()
            if mock is not None:
                await mock.stop()
            if self.shared_limits is not None:
                await self.shared_limits.aclose()

    async def _run(self, opened: _Opened, stop: RunStop) -> int:
        config, journal = self.config, opened.journal
        status = journal.status()
        to_retry = journal.to_retry(config.retry_failed)
        outputs = self._open_outputs(journal)
        outcome = Outcome(config, stop)
        if status.done or status.in_doubt:
            outcome.say_resuming(status.done - to_retry, status.in_doubt, to_retry, opened.total)
        progress = self._progress(status, to_retry, opened.total)
        client = self._client(opened.base_url, sent_marker(journal, progress), journal)
        stop.attach(client)
        committer = Committer(journal, outputs, CommitPolicy(self.clock))
        bad_lines = BadLines(outputs, progress)
        producer = Producer(
            config,
            client=client,
            journal=journal,
            committer=committer,
            cache=opened.cache,
            progress=progress,
            bad_lines=bad_lines,
            stop=stop,
        )
        consumer = Consumer(
            config,
            client=client,
            committer=committer,
            cache=opened.cache,
            progress=progress,
            stop=stop,
        )
        metrics = start_metrics(config, client, progress)
        try:
            cancelled = await self._pipeline(client, producer, consumer, committer, progress, stop)
        finally:
            if metrics is not None:
                metrics.close()
        print(progress.summary(interrupted=stop.interrupted), file=sys.stderr)
        outcome.say_retryable(journal.status().failed_retryable)
        return outcome.exit_code(producer, consumer, bad_lines.count, cancelled=cancelled)

    async def _pipeline(
        self,
        client: AsyncMultiClient,
        producer: Producer,
        consumer: Consumer,
        committer: Committer,
        progress: RunProgress,
        stop: RunStop,
    ) -> bool:
        """Run the producer, the consumer and the display until every result is taken, then
        commit and close the outputs; whether a second stop signal cancelled the run."""
        loop = asyncio.get_running_loop()
        reader = InputReader(self.config.input, max_line_bytes=self.config.max_line_bytes)
        async with client:
            feeding = loop.create_task(producer.run(reader.batches()))
            view = self._view(progress)
            display = loop.create_task(self._display(client, progress, committer, view))
            try:
                await consumer.run()
                if stop.stopping and not feeding.done():
                    feeding.cancel()  # it may be waiting for input that never comes
                await asyncio.gather(feeding, return_exceptions=True)
            except asyncio.CancelledError:
                feeding.cancel()
                return True
            finally:
                display.cancel()
                await asyncio.gather(display, return_exceptions=True)
                try:
                    committer.finish(self.config.retry_failed)
                finally:
                    if view is not None:
                        view.update(client.statistics(), force=True)  # the final figures
                        view.close()
                    progress.close()
                    committer.close_outputs()
        return False

    async def _display(
        self,
        client: AsyncMultiClient,
        progress: RunProgress,
        committer: Committer,
        view: LiveView | None,
    ) -> None:
        """Feed the engine's gauges to the display and redraw it, results or not; commit
        results that waited too long when no new result came to trigger it."""
        waiting = limited = 0
        while True:
            statistics = client.statistics()
            progress.waiting_retry(statistics.waiting_to_retry - waiting)
            progress.rate_limited(statistics.keys.rate_limited - limited)
            waiting, limited = statistics.waiting_to_retry, statistics.keys.rate_limited
            progress.retry_error(statistics.last_retry_error)
            if view is None:
                progress.tick()
            else:
                view.update(statistics)
            committer.tick()
            await self.clock.sleep(_PROGRESS_SECONDS)

    def _client(
        self, base_url: str | None, on_send: Callable[[Request], None], journal: Journal
    ) -> AsyncMultiClient:
        config = self.config
        return AsyncMultiClient(
            config.concurrency,
            config.max_retries,
            api_key=list(config.keys) or None,
            base_url=base_url,
            timeout=config.timeout,
            read_timeout=config.read_timeout,
            ordered=config.ordered,
            reorder_buffer=config.reorder_buffer,
            on_send=on_send,
            on_unbilled=unbilled_marker(journal),
            shared_limits=self.shared_limits,
            max_response_bytes=config.max_response_bytes,
        )

    def _progress(self, status: JournalStatus, to_retry: int, total: int | None) -> RunProgress:
        return RunProgress(
            total=total,
            stream=sys.stderr,
            clock=self.clock,
            live=sys.stderr.isatty(),
            prices=self.config.prices,
            already_done=status.done - to_retry,
        )

    def _view(self, progress: RunProgress) -> LiveView | None:
        """The live view (bar, keys, errors) on a terminal with rich installed; else the
        progress's own status line or log lines."""
        if not (sys.stderr.isatty() and rich_available()):
            return None
        return LiveView(progress, sys.stderr, self.clock)

    def _open_outputs(self, journal: Journal) -> Outputs:
        """Rewrite the output files from the journal (they are its projection), without the
        failures to send again, then keep them open for appending."""
        config = self.config
        outputs = Outputs(config.output, config.errors, config.journal)
        try:
            outputs.write(journal.outputs(leave_out=config.retry_failed))
        except BaseException:
            with contextlib.suppress(OpenAIMultiClientError):
                outputs.close()
            raise
        return outputs
