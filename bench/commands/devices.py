"""`python -m bench devices`: which adapters and power sources are available here (or on a Jetson over SSH)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from ticketbench.bench.options import check_host, probe_device

NAME = "devices"
HELP = "which adapters and power sources are available here, and why not"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--host", help="USER@HOST: also probe a Jetson over SSH")


def run(args: argparse.Namespace) -> int:
    from ticketbench.devices.base import DEVICES
    from ticketbench.devices.power_sources import probe_power_sources

    check_host(args.host)
    report: dict[str, dict[str, Any]] = {"adapters": {}, "power_sources": {}}
    for name in DEVICES.names():
        a = probe_device(name, args.host)
        report["adapters"][name] = {"available": a.ok, "reason": a.reason}
    for name, (ok, reason) in probe_power_sources().items():
        report["power_sources"][name] = {"available": ok, "reason": reason}
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print("adapters:")
    for name, a in report["adapters"].items():
        print(f"  {name:8s} {'yes' if a['available'] else 'no ':4s} {a['reason']}")
    print("power sources:")
    for name, a in report["power_sources"].items():
        print(f"  {name:14s} {'yes' if a['available'] else 'no ':4s} {a['reason']}")
    return 0
