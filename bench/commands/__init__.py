"""The commands of `python -m bench`, one module each (asv-style): a module declares its NAME, its HELP line, its
arguments (`add_arguments(parser)`) and `run(args) -> int` (the exit code). COMMANDS below is the one registry: the
CLI (bench/cli.py) builds one subcommand per entry, in this order. The checks several commands share are in
bench/options.py.

A new command: a module here with those four names, added to COMMANDS.
"""

from __future__ import annotations

import argparse
from typing import Protocol

from ticketbench.bench.commands import (
    compare,
    devices,
    doctor,
    export,
    farm,
    import_,
    measure,
    report,
    run,
    ticket,
)


class Command(Protocol):
    """What a command module declares (a module satisfies this protocol)."""

    NAME: str
    HELP: str

    def add_arguments(self, parser: argparse.ArgumentParser) -> None: ...

    def run(self, args: argparse.Namespace) -> int: ...


COMMANDS: tuple[Command, ...] = (run, devices, ticket, import_, measure, export, report, compare, doctor, farm)
