"""The run directory: atomic writes, results.csv rewritten after every case, and resume."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from ticketbench.files import atomic_write_text
from ticketbench.results import COLUMNS


class RunDir:
    """RUN_DIR/{run.json, results.csv, samples/, tickets/<case>/, report.html}."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.samples = self.root / "samples"
        self.tickets = self.root / "tickets"

    def create(self) -> RunDir:
        for d in (self.root, self.samples, self.tickets):
            d.mkdir(parents=True, exist_ok=True)
        return self

    @property
    def results_csv(self) -> Path:
        return self.root / "results.csv"

    @property
    def run_json(self) -> Path:
        return self.root / "run.json"

    def write_json(self, meta: dict[str, Any]) -> None:
        atomic_write_text(self.run_json, json.dumps(meta, indent=2, default=str) + "\n")

    def read_json(self) -> dict[str, Any]:
        return json.loads(self.run_json.read_text()) if self.run_json.exists() else {}

    def read_results(self) -> pd.DataFrame:
        if not self.results_csv.exists():
            return pd.DataFrame(columns=COLUMNS)
        return pd.read_csv(self.results_csv)

    def write_results(self, rows: list[dict[str, Any]]) -> None:
        df = pd.DataFrame(rows, columns=COLUMNS)
        atomic_write_text(self.results_csv, df.to_csv(index=False))

    def finished_cases(self) -> set[str]:
        """case_ids with status ok: what --resume skips."""
        df = self.read_results()
        if df.empty:
            return set()
        return set(df.loc[df["status"] == "ok", "case_id"].astype(str))
