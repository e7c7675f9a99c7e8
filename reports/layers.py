"""Per-layer tables a report shows beside the results: read as written (samples/<case>-b<bs>-layers.csv, named by
results.csv's `layers_file`), never recomputed. Columns are docs/results.md's "Per-layer profiles" table.

The file name comes from results.csv, which may be hostile: it is read only inside its run directory and only as a
regular file (files.confined, files.read_bytes); a malformed file leaves that ticket's section out with a note.
"""

from __future__ import annotations

import io
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ticketbench.files import InputError, confined, read_bytes

log = logging.getLogger("ticketbench.reports.layers")

NUMERIC = ("macs_dense", "macs", "mac_reduction", "dense_ms", "ticket_ms", "time_reduction", "realization", "lost_ms")
MAX_BYTES = 8 << 20  # a layers table of a few hundred rows is a few tens of kB


@dataclass
class LayerTable:
    """One case's per-layer table at one batch size, with the row facts the report prints beside it."""

    case_id: str
    batch_size: int
    rows: pd.DataFrame  # the CSV's columns, numbers as floats
    coverage: float | None = None  # results.csv layers_coverage
    overhead: float | None = None  # results.csv layers_profile_overhead
    realization: float | None = None  # the row's end-to-end realization
    notes: list[str] = field(default_factory=list)

    @property
    def losses(self) -> pd.DataFrame:
        """The three rows that lose the most time beyond their MAC reduction (`lost_ms`, largest first)."""
        lost = self.rows[self.rows["lost_ms"] > 0]
        return lost.sort_values("lost_ms", ascending=False).head(3)


def _num(v: object) -> float | None:
    try:
        f = float(v)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def read_layer_table(run_dir: Path, rel: object) -> pd.DataFrame:
    """The layers CSV `rel` of a run directory, checked: the documented columns present, numbers numeric."""
    data = read_bytes(confined(Path(run_dir), rel, "layers_file"), "layers file", MAX_BYTES)
    try:
        df = pd.read_csv(io.BytesIO(data), keep_default_na=False, na_values=[""])
    except (ValueError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise InputError(f"{rel}: not a layers table ({exc})") from None
    missing = [c for c in ("layer", "kind", *NUMERIC) if c not in df]
    if missing:
        raise InputError(f"{rel}: layers table lacks {missing}")
    for c in NUMERIC:
        df[c] = pd.to_numeric(df[c], errors="coerce")
    df["layer"] = df["layer"].astype(str)
    df["kind"] = df["kind"].astype(str)
    return df


def load_layer_tables(run_dir: Path, df: pd.DataFrame) -> list[LayerTable]:
    """Every ok row's layers table that this run directory holds (rows naming none are skipped)."""
    out: list[LayerTable] = []
    if "layers_file" not in df:
        return out
    for rec in df[(df["status"] == "ok") & df["layers_file"].notna()].to_dict("records"):
        try:
            rows = read_layer_table(run_dir, rec["layers_file"])
        except InputError as exc:
            log.warning("%s; its per-layer section is left out", exc)
            continue
        batch = _num(rec.get("batch_size"))
        out.append(
            LayerTable(
                str(rec["case_id"]),
                int(batch) if batch is not None else 0,
                rows,
                _num(rec.get("layers_coverage")),
                _num(rec.get("layers_profile_overhead")),
                _num(rec.get("realization")),
            )
        )
    return out
