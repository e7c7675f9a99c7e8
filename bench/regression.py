"""Regression detection between two runs: flagged only when a change is both significant and large.

Per matching row (case, device, backend, precision, batch) and metric:
- latency: the sample unit is the round, not the iteration. Iterations within one timing window are
  autocorrelated, so a test on thousands of them calls any between-window drift (clock, caches, other tenants)
  significant; runs time every (case, batch) in k interleaved rounds (samples/*-rounds.csv) instead.
  Statistic per round: the case's time relative to the dense reference's in the same round (default
  `normalize="dense"`: a load change hits both, so the ratio is steadier than a time): the median of paired
  iteration ratios when the two alternated iteration by iteration, else the ratio of medians; the dense rows
  themselves, and runs without a reference, use the round's median time. Those times are reported, and flagged
  only with `gate_times` (a dedicated device): on a shared machine a time cannot tell a slower machine from
  slower code.
  Significance: one-sided Welch t-test on the log per-round statistics (k vs k), H1 = current slower.
  change = median(current rounds) / median(baseline rounds) − 1.
  floor = max(configured floor, spread_multiple × the baseline's between-round spread (std/mean of its rounds)):
  a change the baseline's own rounds could produce is never a regression. Rounds see the machine within one run
  only; between runs it drifts further (identical quick-suite runs on a shared 2-core VM, minutes apart: ratios up
  to 10%, times up to 27%, while rounds within a run spread 1-3%; docs/regression.md), so the configured floors
  cover most of that drift:
  10% for a ratio (`latency_floor`), 20% for a time (`time_floor`: dense rows, normalize="none", and runs
  written before rounds existed, which fall back to a Mann-Whitney U on the per-iteration samples).
  Both are defaults for a shared machine: a dedicated device with locked clocks can pass tighter ones.
  History: earlier runs of the same suite on the same machine (`history`, the farm's earlier good nights) measure
  that drift instead of assuming it. Their rounds join the baseline's (the level is the median over all of them, so
  one odd baseline run does not set it), and the spread is the larger of the within-run spread and the spread of
  the runs' medians: a level the baseline's own runs wandered by is never a regression.
- energy per inference: one-sided bootstrap CI of the energy ratio, resampling the power traces
  (samples/*-power.csv, W) and the latency samples (ms) of both runs: energy/inference ∝ mean W · mean ms;
  change = the table's energy_mj_per_inference ratio − 1. Traces at 50 Hz are autocorrelated, so the CI is
  optimistic; the wider default floor (10%) absorbs that.
- accuracy: one deterministic evaluation per run, so there is no sampling noise to test: a drop of more than
  the floor in absolute points is a regression.
A case that ran ok in the baseline and failed in the current run is a regression too. A metric without
samples is reported "untested" and never flagged: significance cannot be shown without them.

Threads are part of what a row is: a ticket's gain over dense changes with the thread count, and so does the
ticket itself (trained with another torch thread count, the quick suite's MPT ticket scored 92.5 instead of 93.6
top-1), so rows measured with different counts are never tested against each other: the row gets one finding,
verdict "threads-differ", a history run of another count is left out of that row's baseline, and
`Comparison.notes` names each run pair once.
A disturbed row (results.csv `disturbed`, in either run: other processes crowded its threads, or its rounds
disagreed) cannot tell slower code from a busier machine: identical quick-suite runs on 2 threads, one measured
while other processes took 1.3 cores and one in a quiet moment, read the Early-Bird b1 ticket at 4.00x and 2.82x
(a 42% change, over twice the floor its rounds set). So its time and energy are reported, not gated (verdict
"disturbed-not-gated" where it would have been a regression), unless `gate_disturbed`.

The gate (`gate`) also fails when CURRENT lost baseline rows (unless allowed) or nothing was comparable at all
(garbage, header-only, another suite): a CI gate must not pass on nothing. When thread differences left no
latency row to test, it exits 2 (the runs cannot be compared as given) naming the counts, never "regression".

This module holds the comparison and the gate. The tests and floors are bench/stats.py, loading a run (results.csv,
run.json, samples/) bench/runref.py, the markdown and HTML reports/compare.py; steps over the farm's nights are
bench/trend.py.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ticketbench.bench.configs import CompareConfig, default_energy_floor
from ticketbench.bench.runref import KEY, RunRef
from ticketbench.bench.stats import energy_ratio_lower_bound, latency_floor, latency_test, round_test, verdict_for
from ticketbench.devices.measure import round_cv
from ticketbench.results import is_true

METRICS = ("latency_ms_p50", "energy_mj_per_inference", "accuracy_top1")


@dataclass
class Finding:
    case_id: str
    device: str
    backend: str
    precision: str
    batch_size: Any
    metric: str
    baseline: float | None
    current: float | None
    change: float | None  # relative (latency, energy) or absolute points (accuracy)
    floor: float  # the floor applied: max(configured latency or time floor, spread_multiple × spread) for latency
    p_value: float | None
    test: str
    verdict: str  # regression | failed | significant-below-floor | not-significant | ok | untested | missing
    #              | time-not-gated (gate_times=False) | disturbed-not-gated (gate_disturbed=False)
    #              | threads-differ (the rows were measured with different thread counts: not compared)
    spread: float | None = None  # the baseline's between-round spread (std/mean) of the tested statistic
    baseline_runs: int | None = None  # runs whose rounds made the baseline (1 + history runs with this row)
    disturbed: bool = False  # disturbed in either run: time and energy reported, not gated (gate_disturbed)

    @property
    def flagged(self) -> bool:
        return self.verdict in ("regression", "failed")


@dataclass
class Comparison:
    baseline: str
    current: str
    config: CompareConfig
    findings: list[Finding] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # one line per run pair measured with different thread counts
    duplicates: list[str] = field(default_factory=list)  # "run: case batch …" keys that occur more than once
    failed: list[str] = field(default_factory=list)  # CURRENT's failed rows that no "failed" finding covers

    @property
    def regressions(self) -> list[Finding]:
        return [f for f in self.findings if f.flagged]

    def table(self) -> pd.DataFrame:
        return pd.DataFrame([asdict(f) for f in self.findings], columns=list(Finding.__dataclass_fields__))

    def to_json(self) -> str:
        return json.dumps(
            {
                "baseline": self.baseline,
                "current": self.current,
                "config": asdict(self.config),
                "findings": [asdict(f) for f in self.findings],
                "notes": self.notes,
            },
            default=str,
        )


def _power_file(latency_file: Any) -> str | None:
    """The runner writes samples/<case>-b<bs>-latency.csv and, with a power source, ...-power.csv beside it."""
    if isinstance(latency_file, str) and latency_file.endswith("-latency.csv"):
        return latency_file[: -len("-latency.csv")] + "-power.csv"
    return None


def _num(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if np.isfinite(f) else None


def compare_rows(
    b: dict, c: dict, base: RunRef, cur: RunRef, cfg: CompareConfig, past: list[pd.DataFrame] | None = None
) -> list[Finding]:
    """Findings for one row; `past` holds the per-round frames of the same row in the history runs."""
    key: dict[str, Any] = {k: c.get(k) for k in KEY}

    disturbed = is_true(b.get("disturbed")) or is_true(c.get("disturbed"))

    def finding(metric, bv, cv, change, floor, p, test, verdict, spread=None, runs=None) -> Finding:
        if verdict == "regression" and disturbed and not cfg.gate_disturbed and metric != "accuracy_top1":
            verdict = "disturbed-not-gated"  # the machine, not only the code, may have moved it
        return Finding(**key, metric=metric, baseline=bv, current=cv, change=change, floor=floor, p_value=p,
                       test=test, verdict=verdict, spread=spread, baseline_runs=runs, disturbed=disturbed)  # fmt: skip

    if b.get("status") == "ok" and c.get("status") != "ok":
        return [finding("status", None, None, None, 0.0, None, "status", "failed")]
    if b.get("status") != "ok" or c.get("status") != "ok":
        return []
    out = []
    bl, cl = _num(b.get("latency_ms_p50")), _num(c.get("latency_ms_p50"))
    if not same_threads(b, c):  # another configuration, not another speed: name it, test nothing of the row
        test = f"threads {_num(b.get('threads')):g} vs {_num(c.get('threads')):g}"
        return [finding("latency_ms_p50", bl, cl, None, 0.0, None, test, "threads-differ")]
    # latency
    bs, cs = base.samples(b.get("samples_file"), "latency_ms"), cur.samples(c.get("samples_file"), "latency_ms")
    br, cr = base.rounds(b.get("samples_file")), cur.rounds(c.get("samples_file"))
    if br is not None and cr is not None:
        frames = [br, *(past or [])]
        ratio = (
            cfg.normalize == "dense"
            and c.get("method") != "dense"
            and all(bool(np.isfinite(f["ratio"]).all()) for f in (*frames, cr))
        )
        col = "ratio" if ratio else "latency"
        runs = [f[col].to_numpy() for f in frames]
        bv, cv = np.concatenate(runs), cr[col].to_numpy()
        change, p = round_test(bv, cv)
        spread = round_cv(runs[0])
        if len(runs) > 1:  # the baseline runs' own levels: how far identical runs wander on this machine
            spread = max(spread or 0.0, round_cv(np.array([np.median(r) for r in runs])) or 0.0)
        if not ratio:  # a time must also clear the machine's drift over the whole baseline run
            run_spread = base.reference_spread(b.get("model"), b.get("dataset"), b.get("batch_size"))
            spread = max(spread or 0.0, run_spread or 0.0) or spread
        floor = latency_floor(cfg, spread, time=not ratio)
        test = "welch-rounds/dense" if ratio else "welch-rounds"
        verdict = verdict_for(p < cfg.alpha, change, floor)
        if not ratio and cfg.normalize == "dense" and not cfg.gate_times and verdict == "regression":
            verdict = "time-not-gated"  # the machine's speed drifts between runs more than a time can resolve
        out.append(finding("latency_ms_p50", bl, cl, change, floor, p, test, verdict, spread, len(runs)))
    elif bs is not None and cs is not None and bs.size >= 3 and cs.size >= 3:  # runs from before rounds existed
        change, p = latency_test(bs, cs)
        floor = latency_floor(cfg, None, time=True)
        verdict = verdict_for(p < cfg.alpha, change, floor)
        out.append(finding("latency_ms_p50", bl, cl, change, floor, p, "mann-whitney", verdict))
    elif bl is not None and cl is not None:
        change, floor = cl / bl - 1.0, latency_floor(cfg, None, time=True)
        out.append(finding("latency_ms_p50", bl, cl, change, floor, None, "no samples", "untested"))
    # energy per inference
    be, ce = _num(b.get("energy_mj_per_inference")), _num(c.get("energy_mj_per_inference"))
    if be is not None and ce is not None and be > 0:
        change = ce / be - 1.0
        floor = default_energy_floor(cfg.latency_floor) if cfg.energy_floor is None else cfg.energy_floor
        bw = base.samples(_power_file(b.get("samples_file")), "watts")
        cw = cur.samples(_power_file(c.get("samples_file")), "watts")
        if bw is not None and cw is not None and bs is not None and cs is not None:
            lower, p = energy_ratio_lower_bound(bw, bs, cw, cs, cfg)
            verdict = verdict_for(lower > 1.0, change, floor)
            out.append(finding("energy_mj_per_inference", be, ce, change, floor, p, "bootstrap", verdict))
        else:
            test = "no power trace"
            out.append(finding("energy_mj_per_inference", be, ce, change, floor, None, test, "untested"))
    return out + accuracy_finding(b, c, cfg, finding)


def accuracy_finding(b: dict, c: dict, cfg: CompareConfig, finding: Callable[..., Finding]) -> list[Finding]:
    """Accuracy: one deterministic evaluation per run; a drop of more than the floor in points is a regression."""
    ba, ca = _num(b.get("accuracy_top1")), _num(c.get("accuracy_top1"))
    if ba is None or ca is None:
        return []
    verdict = "regression" if ba - ca > cfg.accuracy_floor_points else "ok"
    return [finding("accuracy_top1", ba, ca, ca - ba, cfg.accuracy_floor_points, None, "exact", verdict)]


def same_threads(a: dict, b: dict) -> bool:
    """False only when both rows say how many threads measured them and the counts differ (older runs that do not
    say are compared as before)."""
    ta, tb = _num(a.get("threads")), _num(b.get("threads"))
    return ta is None or tb is None or ta == tb


def thread_note(base: str, cur: str, pairs: list[tuple[dict, dict]], what: str) -> str | None:
    """One line naming a run pair's thread difference (None when every row pair agrees)."""
    differ = [(b, c) for b, c in pairs if not same_threads(b, c)]
    if not differ:
        return None
    counts = sorted({(_num(b.get("threads")) or 0.0, _num(c.get("threads")) or 0.0) for b, c in differ})
    said = ", ".join(f"{x:g} vs {y:g}" for x, y in counts)
    return (
        f"{base} and {cur} were measured with different thread counts ({said} thread(s), {len(differ)} row(s)): "
        f"{what}; pin --threads to one count for runs meant to be compared"
    )


def _key(r: dict) -> tuple:
    return tuple(str(r.get(k)) for k in KEY)


def compare_runs(
    base: RunRef, cur: RunRef, cfg: CompareConfig | None = None, history: Sequence[RunRef] = ()
) -> Comparison:
    """Every row of CURRENT against BASE; `history` (earlier runs of the same suite and machine) adds their rounds
    to the latency baseline. Status, energy, accuracy and missing rows are judged against BASE alone."""
    cfg = cfg or CompareConfig()
    label = base.label + (f" (+ {len(history)} earlier run(s) for latency)" if history else "")
    comp = Comparison(label, cur.label, cfg)
    brows = {_key(r): r for r in base.df.to_dict("records")}
    crows = {_key(r): r for r in cur.df.to_dict("records")}
    for ref in (base, cur):  # a failed row followed by an ok copy of the same key: the last would win, unseen
        counts = Counter(_key(r) for r in ref.df.to_dict("records"))
        comp.duplicates += [f"{ref.label}: {' '.join(k)}" for k, n in sorted(counts.items()) if n > 1]
    hrows = [(h, {_key(r): r for r in h.df.to_dict("records")}) for h in history]
    for k, c in crows.items():
        b = brows.get(k)
        if b is None:
            continue
        past = [
            frame
            for h, rows in hrows
            if (r := rows.get(k)) is not None and r.get("status") == "ok" and same_threads(r, c)
            if (frame := h.rounds(r.get("samples_file"))) is not None
        ]
        comp.findings.extend(compare_rows(b, c, base, cur, cfg, past))
    matched = [(brows[k], c) for k, c in crows.items() if k in brows]
    notes = [thread_note(base.label, cur.label, matched, "those rows are not compared")]
    for h, rows in hrows:
        pairs = [(rows[k], c) for k, c in crows.items() if k in rows]
        notes.append(thread_note(f"history run {h.label}", cur.label, pairs, "its rounds are left out of the baseline"))
    comp.notes = [n for n in notes if n]
    flagged = {(f.case_id, str(f.batch_size)) for f in comp.findings if f.verdict == "failed"}
    comp.failed = [
        f"{r.get('case_id')} batch {r.get('batch_size')}"
        for r in cur.df.to_dict("records")
        if r.get("status") != "ok" and (r.get("case_id"), str(r.get("batch_size"))) not in flagged
    ]
    for k in brows.keys() - crows.keys():
        b = brows[k]
        comp.findings.append(
            Finding(
                **{x: b.get(x) for x in KEY},
                metric="status",
                baseline=None,
                current=None,
                change=None,
                floor=0.0,
                p_value=None,
                test="status",
                verdict="missing",
            )  # fmt: skip
        )
    return comp


def gate(
    comp: Comparison, base: RunRef, cur: RunRef, allow_missing: bool = False, allow_untested: bool = False
) -> tuple[int, str]:
    """(exit code, one-line reason) of a comparison used as a CI gate. It fails closed: what it could not judge is
    not a pass.

    1 when nothing was comparable (garbage, header-only, another suite: no baseline row has a tested match),
    when CURRENT lost baseline rows (unless `allow_missing`), when a regression is flagged, and, unless
    `allow_untested`, when a row key occurs twice in a run, CURRENT has a failed row, or a metric could not be
    tested (no samples/: a 10x slowdown passed as "untested"); 2 when rows measured with different thread counts
    left no latency row to test (the runs cannot be compared as given); else 0.
    """
    tested = [f for f in comp.findings if f.verdict not in ("missing", "untested", "threads-differ")]
    missing = [f for f in comp.findings if f.verdict == "missing"]
    differ = [f for f in comp.findings if f.verdict == "threads-differ"]
    loud = [f for f in comp.findings if f.verdict == "disturbed-not-gated"]
    if not tested and not differ:
        why = "; ".join(x for x in (base.problem, cur.problem) if x) or (
            f"none of the baseline's {len(base.df)} row(s) has a match with samples or accuracy in CURRENT "
            f"({len(cur.df)} row(s)): another suite, or an empty run?"
        )
        return 1, f"nothing comparable: {why}"
    if missing and not allow_missing:
        first = missing[0]
        return 1, (
            f"CURRENT lost {len(missing)} of {len(base.df)} baseline row(s) (first: {first.case_id} batch "
            f"{first.batch_size}); pass --allow-missing to compare what is there"
        )
    if comp.regressions:
        return 1, f"{len(comp.regressions)} regression(s) flagged"
    untested = [f for f in comp.findings if f.verdict == "untested"]
    if not allow_untested and (comp.duplicates or comp.failed or untested):
        if comp.duplicates:
            what = f"{len(comp.duplicates)} row key(s) occur twice (first: {comp.duplicates[0]})"
        elif comp.failed:
            what = f"CURRENT has {len(comp.failed)} failed row(s) (first: {comp.failed[0]})"
        else:
            f = untested[0]
            what = (
                f"{len(untested)} finding(s) could not be tested (first: {f.case_id} batch {f.batch_size} "
                f"{f.metric}: {f.test})"
            )
        return 1, f"{what}; pass --allow-untested to accept what could not be judged"
    if differ and not any(f.metric == "latency_ms_p50" for f in tested):
        return 2, "not comparable: " + (comp.notes[0] if comp.notes else "measured with different thread counts")
    aside = [
        f"{len(differ)} row(s) not compared: thread counts differ" if differ else "",
        f"{len(loud)} finding(s) over the floor on disturbed rows, not gated (--gate-disturbed)" if loud else "",
    ]
    said = "; ".join(a for a in aside if a)
    return 0, "no significant regression above the floors" + (f" ({said})" if said else "")


def write_comparison(comp: Comparison, md: Path | None, html: Path | None) -> list[Path]:
    """The comparison as markdown and/or self-contained HTML; returns the paths written."""
    from ticketbench.files import atomic_write_text
    from ticketbench.reports.compare import comparison_html, comparison_markdown

    table, written = comp.table(), []
    for path, render in ((md, comparison_markdown), (html, comparison_html)):
        if path is not None:
            atomic_write_text(Path(path), render(table, comp.baseline, comp.current, comp.notes))
            written.append(Path(path))
    return written
