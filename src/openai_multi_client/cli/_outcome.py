"""How one ``omc run`` ended, told: the messages on stderr and the exit code.

The exit codes (``omc run --help`` lists them): 0 every request succeeded; 1 failures, bad
lines, dead keys or a model every key was refused; 2 a usage error; 3 stopped at a limit of
the run with requests left; 128 + the signal's number when a stop signal stopped it (130 for
Ctrl-C).
"""

from __future__ import annotations

import sys

from ._config import RunConfig
from ._consumer import Consumer
from ._producer import Producer
from ._signals import exit_code_for
from ._stop import RunStop

__all__ = [
    "EXIT_FAILURES",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_STOPPED",
    "EXIT_USAGE",
    "Outcome",
]

EXIT_OK, EXIT_FAILURES, EXIT_USAGE, EXIT_STOPPED, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


class Outcome:
    """Tells the user where a run of ``config`` stands."""

    def __init__(self, config: RunConfig, stop: RunStop) -> None:
        self._config = config
        self._stop = stop

    def say_resuming(self, done: int, in_doubt: int, to_retry: int, total: int | None) -> None:
        to_send = (
            "the rest"
            if total is None
            else f"about {max(0, total - done):,} (fewer if some lines are bad)"
        )
        again = (
            f", and {to_retry} that failed will be sent again (--retry-failed)" if to_retry else ""
        )
        print(
            f"omc run: resuming {self._config.journal}: {done} requests already done; "
            f"{to_send} will be sent, of which {in_doubt} whose outcome is unknown "
            f"will be sent again (they may be billed twice){again}",
            file=sys.stderr,
        )

    def say_retryable(self, retryable: int) -> None:
        """Tell how many recorded failures were temporary, and how to send them again."""
        if retryable:
            print(
                f"omc run: {retryable} requests failed for a temporary reason (connection, "
                "timeout, 408, 409, 429 or 5xx); once the cause is gone, run the same command "
                "with --retry-failed to send them again (--retry-failed=all: every failure)",
                file=sys.stderr,
            )

    def exit_code(self, sent: Producer, taken: Consumer, bad_lines: int, *, cancelled: bool) -> int:
        """Say why the run stopped, if it stopped early, and which models every key was refused;
        the exit code."""
        for line in taken.refused.messages(nothing_answered=not taken.answered):
            print(line, file=sys.stderr)
        if taken.no_key:
            print(
                f"omc run: stopped: {taken.no_key}. Requests not yet answered are kept; fix the "
                "keys and run the same command again",
                file=sys.stderr,
            )
            return EXIT_FAILURES
        for stop in (taken.budget_hit, sent.capped):
            if stop:
                print(f"omc run: stopped at {stop}; run again to go on", file=sys.stderr)
        if cancelled or self._stop.interrupted:
            signum = self._stop.signal
            return EXIT_INTERRUPTED if signum is None else exit_code_for(signum)
        if sent.capped or (taken.budget_hit and (taken.abandoned or not sent.read_all)):
            return EXIT_STOPPED  # requests are left for the next run
        return EXIT_FAILURES if taken.failed or bad_lines or taken.refused else EXIT_OK
