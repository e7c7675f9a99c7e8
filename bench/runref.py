"""One side of a comparison, loaded: a run directory's results.csv, run.json and samples/ files, or a run in the
results database (bench/store.py). bench/rundir.py writes that directory; this reads it back."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ticketbench.devices.measure import round_cv
from ticketbench.files import confined, read_bytes

KEY = ("case_id", "device", "backend", "precision", "batch_size")


class CompareError(Exception):
    """A run to compare cannot be found or read."""


@dataclass
class RunRef:
    """One side of a comparison: its results table, and the run directory its samples are under (if reachable)."""

    label: str
    df: pd.DataFrame
    root: Path | None = None
    problem: str = ""  # why the table is empty or unusable (unreadable results.csv), for the gate's reason
    _ref_spread: dict[tuple, float | None] = field(default_factory=dict, repr=False)

    def _csv(self, rel: Any) -> pd.DataFrame | None:
        """A samples file results.csv names: it must stay inside this run's directory and be a regular file
        (files.confined, files.read_bytes), else InputError: a samples_file of /dev/zero made compare read without
        end, an absolute path tested another run's samples. None when absent or not a table (then untested)."""
        if self.root is None or not isinstance(rel, str) or not rel:
            return None
        path = confined(self.root, rel, f"{self.label}: samples_file")
        if not path.exists():
            return None
        data = read_bytes(path, "samples file")
        try:
            return pd.read_csv(io.BytesIO(data))
        except (ValueError, pd.errors.EmptyDataError, pd.errors.ParserError):
            return None

    def samples(self, rel: Any, column: str) -> np.ndarray | None:
        df = self._csv(rel)
        if df is None:
            return None
        try:
            values = df[column].to_numpy(dtype=float)
        except (KeyError, ValueError):
            return None
        values = values[np.isfinite(values)]
        return values if values.size else None

    def rounds(self, latency_file: Any) -> pd.DataFrame | None:
        """Per-round medians (latency_ms_median, reference_ms_median) written beside the latency samples."""
        if self.root is None or not isinstance(latency_file, str) or not latency_file.endswith("-latency.csv"):
            return None
        df = self._csv(latency_file[: -len("-latency.csv")] + "-rounds.csv")
        if df is None:
            return None
        try:
            lat = df["latency_ms_median"].to_numpy(dtype=float)
            ref = df["reference_ms_median"].to_numpy(dtype=float)
            # the paired per-round ratio (iterations alternated with the reference); else the ratio of medians
            ratio = df["ratio_median"].to_numpy(dtype=float) if "ratio_median" in df else lat / ref
        except (KeyError, ValueError):
            return None
        ok = np.isfinite(lat) & (lat > 0)
        frame = pd.DataFrame({"latency": lat[ok], "reference": ref[ok], "ratio": ratio[ok]})
        return frame if ok.sum() >= 2 else None

    def reference_spread(self, model: Any, dataset: Any, batch_size: Any) -> float | None:
        """Between-round spread (std/mean) of the dense reference over every round of the whole run at this
        architecture and batch: the reference is timed beside every ticket, from the first case to the last, so
        this is the run's own estimate of how much the machine drifts, which a time (not a ratio) must clear."""
        key = (str(model), str(dataset), str(batch_size))
        if key not in self._ref_spread:
            cols = ("model", "dataset", "batch_size", "samples_file")
            rows = self.df.reindex(columns=cols).astype(str).itertuples(index=False) if len(self.df) else []
            files = [r.samples_file for r in rows if (r.model, r.dataset, r.batch_size) == key]
            refs = [r["reference"].to_numpy() for f in files if (r := self.rounds(f)) is not None]
            values = np.concatenate(refs) if refs else np.array([])
            self._ref_spread[key] = round_cv(values[np.isfinite(values)])
        return self._ref_spread[key]


def _read_results(path: Path) -> tuple[pd.DataFrame, str]:
    """results.csv as a table with at least the key columns; (empty table, why) when it cannot be read."""
    try:
        df = pd.read_csv(path)
    except (OSError, ValueError, UnicodeDecodeError, pd.errors.EmptyDataError, pd.errors.ParserError) as exc:
        return pd.DataFrame(columns=list(KEY)), f"{path}: unreadable results ({type(exc).__name__})"
    missing = [k for k in KEY if k not in df.columns]
    if missing:
        return df.reindex(columns=[*df.columns, *missing]).iloc[0:0], f"{path}: no {', '.join(missing)} column(s)"
    return df, ""


def _with_threads(df: pd.DataFrame, meta: Any) -> pd.DataFrame:
    """Rows of a run written before results.csv had a `threads` column take the count run.json recorded for the
    whole run (host.threads.threads), so older runs too are never timed against another count."""
    if "threads" in df and df["threads"].notna().any():
        return df
    policy = ((meta or {}).get("host") or {}).get("threads") if isinstance(meta, dict) else None
    count = policy.get("threads") if isinstance(policy, dict) else None
    if not isinstance(count, int) or isinstance(count, bool):
        return df
    return df.assign(threads=float(count))


def load_ref(spec: str, db: str | None = None, store: Any = None) -> RunRef:
    """A run directory (holding results.csv), or a run id in the results database: `store` when the caller holds
    one open (the farm), else one opened on `db` for this read and closed after it."""
    p = Path(spec)
    if (p / "results.csv").is_file():
        try:
            meta = json.loads((p / "run.json").read_text()) if (p / "run.json").is_file() else {}
        except (OSError, ValueError):
            meta = {}
        run_id = meta.get("run_id") if isinstance(meta, dict) else None
        label = run_id if isinstance(run_id, str) else p.name
        df, problem = _read_results(p / "results.csv")
        return RunRef(label, _with_threads(df, meta), p, problem)
    if p.exists():
        raise CompareError(f"{spec}: not a run directory (no results.csv)")
    from ticketbench.bench.store import ResultsStore, StoreError

    opened = None
    try:
        store = store or (opened := ResultsStore(db))
        run = store.run(spec)
        root = Path(run["run_dir"]) if run.get("run_dir") and Path(run["run_dir"]).is_dir() else None
        return RunRef(spec, _with_threads(store.results([spec]), run["meta"]), root)  # results(): no StoreError
    except StoreError as exc:
        raise CompareError(f"{spec}: neither a run directory nor a run in the results database ({exc})") from exc
    finally:
        if opened is not None:
            opened.close()
