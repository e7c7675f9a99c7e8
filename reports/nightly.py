"""The nightly farm summary: outcome per device, status history, metric trends over nights per device, and the
steps in those trends that persisted (bench.trend.trend_steps: one bad night is not a step)."""

from __future__ import annotations

import pandas as pd

from ticketbench.reports import plots
from ticketbench.reports.compare import md_escape
from ticketbench.reports.pages import markdown_table, render_page

OUTCOME_COLUMNS = ["device", "suite", "status", "regressions", "run_id", "baseline_run_id", "message"]
STEP_COLUMNS = ["farm_device", "suite", "case_id", "batch_size", "metric", "night", "before", "after", "change",
                "nights", "worse"]  # fmt: skip
STEPS_HEADING = "Steps that persisted (≥ 2 nights at the new level)"
TREND_LABELS = {
    "latency_ms_p50": "latency p50 (ms)",
    "accuracy_top1": "top-1 accuracy (%)",
    "energy_mj_per_inference": "energy per inference (mJ)",
}


def _headline(night: str, outcomes: pd.DataFrame) -> list[str]:
    counts = outcomes["status"].value_counts()
    parts = ", ".join(f"{counts.get(s, 0)} {s}" for s in ("ok", "regressed", "failed", "down"))
    verdict = "ALL OK" if counts.get("ok", 0) == len(outcomes) else "ATTENTION"
    return [f"{verdict}: night {night}: {parts}"]


def _history(nights: pd.DataFrame) -> pd.DataFrame:
    """Status per night (rows) and device/suite (columns)."""
    if nights.empty:
        return nights
    col = nights["farm_device"] + "/" + nights["suite"]
    return (
        nights.assign(device=col)
        .pivot_table(index="night", columns="device", values="status", aggfunc="first")
        .reset_index()
    )


def _md(df: pd.DataFrame) -> str:
    return markdown_table(df.astype(object).map(lambda v: md_escape(v) if isinstance(v, str) else v))


def _steps(steps: pd.DataFrame | None) -> pd.DataFrame:
    return (steps if steps is not None else pd.DataFrame()).reindex(columns=STEP_COLUMNS)


def night_markdown(night: str, outcomes: pd.DataFrame, nights: pd.DataFrame, steps: pd.DataFrame | None = None) -> str:
    return "".join(
        [
            f"# ticketbench nightly {md_escape(night)}\n\n**{md_escape(_headline(night, outcomes)[0])}**\n\n",
            _md(outcomes.reindex(columns=OUTCOME_COLUMNS)),
            f"\n## {STEPS_HEADING}\n\n",
            _md(_steps(steps)),
            "\n## History\n\n",
            _md(_history(nights)),
        ]
    )


def night_html(
    night: str,
    outcomes: pd.DataFrame,
    nights: pd.DataFrame,
    trends: dict[str, pd.DataFrame],
    steps: pd.DataFrame | None = None,
) -> str:
    figures = [
        (f"Trend: {TREND_LABELS.get(m, m)}", plots.trend(df, TREND_LABELS.get(m, m))) for m, df in trends.items()
    ]
    st = _steps(steps)
    return render_page(
        f"ticketbench nightly {night}",
        _headline(night, outcomes),
        [
            ("Outcomes", outcomes.reindex(columns=OUTCOME_COLUMNS), outcomes["status"] != "ok"),
            (STEPS_HEADING, st, st["worse"].fillna(False).astype(bool)),
            ("History", _history(nights), None),
        ],
        figures,
    )
