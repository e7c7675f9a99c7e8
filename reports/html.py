"""One self-contained report.html over one or more run directories: inline SVG, inline JS, no network.

Numbers come from the results tables as written (results.csv, checked on reading: a malformed results.csv or
run.json is an InputError, never a half-drawn report); per-ticket figures (EB heat map, zero kernels,
score histograms) come from the artifacts stored beside them (reports.artifacts). Nothing is recomputed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import pandas as pd

from ticketbench.files import InputError, atomic_write_text, read_json_object, read_results_csv
from ticketbench.reports import plots
from ticketbench.reports.artifacts import TicketArtifacts, load_run_artifacts
from ticketbench.reports.layers import LayerTable, load_layer_tables
from ticketbench.reports.pages import fmt_cell, template_env
from ticketbench.reports.summary import disturbance_banner, disturbed_rows, summary_tables
from ticketbench.results import COLUMNS

log = logging.getLogger("ticketbench.reports.html")


@dataclass
class Figure:
    title: str
    svg: str | None
    note: str = ""  # why the figure is absent, when it is


@dataclass
class ReportInputs:
    df: pd.DataFrame
    metas: list[dict]
    artifacts: list[TicketArtifacts] = field(default_factory=list)
    layers: list[LayerTable] = field(default_factory=list)


@dataclass
class LayerSection:
    """One ticket at one batch size in "Where the time goes": its per-layer figure and the layers that lose most."""

    title: str
    figure: Figure
    facts: str  # realization, how far the layers add up, what profiling cost
    losses: list[dict]  # layer, kind, mac_reduction, time_reduction, realization, lost_ms


def _load_run(d: Path) -> tuple[pd.DataFrame, dict]:
    """One run directory's results table and run.json, checked (ticketbench.files); malformed → InputError."""
    d = Path(d)
    if not (d / "results.csv").is_file():
        raise InputError(f"{d}: no results.csv (not a run directory?)")
    df = read_results_csv(d / "results.csv")
    meta = read_json_object(d / "run.json", "run.json") if (d / "run.json").exists() else {"run_id": d.name}
    return df, meta


def load_runs(run_dirs: list[Path]) -> tuple[pd.DataFrame, list[dict]]:
    """Every run's results concatenated, and their run.json; a malformed file → InputError (one line)."""
    loaded = [_load_run(d) for d in run_dirs]
    return pd.concat([df for df, _ in loaded], ignore_index=True), [meta for _, meta in loaded]


def load_report_inputs(run_dirs: list[Path]) -> ReportInputs:
    """Results, run metadata and the per-ticket artifacts of every case (first run holding a case wins)."""
    loaded = [_load_run(d) for d in run_dirs]
    df = pd.concat([f for f, _ in loaded], ignore_index=True)
    metas = [m for _, m in loaded]
    arts: list[TicketArtifacts] = []
    layers: list[LayerTable] = []
    seen: set[str] = set()
    for d, (own, meta) in zip(run_dirs, loaded):
        run_id = str(meta.get("run_id", Path(d).name))
        cases = [c for c in df.loc[df["run_id"].astype(str) == run_id, "case_id"].astype(str).unique()]
        if not cases:  # run_id missing from the table: take the cases of this directory's csv
            cases = list(own["case_id"].dropna().astype(str).unique())
        new = [c for c in cases if c not in seen]
        seen.update(new)
        arts.extend(load_run_artifacts(Path(d), new, run_id))
        layers.extend(load_layer_tables(Path(d), own[own["case_id"].astype(str).isin(new)]))
    return ReportInputs(df, metas, arts, layers)


def case_labels(df: pd.DataFrame) -> dict[str, str]:
    """case_id → "model method s=0.5", for legends."""
    labels = {}
    for r in df.drop_duplicates("case_id").to_dict("records"):
        s = r.get("target_sparsity")
        sp = f" s={s:g}" if isinstance(s, int | float) and s == s else ""
        labels[str(r["case_id"])] = f"{r.get('model', '')} {r.get('method', '')}{sp}".strip()
    return labels


def _figure(title: str, draw: Callable[[], str | None], empty_note: str) -> Figure:
    """One figure; values a plot cannot draw (1e308 latencies, ...) leave that figure out with a note instead of
    failing the whole report: the table still shows them as written."""
    try:
        return Figure(title, draw(), empty_note)
    except Exception as exc:  # matplotlib's errors on absurd data have no common base
        log.warning("figure %r left out: %s: %s", title, type(exc).__name__, exc)
        return Figure(title, None, f"could not be drawn from these values ({type(exc).__name__})")


def figures(inputs: ReportInputs) -> list[Figure]:
    df, arts = inputs.df, inputs.artifacts
    labels = case_labels(df)
    # shown only where several precisions were measured: a one-precision report stays as it was
    precision = [_figure("Precision: combined speedup and accuracy change", lambda: plots.precision_gain(df), "")]
    return [
        _figure("Accuracy vs sparsity", lambda: plots.accuracy_vs_sparsity(df), "no accuracy in these results"),
        _figure("Latency and speedup vs sparsity", lambda: plots.speed_vs_sparsity(df), "no latency in these results"),
        *(precision if df["precision"].nunique() > 1 else []),
        _figure(
            "Energy per inference and per training epoch",
            lambda: plots.energy_per_device(df),
            "no energy: no power source on these devices (see power_source and power_note)",
        ),
        _figure("Early-Bird mask distance", lambda: plots.eb_heatmaps(arts, labels), "no EB mask distances stored"),
        _figure("Zero kernels per layer", lambda: plots.zero_kernels(arts, labels), "no pruned conv kernels stored"),
        _figure(
            "MPT score distributions",
            lambda: plots.score_distributions(arts, labels),
            "no MPT score histograms stored",
        ),
    ]


def _x(v: float | None, spec: str = ".2f") -> str:
    return "–" if v is None else format(v, spec)


def layer_sections(inputs: ReportInputs) -> list[LayerSection]:
    """ "Where the time goes": per ticket (dense cases aside) and batch size, its layers beside the dense reference's,
    read from its layers file as written."""
    labels = case_labels(inputs.df)
    dense = set(inputs.df.loc[inputs.df["method"] == "dense", "case_id"].astype(str))
    out = []
    for t in inputs.layers:
        if t.case_id in dense:
            continue
        title = f"{labels.get(t.case_id, t.case_id)} b{t.batch_size}"
        fig = _figure(title, partial(plots.layer_times, t.rows, title), "no per-layer times")
        facts = (
            f"realization {_x(t.realization)}; the per-layer times add up to {_x(t.coverage)} of the timed p50; "
            f"profiling slowed a call by {_x(None if t.overhead is None else 100 * t.overhead, '.0f')} %"
        )
        cols = ["layer", "kind", "mac_reduction", "time_reduction", "realization", "lost_ms"]
        losses = t.losses[cols].astype(object).where(t.losses[cols].notna(), None).to_dict("records")
        out.append(LayerSection(title, fig, facts, losses))
    return out


def render_html(
    df: pd.DataFrame,
    metas: list[dict],
    title: str = "ticketbench report",
    artifacts: list[TicketArtifacts] | None = None,
    layers: list[LayerTable] | None = None,
) -> str:
    inputs = ReportInputs(df, metas, artifacts or [], layers or [])
    figs = figures(inputs)
    table = df.drop(columns=[c for c in ("run_id",) if c in df and df["run_id"].nunique() == 1])
    return (
        template_env()
        .get_template("report.html.j2")
        .render(
            title=title,
            figures=figs,
            columns=list(table.columns),
            rows=table.astype(object).where(table.notna(), None).to_dict("records"),
            metas=metas,
            fmt=fmt_cell,
            summary=[
                (title, list(t.columns), t.astype(object).where(t.notna(), None).to_dict("records"))
                for title, t in summary_tables(df)
            ],
            banner=disturbance_banner(df),
            disturbed=disturbed_rows(df),
            layer_sections=layer_sections(inputs),
        )
    )


FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")  # what makes a spreadsheet read a cell as a formula (OWASP)


def spreadsheet_safe(df: pd.DataFrame) -> pd.DataFrame:
    """A copy whose text cells cannot run as formulas when the CSV is opened in a spreadsheet (OWASP "CSV
    injection": `=HYPERLINK(…)`, `=cmd|…`): a text cell starting with = + - @ tab or CR gets a leading '.
    Numbers stay numbers. For CSV handed to people (`report --csv`), never results.csv: that is the data
    contract, read back as written."""
    out = df.copy()
    for col in out.columns:
        if not pd.api.types.is_numeric_dtype(out[col]):
            out[col] = out[col].map(lambda v: "'" + v if isinstance(v, str) and v.startswith(FORMULA_STARTS) else v)
    return out


def write_csv(df: pd.DataFrame, path: Path) -> Path:
    """The combined results table, contract columns first in contract order, then any extra columns; text cells
    neutralised for spreadsheets (`spreadsheet_safe`)."""
    table = df.reindex(columns=COLUMNS + [c for c in df if c not in COLUMNS])
    atomic_write_text(Path(path), spreadsheet_safe(table).to_csv(index=False))
    return Path(path)


def write_report(run_dirs: list[Path], html_path: Path, csv_path: Path | None = None) -> Path:
    inputs = load_report_inputs([Path(d) for d in run_dirs])
    html = render_html(inputs.df, inputs.metas, artifacts=inputs.artifacts, layers=inputs.layers)
    atomic_write_text(Path(html_path), html)
    if csv_path is not None:
        write_csv(inputs.df, csv_path)
    return Path(html_path)
