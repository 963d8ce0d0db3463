"""``omc cancel JOURNAL``: cancel the live batches of an ``omc run --batch``, wait for them to
stop, and collect their partial results into the run's output files (lines they did not run
are final: ``batch_cancelled``). Also the batch lines of ``omc status``."""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import sys

from .._errors import ConfigurationError, OpenAIMultiClientError
from .._limits import Key
from .._prices import load_prices
from ._batch_journal import batch_status_lines
from ._batch_run import BatchRun
from ._config import DEFAULT_POLL_SECONDS, RunConfig, _read_keys_file
from ._outcome import EXIT_USAGE

__all__ = ["batch_status", "run_cancel"]


def _read_only(path: str) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True)


def batch_status(path: str) -> list[str]:
    """The ``omc status`` lines of a journal's batches (none for an online run)."""
    connection = _read_only(path)
    try:
        return batch_status_lines(connection)
    finally:
        connection.close()


def _settings(path: str) -> dict[str, object]:
    connection = _read_only(path)
    try:
        try:
            row = connection.execute(
                "SELECT value FROM meta WHERE key = 'batch_settings'"
            ).fetchone()
        except sqlite3.DatabaseError:
            row = None
    finally:
        connection.close()
    if row is None:
        raise ConfigurationError(f"{path} is not the journal of an omc run --batch")
    return dict(json.loads(row[0]))


def cancel_config(args: argparse.Namespace) -> RunConfig:
    """The run's configuration, from its journal and ``omc cancel``'s key options."""
    stored = _settings(args.journal)
    secrets = list(args.key)
    if args.keys_file:
        secrets += _read_keys_file(args.keys_file, secrets)
    if not secrets:
        import os

        env = os.environ.get("OPENAI_API_KEY")
        secrets = [env] if env else []
    azure = args.azure or bool(stored.get("azure"))
    api_version = args.api_version or stored.get("api_version")
    keys: tuple[str | Key, ...] = tuple(
        Key(secret, azure=True, api_version=str(api_version) if api_version else None)
        if azure
        else secret
        for secret in secrets
    )
    errors = stored.get("errors")
    return RunConfig(
        input=str(stored["input"]),
        output=str(stored["output"]),
        errors=None if errors is None else str(errors),
        journal=args.journal,
        force=True,
        retry_failed=None,
        keys=keys,
        base_url=args.base_url or stored.get("base_url"),  # type: ignore[arg-type]
        mock=False,
        azure=azure,
        api_version=None if api_version is None else str(api_version),
        redis=None,
        redis_namespace="omc",
        redis_unavailable="fail",
        concurrency=1,
        ordered=False,
        max_retries=int(stored.get("max_retries") or 1),  # type: ignore[call-overload]
        timeout=600.0,
        read_timeout=None,
        max_requests=None,
        budget_tokens=None,
        budget_dollars=None,
        max_line_bytes=1_000_000,
        max_response_bytes=1,
        cache=None,
        prices=load_prices(None),
        batch=True,
        poll_interval=args.poll_interval or DEFAULT_POLL_SECONDS,
    )


def run_cancel(args: argparse.Namespace) -> int:
    """``omc cancel JOURNAL``: the exit code."""
    try:
        config = cancel_config(args)
        return asyncio.run(BatchRun(config, cancel=True).main())
    except (OpenAIMultiClientError, OSError, ValueError, sqlite3.Error) as exc:
        print(f"omc cancel: {exc}", file=sys.stderr)
        return EXIT_USAGE
