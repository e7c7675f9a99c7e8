"""Regression gate on real runs: does `bench compare` stay quiet on identical runs and fire on a slower case?

A/A: N runs of the quick suite back to back on this machine, same code and data; every ordered pair
(baseline i, current j ≠ i) is compared as `bench compare` does. A false alarm is a comparison whose gate exits 1.
A/B: M more runs in which one case is made slower by a known fraction; each is compared with every A run.
Detection = both batch rows of that case flagged; any other flagged row is a false alarm of the A/B comparison.

How the case is made slower: its session spins, after each real call, for `fraction` × that call's own duration
(CPU busy, like extra work), so every timed iteration is exactly (1 + fraction)× what it would have been under
whatever load the machine has at that moment. The dense reference and the other cases are untouched.

Each comparison is made twice: BASE against CUR alone, and with `--history` of the A runs just before BASE (as the
farm gives its earlier good nights). Side by side on the same runs, the legacy test (one-sided Mann-Whitney on
per-iteration samples with the 5% floor, what `bench compare` did before rounds) shows what the round-based test
fixed.

Tickets are trained once (training is seeded and deterministic) and reused by every run: everything the gate
sees (compaction, export, eval and train epochs, the interleaved timing rounds, results.csv) is a real run,
while the benchmark stays within minutes on a shared 2-core machine. `--retrain` trains in every run.
The load average is printed beside the figures.

`--tenant N` runs N other processes beside every run, each busy and idle in turns of 0.5-3 s (seeded): a
neighbour that takes a core now and then, as on a shared CI machine; with `--tenant-always` they are busy all the
time.

Run: `python benchmarks/bench_regression_gate.py [--runs 6] [--b-runs 2] [--slowdowns 0.10 0.20 0.30]
[--tenant N [--tenant-always]] [--threads T] [--json out.json]`.
"""

from __future__ import annotations

import argparse
import itertools
import json
import multiprocessing
import os
import random
import shutil
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ticketbench.bench import runner as runner_mod
from ticketbench.bench.configs import CompareConfig
from ticketbench.bench.regression import compare_runs, gate
from ticketbench.bench.runner import Runner, RunOptions
from ticketbench.bench.runref import load_ref
from ticketbench.bench.stats import latency_test
from ticketbench.bench.suite import load_suite
from ticketbench.devices.base import Session
from ticketbench.devices.cpu import CpuDevice


class SlowerSession(Session):
    """Wraps a session: each call takes (1 + fraction)× its own duration, the extra spent spinning on the CPU."""

    def __init__(self, inner: Any, fraction: float) -> None:
        super().__init__()
        self.inner, self.fraction, self.backend = inner, fraction, inner.backend

    def run(self, x: np.ndarray) -> np.ndarray:
        a = time.perf_counter()
        out = self.inner.run(x)
        end = a + (time.perf_counter() - a) * (1.0 + self.fraction)
        while time.perf_counter() < end:
            pass
        return out

    def sync(self) -> None:
        self.inner.sync()


def tenant(seed: int, always: bool = False) -> None:
    """Another tenant: busy (a Python spin loop) and idle in turns of 0.5-3 s each, or busy all the time
    (`always`), until killed."""
    rng = random.Random(seed)
    while True:
        end = time.monotonic() + rng.uniform(0.5, 3.0)
        while time.monotonic() < end:
            pass
        if not always:
            time.sleep(rng.uniform(0.5, 3.0))


def reuse_tickets(tickets_from: Path | None = None) -> None:
    """Train each ticket once per process and reuse it in every later run (training is seeded and deterministic),
    or take them from an earlier run directory of the same suite (its tickets/<case>/ticket.pt)."""
    cache: dict[str, Any] = {}
    if tickets_from:
        from ticketbench.models.tickets import load_ticket

        for p in sorted(tickets_from.glob("tickets/*/ticket.pt")):
            t = load_ticket(p)
            cache[t.config.key()] = t
    real_find = runner_mod.find  # the pipeline's find step, as the runner calls it
    runner_mod.find = lambda cfg, data, ctx, *a, **k: (
        cache.get(cfg.key()) or cache.setdefault(cfg.key(), real_find(cfg, data, ctx, *a, **k))
    )


def timing_summary(dirs: list[Path]) -> dict[str, Any]:
    """How the runs' rows were timed: rounds per row (adaptive), preempted windows, the paired ratios' spread."""
    df = pd.concat([pd.read_csv(d / "results.csv") for d in dirs if (d / "results.csv").is_file()])

    def col(name: str) -> pd.Series:
        return pd.to_numeric(df[name], errors="coerce") if name in df else pd.Series(dtype=float)

    cv = col("speedup_round_cv").dropna()
    return {
        "rounds_median": float(col("latency_rounds").median()),
        "rounds_max": float(col("latency_rounds").max()),
        "windows": int(col("latency_windows").sum()),
        "windows_preempted": int(col("latency_windows_preempted").sum()),
        "speedup_round_cv_median": float(cv.median()) if len(cv) else float("nan"),
        "speedup_round_cv_max": float(cv.max()) if len(cv) else float("nan"),
    }


def load_text() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f}"


def one_run(
    suite_name: str, out: Path, slow_case: str | None = None, fraction: float = 0.0, threads: int | None = None
) -> float:
    """One real run of the suite into `out` (wall seconds); `slow_case` (a case id substring) is made slower."""
    real_load = CpuDevice.load

    def load(self, onnx_path, precision="fp32", batch_size=None, module=None, calibration=None):
        session = real_load(self, onnx_path, precision, batch_size, module, calibration)
        return SlowerSession(session, fraction) if slow_case and slow_case in str(onnx_path) else session

    CpuDevice.load = load
    try:
        t0 = time.time()
        rows = Runner(load_suite(suite_name), CpuDevice(threads), RunOptions(out=out, show_progress=False)).run()
        assert all(r["status"] == "ok" for r in rows), [r["error"] for r in rows if r["status"] != "ok"]
        return time.time() - t0
    finally:
        CpuDevice.load = real_load


def legacy_flags(base: Path, cur: Path, floor: float = 0.05, alpha: float = 0.01) -> set[str]:
    """Rows the per-iteration Mann-Whitney test with the 5% floor flags (the gate before rounds)."""
    flagged = set()
    b, c = pd.read_csv(base / "results.csv"), pd.read_csv(cur / "results.csv")
    for rb, rc in zip(b.itertuples(), c.itertuples()):
        change, p = latency_test(
            pd.read_csv(base / rb.samples_file)["latency_ms"].to_numpy(),
            pd.read_csv(cur / rc.samples_file)["latency_ms"].to_numpy(),
        )
        if p < alpha and change > floor:
            flagged.add(f"{rc.case_id} b{rc.batch_size}")
    return flagged


def compare(base: Path, cur: Path, cfg: CompareConfig, history: list[Path]) -> dict[str, Any]:
    """One comparison as `bench compare BASE CUR` and as `... --history H...` (the farm's way: earlier good nights)."""
    b, c = load_ref(str(base)), load_ref(str(cur))
    comp = compare_runs(b, c, cfg)
    code, reason = gate(comp, b, c)
    hcomp = compare_runs(b, c, cfg, [load_ref(str(h)) for h in history])
    hcode, _ = gate(hcomp, b, c)
    tcode, _ = gate(compare_runs(b, c, replace(cfg, gate_times=True)), b, c)
    lat = comp.table().query("metric == 'latency_ms_p50'")
    flagged = {f"{f.case_id} b{f.batch_size}" for f in comp.regressions}
    return {
        "baseline": base.name,
        "current": cur.name,
        "exit": code,
        "reason": reason,
        "flagged": sorted(flagged),
        "exit_gate_times": tcode,
        "history": [h.name for h in history],
        "exit_history": hcode,
        "flagged_history": sorted(f"{f.case_id} b{f.batch_size}" for f in hcomp.regressions),
        "legacy_flagged": sorted(legacy_flags(base, cur)),
        "max_change": float(lat["change"].max()),
        "max_floor": float(lat["floor"].max()),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--suite", default="quick")
    ap.add_argument("--runs", type=int, default=6, help="identical A runs (every ordered pair is compared)")
    ap.add_argument("--b-runs", type=int, default=2, help="slower B runs per slowdown")
    ap.add_argument("--slowdowns", type=float, nargs="+", default=[0.15, 0.30])
    ap.add_argument("--slow-case", default="magnitude-s0.80", help="substring of the case id made slower")
    ap.add_argument("--retrain", action="store_true", help="train the tickets in every run (slow)")
    ap.add_argument("--tickets-from", type=Path, help="reuse the tickets of an earlier run directory of this suite")
    ap.add_argument("--keep", type=Path, help="keep the run directories here")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    ap.add_argument("--tenant", type=int, default=0, help="other processes busy half the time beside every run")
    ap.add_argument("--tenant-always", action="store_true", help="the --tenant processes are busy all the time")
    ap.add_argument("--threads", type=int, help="ONNX Runtime intra-op threads (default: the thread policy's)")
    ap.add_argument("--history", type=int, default=2, help="other A runs given as --history in the second figures")
    ap.add_argument("--compare-only", type=Path, help="no runs: compare the A*/B* runs kept (--keep) in this directory")
    args = ap.parse_args()
    if args.compare_only:
        args.keep, args.tenant = args.compare_only, 0
    tenants = [
        multiprocessing.Process(target=tenant, args=(i, args.tenant_always), daemon=True) for i in range(args.tenant)
    ]
    for t in tenants:
        t.start()
    work = args.keep or Path(tempfile.mkdtemp(prefix="bench_gate_"))
    work.mkdir(parents=True, exist_ok=True)
    if not args.retrain and not args.compare_only:
        reuse_tickets(args.tickets_from)
    cfg = CompareConfig()
    out: dict[str, Any] = {"load_start": load_text(), "suite": args.suite, "config": cfg.__dict__,
                           "tenants": args.tenant, "tenant_always": args.tenant_always,
                           "threads": args.threads}  # fmt: skip
    print(out["load_start"])
    t0 = time.time()
    a_dirs, walls = [], []
    b_dirs: dict[float, list[Path]] = {}
    if args.compare_only:
        a_dirs = sorted(work.glob("A[0-9]*"), key=lambda d: int(d.name[1:]))
        for d in sorted(work.glob("B[0-9]*-[0-9]*")):
            b_dirs.setdefault(int(d.name[1:].split("-")[0]) / 100, []).append(d)
        args.runs, args.b_runs = len(a_dirs), max((len(v) for v in b_dirs.values()), default=0)
    elif not args.retrain and not args.tickets_from:
        one_run(args.suite, work / "warm", threads=args.threads)  # trains the tickets; not part of the comparisons
    for i in range(0 if args.compare_only else args.runs):
        a_dirs.append(work / f"A{i}")
        walls.append(one_run(args.suite, a_dirs[-1], threads=args.threads))
        print(f"A{i}: {walls[-1]:.1f} s, {load_text()}")
    out["load_after_a"] = load_text()
    for frac in [] if args.compare_only else args.slowdowns:
        for i in range(args.b_runs):
            d = work / f"B{int(frac * 100)}-{i}"
            b_dirs.setdefault(frac, []).append(d)
            walls.append(one_run(args.suite, d, args.slow_case, frac, args.threads))
            print(f"{d.name}: {walls[-1]:.1f} s, {load_text()}")
    out["load_after_b"] = load_text()

    def history(base: Path, cur: Path) -> list[Path]:  # the A runs just before the baseline (cyclic), not CURRENT
        i = a_dirs.index(base)
        others = [a_dirs[(i - k) % len(a_dirs)] for k in range(1, len(a_dirs))]
        return [a for a in others if a != cur][: args.history]

    aa = [compare(a, b, cfg, history(a, b)) for a, b in itertools.permutations(a_dirs, 2)]
    ab: dict[str, list[dict[str, Any]]] = {}
    for frac, dirs in b_dirs.items():
        ab[f"{frac:.2f}"] = [compare(a, b, cfg, history(a, b)) for a in a_dirs for b in dirs]
    target = sorted({f"{r.case_id} b{r.batch_size}" for r in pd.read_csv(a_dirs[0] / "results.csv").itertuples()
                     if args.slow_case in r.case_id})  # fmt: skip
    out["aa"] = {
        "comparisons": len(aa),
        "false_alarms": sum(c["exit"] for c in aa),
        "false_alarms_gate_times": sum(c["exit_gate_times"] for c in aa),
        "false_alarms_history": sum(c["exit_history"] for c in aa),
        "flagged_rows": sum(len(c["flagged"]) for c in aa),
        "legacy_false_alarms": sum(bool(c["legacy_flagged"]) for c in aa),
        "legacy_flagged_rows": sum(len(c["legacy_flagged"]) for c in aa),
        "max_change": max(c["max_change"] for c in aa),
        "pairs": aa,
    }
    out["ab"] = {}
    for frac, comps in ab.items():
        out["ab"][frac] = {
            "comparisons": len(comps),
            "detected": sum(set(target) <= set(c["flagged"]) for c in comps),
            "gate_exit_1": sum(c["exit"] for c in comps),
            "gate_exit_1_history": sum(c["exit_history"] for c in comps),
            "detected_history": sum(set(target) <= set(c["flagged_history"]) for c in comps),
            "target_rows_flagged": sum(len(set(target) & set(c["flagged"])) for c in comps),
            "other_rows_flagged": sum(len(set(c["flagged"]) - set(target)) for c in comps),
            "legacy_detected": sum(set(target) <= set(c["legacy_flagged"]) for c in comps),
            "pairs": comps,
        }
    out["timing"] = timing_summary(a_dirs + [d for dirs in b_dirs.values() for d in dirs])
    out["run_wall_s_median"] = float(np.median(walls)) if walls else None
    out["wall_s"] = round(time.time() - t0, 1)
    aa_s = out["aa"]
    print(f"\nA/A ({args.runs} runs, {aa_s['comparisons']} ordered pairs): gate false alarms {aa_s['false_alarms']} "
          f"(with --gate-times {aa_s['false_alarms_gate_times']}; with --history of {args.history} other "
          f"run(s) {aa_s['false_alarms_history']}) "
          f"({aa_s['flagged_rows']} rows); legacy per-iteration test: {aa_s['legacy_false_alarms']} "
          f"({aa_s['legacy_flagged_rows']} rows); largest latency change seen {aa_s['max_change']:+.1%}")  # fmt: skip
    for frac, r in out["ab"].items():
        n = r["comparisons"]
        print(f"A/B +{float(frac):.0%} on {', '.join(target)}: both rows flagged {r['detected']}/{n}, rows "
              f"{r['target_rows_flagged']}/{2 * n}, gate exit 1 {r['gate_exit_1']}/{n}; with --history both rows "
              f"{r['detected_history']}/{n}, gate exit 1 {r['gate_exit_1_history']}/{n} "
              f"(legacy {r['legacy_detected']}/{n}); other rows flagged {r['other_rows_flagged']}")  # fmt: skip
    tm = out["timing"]
    print(f"rows: rounds per row median {tm['rounds_median']} (max {tm['rounds_max']}); preempted windows "
          f"{tm['windows_preempted']}/{tm['windows']}; paired ratio spread between rounds median "
          f"{tm['speedup_round_cv_median']:.1%}, max {tm['speedup_round_cv_max']:.1%}")  # fmt: skip
    print(f"median run wall time {out['run_wall_s_median'] or 0:.1f} s; total {out['wall_s']} s")
    print(f"{out['load_start']} at start, {out['load_after_a']} after A, {out['load_after_b']} after B; "
          f"{args.tenant} tenant process(es), threads {args.threads or 'policy'}")  # fmt: skip
    for t in tenants:
        t.terminate()
    if args.json:
        args.json.write_text(json.dumps(out, indent=2, default=str))
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
