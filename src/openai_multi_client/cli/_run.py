"""``omc run INPUT.jsonl -o OUTPUT.jsonl``: a Batch-API file of requests in, a file of results
out, as fast as the keys' limits allow, resumable after a crash.

This module is the command's face: its options, its exit codes and its entry points. The run
itself is :class:`~._job.Job`, configured by a :class:`~._config.RunConfig` built from the
options once. Ctrl-C (or SIGTERM, SIGHUP) once stops reading input and lets requests in flight
finish and be committed for ``--grace`` seconds, then abandons those still in flight (recorded
as of unknown outcome); twice aborts at once. Either way the journal stays consistent.
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
from typing import Any

from .._errors import ConfigurationError, OpenAIMultiClientError
from .._loops import run as run_loop
from .._options import DEFAULT_REORDER_BUFFER
from .._transport import DEFAULT_MAX_RESPONSE_BYTES
from ._argtypes import non_negative, positive_int
from ._batch_cancel import batch_status, run_cancel
from ._batch_run import BatchRun
from ._config import RunConfig
from ._job import Job
from ._journal import open_status
from ._logs import use_log_format
from ._outcome import EXIT_OK, EXIT_USAGE
from ._stop import DEFAULT_GRACE

_EPILOG = """\
exit codes:
  0    every request succeeded
  1    some requests failed or input lines were bad (see --errors), or the keys stopped working,
       or every key was refused a model (its requests are kept: fix its access, run again)
  2    usage error: bad arguments, unreadable files, a journal in use or made for other input
  3    stopped at --max-requests, --budget-tokens or --budget-dollars with requests left:
       run the same command again to go on
  130  stopped by Ctrl-C (SIGINT); 143 by SIGTERM, 129 by SIGHUP (128 + the signal's number):
       requests in flight finished and were recorded; run the same command again to go on
"""


def add_parser(subparsers: Any) -> None:
    """Add ``omc run`` and ``omc status`` to the ``omc`` command."""
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
    _add_key_options(parser)
    _add_pacing_options(parser)
    _add_limit_options(parser)
    _add_batch_options(parser)
    other = parser.add_argument_group("other")
    other.add_argument("--cache", help="reuse answers to identical requests from this file")
    other.add_argument("--prices", help="JSON price table overriding the built-in one")
    other.add_argument(
        "--metrics-port",
        type=int,
        metavar="PORT",
        help="serve Prometheus metrics at http://HOST:PORT/metrics during the run "
        "(needs the metrics extra; 0: any free port, printed at the start)",
    )
    other.add_argument(
        "--metrics-host",
        metavar="HOST",
        help="address the metrics are served on (default: 127.0.0.1; 0.0.0.0 for every one)",
    )
    other.add_argument(
        "--log-format",
        choices=("text", "json"),
        default="text",
        help="log lines on standard error as text (default) or as one JSON object a line "
        "(time, level, event, custom_id, key_id, error_class) for log shippers",
    )
    parser.set_defaults(run=run)

    status = subparsers.add_parser("status", help="show the progress recorded in a journal")
    status.add_argument("journal")
    status.set_defaults(run=run_status)

    cancel = subparsers.add_parser(
        "cancel",
        help="cancel the running batches of an omc run --batch and collect their results",
        description="Cancel the live batches recorded in JOURNAL (omc run --batch), wait for "
        "them to stop, and write their partial results to the run's output files; lines they "
        "did not run are recorded as failed (batch_cancelled).",
    )
    cancel.add_argument("journal")
    cancel.add_argument(
        "--key", action="append", default=[], help="the run's API key (repeat for several)"
    )
    cancel.add_argument(
        "--keys-file", help="the run's keys file (each batch is cancelled with its own key)"
    )
    cancel.add_argument("--base-url", help="API base URL (default: the run's)")
    cancel.add_argument("--azure", action="store_true", help="send the key as Azure's api-key")
    cancel.add_argument("--api-version", help="Azure api-version query parameter")
    cancel.add_argument("--poll-interval", type=float, default=None, help="seconds between looks")
    cancel.set_defaults(run=run_cancel)


def _add_batch_options(parser: argparse.ArgumentParser) -> None:
    """The Batch API (half the price, answers within 24 hours)."""
    batch = parser.add_argument_group("Batch API (half the price; answers within 24 h)")
    batch.add_argument(
        "--batch",
        action="store_true",
        help="send the input through OpenAI's Batch API instead of online requests; the "
        "output is the same; a stop leaves the batches running and the same command resumes",
    )
    batch.add_argument(
        "--batch-size", type=int, help="lines per batch, at most 50,000 (default: 50,000)"
    )
    batch.add_argument(
        "--poll-interval", type=float, help="seconds between looks at running batches (60)"
    )
    batch.add_argument(
        "--batch-max-tokens",
        type=int,
        help="cap the estimated input tokens enqueued at once per model (the enqueued-token "
        "limit of your organisation's tier, which is per model): a model's next batch waits "
        "for its running ones; default: no cap (a batch refused for the limit waits for its "
        "model's running batches and goes again, smaller)",
    )


def _add_key_options(parser: argparse.ArgumentParser) -> None:
    """Which keys, which server, shared limits."""
    keys = parser.add_argument_group("keys and server")
    keys.add_argument(
        "--key",
        action="append",
        default=[],
        help="an API key (repeatable; with --batch, batches spread over the keys, each "
        "batch through one key to its end)",
    )
    keys.add_argument(
        "--keys-file",
        help="a file with one API key a line, optionally followed by its group: keys of one "
        "group share one set of limits (one organization's or project's)",
    )
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


def _add_pacing_options(parser: argparse.ArgumentParser) -> None:
    """Concurrency, order, retries and timeouts."""
    pacing = parser.add_argument_group("pacing and retries")
    pacing.add_argument("-c", "--concurrency", type=int, default=50)
    pacing.add_argument("--ordered", action="store_true", help="write results in input order")
    pacing.add_argument(
        "--reorder-buffer",
        type=positive_int,
        default=DEFAULT_REORDER_BUFFER,
        metavar="N",
        help="with --ordered: results held behind an unfinished request before new requests "
        f"wait too (default {DEFAULT_REORDER_BUFFER})",
    )
    pacing.add_argument("--max-retries", type=int, default=10, help="attempts in total")
    pacing.add_argument(
        "--timeout",
        type=float,
        help="seconds per attempt (default 600; 900 for flex requests)",
    )
    pacing.add_argument(
        "--flex",
        action="store_true",
        help='send every line with "service_tier": "flex" (batch prices, slower answers; '
        "a 429 for lack of capacity is retried with backoff)",
    )
    pacing.add_argument(
        "--read-timeout",
        type=float,
        help="seconds without data (the answer, or a stream's next chunk) before giving up",
    )
    pacing.add_argument(
        "--grace",
        type=non_negative,
        default=DEFAULT_GRACE,
        metavar="SECONDS",
        help="after the first Ctrl-C or SIGTERM, how long requests in flight may take to finish "
        "before they are abandoned (a later run sends them again; default %(default)g)",
    )


def _add_limit_options(parser: argparse.ArgumentParser) -> None:
    """What one run may send, spend and read."""
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


def run(args: argparse.Namespace) -> int:
    """``omc run``: the exit code."""
    try:
        config = RunConfig.from_args(args)
        use_log_format(config.log_format)
        if config.batch:
            return run_loop(BatchRun(config).main())
        job = Job(config)
        return run_loop(job.main())
    except (OpenAIMultiClientError, OSError, ValueError, sqlite3.Error) as exc:
        print(f"omc run: {exc}", file=sys.stderr)
        return EXIT_USAGE


def run_status(args: argparse.Namespace) -> int:
    """``omc status JOURNAL``: the exit code."""
    try:
        status = open_status(args.journal)
    except (ConfigurationError, OSError, sqlite3.Error) as exc:
        print(f"omc status: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print(
        f"{args.journal}: {status.done} done ({status.failed} failed), "
        f"{status.in_doubt} sent with unknown outcome"
    )
    for line in batch_status(args.journal):
        print(line)
    return EXIT_OK
