"""Regression detection between two runs: flagged only when a change is both significant and large.

Per matching row (case, device, backend, precision, batch) and metric:
- latency: one-sided Mann-Whitney U on the per-iteration samples (samples/*-latency.csv), H1 = current slower;
  change = median(current) / median(baseline) − 1 over the same samples.
- energy per inference: one-sided bootstrap CI of the energy ratio, resampling the power traces
  (samples/*-power.csv, W) and the latency samples (ms) of both runs: energy/inference ∝ mean W · mean ms;
  change = the table's energy_mj_per_inference ratio − 1. Traces at 50 Hz are autocorrelated, so the CI is
  optimistic; the wider default floor (10%) absorbs that.
- accuracy: one deterministic evaluation per run, so there is no sampling noise to test: a drop of more than
  the floor in absolute points is a regression.
A case that ran ok in the baseline and failed in the current run is a regression too. A metric without
samples is reported "untested" and never flagged: significance cannot be shown without them.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

KEY = ("case_id", "device", "backend", "precision", "batch_size")
METRICS = ("latency_ms_p50", "energy_mj_per_inference", "accuracy_top1")


class CompareError(Exception):
    """A run to compare cannot be found or read."""


@dataclass
class CompareConfig:
    latency_floor: float = 0.05  # relative: current median at least 5% slower
    energy_floor: float = 0.10  # relative: energy is noisier than latency
    accuracy_floor_points: float = 1.0  # absolute top-1 points
    alpha: float = 0.01  # one-sided significance level
    n_boot: int = 2000
    seed: int = 0


@dataclass
class RunRef:
    """One side of a comparison: its results table, and the run directory its samples are under (if reachable)."""

    label: str
    df: pd.DataFrame
    root: Path | None = None

    def samples(self, rel: Any, column: str) -> np.ndarray | None:
        if self.root is None or not isinstance(rel, str) or not rel:
            return None
        path = self.root / rel
        try:
            values = pd.read_csv(path)[column].to_numpy(dtype=float)
        except (OSError, KeyError, ValueError, pd.errors.EmptyDataError):
            return None
        values = values[np.isfinite(values)]
        return values if values.size else None


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
    floor: float
    p_value: float | None
    test: str
    verdict: str  # regression | failed | significant-below-floor | not-significant | ok | untested | missing

    @property
    def flagged(self) -> bool:
        return self.verdict in ("regression", "failed")


@dataclass
class Comparison:
    baseline: str
    current: str
    config: CompareConfig
    findings: list[Finding] = field(default_factory=list)

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
            },
            default=str,
        )


# -- the tests --------------------------------------------------------------------------------------
def latency_test(base: np.ndarray, cur: np.ndarray) -> tuple[float, float]:
    """(relative change of the median, one-sided Mann-Whitney p-value for "current is slower")."""
    from scipy.stats import mannwhitneyu

    change = float(np.median(cur) / np.median(base) - 1.0)
    p = float(mannwhitneyu(cur, base, alternative="greater").pvalue)
    return change, p


def energy_ratio_lower_bound(
    base_w: np.ndarray, base_ms: np.ndarray, cur_w: np.ndarray, cur_ms: np.ndarray, cfg: CompareConfig
) -> tuple[float, float]:
    """(one-sided lower confidence bound of the energy ratio current/baseline at 1 − alpha, bootstrap p-value).

    Energy per inference ∝ mean power (W) × mean latency (ms); each of the four sample sets is resampled.
    The p-value is the fraction of bootstrap ratios ≤ 1 (how often the current run is not more costly).
    """
    rng = np.random.default_rng(cfg.seed)

    def boot_mean(x: np.ndarray) -> np.ndarray:
        return x[rng.integers(0, x.size, size=(cfg.n_boot, x.size))].mean(axis=1)

    ratio = (boot_mean(cur_w) * boot_mean(cur_ms)) / (boot_mean(base_w) * boot_mean(base_ms))
    return float(np.quantile(ratio, cfg.alpha)), float((ratio <= 1.0).mean())


def verdict_for(significant: bool, change: float, floor: float) -> str:
    if not significant:
        return "not-significant"
    return "regression" if change > floor else "significant-below-floor"


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


def compare_rows(b: dict, c: dict, base: RunRef, cur: RunRef, cfg: CompareConfig) -> list[Finding]:
    key = {k: c.get(k) for k in KEY}

    def finding(metric, bv, cv, change, floor, p, test, verdict) -> Finding:
        return Finding(**key, metric=metric, baseline=bv, current=cv, change=change, floor=floor, p_value=p,
                       test=test, verdict=verdict)  # fmt: skip

    if b.get("status") == "ok" and c.get("status") != "ok":
        return [finding("status", None, None, None, 0.0, None, "status", "failed")]
    if b.get("status") != "ok" or c.get("status") != "ok":
        return []
    out = []
    # latency
    bl, cl = _num(b.get("latency_ms_p50")), _num(c.get("latency_ms_p50"))
    bs, cs = base.samples(b.get("samples_file"), "latency_ms"), cur.samples(c.get("samples_file"), "latency_ms")
    if bs is not None and cs is not None and bs.size >= 3 and cs.size >= 3:
        change, p = latency_test(bs, cs)
        verdict = verdict_for(p < cfg.alpha, change, cfg.latency_floor)
        out.append(finding("latency_ms_p50", bl, cl, change, cfg.latency_floor, p, "mann-whitney", verdict))
    elif bl is not None and cl is not None:
        change = cl / bl - 1.0
        out.append(finding("latency_ms_p50", bl, cl, change, cfg.latency_floor, None, "no samples", "untested"))
    # energy per inference
    be, ce = _num(b.get("energy_mj_per_inference")), _num(c.get("energy_mj_per_inference"))
    if be is not None and ce is not None and be > 0:
        change = ce / be - 1.0
        bw = base.samples(_power_file(b.get("samples_file")), "watts")
        cw = cur.samples(_power_file(c.get("samples_file")), "watts")
        if bw is not None and cw is not None and bs is not None and cs is not None:
            lower, p = energy_ratio_lower_bound(bw, bs, cw, cs, cfg)
            verdict = verdict_for(lower > 1.0, change, cfg.energy_floor)
            out.append(finding("energy_mj_per_inference", be, ce, change, cfg.energy_floor, p, "bootstrap", verdict))
        else:
            test = "no power trace"
            out.append(finding("energy_mj_per_inference", be, ce, change, cfg.energy_floor, None, test, "untested"))
    # accuracy
    ba, ca = _num(b.get("accuracy_top1")), _num(c.get("accuracy_top1"))
    if ba is not None and ca is not None:
        drop = ba - ca
        verdict = "regression" if drop > cfg.accuracy_floor_points else "ok"
        out.append(finding("accuracy_top1", ba, ca, ca - ba, cfg.accuracy_floor_points, None, "exact", verdict))
    return out


def _key(r: dict) -> tuple:
    return tuple(str(r.get(k)) for k in KEY)


def compare_runs(base: RunRef, cur: RunRef, cfg: CompareConfig | None = None) -> Comparison:
    cfg = cfg or CompareConfig()
    comp = Comparison(base.label, cur.label, cfg)
    brows = {_key(r): r for r in base.df.to_dict("records")}
    crows = {_key(r): r for r in cur.df.to_dict("records")}
    for k, c in crows.items():
        b = brows.get(k)
        if b is None:
            continue
        comp.findings.extend(compare_rows(b, c, base, cur, cfg))
    for k in brows.keys() - crows.keys():
        b = brows[k]
        comp.findings.append(
            Finding(*(b.get(x) for x in KEY), "status", None, None, None, 0.0, None, "status", "missing")
        )
    return comp


# -- loading ----------------------------------------------------------------------------------------
def load_ref(spec: str, db: str | None = None) -> RunRef:
    """A run directory (holding results.csv), or a run id in the results database."""
    p = Path(spec)
    if (p / "results.csv").is_file():
        meta = json.loads((p / "run.json").read_text()) if (p / "run.json").is_file() else {}
        return RunRef(str(meta.get("run_id") or p.name), pd.read_csv(p / "results.csv"), p)
    if p.exists():
        raise CompareError(f"{spec}: not a run directory (no results.csv)")
    from ticketbench.bench.store import ResultsStore, StoreError

    try:
        store = ResultsStore(db)
        run = store.run(spec)
    except StoreError as exc:
        raise CompareError(f"{spec}: neither a run directory nor a run in the results database ({exc})") from exc
    root = Path(run["run_dir"]) if run.get("run_dir") and Path(run["run_dir"]).is_dir() else None
    return RunRef(spec, store.results([spec]), root)


def write_comparison(comp: Comparison, md: Path | None, html: Path | None) -> list[Path]:
    """The comparison as markdown and/or self-contained HTML; returns the paths written."""
    from ticketbench.files import atomic_write_text
    from ticketbench.reports.compare import comparison_html, comparison_markdown

    table, written = comp.table(), []
    for path, render in ((md, comparison_markdown), (html, comparison_html)):
        if path is not None:
            atomic_write_text(Path(path), render(table, comp.baseline, comp.current))
            written.append(Path(path))
    return written
