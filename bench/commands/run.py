"""`python -m bench run`: find tickets, compact, export and measure a suite on a device, into a run directory."""

from __future__ import annotations

import argparse
import sys
from contextlib import ExitStack
from pathlib import Path

from ticketbench import threads as thread_policy
from ticketbench.bench.options import (
    THREADS_HELP,
    TRAIN_DEVICE_HELP,
    UsageError,
    check_data_root,
    check_db,
    check_device_choice,
    check_host,
    check_train_device,
    check_writable_dir,
    log,
    open_device,
)
from ticketbench.files import DISK_FULL, Busy, exclusive_lock, one_line

NAME = "run"
HELP = "find tickets, compact, export and measure a suite on a device"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--threads", type=int, help=THREADS_HELP)
    parser.add_argument("--device", default="auto", help="auto|cpu|gpu|jetson (default auto)")
    parser.add_argument("--suite", default="quick", help="built-in suite name or PATH.toml (default quick)")
    parser.add_argument("--out", help="run directory (default runs/<run-id>)")
    parser.add_argument("--host", help="USER@HOST of a Jetson driven over SSH (remote mode)")
    parser.add_argument("--precision", choices=["fp32", "fp16", "int8"], help="override the suite's precision")
    parser.add_argument("--data-root", help="local folder holding real data sets (never downloaded)")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out, skipping finished cases")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    parser.add_argument(
        "--db", help="results database: SQLAlchemy URL or SQLite path (default runs/ticketbench.sqlite)"
    )
    parser.add_argument("--train-device", default="auto", help=TRAIN_DEVICE_HELP)


def run(args: argparse.Namespace) -> int:
    from ticketbench.bench.runner import Runner, RunOptions, new_run_id
    from ticketbench.bench.suite import SuiteError, load_suite
    from ticketbench.devices.int8_quantize import CalibrationError
    from ticketbench.models.data import DataError

    try:
        suite = load_suite(args.suite)
    except SuiteError as exc:
        raise UsageError(str(exc)) from exc
    data_root = check_data_root(args.data_root)
    check_device_choice(args)
    check_host(args.host)
    out = _check_out_dir(args.out or str(Path("runs") / new_run_id()), args.resume)
    if args.precision:  # one precision, replacing the suite's
        suite.measure.precision, suite.measure.precisions = args.precision, None
    if args.resume and out.is_dir():
        diff = _resume_difference(out, suite)
        if diff:
            raise UsageError(f"--resume {out}: the suite differs from the run's: {diff}; use another --out")
    device = open_device(args)  # --host: remote Jetson over SSH
    name = device.name
    for precision in suite.measure.precision_list():
        if precision not in device.precisions:
            raise UsageError(f"device {name!r} does not run {precision} (supported: {', '.join(device.precisions)})")
    check_db(getattr(args, "db", None))
    check_writable_dir(out, "--out")  # last check: it creates the run directory
    held = ExitStack()  # the run directory's lock, held until the report and the store ingest are written
    try:
        held.enter_context(exclusive_lock(out / ".run.lock", f"run directory {out}"))
    except Busy as exc:  # another `bench run` writes here: two writers would interleave results.csv and run.json
        device.close()
        raise UsageError(f"--out {out}: another run is writing there ({exc.holder}); choose another --out") from None
    with held:
        _check_out_dir(str(out), args.resume)  # again, under the lock: a run that finished meanwhile is not overwritten
        train_device = check_train_device(args.train_device)
        opts = RunOptions(
            out=out, data_root=data_root, resume=args.resume, show_progress=not args.quiet, train_device=train_device
        )
        runner = Runner(suite, device, opts)
        try:
            runner.check_calibration()  # int8: an unusable calibration set is bad input, found before any case runs
        except (CalibrationError, DataError) as exc:
            device.close()
            raise UsageError(f"int8 calibration: {exc}") from exc
        log.info("suite %s: %d case(s) on device %s → %s", suite.name, len(suite.cases), name, out)
        thread_policy.announce()
        try:
            rows = runner.run()
        except OSError as exc:
            if exc.errno not in DISK_FULL:
                raise
            print(
                f"error: {exc.strerror} ({exc.filename or out}): the run stopped; finished cases are kept in {out}; "
                f"free space, then `python -m bench run --resume --out {out}`",
                file=sys.stderr,
            )
            return 1
        except KeyboardInterrupt:
            print(
                f"\ninterrupted: finished cases are kept in {out}; continue with "
                f"`python -m bench run --resume --out {out}`",
                file=sys.stderr,
            )
            return 130
        from ticketbench.bench.store import ingest_after_run
        from ticketbench.reports.html import write_report

        try:
            html = write_report([out], out / "report.html")
        except Exception as exc:  # the results are safe on disk; a report problem must not hide them or the ingest
            log.debug("report failed", exc_info=True)
            print(f"error: report not written: {type(exc).__name__}: {one_line(exc)}", file=sys.stderr)
            html = None
        ingest_after_run(out, getattr(args, "db", None))  # into the results database when SQLAlchemy is installed
        _print_summary(rows)
        if html is not None:
            print(f"report: {html.resolve()}")
        return 1 if html is None or any(r["status"] == "failed" for r in rows) else 0


def _check_out_dir(path: str, resume: bool) -> Path:
    p = Path(path)
    if p.exists() and not p.is_dir() or any(a.exists() and not a.is_dir() for a in p.parents):
        raise UsageError(f"--out {path}: exists and is not a directory")
    if p.is_dir() and (p / "results.csv").exists() and not resume:
        raise UsageError(f"--out {path} already holds a run; pass --resume to continue it or choose another --out")
    if resume and not (p / "results.csv").exists() and not (p / "run.json").exists():
        log.warning("--resume: %s holds no run yet; starting a new one", path)
    return p


def _resume_difference(out: Path, suite) -> str | None:
    """What differs between the run in `out` and the suite a `--resume` brings, or None. Resuming with another
    suite would mix two configurations in one results table and overwrite the run's record of its suite."""
    from dataclasses import asdict

    from ticketbench.bench.rundir import RunDir

    rundir = RunDir(out)
    meta, done = rundir.read_json(), rundir.read_results()  # malformed → InputError → exit 2
    stored = meta.get("suite")
    stored = stored if isinstance(stored, dict) else {}
    measure = stored.get("measure")
    if isinstance(measure, dict):
        for key, new in asdict(suite.measure).items():
            if key in measure and measure[key] != new:
                return f"[measure] {key} is {measure[key]!r} in the run, {new!r} now"
    ids = [c.case_id for c in suite.cases]
    run_cases = meta.get("cases")
    if isinstance(run_cases, list) and run_cases != ids:
        added = [c for c in ids if c not in run_cases]
        gone = [str(c) for c in run_cases if c not in ids]
        if added or gone:
            parts = ([f"{len(added)} new case(s) (e.g. {added[0]})"] if added else []) + (
                [f"{len(gone)} of the run's case(s) missing (e.g. {gone[0]})"] if gone else []
            )
            return "cases differ: " + "; ".join(parts)
    foreign = sorted(set(done["case_id"].dropna().astype(str)) - set(ids))
    if foreign:
        return f"results.csv holds {len(foreign)} case(s) not in this suite (e.g. {foreign[0]})"
    return None


def _print_summary(rows: list[dict]) -> None:
    """The report's summary tables (reports.summary: one per device, backend and precision), the failed cases, and
    one warning line naming the rows a disturbed machine measured."""
    import pandas as pd

    from ticketbench.reports.summary import disturbed_rows, summary_tables

    df = pd.DataFrame(rows)
    with pd.option_context("display.width", 250, "display.max_columns", 30, "display.float_format", "{:.3g}".format):
        for title, table in summary_tables(df):
            print(f"{title}\n{table.to_string(index=False)}")
    failed = df[df["status"] == "failed"]
    for _, r in failed.iterrows():
        print(f"FAILED {r['case_id']}: {r['error']}")
    disturbed = [d.split(":")[0] for d in disturbed_rows(df)]
    if disturbed:
        log.warning(
            "%d row(s) measured on a disturbed machine, less trustworthy: %s (disturbance_note in results.csv says "
            "why; pin --threads below the free cores, or rerun when the machine is quiet)",
            len(disturbed),
            ", ".join(disturbed),
        )
