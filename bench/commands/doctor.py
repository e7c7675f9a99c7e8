"""`python -m bench doctor`: a real self-check of the adapters, backends and power sources here (bench/doctor.py)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ticketbench.bench.options import UsageError, check_device_choice, check_host, check_writable_dir

NAME = "doctor"
HELP = "real self-check of adapters, backends and power sources here (exit 1: failed)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="auto", help="auto (every available adapter)|cpu|gpu|jetson")
    parser.add_argument("--host", help="USER@HOST of a Jetson driven over SSH (remote mode)")
    parser.add_argument("--json", action="store_true", help="one JSON object instead of the table")
    parser.add_argument("--out", help="also write DIR/doctor.json")


def run(args: argparse.Namespace) -> int:
    from ticketbench.bench.doctor import exit_code, run_doctor, table, to_json, write_out

    check_device_choice(args)
    check_host(args.host)  # a malformed --host is one line and exit 2, as for run, measure and devices
    if args.out and Path(args.out).exists() and not Path(args.out).is_dir():
        raise UsageError(f"--out {args.out}: exists and is not a directory")
    if args.out:  # proved writable before the checks run (they time models for a while), not after them
        check_writable_dir(Path(args.out), "--out")
    checks = run_doctor(args.device, args.host)
    if args.out:
        write_out(Path(args.out), checks)
    print(json.dumps(to_json(checks), indent=2, default=str) if args.json else table(checks))
    return exit_code(checks)
