"""`python -m bench compare`: flag significant regressions between two runs (bench/regression.py), exit 1."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ticketbench.bench.configs import CompareConfig
from ticketbench.bench.options import UsageError, check_output, distinct_outputs
from ticketbench.settings import add_arguments as add_arguments_for

NAME = "compare"
HELP = "flag significant regressions between two runs (exit 1; 2: other threads)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("baseline")
    parser.add_argument("current")
    parser.add_argument(
        "--history",
        nargs="+",
        default=[],
        metavar="RUN",
        help="earlier runs of the same suite on this machine (directories or run ids): their rounds join the latency "
        "baseline and the spread of their levels widens the floor (identical runs drift apart)",
    )
    add_arguments_for(parser, CompareConfig, skip=("history_runs",))  # the gate's settings: one declaration
    parser.add_argument(
        "--allow-missing", action="store_true", help="do not fail when CURRENT lacks some of the baseline's rows"
    )
    parser.add_argument(
        "--allow-untested",
        action="store_true",
        help="do not fail on what could not be judged: metrics without samples, duplicate rows, failed rows",
    )
    parser.add_argument("--db", help="results database, for run ids (default runs/ticketbench.sqlite)")
    parser.add_argument("--md", help="markdown output (default CURRENT/compare.md)")
    parser.add_argument("--html", help="HTML output (default CURRENT/compare.html)")


def run(args: argparse.Namespace) -> int:
    from ticketbench.bench.regression import compare_runs, gate, write_comparison
    from ticketbench.bench.runref import CompareError, load_ref
    from ticketbench.bench.stats import latency_floor
    from ticketbench.files import read_json_object, read_results_csv
    from ticketbench.reports.pages import fmt_cell
    from ticketbench.settings import from_args

    cfg = from_args(CompareConfig, args)  # floors finite and in range: `--accuracy-points nan` passed every drop
    specs = (args.baseline, args.current, *args.history)
    dirs = [Path(spec) for spec in specs if (Path(spec) / "results.csv").is_file()]
    for d in dirs:  # check what load_ref will read: a malformed run is one line and exit 2
        read_results_csv(d / "results.csv")
        if (d / "run.json").exists():
            read_json_object(d / "run.json", "run.json")
    inputs = [f for d in dirs for f in (d / "results.csv", d / "run.json")]
    md_arg = check_output("--md", args.md, inputs, dirs)
    html_arg = check_output("--html", args.html, inputs, dirs)
    distinct_outputs(("--md", md_arg), ("--html", html_arg))
    _check_run_ids(list(specs), args.db)
    try:
        base, cur = load_ref(args.baseline, args.db), load_ref(args.current, args.db)
        history = [load_ref(spec, args.db) for spec in args.history]
    except CompareError as exc:
        raise UsageError(str(exc)) from exc
    comp = compare_runs(base, cur, cfg, history)
    table = comp.table()
    view = table.drop(columns=["backend", "precision"]).astype(object).map(fmt_cell)
    print(
        f"latency floor = max({cfg.latency_floor:.0%} for a ratio, {latency_floor(cfg, None, time=True):.0%} for "
        f"a time, {cfg.spread_multiple:g} × baseline between-round spread"
        f"{f' or between its {len(history) + 1} runs' if history else ''}), "
        f"per-round statistic {'÷ dense reference' if cfg.normalize == 'dense' else 'time'} (dense rows: time); "
        f"energy floor {cfg.energy_floor:.0%}; accuracy floor {cfg.accuracy_floor_points:g} point(s); "
        f"alpha {cfg.alpha:g}"
        + ("" if cfg.gate_times or cfg.normalize != "dense" else "; times reported, not gated (--gate-times)")
        + ("" if cfg.gate_disturbed else "; disturbed rows reported, not gated (--gate-disturbed)")
    )
    for note in comp.notes:  # one line per run pair measured with different thread counts
        print(note)
    print(view.to_string(index=False) if len(view) else "nothing to compare: no matching (case, device, batch) rows")
    here = cur.root if cur.root is not None and os.access(cur.root, os.W_OK) else None  # default: beside CURRENT
    md = Path(args.md) if args.md else here / "compare.md" if here else None
    html = Path(args.html) if args.html else here / "compare.html" if here else None
    for path in write_comparison(comp, md, html):
        print(f"wrote {path.resolve()}")
    code, reason = gate(comp, base, cur, allow_missing=args.allow_missing, allow_untested=args.allow_untested)
    print(reason, file=sys.stderr if code else sys.stdout)
    return code


def _check_run_ids(specs: list[str], db: str | None) -> None:
    """A RUN that is not a path is a run id in the results database; an SQLite database that does not exist holds
    no run, so that is said here instead of opening it, which creates it (`compare A B --history typo` left an
    empty runs/ticketbench.sqlite in the current directory)."""
    from ticketbench.bench.store import db_url

    url = db_url(db)
    if not url.startswith("sqlite:///"):
        return
    path = Path(url.removeprefix("sqlite:///"))
    for spec in specs:
        if not Path(spec).exists() and not path.is_file():
            raise UsageError(
                f"{spec}: not a run directory (no results.csv), and no results database at {path} to look it up "
                "as a run id (--db names another)"
            )
