"""Trends over the farm's nights: level changes (steps) that persisted, never a single bad night. An L1
piecewise-constant fit whose segments are at least `min_nights` long, as asv's step detection."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd


@dataclass
class Segment:
    start: int  # first index (inclusive)
    end: int  # last index (exclusive)
    level: float  # median of the segment
    error: float  # mean absolute deviation from the level: the segment's own noise


def fit_levels(y: np.ndarray, min_size: int = 2, gamma: float | None = None) -> list[Segment]:
    """Piecewise-constant L1 fit (the Potts problem asv's step detection solves): minimise
    gamma × segments + Σ |y − segment median|, every segment at least `min_size` long (so one bad night cannot
    be a level of its own; its median absorbs it). Exact dynamic programme, O(n³) with n = nights (≤ ~100).
    gamma defaults to asv's 3 · dist(0, n) · ln(n) / n: a new segment must buy more than the data's noise."""
    y = np.asarray(y, dtype=float)
    n = len(y)
    if n == 0:
        return []

    def dist(a: int, b: int) -> float:
        return float(np.abs(y[a:b] - np.median(y[a:b])).sum())

    if gamma is None:
        gamma = 3.0 * dist(0, n) * np.log(max(n, 2)) / n or 1e-12
    best = [0.0] + [np.inf] * n  # best[r]: cost of y[:r]
    cut = [0] * (n + 1)
    for r in range(1, n + 1):
        for a in range(0, r - min_size + 1):
            if a and a < min_size:
                continue
            c = best[a] + gamma + dist(a, r)
            if c < best[r]:
                best[r], cut[r] = c, a
    if not np.isfinite(best[n]):  # shorter than min_size: one level
        cut[n] = 0
    bounds, r = [], n
    while r > 0:
        bounds.append((cut[r], r))
        r = cut[r]
    return [
        Segment(a, b, float(np.median(y[a:b])), float(np.abs(y[a:b] - np.median(y[a:b])).mean()))
        for a, b in reversed(bounds)
    ]


def persistent_steps(y: np.ndarray, threshold: float = 0.05, min_nights: int = 2) -> list[dict[str, Any]]:
    """Level changes of a nightly series that held for at least `min_nights` nights, larger than
    max(threshold, both levels' own noise) relative to the level before (asv's detect_regressions rule).
    Returns dicts: index (first night at the new level), before, after, change (relative), nights (at it)."""
    steps = []
    segs = fit_levels(np.asarray(y, dtype=float), min_size=min_nights)
    for prev, seg in zip(segs, segs[1:]):
        if prev.level == 0:
            continue
        change = seg.level / prev.level - 1.0
        noise = max(prev.error, seg.error) / abs(prev.level)
        if abs(change) > max(threshold, noise):
            steps.append(
                {
                    "index": seg.start,
                    "before": prev.level,
                    "after": seg.level,
                    "change": change,
                    "nights": seg.end - seg.start,
                }  # fmt: skip
            )
    return steps


def trend_steps(long: pd.DataFrame, threshold: float = 0.05, min_nights: int = 2) -> pd.DataFrame:
    """Persistent steps in the farm's trend table (night, farm_device, suite, case_id, batch_size, value, metric),
    one row per step: where, which metric, the first night at the new level, levels and change. Up is worse for
    latency and energy, down for accuracy (`worse`)."""
    cols = ["farm_device", "suite", "case_id", "batch_size", "metric", "night", "before", "after", "change",
            "nights", "worse"]  # fmt: skip
    rows = []
    if long.empty:
        return pd.DataFrame(columns=cols)
    keys = ["farm_device", "suite", "case_id", "batch_size", "metric"]
    for key, g in long.dropna(subset=["value"]).groupby(keys, dropna=False):
        g = g.sort_values("night")
        for st in persistent_steps(g["value"].to_numpy(dtype=float), threshold, min_nights):
            worse = st["change"] < 0 if key[-1] == "accuracy_top1" else st["change"] > 0
            rows.append({**dict(zip(keys, key)), "night": g["night"].iloc[st["index"]], **st, "worse": worse})
    return pd.DataFrame(rows, columns=cols)
