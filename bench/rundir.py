"""The run directory: atomic writes, results.csv rewritten after every case, and resume."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from ticketbench.files import atomic_write_text, read_json_object, read_results_csv, safe_component
from ticketbench.results import COLUMNS


class RunDir:
    """RUN_DIR/{run.json, results.csv, run.log, samples/, tickets/<case>/, report.html}."""

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

    @property
    def log_file(self) -> Path:
        """run.log: the run's log lines and the tracebacks of its failed cases (the terminal gets one line each)."""
        return self.root / "run.log"

    def write_json(self, meta: dict[str, Any]) -> None:
        atomic_write_text(self.run_json, json.dumps(meta, indent=2, default=str) + "\n")

    def read_json(self) -> dict[str, Any]:
        """run.json as a dict ({} when absent); malformed → InputError (so `--resume` ends in one line)."""
        return read_json_object(self.run_json, "run.json") if self.run_json.exists() else {}

    def read_results(self) -> pd.DataFrame:
        """results.csv, checked (ticketbench.files.read_results_csv); absent → an empty table."""
        if not self.results_csv.exists():
            return pd.DataFrame(columns=COLUMNS)
        return read_results_csv(self.results_csv)

    def ticket_dir(self, case_id: str) -> Path:
        """tickets/<case_id>: the id must be one safe path component, so it never addresses a file outside."""
        return self.tickets / safe_component(case_id, "case id")

    def write_results(self, rows: list[dict[str, Any]]) -> None:
        df = pd.DataFrame(rows, columns=COLUMNS)
        atomic_write_text(self.results_csv, df.to_csv(index=False))

    def finished_cases(self) -> set[str]:
        """case_ids with status ok: what --resume skips."""
        df = self.read_results()
        if df.empty:
            return set()
        return set(df.loc[df["status"] == "ok", "case_id"].astype(str))
