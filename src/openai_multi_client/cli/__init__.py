"""The ``omc`` command: ``omc run`` sends a Batch-API file of requests (resumable; with
``--batch`` through OpenAI's Batch API); ``omc status`` reads a run's journal; ``omc cancel``
cancels the batches of an ``omc run --batch``; ``omc demo`` runs a job against the built-in mock
server; ``omc mock`` serves the mock server for your own tests."""

from __future__ import annotations

import argparse
import logging
import sys

from .. import __version__
from . import _demo, _mock, _run


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="omc",
        description="Send very many requests to the OpenAI API or a compatible server.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _run.add_parser(subparsers)
    _demo.add_parser(subparsers)
    _mock.add_parser(subparsers)
    subparsers.choices["mock"].set_defaults(run=_mock.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING - 10 * min(args.verbose, 2),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        return int(args.run(args))
    except KeyboardInterrupt:
        print("omc: interrupted", file=sys.stderr)
        return 130
