"""Small self-contained pages (comparison, nightly summary): lines of text, inline SVG figures, plain tables.

Also renders the same tables as GitHub markdown, for CI logs and pull requests.
"""

from __future__ import annotations

from importlib import resources

import jinja2
import pandas as pd


def template_env() -> jinja2.Environment:
    """Templates of reports/templates, HTML-escaped by default."""
    return jinja2.Environment(
        loader=jinja2.FunctionLoader(
            lambda n: resources.files("ticketbench.reports.templates").joinpath(n).read_text()
        ),
        autoescape=jinja2.select_autoescape(["html", "j2"]),
    )


def fmt_cell(v) -> str:
    """A table cell: empty for missing values, 4 significant digits for floats."""
    if v is None or (isinstance(v, float) and v != v):
        return ""
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def markdown_table(df: pd.DataFrame) -> str:
    if df.empty:
        return "_(none)_\n"
    cols = [str(c) for c in df.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for rec in df.astype(object).to_dict("records"):
        lines.append("| " + " | ".join(fmt_cell(v).replace("|", "\\|") for v in rec.values()) + " |")
    return "\n".join(lines) + "\n"


def render_page(
    title: str,
    lines: list[str],
    tables: list[tuple[str, pd.DataFrame, pd.Series | None]],
    figures: list[tuple[str, str | None]] | None = None,  # a None figure (nothing to plot) is left out
) -> str:
    """tables: (heading, frame, bad) where `bad` marks rows to highlight (regressions, failures)."""
    rendered = []
    for name, df, bad in tables:
        flags = list(bad) if bad is not None else [False] * len(df)
        rows = [
            ("bad" if flag else "", [fmt_cell(v) for v in rec.values()])
            for flag, rec in zip(flags, df.astype(object).to_dict("records"))
        ]
        rendered.append((name, [str(c) for c in df.columns], rows))
    return (
        template_env()
        .get_template("page.html.j2")
        .render(title=title, lines=lines, tables=rendered, figures=[f for f in figures or [] if f[1]])
    )
