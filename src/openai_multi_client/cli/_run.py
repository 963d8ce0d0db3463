"""``omc run INPUT.jsonl -o OUTPUT.jsonl``: a Batch-API file of requests in, a file of results
out, as fast as the keys' limits allow, resumable after a crash.

The pipeline, in one event loop::

    reader thread --batches--> producer --request()--> AsyncMultiClient --results--> consumer

The reader thread parses the input (bad lines go to the error output); the producer skips ids
the journal has finished and answers from the cache; the engine's ``on_send`` hook commits each
request as sent before it leaves; the consumer records outcomes in the journal, commits, and
only then appends them to the output files.

The output files are a projection of the journal: a resumed run first rewrites them from the
journal, then appends. Ctrl-C (or SIGTERM, SIGHUP) once stops reading input and lets requests in
flight finish (within their timeout) and be committed; twice aborts at once. Either way the
journal stays consistent.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import math
import os
import signal
import sqlite3
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

from .._engine import AsyncMultiClient
from .._errors import (
    AbandonedRequestError,
    AuthenticationError,
    ClientClosedError,
    ConfigurationError,
    InsufficientQuotaError,
    NoUsableKeyError,
    OpenAIMultiClientError,
    PermissionDeniedError,
)
from .._limits import Key, RedisLimits
from .._request import Request, Result
from .._retry import Action, classify
from .._transport import DEFAULT_MAX_RESPONSE_BYTES, check_max_response_bytes
from ._batch import BadLine, BatchRequest, error_line, output_line, read_batch, result_line
from ._cache import ResponseCache, cache_key
from ._files import Outputs, check_files, check_input, check_output_folder
from ._journal import Journal, JournalError, Known, NullJournal, open_status, request_digest
from ._progress import RunProgress, load_prices
from ._seen import DiskSeenIds
from ._signals import exit_code_for, stop_signals

# Results committed per journal transaction at most, and the longest a result waits for one.
_COMMIT_EVERY = 256
_COMMIT_SECONDS = 0.2
_READ_BATCH = 256
_PROGRESS_SECONDS = 0.1
_BAD_LINES_SHOWN = 20  # bad lines printed when there is no --errors file

EXIT_OK, EXIT_FAILURES, EXIT_USAGE, EXIT_STOPPED, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
_EPILOG = """\
exit codes:
  0    every request succeeded
  1    some requests failed or input lines were bad (see --errors), or the keys stopped working
  2    usage error: bad arguments, unreadable files, a journal in use or made for other input
  3    stopped at --max-requests, --budget-tokens or --budget-dollars with requests left:
       run the same command again to go on
  130  stopped by Ctrl-C (SIGINT); 143 by SIGTERM, 129 by SIGHUP (128 + the signal's number):
       requests in flight finished and were recorded; run the same command again to go on
"""
# Failures that say nothing about the request: the keys are dead. Never recorded as outcomes.
_KEY_ERRORS = (AuthenticationError, PermissionDeniedError, InsufficientQuotaError, NoUsableKeyError)


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "run",
        help="send a Batch-API JSONL file of requests; write the results (resumable)",
        description=__doc__.split("\n\n")[0],
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("input", help="Batch API JSONL input file, or - for standard input")
    parser.add_argument("-o", "--output", required=True, help="results, Batch API JSONL")
    parser.add_argument("--errors", help="also write failures and bad input lines here")
    parser.add_argument("--journal", help="journal file (default: OUTPUT.journal)")
    parser.add_argument("--force", action="store_true", help="resume even if input/options changed")
    parser.add_argument(
        "--retry-failed",
        nargs="?",
        const="retryable",
        choices=("retryable", "all"),
        help="send again the requests the journal holds as failed for a temporary reason "
        "(connection, timeout, 408, 409, 429, 5xx); --retry-failed=all: every failure",
    )
    parser.add_argument(
        "--no-journal", action="store_true", help="keep no journal (the run cannot be resumed)"
    )
    keys = parser.add_argument_group("keys and server")
    keys.add_argument("--key", action="append", default=[], help="an API key (repeatable)")
    keys.add_argument("--keys-file", help="a file with one API key a line")
    keys.add_argument("--base-url", help="API base URL (default: OPENAI_BASE_URL or OpenAI)")
    keys.add_argument("--azure", action="store_true", help="send keys as Azure's api-key header")
    keys.add_argument("--api-version", help="Azure api-version query parameter")
    keys.add_argument(
        "--rpm",
        type=float,
        help="requests per minute per key, > 0 (default: no fixed limit; the limits are "
        "learned from the server's rate-limit headers)",
    )
    keys.add_argument(
        "--tpm", type=float, help="tokens per minute per key, > 0 (default: as for --rpm)"
    )
    keys.add_argument("--mock", action="store_true", help="run against the built-in mock server")
    keys.add_argument(
        "--redis",
        metavar="URL",
        help="share the keys' limits with other runs through this Redis server "
        "(redis://host:port/db; needs the redis extra)",
    )
    keys.add_argument(
        "--redis-namespace",
        default="omc",
        help="runs with the same namespace share limits (default: omc)",
    )
    keys.add_argument(
        "--redis-unavailable",
        choices=("fail", "local"),
        default="fail",
        help="when Redis cannot be reached at the start: fail (default), or warn and run on "
        "local limits",
    )
    pacing = parser.add_argument_group("pacing and retries")
    pacing.add_argument("-c", "--concurrency", type=int, default=50)
    pacing.add_argument("--ordered", action="store_true", help="write results in input order")
    pacing.add_argument("--max-retries", type=int, default=10, help="attempts in total")
    pacing.add_argument("--timeout", type=float, default=600.0, help="seconds per attempt")
    pacing.add_argument(
        "--read-timeout",
        type=float,
        help="seconds without data (the answer, or a stream's next chunk) before giving up",
    )
    limits = parser.add_argument_group("limits of this run")
    limits.add_argument("--max-requests", type=int, help="send at most this many requests")
    limits.add_argument("--budget-tokens", type=int, help="stop cleanly after this many tokens")
    limits.add_argument("--budget-dollars", type=float, help="stop cleanly at this cost")
    limits.add_argument(
        "--max-line-bytes",
        type=int,
        default=1_000_000,
        help="longest input line, in bytes; a longer line is reported as a bad line and "
        "skipped (default: 1000000)",
    )
    limits.add_argument(
        "--max-response-bytes",
        type=int,
        default=DEFAULT_MAX_RESPONSE_BYTES,
        help="the largest answer read, in bytes; a larger one is that request's failure "
        f"(default: {DEFAULT_MAX_RESPONSE_BYTES:,})",
    )
    other = parser.add_argument_group("other")
    other.add_argument("--cache", help="reuse answers to identical requests from this file")
    other.add_argument("--prices", help="JSON price table overriding the built-in one")
    parser.set_defaults(run=run)

    status = subparsers.add_parser("status", help="show the progress recorded in a journal")
    status.add_argument("journal")
    status.set_defaults(run=run_status)


def run(args: argparse.Namespace) -> int:
    try:
        job = Job(args)
        return asyncio.run(job.main())
    except (OpenAIMultiClientError, OSError, ValueError, sqlite3.Error) as exc:
        print(f"omc run: {exc}", file=sys.stderr)
        return EXIT_USAGE


def run_status(args: argparse.Namespace) -> int:
    try:
        status = open_status(args.journal)
    except (ConfigurationError, OSError, sqlite3.Error) as exc:
        print(f"omc status: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print(
        f"{args.journal}: {status.done} done ({status.failed} failed), "
        f"{status.in_doubt} sent with unknown outcome"
    )
    return EXIT_OK


class Job:
    """One ``omc run``: its configuration, its files and its counters."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        if args.concurrency < 1:
            raise ConfigurationError("--concurrency must be at least 1")
        if args.max_line_bytes < 1:
            raise ConfigurationError("--max-line-bytes must be at least 1")
        check_max_response_bytes(args.max_response_bytes, "--max-response-bytes")
        for option, value in (
            ("--max-requests", args.max_requests),
            ("--budget-tokens", args.budget_tokens),
            ("--budget-dollars", args.budget_dollars),
        ):
            if value is not None and value < 0:
                raise ConfigurationError(f"{option} must not be negative, got {value}")
        for option, rate in (("--rpm", args.rpm), ("--tpm", args.tpm)):
            if rate is not None and not 0 < rate < math.inf:
                raise ConfigurationError(
                    f"{option} must be a number above 0, got {rate:g}; leave it out for no fixed "
                    "limit (the limits are then learned from the server's rate-limit headers)"
                )
        if args.retry_failed and args.no_journal:
            raise ConfigurationError(
                "--retry-failed sends again the failures a journal recorded; "
                "it cannot go with --no-journal"
            )
        if args.ordered and args.cache:
            raise ConfigurationError(
                "--ordered and --cache together are not supported yet: answers from the cache "
                "would be written ahead of earlier requests still in flight"
            )
        self.journal_path = args.journal or args.output + ".journal"
        self._check_files()
        self.keys = self._keys()
        self.shared_limits = (
            RedisLimits(
                args.redis,
                namespace=args.redis_namespace,
                on_unavailable=args.redis_unavailable,
            )
            if args.redis
            else None
        )
        self.prices = load_prices(args.prices)
        self.stopping = False
        self.interrupted = False
        self.stop_signal: signal.Signals | None = None
        self.client: AsyncMultiClient | None = None
        self.main_task: asyncio.Task[Any] | None = None
        self.sent = 0
        self.failed = 0
        self.bad_lines = 0
        self.read_all = False  # the whole input was read
        self.abandoned = 0  # requests stopped before they were sent
        self.budget_hit: str | None = None
        self.capped: str | None = None
        self.no_key: str | None = None
        self.total: int | None = None

    def _check_files(self) -> None:
        """The input exists; no output is the input or another output (truncating it would
        destroy it); every output's folder exists."""
        args = self.args
        check_input(args.input)
        outputs = [("-o", args.output)]
        if args.errors:
            outputs.append(("--errors", args.errors))
        if not args.no_journal:
            outputs.append(("--journal" if args.journal else "the journal", self.journal_path))
        for option, path in outputs:
            check_output_folder(option, path)
        check_files(args.input, outputs)

    def _keys(self) -> list[str | Key]:
        args = self.args
        secrets: list[str] = list(args.key)
        if args.keys_file:
            secrets += _read_keys_file(args.keys_file, secrets)
        if not secrets and not args.mock:
            env = os.environ.get("OPENAI_API_KEY")
            if env:
                secrets.append(env)
        if args.mock and not secrets:
            secrets.append("sk-omc-mock")
        limits = {"requests_per_minute": args.rpm, "tokens_per_minute": args.tpm}
        if not (args.azure or args.api_version or args.rpm or args.tpm):
            return list(secrets)
        return [
            Key(secret, azure=args.azure, api_version=args.api_version, **limits)
            for secret in secrets
        ]

    def scan_input(self) -> tuple[str | None, int | None]:
        """The fingerprint of the input's bytes and of the options that shape requests, and
        the number of input lines that are not blank (the reader skips those); ``(None, None)``
        for stdin, which cannot be read twice."""
        if self.args.input == "-":
            return None, None
        digest = hashlib.sha256()
        lines = 0
        blank = True  # the line read so far is only whitespace
        with open(self.args.input, "rb") as file:
            while part := file.readline(1 << 20):  # in parts: a line may be huge
                digest.update(part)
                blank = blank and part.isspace()
                if part.endswith(b"\n"):
                    lines += not blank
                    blank = True
        lines += not blank
        args = self.args
        shaping = {
            "base_url": args.base_url,
            "mock": args.mock,
            "azure": args.azure,
            "api_version": args.api_version,
        }
        digest.update(json.dumps(shaping, sort_keys=True).encode())
        return digest.hexdigest(), lines

    async def main(self) -> int:
        args = self.args
        self.main_task = asyncio.current_task()
        fingerprint, self.total = self.scan_input()
        journal = (
            NullJournal()
            if args.no_journal
            else Journal.open(self.journal_path, fingerprint, force=args.force)
        )
        mock = None
        cache = None
        try:
            cache = ResponseCache(args.cache) if args.cache else None
            base_url = args.base_url
            if args.mock:
                from ..testing import MockOpenAIServer

                mock = MockOpenAIServer()
                await mock.start()
                base_url = mock.base_url
                print(f"omc run: using the built-in mock server at {base_url}", file=sys.stderr)
            with stop_signals(asyncio.get_running_loop(), self._on_signal):
                return await self._run(journal, cache, base_url)
        finally:
            journal.close()
            if cache is not None:
                cache.close()
            if mock is not None:
                await mock.stop()
            if self.shared_limits is not None:
                await self.shared_limits.aclose()

    async def _run(
        self, journal: Journal, cache: ResponseCache | None, base_url: str | None
    ) -> int:
        args = self.args
        status = journal.status()
        retry = args.retry_failed
        to_retry = journal.to_retry(retry)
        outputs = self._open_outputs(journal)
        if status.done or status.in_doubt:
            self._say_resuming(status.done - to_retry, status.in_doubt, to_retry)
        progress = RunProgress(
            total=self.total,
            stream=sys.stderr,
            now=time.monotonic,
            live=sys.stderr.isatty(),
            prices=self.prices,
            already_done=status.done - to_retry,
        )
        lines_of: dict[str, tuple[int, str]] = {}

        def on_send(request: Request) -> None:
            if request.attempt == 1:
                metadata = request.metadata
                journal.mark_sent(metadata["custom_id"], metadata["line"], metadata["digest"])
                progress.started()

        client = AsyncMultiClient(
            args.concurrency,
            args.max_retries,
            api_key=self.keys or None,
            base_url=base_url,
            timeout=args.timeout,
            read_timeout=args.read_timeout,
            ordered=args.ordered,
            on_send=on_send,
            shared_limits=self.shared_limits,
            max_response_bytes=args.max_response_bytes,
        )
        self.client = client
        if self.stopping:  # a signal came while the run was starting
            client.abandon_unsent()
        loop = asyncio.get_running_loop()
        pending: list[tuple[bytes, bool]] = []
        last_commit = time.monotonic()

        def flush() -> None:
            nonlocal last_commit
            journal.commit()
            try:
                outputs.write(pending)
            finally:
                pending.clear()  # committed: a failed write loses nothing the journal lacks
                last_commit = time.monotonic()

        def finish(
            custom_id: str, line: int, data: bytes, digest: bytes, failed: bool, retryable: bool
        ) -> None:
            journal.record(custom_id, line, data, failed=failed, retryable=retryable, digest=digest)
            pending.append((data, failed))
            if len(pending) >= _COMMIT_EVERY or time.monotonic() - last_commit > _COMMIT_SECONDS:
                flush()

        async def produce() -> None:
            try:
                await feed()
            except BaseException as exc:  # the consumer re-raises it after the last result
                client.close(exc)
                if isinstance(exc, asyncio.CancelledError):
                    raise
            else:
                client.close()

        reported = 0

        def bad_line(item: BadLine) -> None:
            nonlocal reported
            self.bad_lines += 1
            progress.bad_line()
            data = error_line(item.custom_id, code=item.code, message=item.message, line=item.line)
            if outputs.errors is not None:
                outputs.write_error(data)
            elif reported < _BAD_LINES_SHOWN:
                reported += 1
                print(f"omc run: {item.message}", file=sys.stderr)

        async def feed() -> None:
            async for batch in self._read(loop):
                known = journal.lookup(
                    [item.custom_id for item in batch if isinstance(item, BatchRequest)]
                )
                for item in batch:
                    if self.stopping or self.capped:
                        return
                    if isinstance(item, BadLine):
                        bad_line(item)
                        continue
                    digest = request_digest(item.url, item.body)
                    if self._should_send(item, digest, known.get(item.custom_id)):
                        await send(item, digest)
            self.read_all = True

        async def send(item: BatchRequest, digest: bytes) -> None:
            if cache is not None:
                hit = cache.get(cache_key(item.url, item.body))
                if hit is not None:
                    status_code, request_id, body = hit
                    data = output_line(
                        item.custom_id,
                        status_code=status_code,
                        request_id=request_id,
                        body=body,
                    )
                    finish(item.custom_id, item.line, data, digest, False, False)
                    progress.cached()  # not sent: no tokens spent, no cost
                    return
            if args.max_requests is not None and self.sent >= args.max_requests:
                self.capped = f"--max-requests {args.max_requests}"
                return
            try:
                request = client.build_request(
                    item.body,
                    endpoint=item.url,
                    metadata={"custom_id": item.custom_id, "line": item.line, "digest": digest},
                )
            except ConfigurationError as exc:  # e.g. NaN, which only JSON's superset allows
                bad_line(
                    BadLine(
                        item.line,
                        item.custom_id,
                        "invalid_body",
                        f"line {item.line}: the body cannot be sent: {exc}",
                    )
                )
                return
            self.sent += 1
            lines_of[item.custom_id] = (item.line, item.url)
            try:
                await client.submit(request)
            except ClientClosedError:
                if self.is_stopping():  # Ctrl-C or a budget closed the client meanwhile
                    return
                raise

        async def show_progress() -> None:
            """Feed the engine's gauges to the display and redraw it, results or not."""
            waiting = limited = 0
            while True:
                statistics = client.statistics()
                progress.waiting_retry(statistics.waiting_to_retry - waiting)
                progress.rate_limited(statistics.keys.rate_limited - limited)
                waiting, limited = statistics.waiting_to_retry, statistics.keys.rate_limited
                progress.retry_error(statistics.last_retry_error)
                progress.tick()
                if pending and time.monotonic() - last_commit > _COMMIT_SECONDS:
                    flush()  # no result came to trigger it: commit what waits
                await asyncio.sleep(_PROGRESS_SECONDS)

        exit_code = EXIT_OK
        async with client:
            producer = loop.create_task(produce())
            display = loop.create_task(show_progress())
            try:
                async for result in client:
                    custom_id = result.metadata["custom_id"]
                    line, url = lines_of.pop(custom_id)
                    if isinstance(result.error, AbandonedRequestError):
                        self.abandoned += 1
                        continue  # stopped before an outcome: a later run sends it
                    if isinstance(result.error, _KEY_ERRORS):
                        # Not the request's fault: keep it for a run with working keys.
                        if not self.stopping:
                            self.no_key = str(result.error)
                            self._stop(client)
                        continue
                    data, failed = self._output_of(custom_id, result)
                    retryable = result.error is not None and classify(result.error) is Action.RETRY
                    if cache is not None and not failed and result.status_code is not None:
                        cache.put(
                            cache_key(url, result.data),
                            result.status_code,
                            result.request_id,
                            result.response,
                        )
                    finish(custom_id, line, data, result.metadata["digest"], failed, retryable)
                    self._account(result, progress)
                    if not self.stopping and self._over_budget(progress):
                        self._stop(client)
                if self.stopping and not producer.done():
                    producer.cancel()  # it may be waiting for input that never comes
                await asyncio.gather(producer, return_exceptions=True)
            except asyncio.CancelledError:
                exit_code = EXIT_INTERRUPTED
                producer.cancel()
            finally:
                display.cancel()
                await asyncio.gather(display, return_exceptions=True)
                try:
                    flush()
                    # Failures left out of the rewrite for sending again that were not sent.
                    outputs.write(journal.not_retried(retry))
                finally:
                    progress.close()
                    outputs.close()
        print(progress.summary(interrupted=self.interrupted), file=sys.stderr)
        self._say_retryable(journal)
        if self.no_key:
            print(
                f"omc run: stopped: {self.no_key}. Requests not yet answered are kept; fix the "
                "keys and run the same command again",
                file=sys.stderr,
            )
            return EXIT_FAILURES
        for stop in (self.budget_hit, self.capped):
            if stop:
                print(f"omc run: stopped at {stop}; run again to go on", file=sys.stderr)
        if exit_code == EXIT_INTERRUPTED or self.interrupted:
            return EXIT_INTERRUPTED if self.stop_signal is None else exit_code_for(self.stop_signal)
        if self.capped or (self.budget_hit and (self.abandoned or not self.read_all)):
            return EXIT_STOPPED  # requests are left for the next run
        return EXIT_FAILURES if self.failed or self.bad_lines else EXIT_OK

    def _on_signal(self, signum: signal.Signals) -> None:
        """The first stop signal stops the run cleanly; a second one aborts it."""
        if self.stop_signal is not None:
            task = self.main_task
            if task is not None:
                task.cancel()
            return
        self.stop_signal = signum
        self.interrupted = True
        again = "Ctrl-C" if signum == signal.SIGINT else signum.name
        print(
            f"\nomc run: {signum.name}: stopping: no new requests; waiting for those in flight "
            f"({again} again to abort)",
            file=sys.stderr,
        )
        if self.client is None:
            self.stopping = True
        else:
            self._stop(self.client)

    def is_stopping(self) -> bool:
        return self.stopping

    def _stop(self, client: AsyncMultiClient) -> None:
        """Send nothing more; requests in flight finish and are recorded."""
        self.stopping = True
        client.abandon_unsent()

    def _over_budget(self, progress: RunProgress) -> bool:
        args = self.args
        if args.budget_tokens is not None and progress.tokens >= args.budget_tokens:
            self.budget_hit = f"--budget-tokens {args.budget_tokens}"
        elif args.budget_dollars is not None and progress.cost >= args.budget_dollars:
            self.budget_hit = f"--budget-dollars {args.budget_dollars}"
        return self.budget_hit is not None

    def _account(self, result: Result, progress: RunProgress) -> None:
        model = result.data.get("model") if isinstance(result.data, dict) else None
        if result.failed:
            self.failed += 1
        progress.finished(
            ok=not result.failed,
            error_class=None if result.error is None else type(result.error).__name__,
            model=model if isinstance(model, str) else None,
            usage=result.usage,
        )

    @staticmethod
    def _output_of(custom_id: str, result: Result) -> tuple[bytes, bool]:
        return result_line(custom_id, result)

    def _open_outputs(self, journal: Journal) -> Outputs:
        """Rewrite the output files from the journal (they are its projection), without the
        failures to send again, then keep them open for appending."""
        args = self.args
        outputs = Outputs(args.output, args.errors, None if args.no_journal else self.journal_path)
        try:
            outputs.write(journal.outputs(leave_out=args.retry_failed))
        except BaseException:
            with contextlib.suppress(OpenAIMultiClientError):
                outputs.close()
            raise
        return outputs

    def _say_resuming(self, done: int, in_doubt: int, to_retry: int) -> None:
        to_send = (
            "the rest"
            if self.total is None
            else f"about {max(0, self.total - done):,} (fewer if some lines are bad)"
        )
        again = (
            f", and {to_retry} that failed will be sent again (--retry-failed)" if to_retry else ""
        )
        print(
            f"omc run: resuming {self.journal_path}: {done} requests already done; "
            f"{to_send} will be sent, of which {in_doubt} whose outcome is unknown "
            f"will be sent again (they may be billed twice){again}",
            file=sys.stderr,
        )

    def _say_retryable(self, journal: Journal) -> None:
        """Tell how many recorded failures were temporary, and how to send them again."""
        retryable = journal.status().failed_retryable
        if retryable:
            print(
                f"omc run: {retryable} requests failed for a temporary reason (connection, "
                "timeout, 408, 409, 429 or 5xx); once the cause is gone, run the same command "
                "with --retry-failed to send them again (--retry-failed=all: every failure)",
                file=sys.stderr,
            )

    def _should_send(self, item: BatchRequest, digest: bytes, known: Known | None) -> bool:
        """Whether to send ``item``, given what the journal holds about its ``custom_id``.
        Refuses (:class:`JournalError`) a request that the journal holds with another url or
        body: the input is not the one the journal was made for (the only check for stdin)."""
        if known is None:
            return True
        if known.digest is not None and known.digest != digest and not self.args.force:
            shown = repr(item.custom_id[:60]) + ("..." if len(item.custom_id) > 60 else "")
            raise JournalError(
                f"line {item.line}: custom_id {shown} was sent before with another url or body "
                f"({self.journal_path}): this input is not the one the journal was made for. "
                "Use another --journal (or -o), or --force to resume anyway"
            )
        if not known.done:
            return True  # sent, outcome unknown: send again
        return known.to_retry(self.args.retry_failed)

    async def _read(
        self, loop: asyncio.AbstractEventLoop
    ) -> AsyncIterator[list[BatchRequest | BadLine]]:
        """Input items in batches, read by a thread so a slow stdin never blocks the loop."""
        queue: asyncio.Queue[list[BatchRequest | BadLine] | BaseException | None] = asyncio.Queue(
            maxsize=4
        )
        stop = threading.Event()

        def put(item: list[BatchRequest | BadLine] | BaseException | None) -> None:
            putting = queue.put(item)
            try:
                future = asyncio.run_coroutine_threadsafe(putting, loop)
            except RuntimeError:  # the loop is closed: the run is over
                putting.close()
                raise
            future.result()

        def reader() -> None:
            try:
                for batch in _batches(self._input_items(), _READ_BATCH):
                    if stop.is_set():
                        return
                    put(batch)
                put(None)
            except BaseException as exc:  # an unreadable input: the run stops and says why
                if not stop.is_set():  # else the run is over (and its loop may be gone)
                    with contextlib.suppress(BaseException):
                        put(exc)

        thread = threading.Thread(target=reader, name="omc-reader", daemon=True)
        thread.start()
        try:
            while True:
                batch = await queue.get()
                if batch is None:
                    return
                if isinstance(batch, BaseException):
                    raise OpenAIMultiClientError(f"cannot read the input: {batch}") from batch
                yield batch
        finally:
            stop.set()

    def _input_items(self) -> Iterator[BatchRequest | BadLine]:
        """The input's items; the ids seen for the duplicate check are kept on disk."""
        seen = DiskSeenIds()
        try:
            if self.args.input == "-":
                yield from read_batch(
                    sys.stdin.buffer, max_line_bytes=self.args.max_line_bytes, seen=seen
                )
                return
            with open(self.args.input, "rb") as file:
                yield from read_batch(file, max_line_bytes=self.args.max_line_bytes, seen=seen)
        finally:
            seen.close()


def _read_keys_file(path: str, given: list[str]) -> list[str]:
    """The keys in ``path``, one a line; blank lines and ``#`` comments are skipped. A key
    given twice is refused, naming the line (never the key)."""
    where = dict.fromkeys(given, "a --key argument")
    keys: list[str] = []
    with open(path, encoding="utf-8") as file:
        for number, line in enumerate(file, 1):
            key = line.strip()
            if not key or key.startswith("#"):
                continue
            if key in where:
                raise ConfigurationError(
                    f"--keys-file {path} line {number}: the same key as {where[key]}; "
                    "give each key once"
                )
            where[key] = f"line {number}"
            keys.append(key)
    return keys


def _batches(
    items: Iterator[BatchRequest | BadLine], size: int
) -> Iterator[list[BatchRequest | BadLine]]:
    batch: list[BatchRequest | BadLine] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch
