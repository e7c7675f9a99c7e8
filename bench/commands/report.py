"""`python -m bench report`: one HTML report (and CSV) over one or more run directories."""

from __future__ import annotations

import argparse
from pathlib import Path

from ticketbench.bench.options import UsageError, check_output, distinct_outputs
from ticketbench.files import one_line

NAME = "report"
HELP = "one HTML report (and CSV) over one or more run directories"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dirs", nargs="+")
    parser.add_argument("--html")
    parser.add_argument("--csv")


def run(args: argparse.Namespace) -> int:
    from ticketbench.reports.html import write_report

    dirs = [Path(d) for d in args.run_dirs]
    for d in dirs:
        if not (d / "results.csv").is_file():
            raise UsageError(f"{d}: not a run directory (no results.csv)")
    inputs = [f for d in dirs for f in (d / "results.csv", d / "run.json")]
    html_out = check_output("--html", args.html or str(dirs[0] / "report.html"), inputs, dirs)  # default checked too
    assert html_out is not None  # a target was given
    csv_out = check_output("--csv", args.csv, inputs, dirs)
    distinct_outputs(("--html", html_out), ("--csv", csv_out))
    try:
        html = write_report(dirs, html_out, csv_out)  # malformed inputs → InputError → exit 2
    except OSError as exc:
        raise UsageError(f"cannot write the report: {exc.strerror or one_line(exc)} ({exc.filename})") from exc
    print(f"report: {html.resolve()}")
    if args.csv:
        print(f"csv: {Path(args.csv).resolve()}")
    return 0
