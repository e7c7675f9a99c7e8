"""The comparison of two runs as markdown and HTML, from the findings table of bench.regression."""

from __future__ import annotations

import html
import re
from collections.abc import Sequence

import pandas as pd

from ticketbench.reports.pages import markdown_table, render_page
from ticketbench.results import is_true

COLUMNS = ["case_id", "device", "batch_size", "metric", "baseline", "current", "change", "spread", "baseline_runs",
           "floor", "p_value", "test", "verdict", "disturbed"]  # fmt: skip
_MD_SPECIAL = re.compile(r"([\\`*_\[\]~])")  # `|` is escaped by markdown_table itself


def md_escape(text: str) -> str:
    """Text as inert markdown: HTML escaped (no tag or entity survives), markdown punctuation backslash-escaped
    (no emphasis, link, code span or table cell break). Case names come from other people's suites and runs."""
    return _MD_SPECIAL.sub(r"\\\1", html.escape(text, quote=False)).replace("\n", " ")


def _escaped(df: pd.DataFrame) -> pd.DataFrame:
    return df.astype(object).map(lambda v: md_escape(v) if isinstance(v, str) else v)


def _summary(table: pd.DataFrame, baseline: str, current: str, notes: Sequence[str] = ()) -> list[str]:
    """Head line, the runs, the verdict counts, then the comparison's notes (thread counts that differ) and how
    many rows were disturbed."""
    flagged = table[table["verdict"].isin(["regression", "failed"])]
    head = (
        f"REGRESSION: {len(flagged)} finding(s) flagged"
        if len(flagged)
        else "No significant regression above the floors"
    )
    counts = ", ".join(f"{v}: {n}" for v, n in table["verdict"].value_counts().sort_index().items())
    lines = [head, f"baseline {baseline} → current {current}", f"verdicts: {counts or 'nothing compared'}", *notes]
    disturbed = table["disturbed"].map(is_true) if "disturbed" in table else pd.Series(False, index=table.index)
    if disturbed.any():
        rows = table[disturbed].drop_duplicates(["case_id", "batch_size"])
        lines.append(f"{len(rows)} row(s) disturbed in either run: their time and energy are reported, not gated")
    return lines


def _view(table: pd.DataFrame) -> pd.DataFrame:
    return table.reindex(columns=[c for c in COLUMNS if c in table])


def comparison_markdown(table: pd.DataFrame, baseline: str, current: str, notes: Sequence[str] = ()) -> str:
    lines = [md_escape(x) for x in _summary(table, baseline, current, notes)]
    flagged = table["verdict"].isin(["regression", "failed"])
    out = [f"# ticketbench compare\n\n**{lines[0]}**\n", *(f"{x}\n" for x in lines[1:])]
    if flagged.any():
        out += ["\n## Flagged\n\n", markdown_table(_escaped(_view(table[flagged])))]
    out += ["\n## All findings\n\n", markdown_table(_escaped(_view(table)))]
    return "".join(out)


def comparison_html(table: pd.DataFrame, baseline: str, current: str, notes: Sequence[str] = ()) -> str:
    view = _view(table)
    bad = table["verdict"].isin(["regression", "failed"])
    return render_page("ticketbench compare", _summary(table, baseline, current, notes), [("Findings", view, bad)])
