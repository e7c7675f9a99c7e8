"""`python -m bench farm`: nightly runs over a device farm (bench/farm.py), and the ingest of a kept farm run."""

from __future__ import annotations

import argparse
from pathlib import Path

from ticketbench.bench.options import UsageError, check_db
from ticketbench.files import safe_component

NAME = "farm"
HELP = "nightly runs over a device farm"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=["nightly", "ingest"], help="nightly: run the farm; ingest: store a kept run")
    parser.add_argument(
        "run_dir", nargs="?", help="ingest: a farm job's run directory (after the store was unreachable)"
    )
    parser.add_argument("--inventory", help="nightly: the farm's inventory TOML")
    parser.add_argument("--resume", action="store_true", help="nightly: continue an interrupted --night")
    parser.add_argument(
        "--db", help="shared results database URL (default: the inventory's, else runs/ticketbench.sqlite)"
    )
    parser.add_argument("--scheduler", help="address of a running Dask scheduler (default: an in-process cluster)")
    parser.add_argument("--night", help="label of this night (default: UTC timestamp; must sort chronologically)")


def run(args: argparse.Namespace) -> int:
    from ticketbench.bench.farm import InventoryError, NightBusy, load_inventory, nightly

    for mod in ("distributed", "sqlalchemy"):
        try:
            __import__(mod)
        except ImportError as exc:
            raise UsageError(f'`farm` needs {mod}: pip install "ticketbench[farm]"') from exc
    if args.action == "ingest":
        return _farm_ingest(args)
    if not args.inventory:
        raise UsageError("farm nightly needs --inventory FARM.toml")
    try:
        inv = load_inventory(Path(args.inventory))
    except InventoryError as exc:
        raise UsageError(str(exc)) from exc
    inv.db = args.db or inv.db
    inv.scheduler = args.scheduler or inv.scheduler
    if args.night is not None:
        safe_component(args.night, "--night")  # a folder under the farm's out: never ../x
    check_db(inv.db, default_too=True)  # a --db that is not a database: one line now, not a traceback per job
    try:
        report = nightly(inv, night=args.night, resume=args.resume)
    except (NightBusy, InventoryError) as exc:
        raise UsageError(str(exc)) from exc
    for o in report.outcomes:
        print(f"{o.device:16s} {o.suite:10s} {o.status:10s} {o.message}")
    if report.summary_md and report.summary_html:
        print(f"summary: {report.summary_md.resolve()}\nreport: {report.summary_html.resolve()}")
    return report.exit_code


def _farm_ingest(args: argparse.Namespace) -> int:
    """Finish a farm job whose ingest failed (store unreachable): ingest, compare, record, from job.json."""
    from ticketbench.bench.farm import Outcome, finish_job, read_job_file

    if not args.run_dir:
        raise UsageError("farm ingest needs RUN_DIR (a farm job's run directory, holding job.json)")
    run_dir = Path(args.run_dir)
    if not (run_dir / "results.csv").is_file():
        raise UsageError(f"{run_dir}: not a run directory (no results.csv)")
    job = read_job_file(run_dir, args.db)  # a malformed job.json is an InputError: one line, exit 2
    out = finish_job(job, run_dir, Outcome(job.device.name, job.suite, job.night, "ok"))
    print(f"{out.device:16s} {out.suite:10s} {out.status:10s} {out.message}")
    return 0 if out.status == "ok" else 1
