"""``omc mock``: run the mock OpenAI server in the foreground until Ctrl-C (or SIGTERM).

Useful to try a client, the ``omc run`` command or a benchmark without a real API key::

    omc mock --port 8000 --rpm 600 --latency 0.2-0.6 --fault-rate 0.01
    OPENAI_BASE_URL=http://127.0.0.1:8000/v1 OPENAI_API_KEY=sk-anything python my_script.py
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import signal
import sys
from typing import TYPE_CHECKING

from ._argtypes import non_negative, port, positive_int, probability

if TYPE_CHECKING:
    from ..testing._mock.server import MockOpenAIServer


def _latency(text: str) -> float | tuple[float, float]:
    """``0.2`` (fixed seconds) or ``0.2-0.6`` (uniform range)."""
    low, dash, high = text.partition("-")
    try:
        if not dash:
            value = float(text)
            if not 0 <= value < math.inf:
                raise ValueError
            return value
        bounds = (float(low), float(high))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected seconds such as 0.2, or a range such as 0.2-0.6, not {text!r}"
        ) from None
    if not 0 <= bounds[0] <= bounds[1] < math.inf:
        raise argparse.ArgumentTypeError(f"expected a range MIN-MAX with 0 <= MIN <= MAX: {text!r}")
    return bounds


def _fault_kinds(text: str) -> dict[str, float]:
    from ..testing._mock.options import FAULT_KINDS

    kinds = [kind.strip() for kind in text.split(",") if kind.strip()]
    unknown = [kind for kind in kinds if kind not in FAULT_KINDS]
    if unknown or not kinds:
        raise argparse.ArgumentTypeError(
            f"expected kinds among {', '.join(FAULT_KINDS)} (comma-separated), not {text!r}"
        )
    return dict.fromkeys(kinds, 1.0)


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``mock`` subcommand to ``omc``'s subcommands."""
    parser = subparsers.add_parser(
        "mock",
        help="run a mock OpenAI server (no API key or network needed)",
        description=(
            "Serve an imitation of the OpenAI API on HOST:PORT until Ctrl-C: chat completions, "
            "completions, embeddings, moderations, responses, images, files and batches, and the "
            "Azure routes, "
            "with per-key rate limits, latency and injected faults. Any non-empty API key is "
            "accepted."
        ),
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    parser.add_argument(
        "--port", type=port, default=8000, help="port to listen on (8000; 0: any free port)"
    )
    parser.add_argument(
        "--latency",
        type=_latency,
        default=0.0,
        metavar="SECONDS",
        help="answer delay: fixed (0.2) or uniform in a range (0.2-0.6); default 0",
    )
    parser.add_argument(
        "--rpm", type=positive_int, default=None, help="requests per minute per key (unlimited)"
    )
    parser.add_argument(
        "--tpm", type=positive_int, default=None, help="tokens per minute per key (unlimited)"
    )
    parser.add_argument(
        "--fault-rate",
        type=probability,
        default=0.0,
        metavar="P",
        help="probability of a fault per request: 500, 502, 503, connection reset, hang or "
        "truncated body, equally likely (0); a hang drops the connection after 5 s",
    )
    parser.add_argument(
        "--fault-kinds",
        type=_fault_kinds,
        default=None,
        metavar="KINDS",
        help="the faults to inject instead, equally likely, e.g. stream_cut,stream_error "
        "(also stream_stall; streams break midway)",
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of latency and faults, for reproducible runs"
    )
    parser.add_argument(
        "--batch-lines-per-second",
        type=non_negative,
        default=1000.0,
        metavar="N",
        help="Batch API: lines a batch processes per second (1000; 0: all at once)",
    )
    parser.add_argument(
        "--batch-step-seconds",
        type=non_negative,
        default=1.0,
        metavar="SECONDS",
        help="Batch API: how long a batch stays validating, and finalizing (1)",
    )
    parser.add_argument(
        "--no-rate-limit-headers",
        action="store_true",
        help="send no x-ratelimit-* headers, like vLLM or Ollama",
    )


def _make_server(args: argparse.Namespace) -> MockOpenAIServer:
    from ..testing._mock.batch_options import BatchOptions
    from ..testing._mock.options import Faults, KeyLimits
    from ..testing._mock.server import MockOpenAIServer

    batches = BatchOptions(
        validation_seconds=args.batch_step_seconds,
        finalizing_seconds=args.batch_step_seconds,
        lines_per_second=args.batch_lines_per_second or None,
    )
    return MockOpenAIServer(
        host=args.host,
        port=args.port,
        default_limits=KeyLimits(requests_per_minute=args.rpm, tokens_per_minute=args.tpm),
        latency=args.latency,
        faults=(
            Faults(
                rate=args.fault_rate, **({"kinds": args.fault_kinds} if args.fault_kinds else {})
            )
            if args.fault_rate > 0
            else None
        ),
        seed=args.seed,
        rate_limit_headers=not args.no_rate_limit_headers,
        batches=batches,
    )


async def _serve(server: MockOpenAIServer) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    installed: list[signal.Signals] = []
    for signum in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(signum, stop.set)
        except (NotImplementedError, RuntimeError):  # pragma: no cover - Windows
            continue
        installed.append(signum)
    try:
        try:
            await server.start()
        except OSError as exc:
            print(f"omc mock: cannot listen on {server.host}:{server.port}: {exc}", file=sys.stderr)
            return 1
        print(f"mock OpenAI server at {server.base_url} (Ctrl-C stops it)", flush=True)
        try:
            await stop.wait()
        finally:
            await server.stop()
    finally:
        for signum in installed:
            loop.remove_signal_handler(signum)
    return 0


def run(args: argparse.Namespace) -> int:
    """Run ``omc mock`` with parsed arguments; returns the exit status (0 after Ctrl-C)."""
    try:
        server = _make_server(args)
    except ValueError as exc:
        print(f"omc mock: {exc}", file=sys.stderr)
        return 2
    with contextlib.suppress(KeyboardInterrupt):  # where signal handlers are unavailable
        return asyncio.run(_serve(server))
    return 0
