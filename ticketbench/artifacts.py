"""A ticket's artifacts (EB mask distances, MPT score histograms, ...) as plain JSON beside ticket.pt,
so reports read them without unpickling torch files."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from ticketbench.files import atomic_write_text

MAX_ELEMENTS = 100_000  # arrays above this many values are stored as a 64-bin histogram, not raw
HIST_BINS = 64


def to_jsonable(value: Any) -> Any:
    """Tensors/arrays → nested lists (huge ones → {"counts", "edges"} histogram); NaN/inf → None."""
    if hasattr(value, "detach"):  # torch tensor, without importing torch
        value = value.detach().cpu().numpy()
    if hasattr(value, "tolist") and hasattr(value, "shape"):  # numpy array or scalar
        if getattr(value, "size", 0) > MAX_ELEMENTS:
            import numpy as np

            flat = np.asarray(value, dtype=float).ravel()
            counts, edges = np.histogram(flat[np.isfinite(flat)], bins=HIST_BINS)
            return {"counts": counts.tolist(), "edges": edges.tolist()}
        value = value.tolist()
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)


def write_artifacts_json(ticket_dir: Path, artifacts: dict[str, Any]) -> Path:
    """Write `ticket_dir/artifacts.json` atomically so reports never need to unpickle ticket.pt."""
    path = Path(ticket_dir) / "artifacts.json"
    atomic_write_text(path, json.dumps(to_jsonable(artifacts or {}), indent=1, sort_keys=True) + "\n")
    return path
