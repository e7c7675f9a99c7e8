"""`python -m bench` (or `ticketbench`): find tickets, export, measure, report, compare; see README.md.

Exit codes: 0 ok, 1 regression or failed cases, 2 bad usage or input (one line on stderr, no traceback).
"""

from __future__ import annotations

import argparse
import logging
import sys

from ticketbench import threads as thread_policy
from ticketbench.bench.commands import COMMANDS
from ticketbench.bench.options import UsageError
from ticketbench.devices.transport import HostError
from ticketbench.files import InputError

__all__ = ["UsageError", "build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """One subcommand per entry of the registry (bench/commands/__init__.py), each with its own arguments."""
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        parser = sub.add_parser(command.NAME, help=command.HELP)
        command.add_arguments(parser)
        parser.set_defaults(func=command.run)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse already printed a one-line usage error
        return int(exc.code or 0)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(message)s")
    try:
        if hasattr(args, "threads"):  # the commands that train or time models share one thread policy
            try:
                thread_policy.apply(args.threads)
            except ValueError as exc:
                raise UsageError(str(exc)) from exc
        return args.func(args)
    except (UsageError, InputError, HostError) as exc:  # bad usage or a malformed input file
        print(f"error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
