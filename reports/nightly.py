"""The nightly farm summary: outcome per device, status history, and metric trends over nights per device."""

from __future__ import annotations

import pandas as pd

from ticketbench.reports import plots
from ticketbench.reports.pages import markdown_table, render_page

OUTCOME_COLUMNS = ["device", "suite", "status", "regressions", "run_id", "baseline_run_id", "message"]
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


def night_markdown(night: str, outcomes: pd.DataFrame, nights: pd.DataFrame) -> str:
    return "".join(
        [
            f"# ticketbench nightly {night}\n\n**{_headline(night, outcomes)[0]}**\n\n",
            markdown_table(outcomes.reindex(columns=OUTCOME_COLUMNS)),
            "\n## History\n\n",
            markdown_table(_history(nights)),
        ]
    )


def night_html(night: str, outcomes: pd.DataFrame, nights: pd.DataFrame, trends: dict[str, pd.DataFrame]) -> str:
    figures = [
        (f"Trend: {TREND_LABELS.get(m, m)}", plots.trend(df, TREND_LABELS.get(m, m))) for m, df in trends.items()
    ]
    return render_page(
        f"ticketbench nightly {night}",
        _headline(night, outcomes),
        [
            ("Outcomes", outcomes.reindex(columns=OUTCOME_COLUMNS), outcomes["status"] != "ok"),
            ("History", _history(nights), None),
        ],
        figures,
    )
