"""The configuration of one ``omc run``: :class:`RunConfig`, built and checked once from the
command line, then handed to every part of the run (no part reads the argparse namespace).

:meth:`RunConfig.from_args` refuses bad options with :class:`~openai_multi_client.
ConfigurationError` naming the option, checks the files (the input exists; no output is the
input or another output; every output's folder exists), reads the keys and the price table.
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from .._errors import ConfigurationError
from .._limits import Key
from .._options import DEFAULT_REORDER_BUFFER
from .._prices import Price, load_prices
from .._transport import check_max_response_bytes
from ._files import check_files, check_input, check_output_folder
from ._journal import RetryMode
from ._stop import DEFAULT_GRACE

__all__ = ["RunConfig"]

_MOCK_KEY = "sk-omc-mock"
DEFAULT_BATCH_SIZE = 50_000
"""Lines per batch of ``omc run --batch`` (the Batch API's limit)."""
DEFAULT_POLL_SECONDS = 60.0
"""Seconds between looks at running batches."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RunConfig:
    """What one ``omc run`` was asked to do, checked. ``journal`` is ``None`` with
    ``--no-journal``. Keys are left out of the repr."""

    input: str
    output: str
    errors: str | None
    journal: str | None
    force: bool
    retry_failed: RetryMode | None
    keys: tuple[str | Key, ...] = field(repr=False)
    base_url: str | None
    mock: bool
    azure: bool
    api_version: str | None
    redis: str | None
    redis_namespace: str
    redis_unavailable: Literal["fail", "local"]
    concurrency: int
    ordered: bool
    max_retries: int
    timeout: float | None
    read_timeout: float | None
    max_requests: int | None
    budget_tokens: int | None
    budget_dollars: float | None
    max_line_bytes: int
    max_response_bytes: int
    cache: str | None
    prices: Mapping[str, Price] = field(repr=False)
    batch: bool = False
    batch_size: int = DEFAULT_BATCH_SIZE
    poll_interval: float = DEFAULT_POLL_SECONDS
    batch_max_tokens: int | None = None
    reorder_buffer: int = DEFAULT_REORDER_BUFFER
    grace: float = DEFAULT_GRACE
    metrics_port: int | None = None
    metrics_host: str = "127.0.0.1"
    log_format: Literal["text", "json"] = "text"
    flex: bool = False

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> RunConfig:
        """The configuration ``omc run``'s arguments ask for, or :class:`ConfigurationError`
        (:class:`ValueError` for a bad price file, :class:`OSError` for an unreadable keys
        file) naming what is wrong."""
        _check_options(args)
        journal = None if args.no_journal else (args.journal or args.output + ".journal")
        _check_paths(args, journal)
        return cls(
            input=args.input,
            output=args.output,
            errors=args.errors,
            journal=journal,
            force=args.force,
            retry_failed=args.retry_failed,
            keys=tuple(_keys(args)),
            base_url=args.base_url,
            mock=args.mock,
            azure=args.azure,
            api_version=args.api_version,
            redis=args.redis,
            redis_namespace=args.redis_namespace,
            redis_unavailable=args.redis_unavailable,
            concurrency=args.concurrency,
            ordered=args.ordered,
            reorder_buffer=args.reorder_buffer,
            max_retries=args.max_retries,
            timeout=args.timeout,
            read_timeout=args.read_timeout,
            grace=args.grace,
            max_requests=args.max_requests,
            budget_tokens=args.budget_tokens,
            budget_dollars=args.budget_dollars,
            max_line_bytes=args.max_line_bytes,
            max_response_bytes=args.max_response_bytes,
            cache=args.cache,
            prices=load_prices(args.prices),
            batch=getattr(args, "batch", False),
            batch_size=getattr(args, "batch_size", None) or DEFAULT_BATCH_SIZE,
            poll_interval=getattr(args, "poll_interval", None) or DEFAULT_POLL_SECONDS,
            batch_max_tokens=getattr(args, "batch_max_tokens", None),
            metrics_port=getattr(args, "metrics_port", None),
            metrics_host=getattr(args, "metrics_host", None) or "127.0.0.1",
            log_format=getattr(args, "log_format", "text"),
            flex=getattr(args, "flex", False),
        )

    def shaping(self) -> dict[str, Any]:
        """The options that change what is sent for a given input line (part of the input's
        fingerprint: a journal made with other values is refused)."""
        shaping: dict[str, Any] = {
            "base_url": self.base_url,
            "mock": self.mock,
            "azure": self.azure,
            "api_version": self.api_version,
        }
        if self.flex:  # only when set: journals made before --flex existed still match
            shaping["flex"] = True
        return shaping


def _check_batch_options(args: argparse.Namespace) -> None:
    """``--batch`` and the options only it takes."""
    batch = getattr(args, "batch", False)
    given = [
        option
        for option, name in (
            ("--batch-size", "batch_size"),
            ("--poll-interval", "poll_interval"),
            ("--batch-max-tokens", "batch_max_tokens"),
        )
        if getattr(args, name, None) is not None
    ]
    if given and not batch:
        raise ConfigurationError(f"{given[0]} goes with --batch (the Batch API)")
    if not batch:
        return
    size, poll, tokens = args.batch_size, args.poll_interval, args.batch_max_tokens
    if size is not None and not 1 <= size <= DEFAULT_BATCH_SIZE:
        raise ConfigurationError(
            f"--batch-size must be from 1 to {DEFAULT_BATCH_SIZE:,} (the Batch API's limit), "
            f"got {size}"
        )
    if poll is not None and not 0 < poll < math.inf:
        raise ConfigurationError(f"--poll-interval must be seconds above 0, got {poll:g}")
    if tokens is not None and tokens < 1:
        raise ConfigurationError(f"--batch-max-tokens must be at least 1, got {tokens}")
    for option, value in (
        ("--cache", args.cache),
        ("--ordered", args.ordered),
        ("--flex", getattr(args, "flex", False)),
    ):
        if value:
            raise ConfigurationError(
                f"{option} is not supported with --batch"
                + (" (batches are already at batch prices)" if option == "--flex" else "")
            )
    if args.no_journal:
        raise ConfigurationError(
            "--batch needs a journal (batches outlive the run): drop --no-journal"
        )
    if args.input == "-":
        raise ConfigurationError(
            "--batch needs an input file (it is read again to resubmit failed lines), not -"
        )


def _check_options(args: argparse.Namespace) -> None:
    _check_batch_options(args)
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
    _check_metrics_options(args)
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


def _check_metrics_options(args: argparse.Namespace) -> None:
    port, host = getattr(args, "metrics_port", None), getattr(args, "metrics_host", None)
    if host is not None and port is None:
        raise ConfigurationError("--metrics-host goes with --metrics-port")
    if port is None:
        return
    if not 0 <= port <= 65535:
        raise ConfigurationError(f"--metrics-port must be a port from 0 to 65535, got {port}")
    if importlib.util.find_spec("prometheus_client") is None:
        raise ConfigurationError(
            "--metrics-port needs prometheus-client: pip install 'openai-multi-client[metrics]'"
        )


def _check_paths(args: argparse.Namespace, journal: str | None) -> None:
    """The input exists; no output is the input or another output (truncating it would
    destroy it); every output's folder exists."""
    check_input(args.input)
    outputs = [("-o", args.output)]
    if args.errors:
        outputs.append(("--errors", args.errors))
    if journal is not None:
        outputs.append(("--journal" if args.journal else "the journal", journal))
    for option, path in outputs:
        check_output_folder(option, path)
    check_files(args.input, outputs)


def _keys(args: argparse.Namespace) -> list[str | Key]:
    """The keys: ``--key``, then ``--keys-file``, else ``OPENAI_API_KEY`` (a dummy one for
    ``--mock``); as :class:`Key` objects when an option applies to each key or the keys file
    puts keys in groups."""
    secrets: list[str] = list(args.key)
    groups: dict[str, str] = {}
    if args.keys_file:
        groups = _read_keys_file(args.keys_file, secrets)
        secrets += groups
    if not secrets and not args.mock:
        env = os.environ.get("OPENAI_API_KEY")
        if env:
            secrets.append(env)
    if args.mock and not secrets:
        secrets.append(_MOCK_KEY)
    if not (args.azure or args.api_version or args.rpm or args.tpm or any(groups.values())):
        return list(secrets)
    limits = {"requests_per_minute": args.rpm, "tokens_per_minute": args.tpm}
    return [
        Key(
            secret,
            azure=args.azure,
            api_version=args.api_version,
            group=groups.get(secret) or None,
            **limits,
        )
        for secret in secrets
    ]


def _read_keys_file(path: str, given: list[str]) -> dict[str, str]:
    """The keys in ``path``, one a line, each optionally followed by its group (keys that
    share one set of limits: one organization's or project's), as key -> group ("" for
    none); blank lines and ``#`` comments are skipped. A key given twice, or a line of more
    than two words, is refused, naming the line (never the key)."""
    where = dict.fromkeys(given, "a --key argument")
    keys: dict[str, str] = {}
    with open(path, encoding="utf-8") as file:
        for number, line in enumerate(file, 1):
            words = line.split()
            if not words or words[0].startswith("#"):
                continue
            if len(words) > 2:
                raise ConfigurationError(
                    f"--keys-file {path} line {number}: expected a key and optionally its "
                    f"group, found {len(words)} words"
                )
            key = words[0]
            if key in where:
                raise ConfigurationError(
                    f"--keys-file {path} line {number}: the same key as {where[key]}; "
                    "give each key once"
                )
            where[key] = f"line {number}"
            keys[key] = words[1] if len(words) == 2 else ""
    return keys
