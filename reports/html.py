"""One self-contained report.html over one or more run directories: inline SVG, inline JS, no network."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import jinja2
import pandas as pd

from reports import plots


def load_runs(run_dirs: list[Path]) -> tuple[pd.DataFrame, list[dict]]:
    frames, metas = [], []
    for d in run_dirs:
        d = Path(d)
        csv = d / "results.csv"
        if not csv.is_file():
            raise FileNotFoundError(f"{d}: no results.csv (not a run directory?)")
        frames.append(pd.read_csv(csv))
        meta_path = d / "run.json"
        metas.append(json.loads(meta_path.read_text()) if meta_path.exists() else {"run_id": d.name})
    return pd.concat(frames, ignore_index=True), metas


def render_html(df: pd.DataFrame, metas: list[dict], title: str = "ticketbench report") -> str:
    env = jinja2.Environment(
        loader=jinja2.FunctionLoader(lambda n: resources.files("reports.templates").joinpath(n).read_text()),
        autoescape=jinja2.select_autoescape(["html", "j2"]),
    )
    figures = [
        (name, svg)
        for name, svg in (
            ("Accuracy vs sparsity", plots.accuracy_vs_sparsity(df)),
            ("Latency and speedup vs sparsity", plots.speed_vs_sparsity(df)),
            ("Energy per device", plots.energy_per_device(df)),
        )
        if svg
    ]
    table = df.drop(columns=[c for c in ("run_id",) if c in df and df["run_id"].nunique() == 1])
    return env.get_template("report.html.j2").render(
        title=title,
        figures=figures,
        columns=list(table.columns),
        rows=table.where(table.notna(), None).to_dict("records"),
        metas=metas,
        fmt=_fmt,
    )


def _fmt(v) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def write_report(run_dirs: list[Path], html_path: Path) -> Path:
    from bench.rundir import atomic_write_text

    df, metas = load_runs(run_dirs)
    atomic_write_text(html_path, render_html(df, metas))
    return html_path
