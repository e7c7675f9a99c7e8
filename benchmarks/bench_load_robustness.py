"""Does a ticket's speedup hold when the machine gets busy, and does the run say when it was disturbed?

The quick suite at one pinned thread count (default: the physical cores), in one invocation: idle; beside one
CPU-bound neighbour process; beside two; idle again (how far two idle runs differ by themselves). Tickets are
trained once and reused (training is seeded), so every run is a real run of everything else: compaction, export,
eval and train epochs, the timing rounds beside the dense reference, results.csv.

Per ticket row it prints the paired speedup (results.csv `speedup`: 1 / the median round ratio to the dense
reference timed beside it), the old unpaired figure (the dense row's p50 / this row's p50, from the same
results.csv), each loaded/idle, and the row's other_load_cores and disturbed flag. Target (issue 24): every ticket
row's paired speedup within 15% of idle with one neighbour, and the disturbed rows flagged with two.

`--policy-check` adds one neighbour at cores − 1 threads: the count a thread policy re-evaluated per case would
switch to, compared with the idle run at the pinned count.

The machine's load average is printed at start and after every run: on a shared machine other users' work
disturbs the "idle" runs too, and other_load_cores says by how much.

Run: `python benchmarks/bench_load_robustness.py [--threads N] [--policy-check] [--keep DIR] [--json out.json]`.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from bench_regression_gate import load_text, one_run, reuse_tickets

from ticketbench import threads as thread_policy
from ticketbench.results import is_true

TARGET = 0.15  # paired speedup within 15% of idle beside one neighbour


def neighbour() -> None:
    """A CPU-bound neighbour: spins until killed."""
    while True:
        pass


def run_beside(suite: str, out: Path, neighbours: int, threads: int) -> dict[str, Any]:
    """One run of the suite beside `neighbours` spinning processes (started 0.5 s before); wall time and load."""
    procs = [multiprocessing.Process(target=neighbour, daemon=True) for _ in range(neighbours)]
    for p in procs:
        p.start()
    time.sleep(0.5 if procs else 0.0)
    try:
        wall = one_run(suite, out, threads=threads)
    finally:
        for p in procs:
            p.terminate()
            p.join()
    return {
        "dir": str(out),
        "neighbours": neighbours,
        "threads": threads,
        "wall_s": round(wall, 1),
        "load": load_text(),
    }


def ticket_rows(run_dir: Path) -> pd.DataFrame:
    """The ok ticket rows of a run, with the unpaired figure recomputed beside the paired one."""
    df = pd.read_csv(run_dir / "results.csv")
    df = df[df["status"] == "ok"]
    dense = df[df["method"] == "dense"].set_index("batch_size")["latency_ms_p50"]
    t = df[df["method"] != "dense"].copy()
    t["unpaired"] = [dense.get(b, np.nan) / p for b, p in zip(t["batch_size"], t["latency_ms_p50"])]
    t["disturbed"] = t["disturbed"].map(is_true)
    t["row"] = t["case_id"].str.replace(r"-[0-9a-f]{6}$", "", regex=True) + " b" + t["batch_size"].astype(str)
    return t.set_index("row")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--suite", default="quick")
    ap.add_argument("--threads", type=int, help="the pinned count (default: the physical cores)")
    ap.add_argument("--policy-check", action="store_true", help="also one neighbour at cores − 1 threads")
    ap.add_argument("--tickets-from", type=Path, help="reuse the tickets of an earlier run directory of this suite")
    ap.add_argument("--keep", type=Path, help="keep the run directories here")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args()
    cores = thread_policy.physical_cores()
    threads = args.threads or cores
    thread_policy.apply(threads)  # torch and BLAS too, as `bench run --threads` does
    reuse_tickets(args.tickets_from)
    work = args.keep or Path(tempfile.mkdtemp(prefix="bench_load_"))
    work.mkdir(parents=True, exist_ok=True)
    out: dict[str, Any] = {"load_start": load_text(), "cores": cores, "threads": threads, "runs": {}}
    print(f"{out['load_start']}; {cores} physical core(s), pinned at {threads} thread(s)")
    plan = [("idle", 0, threads), ("1 neighbour", 1, threads), ("2 neighbours", 2, threads), ("idle again", 0, threads)]
    if args.policy_check and threads > 1:
        plan.append((f"1 neighbour, {threads - 1} thread(s)", 1, threads - 1))
    if not args.tickets_from:
        one_run(args.suite, work / "warm", threads=threads)  # trains the tickets; not measured
    rows: dict[str, pd.DataFrame] = {}
    for i, (name, n, t) in enumerate(plan):
        info = run_beside(args.suite, work / f"run{i}", n, t)
        rows[name] = ticket_rows(work / f"run{i}")
        r = rows[name]
        info["other_load_cores_median"] = round(float(r["other_load_cores"].median()), 2)
        info["disturbed_rows"] = int(r["disturbed"].sum())
        out["runs"][name] = info
        print(f"{name}: {info['wall_s']} s, other load {info['other_load_cores_median']} cores (median over rows), "
              f"{info['disturbed_rows']}/{len(r)} ticket rows disturbed; {info['load']}")  # fmt: skip
    idle = rows["idle"]
    table = []
    for row in idle.index:
        rec: dict[str, Any] = {"row": row, "idle": idle.loc[row, "speedup"], "idle unpaired": idle.loc[row, "unpaired"]}
        for name, r in rows.items():
            if name == "idle" or row not in r.index:
                continue
            rec[f"{name}: paired"] = r.loc[row, "speedup"]
            rec[f"{name}: ×idle"] = r.loc[row, "speedup"] / idle.loc[row, "speedup"]
            rec[f"{name}: unpaired ×idle"] = r.loc[row, "unpaired"] / idle.loc[row, "unpaired"]
            rec[f"{name}: other load"] = r.loc[row, "other_load_cores"]
            rec[f"{name}: disturbed"] = bool(r.loc[row, "disturbed"])
        table.append(rec)
    t = pd.DataFrame(table).set_index("row")
    with pd.option_context("display.width", 250, "display.max_columns", 60, "display.float_format", "{:.3g}".format):
        for name in rows:
            if name == "idle":
                continue
            prefix = f"{name}: "
            cols = ["idle", "idle unpaired"] + [c for c in t.columns if c.startswith(prefix)]
            print(f"\n{name} (paired speedup, unpaired figure, each loaded/idle):")
            print(t[cols].rename(columns={c: c.removeprefix(prefix) for c in cols}).to_string())
    one = t["1 neighbour: ×idle"]
    within = bool(((one - 1).abs() <= TARGET).all())
    two = rows["2 neighbours"]
    moved = (t["2 neighbours: ×idle"] - 1).abs() > TARGET
    unflagged_moved = [r for r in t.index[moved] if not two.loc[r, "disturbed"]]
    out["target"] = {
        "one_neighbour_within_15pct": within,
        "one_neighbour_worst": float((one - 1).abs().max()),
        "two_neighbours_flagged": int(two["disturbed"].sum()),
        "two_neighbours_rows": len(two),
        "two_neighbours_moved_beyond_15pct_unflagged": unflagged_moved,
    }
    out["table"] = t.reset_index().to_dict("records")
    out["load_end"] = load_text()
    print(
        f"\ntarget: paired speedup within {TARGET:.0%} of idle beside one neighbour: {'yes' if within else 'NO'} "
        f"(worst {out['target']['one_neighbour_worst']:.1%}); beside two, {out['target']['two_neighbours_flagged']}"
        f"/{len(two)} ticket rows flagged disturbed, rows moved beyond {TARGET:.0%} and not flagged: "
        f"{unflagged_moved or 'none'}"
    )
    print(f"{out['load_start']} at start, {out['load_end']} at the end (other users' work included)")
    if args.json:
        args.json.write_text(json.dumps(out, indent=2, default=str))
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
