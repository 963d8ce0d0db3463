"""``omc run --batch``: the same input and output through OpenAI's Batch API (half the price).

::

    plan (input -> chunk files; committed) -> upload (file id committed) -> create (batch id
    committed; a batch created just before a kill is found by the run's token and adopted)
    -> poll every --poll-interval (status and counts committed) -> collect (outputs; lines
    to send again go into new chunks) -> ... until every line is final

Every step is committed in the journal before the next, so the same command resumes after a
kill at any moment without creating a second batch for a chunk, uploading a chunk again once
its batch exists, or collecting a line twice. The output files are the journal's projection,
as for online runs. A stop signal stops polling: submitted batches keep running at the server
(they are being paid for) and the next run collects them. ``omc cancel JOURNAL`` cancels them.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

from .._batches import BatchChunk, BatchInfo
from .._batches.prices import batch_cost, batch_prices
from .._clock import Clock, LoopClock
from .._errors import AuthenticationError, ConfigurationError, PermissionDeniedError
from .._prices import price_for
from ._batch import BadLine
from ._batch_collect import Collector, usage_of
from ._batch_journal import BatchJournal, ChunkRow
from ._batch_keys import BatchKeys, batch_keys
from ._batch_plan import Caps, Planner
from ._batch_queue import QueueGate
from ._config import RunConfig
from ._files import Outputs
from ._journal import Journal, _retry_filter
from ._metrics import start_batch_metrics
from ._outcome import EXIT_FAILURES, EXIT_INTERRUPTED, EXIT_OK, EXIT_STOPPED, Outcome
from ._progress import RunProgress
from ._reader import scan_input
from ._signals import exit_code_for, stop_signals
from ._stop import RunStop

__all__ = ["BatchRun"]

_BAD_LINES_SHOWN = 20


class BatchRun:
    """One ``omc run --batch`` of ``config`` (or, with ``cancel``, ``omc cancel``)."""

    def __init__(self, config: RunConfig, clock: Clock | None = None, *, cancel: bool = False):
        if config.input == "-":
            raise ConfigurationError(
                "--batch needs an input file (it is read again to resubmit failed lines), "
                "not standard input"
            )
        if config.journal is None:
            raise ConfigurationError("--batch cannot go with --no-journal: batches outlive a run")
        self.config = config
        self.clock: Clock = LoopClock() if clock is None else clock
        self.cancel = cancel
        self.signal: signal.Signals | None = None
        self.stopping = False
        self._main: asyncio.Task[object] | None = None
        self._sleep: asyncio.Task[None] | None = None
        self._bad = 0
        self._capped: str | None = None
        self._budget: str | None = None
        self._said = ""
        self._started = self.clock.now()

    async def main(self) -> int:
        """Run; the exit code."""
        config = self.config
        assert config.journal is not None
        fingerprint = None if self.cancel else scan_input(config.input, config.shaping())[0]
        journal = Journal.open(config.journal, fingerprint, force=config.force)
        try:
            batches = BatchJournal(journal)
            if not self.cancel:
                batches.save_settings(_settings(config))
            outputs = Outputs(config.output, config.errors, config.journal)
            try:
                outputs.write(journal.outputs(leave_out=config.retry_failed))
                with stop_signals(asyncio.get_running_loop(), self._on_signal):
                    async with _built_in_mock(config) as base_url:
                        if base_url is not None:
                            self.config = dataclasses.replace(config, base_url=base_url)
                        return await self._run(journal, batches, outputs)
            finally:
                outputs.close()
        finally:
            journal.close()

    def _on_signal(self, signum: signal.Signals) -> None:
        if self.signal is not None:
            if self._main is not None:
                self._main.cancel()
            return
        self.signal, self.stopping = signum, True
        print(
            f"\nomc run: {signum.name}: stopped polling; submitted batches keep running at the "
            "server: run the same command again to collect them (omc cancel JOURNAL cancels "
            "them)",
            file=sys.stderr,
        )
        if self._sleep is not None:
            self._sleep.cancel()

    async def _run(self, journal: Journal, batches: BatchJournal, outputs: Outputs) -> int:
        config = self.config
        self._main = asyncio.current_task()
        status = journal.status()
        progress = RunProgress(
            total=None,
            stream=sys.stderr,
            clock=self.clock,
            live=False,
            prices=batch_prices(config.prices),
            already_done=status.done - journal.to_retry(config.retry_failed),
        )
        metrics = None if self.cancel else start_batch_metrics(config, progress)
        try:
            return await self._run_with(journal, batches, outputs, progress)
        finally:
            if metrics is not None:
                metrics.close()

    async def _run_with(
        self, journal: Journal, batches: BatchJournal, outputs: Outputs, progress: RunProgress
    ) -> int:
        config = self.config
        assert config.journal is not None
        folder = Path(config.journal + ".batches")
        budget = config.budget_tokens is not None or config.budget_dollars is not None
        caps = Caps(lines=config.batch_size, tokens=config.batch_max_tokens, estimate=budget)
        async with batch_keys(config, folder) as keys:
            collector = Collector(
                batches,
                keys,
                outputs,
                progress,
                max_attempts=config.max_retries,
                caps=caps,
                folder=folder,
                gate=QueueGate(config.batch_max_tokens, keys),
            )
            collector.final = self.cancel
            planner = Planner(
                batches, config.input, folder, caps, _retry_filter(config.retry_failed)
            )
            try:
                await self._loop(batches, keys, collector, planner, outputs, progress)
            except asyncio.CancelledError:
                print("omc run: aborted; run the same command again to go on", file=sys.stderr)
                return EXIT_INTERRUPTED if self.signal is None else exit_code_for(self.signal)
        outputs.write(journal.not_retried(config.retry_failed))
        code = self._finish(batches, collector, progress, keys)
        Outcome(config, RunStop(None)).say_retryable(journal.status().failed_retryable)
        return code

    async def _loop(
        self,
        batches: BatchJournal,
        keys: BatchKeys,
        collector: Collector,
        planner: Planner,
        outputs: Outputs,
        progress: RunProgress,
    ) -> None:
        """Plan, submit, poll and collect until every line is final (or a stop)."""
        token, started = batches.token()
        if self.cancel:
            await self._cancel_live(batches, keys)
        need_plan, planned = not self.cancel, 0
        while True:
            if need_plan and not self.stopping and not self._over_budget(progress):
                limit = self.config.max_requests
                first = planned == 0
                count, capped = planner.plan(
                    None if limit is None else max(0, limit - planned),
                    (lambda item: self._report_bad(item, outputs)) if first else None,
                )
                planned += count
                if capped:
                    self._capped = f"--max-requests {limit}"
                need_plan = False
            chunks = batches.chunks()
            if not self.cancel:
                await self._submit(batches, keys, collector, chunks, (token, started), progress)
            chunks = [c for c in batches.chunks() if c.batch_id and keys.client_of(c)]
            if not chunks or self.stopping:
                return
            finished = await self._poll(batches, keys, collector, chunks)
            self._say(batches, progress)
            if finished:
                need_plan = batches.waiting() > 0  # the input is read again only for them
                continue
            self._sleep = asyncio.ensure_future(self.clock.sleep(self.config.poll_interval))
            with contextlib.suppress(asyncio.CancelledError):
                await self._sleep
            if self._sleep.cancelled() and not self.stopping:
                raise asyncio.CancelledError
            self._sleep = None

    async def _submit(
        self,
        batches: BatchJournal,
        keys: BatchKeys,
        collector: Collector,
        chunks: list[ChunkRow],
        run: tuple[str, int],
        progress: RunProgress,
    ) -> None:
        """Upload and create the chunks without a batch (each id committed at once), each
        through the key its queue chooses (``--batch-max-tokens``, a token limit: per key
        group and model), while the budget has room for them (what was spent, and the
        estimate of live batches)."""
        gate = collector.gate
        gate.start(chunks)
        submitted = [chunk for chunk in chunks if chunk.live]
        for chunk in chunks:
            if chunk.batch_id is not None or self.stopping:
                continue
            key_id = gate.choose(chunk)
            if key_id is None:
                continue  # its queues are full or held: wait for their batches to end
            if self._budget is not None or self._over_budget(progress, submitted):
                return
            try:
                await self._create(batches, keys, chunk, key_id, run)
            except (AuthenticationError, PermissionDeniedError) as exc:
                self._retire(keys, key_id, exc)
                continue
            gate.add(chunk, key_id)
            submitted.append(chunk)

    async def _create(
        self,
        batches: BatchJournal,
        keys: BatchKeys,
        chunk: ChunkRow,
        key_id: str,
        run: tuple[str, int],
    ) -> None:
        """Upload ``chunk`` through ``key_id`` (committed first) and create its batch, or
        adopt the batch a killed run created for it."""
        token, started = run
        client = keys.client(key_id)
        assert client is not None
        file_id = chunk.file_id
        if key_id != keys.key_of(chunk):
            batches.set_key(chunk.chunk_no, key_id)  # before the upload: crash-safe
            file_id = None
        info: BatchInfo | None = None
        if file_id is None:
            upload = BatchChunk(Path(chunk.path), chunk.endpoint, chunk.model, (), (), 0)
            file_id = (await client.upload(upload)).id
            batches.set_file(chunk.chunk_no, file_id)
        else:  # uploaded by a run that may have created its batch just before a kill
            found = await client.find(token, str(chunk.chunk_no), created_after=started)
            info = found[0] if found else None
        if info is None:
            info = await client.create(
                file_id, chunk.endpoint, run_token=token, chunk=str(chunk.chunk_no)
            )
        batches.set_batch(chunk.chunk_no, info.id, info.status)

    def _retire(self, keys: BatchKeys, key_id: str, exc: Exception) -> None:
        """A key refused (401/403): no more batches through it in this run."""
        status = getattr(exc, "status_code", None)
        keys.retire(key_id, f"{status}: {type(exc).__name__}")
        others = "" if keys.usable() else "; no key is left"
        print(
            f"omc run: key {key_id} was refused ({status}): retired for this run; its chunks "
            f"not yet created go through another key{others}",
            file=sys.stderr,
        )

    async def _poll(
        self,
        batches: BatchJournal,
        keys: BatchKeys,
        collector: Collector,
        chunks: list[ChunkRow],
    ) -> bool:
        """Look at each live batch once, through its key; collect those that ended. Whether
        any ended."""
        finished = False
        gate = collector.gate
        live = {chunk.chunk_no: gate.queue(chunk) for chunk in chunks}
        for chunk in chunks:
            client = keys.client_of(chunk)
            if self.stopping or client is None:
                continue
            assert chunk.batch_id is not None
            try:
                info = await client.retrieve(chunk.batch_id)
                usage = info.raw.get("usage")
                batches.set_seen(chunk.chunk_no, info.status, info.completed, info.failed, usage)
                if info.done:
                    queue = live.pop(chunk.chunk_no)
                    others = queue in live.values()
                    await collector.collect(chunk, info, others_live=others)
                    finished = True
            except (AuthenticationError, PermissionDeniedError) as exc:
                self._retire(keys, keys.key_of(chunk) or keys.first, exc)
        return finished

    async def _cancel_live(self, batches: BatchJournal, keys: BatchKeys) -> None:
        for chunk in batches.chunks():
            if chunk.batch_id is None or chunk.status not in ("validating", "in_progress"):
                continue
            client = keys.client_of(chunk)
            if client is None:
                continue  # named by the summary
            info = await client.cancel(chunk.batch_id)
            batches.set_seen(chunk.chunk_no, info.status, info.completed, info.failed, None)
            print(f"omc cancel: batch {chunk.batch_id}: {info.status}", file=sys.stderr)

    def _report_bad(self, item: BadLine, outputs: Outputs) -> None:
        from ._batch import error_line

        self._bad += 1
        data = error_line(item.custom_id, code=item.code, message=item.message, line=item.line)
        if outputs.errors is not None:
            outputs.write_error(data)
        elif self._bad <= _BAD_LINES_SHOWN:
            print(f"omc run: {item.message}", file=sys.stderr)

    def _over_budget(self, progress: RunProgress, live: list[ChunkRow] | None = None) -> bool:
        """Whether a budget is spent: by what was spent and, given the ``live`` chunks (their
        batches run and will be paid for), by their estimate. A batch's answers arrive all at
        once, so without the estimate every chunk would be submitted before the first token
        was counted."""
        tokens, dollars = self.config.budget_tokens, self.config.budget_dollars
        live = live or []
        if tokens is not None and progress.tokens + sum(c.tokens for c in live) >= tokens:
            self._budget = f"--budget-tokens {tokens}"
        elif dollars is not None and progress.cost + self._estimate(live) >= dollars:
            self._budget = f"--budget-dollars {dollars}"
        return self._budget is not None

    def _estimate(self, live: list[ChunkRow]) -> float:
        """Dollars the ``live`` chunks may cost at batch prices: their estimated tokens at the
        dearer of the model's two rates (a model without a price: 0)."""
        prices, total = batch_prices(self.config.prices), 0.0
        for chunk in live:
            price = None if chunk.model is None else price_for(prices, chunk.model)
            if price is not None:
                total += chunk.tokens * max(price.input, price.output) / 1_000_000
        return total

    def _say(self, batches: BatchJournal, progress: RunProgress) -> None:
        """The progress line: batches by status, the running ones' counts, elapsed time and
        the cost so far at batch prices (printed when it changes)."""
        counts: dict[str, int] = {}
        done = failed = total = 0
        for chunk in batches.chunks(unfinished=False):
            counts[chunk.status] = counts.get(chunk.status, 0) + 1
            if not chunk.finished:
                done, failed = done + chunk.completed, failed + chunk.failed
                total += chunk.lines
        shown = ", ".join(f"{count} {status}" for status, count in sorted(counts.items()))
        line = (
            f"batches: {shown}; running batches: {done:,}/{total:,} lines done, {failed:,} "
            f"failed; ${progress.cost:,.4f} so far at batch prices"
        )
        if line != self._said:
            self._said = line
            elapsed = self.clock.now() - self._started
            print(f"omc run: [{elapsed:,.0f} s] {line}", file=sys.stderr)

    def _finish(
        self, batches: BatchJournal, collector: Collector, progress: RunProgress, keys: BatchKeys
    ) -> int:
        chunks = batches.chunks(unfinished=False)
        unseen = _unseen(chunks, keys)
        progress.close()
        print(progress.summary(interrupted=self.signal is not None), file=sys.stderr)
        cost = batch_cost(usage_of(chunks), batch_prices(self.config.prices))
        shown = "unknown (a model has no price)" if cost is None else f"${cost:,.4f}"
        print(f"Batches: {len(chunks)}; estimated cost at batch prices: {shown}", file=sys.stderr)
        for stop in (self._budget, self._capped):
            if stop:
                print(f"omc run: stopped at {stop}; run again to go on", file=sys.stderr)
        if self.signal is not None:
            return exit_code_for(self.signal)
        left = any(not chunk.finished for chunk in chunks)
        if self._capped or (self._budget and left):
            return EXIT_STOPPED
        if unseen or (left and not keys.usable()):
            return EXIT_FAILURES
        return EXIT_FAILURES if collector.failed or self._bad else EXIT_OK


def _unseen(chunks: list[ChunkRow], keys: BatchKeys) -> int:
    """Tell of the batches this run could not look at (their key refused, or not given);
    how many."""
    count = 0
    for chunk in chunks:
        key_id = keys.key_of(chunk)
        if chunk.batch_id is None or chunk.finished or key_id is None or keys.client(key_id):
            continue
        count += 1
        print(
            f"omc run: chunk {chunk.chunk_no}: batch {chunk.batch_id} was created with key "
            f"{key_id}, which {keys.why_not(key_id)}: not collected; run again with that key "
            "to collect it (omc cancel JOURNAL with that key cancels it)",
            file=sys.stderr,
        )
    if not keys.usable():
        print(
            "omc run: every key was refused; lines not sent wait for the next run", file=sys.stderr
        )
    return count


def _settings(config: RunConfig) -> dict[str, object]:
    """What ``omc cancel`` needs to collect a run's results (no key)."""
    return {
        "input": config.input,
        "output": config.output,
        "errors": config.errors,
        "base_url": config.base_url,
        "azure": config.azure,
        "api_version": config.api_version,
        "max_retries": config.max_retries,
    }


@contextlib.asynccontextmanager
async def _built_in_mock(config: RunConfig) -> AsyncIterator[str | None]:
    """With ``--mock``, the built-in mock server for the run, its batches processed at once;
    its base URL (``None`` without ``--mock``)."""
    if not config.mock:
        yield None
        return
    from ..testing import BatchOptions, MockOpenAIServer

    instant = BatchOptions(validation_seconds=0, finalizing_seconds=0, lines_per_second=None)
    mock = MockOpenAIServer(batches=instant)
    await mock.start()
    print(f"omc run: using the built-in mock server at {mock.base_url}", file=sys.stderr)
    try:
        yield mock.base_url
    finally:
        await mock.stop()
