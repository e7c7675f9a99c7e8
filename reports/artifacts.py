"""Per-ticket artifacts a report draws beside the results table, read from the run directory as stored.

- `tickets/<case>/cost.json`: `ticket.layers[*]` with `name`, `kind`, `kernels`, `zero_kernels` (written by the runner).
- `tickets/<case>/artifacts.json`: the ticket's `artifacts` dict as JSON (written by `Ticket.save` in
  models/tickets/base.py). Early-Bird: `mask_distance_matrix` (pairwise mask distance over search
  epochs; also read as `eb_mask_distances`, a flat list or one matrix per ratio), `mask_distance_epochs` (the
  epoch of each row, 1-based as `eb_epoch`), `eb_epoch`. MPT: `score_histograms` (also `score_hist`):
  per layer `{"counts", "edges"}`.
- `tickets/<case>/ticket.pt`: fallback for runs made before artifacts.json existed, read with
  `torch.load(weights_only=True)` (no arbitrary unpickling) only when artifacts.json is absent.

Everything is optional: a missing or malformed file (or value) means that plot is left out with a note, never an
exception. Case ids come from results.csv, which may be hostile: only single safe path components are read.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ticketbench.files import InputError, confined, read_json_object, safe_component

log = logging.getLogger("ticketbench.reports.artifacts")


@dataclass
class TicketArtifacts:
    """What the report knows about one case's ticket beyond its results rows."""

    case_id: str
    run_id: str
    layers: list[dict[str, Any]] = field(default_factory=list)  # conv layers: name, kernels, zero_kernels
    eb_mask_distances: dict[str, list[list[float]]] = field(default_factory=dict)  # label → epochs × epochs
    eb_epoch: int | None = None
    mask_epochs: list[int] | None = None  # epoch of each matrix row/column; None = 0, 1, 2, ...
    score_hist: dict[str, tuple[list[float], list[float]]] = field(default_factory=dict)  # layer → (counts, edges)


def _read_json(root: Path, path: Path) -> dict[str, Any] | None:
    """The JSON object in `path`; None when absent, or malformed (not JSON, not an object: logged), or when it
    leads out of the run directory `root` (a cost.json linked to a file elsewhere is not rendered: logged)."""
    if not path.exists():
        return None
    try:
        return read_json_object(confined(root, str(path.relative_to(root)), "report input"))
    except InputError as exc:
        log.warning("%s; left out of the report", exc)
        return None


# What a malformed value can raise while being converted (wrong types, huge ints, deep nesting): that part is
# left out of the report, never the whole report.
_BAD_VALUE = (ValueError, TypeError, AttributeError, KeyError, OverflowError, RecursionError)


def _part(path: Path, what: str, parse: Callable[[], Any], empty: Any) -> Any:
    try:
        return parse()
    except _BAD_VALUE as exc:
        log.warning("%s: malformed %s (%s: %s); left out of the report", path, what, type(exc).__name__, exc)
        return empty


def _matrices(value: Any) -> dict[str, list[list[float]]]:
    """eb_mask_distances as stored → {label: square matrix}. A flat list (distance to the previous epoch's
    mask) becomes a one-row matrix; a dict holds one matrix per pruning ratio."""
    if isinstance(value, dict):
        out: dict[str, list[list[float]]] = {}
        for k, v in value.items():
            for sub, m in _matrices(v).items():
                out[f"{k} {sub}".strip()] = m
        return out
    if isinstance(value, list) and value:
        if all(isinstance(r, list) for r in value):
            return {"": [[_num(x) for x in r] for r in value]}
        if all(isinstance(x, int | float) or x is None for x in value):
            return {"": [[_num(x) for x in value]]}
    return {}


def _num(x: Any) -> float:
    return float(x) if isinstance(x, int | float) else math.nan


def _histogram(value: Any) -> tuple[list[float], list[float]] | None:
    """One histogram as stored → (counts, edges); edges has one more entry than counts."""
    counts = edges = None
    if isinstance(value, dict):
        counts = value.get("counts", value.get("hist"))
        edges = value.get("edges", value.get("bin_edges", value.get("bins")))
    elif isinstance(value, list) and len(value) == 2 and all(isinstance(v, list) for v in value):
        a, b = value
        counts, edges = (a, b) if len(b) == len(a) + 1 else (b, a)
    elif isinstance(value, list) and value and all(isinstance(v, int | float) for v in value):
        counts = value
    if not isinstance(counts, list) or not counts:
        return None
    if not isinstance(edges, list) or len(edges) != len(counts) + 1:
        edges = list(range(len(counts) + 1))
    return [float(c) for c in counts], [float(e) for e in edges]


def _score_hists(value: Any) -> dict[str, tuple[list[float], list[float]]]:
    """score_hist as stored → {layer: (counts, edges)}: a dict of histograms per layer, or one histogram."""
    if isinstance(value, dict) and not ({"counts", "hist"} & set(value)):
        return {str(k): h for k, v in value.items() if (h := _histogram(v)) is not None}
    single = _histogram(value)
    return {"all layers": single} if single is not None else {}


def _first(d: dict[str, Any], *keys: str) -> Any:
    return next((d[k] for k in keys if d.get(k) is not None), None)


def _layers(cost: dict[str, Any]) -> list[dict[str, Any]]:
    layers = (cost.get("ticket") or {}).get("layers") or []
    return [
        {"name": str(lc.get("name")), "kernels": _count(lc["kernels"]), "zero_kernels": _count(lc["zero_kernels"])}
        for lc in layers
        if isinstance(lc, dict) and lc.get("kind", "conv") == "conv" and "kernels" in lc and "zero_kernels" in lc
    ]


def _count(x: Any) -> int:
    """A kernel count as stored: a whole, non-negative number (bools and text are malformed)."""
    if isinstance(x, bool) or not isinstance(x, int | float) or not math.isfinite(x) or x < 0 or x != int(x):
        raise ValueError(f"not a count: {x!r}"[:80])
    return int(x)


def _eb_epoch(eb: Any) -> int | None:
    return int(eb) if isinstance(eb, int | float) and not isinstance(eb, bool) and math.isfinite(eb) else None


def load_ticket_artifacts(run_dir: Path, case_id: str, run_id: str = "") -> TicketArtifacts:
    """One case's artifacts; every malformed part (file or value) is left out with a warning, never raised."""
    tdir = Path(run_dir) / "tickets" / safe_component(case_id, "case id")
    out = TicketArtifacts(case_id=case_id, run_id=run_id)
    cost = _read_json(Path(run_dir), tdir / "cost.json") or {}
    out.layers = _part(tdir / "cost.json", "layers", lambda: _layers(cost), [])
    # ticket.pt is never read here: reports stay torch-free
    art = _read_json(Path(run_dir), tdir / "artifacts.json") or {}
    where = tdir / "artifacts.json"
    dist = _first(art, "mask_distance_matrix", "eb_mask_distances")
    out.eb_mask_distances = _part(where, "mask distances", lambda: _matrices(dist), {})
    out.eb_epoch = _part(where, "eb_epoch", lambda: _eb_epoch(art.get("eb_epoch")), None)
    epochs = art.get("mask_distance_epochs")
    if isinstance(epochs, list) and epochs and all(isinstance(e, int) and not isinstance(e, bool) for e in epochs):
        out.mask_epochs = epochs
    hists = _first(art, "score_histograms", "score_hist")
    out.score_hist = _part(where, "score histograms", lambda: _score_hists(hists), {})
    return out


def load_run_artifacts(run_dir: Path, case_ids: list[str], run_id: str = "") -> list[TicketArtifacts]:
    """Artifacts of the given cases whose ticket directory exists in this run. A case id that is not one safe
    path component (`../../x` from a hostile results.csv) is skipped: nothing outside tickets/ is read."""
    out = []
    for c in case_ids:
        try:
            safe_component(c, "case id")
        except InputError as exc:
            log.warning("%s: %s; its figures are left out", run_dir, exc)
            continue
        if (Path(run_dir) / "tickets" / c).is_dir():
            out.append(load_ticket_artifacts(run_dir, c, run_id))
    return out
