"""The table a reader looks at first, one per device and precision, and which rows a disturbed machine measured.

Per row: the speedup with its spread across rounds (or what it is relative to, when it is not paired), size ×,
MAC reduction, realization, accuracy change vs the dense model, energy per inference where measured, threads.
Built from the results table as written: size × is size_mb_dense / size_mb of the row, accuracy Δ subtracts the
dense row's accuracy_top1 of the same run, model, data, device, backend and precision; nothing is re-measured.
`bench run` prints these tables and report.html opens with them.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from ticketbench.results import is_true

GROUP = ("device", "device_name", "backend", "precision")
SAME_DENSE = ("run_id", "model", "dataset", "device", "backend", "precision")  # whose dense row a row is measured by
BASIS_WORDS = {"unpaired": "unpaired (dense timed apart)", "reference": "dense reference"}


def _num(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if f == f else None


def _per(a: Any, b: Any) -> float | None:
    x, y = _num(a), _num(b)
    return x / y if x is not None and y and y > 0 else None


def _spread(r: dict[str, Any]) -> str:
    """The "lo–hi" of a paired speedup across rounds; else what the speedup is relative to."""
    lo, hi = _num(r.get("speedup_lo")), _num(r.get("speedup_hi"))
    if r.get("speedup_basis") == "paired" and lo is not None and hi is not None:
        return f"{lo:.3g}–{hi:.3g}"
    return BASIS_WORDS.get(str(r.get("speedup_basis")), "")


def _dense_accuracy(df: pd.DataFrame) -> dict[tuple, float]:
    keys = [k for k in SAME_DENSE if k in df]
    ok = df[(df["method"] == "dense") & (df["status"] == "ok") & df["accuracy_top1"].notna()]
    return {tuple(str(r[k]) for k in keys): float(r["accuracy_top1"]) for r in ok.to_dict("records")}


def summary_tables(df: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """(title, table) per device, backend and precision, rows in results order. Columns: case, batch, speedup,
    speedup range (the slowest–fastest round's gain, or what an unpaired speedup is relative to), size ×, MAC
    reduction ×, realization, accuracy Δ vs dense (points), energy (mJ/inference, only when any row has it),
    threads, disturbed; run (several runs) and status (any row not ok) when they vary."""
    if df.empty:
        return []
    dense_acc = _dense_accuracy(df)
    keys = [k for k in SAME_DENSE if k in df]
    out = []
    for gkey, g in df.groupby([k for k in GROUP if k in df], dropna=False, sort=False):
        names = dict(zip([k for k in GROUP if k in df], gkey if isinstance(gkey, tuple) else (gkey,)))
        rows = []
        for r in g.to_dict("records"):
            acc, ref = _num(r.get("accuracy_top1")), dense_acc.get(tuple(str(r[k]) for k in keys))
            row = {
                "run": r.get("run_id"),
                "case": r.get("case_id"),
                "batch": r.get("batch_size"),
                "status": r.get("status"),
                "speedup": _num(r.get("speedup")),
                "speedup range": _spread(r),
                "size ×": _per(r.get("size_mb_dense"), r.get("size_mb")),
                "MAC reduction ×": _num(r.get("mac_reduction")),
                "realization": _num(r.get("realization")),
                "accuracy Δ vs dense": acc - ref if acc is not None and ref is not None else None,
                "energy mJ/inference": _num(r.get("energy_mj_per_inference")),
                "threads": _num(r.get("threads")),
                "disturbed": "yes" if is_true(r.get("disturbed")) else "",
            }
            rows.append(row)
        table = pd.DataFrame(rows)
        keep = {
            "run": table["run"].nunique() > 1,
            "status": bool((table["status"] != "ok").any()),
            "energy mJ/inference": bool(table["energy mJ/inference"].notna().any()),
        }
        table = table.drop(columns=[c for c, k in keep.items() if not k])
        if "threads" in table:
            table["threads"] = table["threads"].map(lambda v: "" if v is None or v != v else f"{v:.0f}")
        threads = sorted(set(table["threads"]) - {""})
        title = f"{names.get('device', '')} ({names.get('device_name', '')}), {names.get('backend', '')}, " + (
            f"{names.get('precision', '')}" + (f", {threads[0]} thread(s)" if len(threads) == 1 else "")
        )
        out.append((title, table))
    return out


def disturbed_rows(df: pd.DataFrame) -> list[str]:
    """The "case bN: why" of every row measured on a disturbed machine, in results order."""
    if "disturbed" not in df:
        return []
    out = []
    for r in df.to_dict("records"):
        if is_true(r.get("disturbed")):
            note = r.get("disturbance_note")
            out.append(f"{r['case_id']} b{r['batch_size']}" + (f": {note}" if isinstance(note, str) else ""))
    return out


def disturbance_banner(df: pd.DataFrame) -> str | None:
    """One sentence for the top of a report (None when no row was disturbed)."""
    rows = disturbed_rows(df)
    if not rows:
        return None
    return (
        f"{len(rows)} of {len(df)} row(s) were measured on a disturbed machine (other processes crowded the "
        "threads during their timing windows, or their rounds disagreed): their times and speedups are less "
        "trustworthy, and `bench compare` reports their times without gating them."
    )
