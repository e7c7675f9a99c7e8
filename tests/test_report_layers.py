"""The report's "Where the time goes": per ticket, its layers file read as written (never recomputed), the three
layers that lose the most, and layers files named by a hostile results.csv left out instead of read."""

from __future__ import annotations

import re

import pandas as pd
import pytest
from test_report import make_run_dir

from ticketbench.reports.html import write_report
from ticketbench.reports.layers import load_layer_tables

pytestmark = pytest.mark.e2e  # each test renders a whole HTML report

HEADER = (
    "layer,kind,macs_dense,macs,mac_reduction,dense_ms,ticket_ms,time_reduction,realization,lost_ms,ticket_share,"
    "dense_runtime_layers,ticket_runtime_layers\n"
)
# lost_ms as the runner writes it; the report must rank by this column, not recompute it
TABLE = HEADER + (
    "features.0,conv,400,100,4,4,2,2,0.5,1,0.4,/a,/a\n"
    "features.3,conv,200,50,4,2,0.5,4,1,0,0.1,/b,/b\n"
    "features.6:MaxPool,other,,,,0.2,0.3,0.667,,0.1,0.06,/c,/c\n"
    "ReorderOutput,overhead,,,,0.5,0.75,0.667,,0.25,0.15,ReorderOutput,ReorderOutput_token_3\n"
    "classifier,linear,10,10,1,0.1,0.2,0.5,0.5,0.1,0.04,/g,/g\n"
)


def _with_layers(tmp_path, files: dict[tuple[str, int], str]):
    d = make_run_dir(tmp_path / "run")
    df = pd.read_csv(d / "results.csv")
    df["layers_file"] = None
    for (case, bs), rel in files.items():
        hit = (df["case_id"] == case) & (df["batch_size"] == bs)
        df.loc[hit, ["layers_file", "layers_coverage", "layers_profile_overhead"]] = [rel, 0.87, 0.12]
    df.to_csv(d / "results.csv", index=False)
    return d


def test_each_ticket_gets_its_layers_figure_and_three_biggest_losses(tmp_path):
    rel = "samples/c-eb50-b8-layers.csv"
    d = _with_layers(tmp_path, {("c-eb50", 8): rel, ("c-dense", 8): "samples/c-dense-b8-layers.csv"})
    (d / rel).write_text(TABLE)
    (d / "samples/c-dense-b8-layers.csv").write_text(TABLE)
    html = write_report([d], tmp_path / "r.html").read_text()
    assert 'id="layers"' in html and "Where the time goes" in html
    section = html[html.index('id="layers"') : html.index("<h2>Results</h2>")]
    assert section.count("<h3>") == 1 and "small_cnn eb s=0.5 b8" in section  # the dense case has no section
    assert "the per-layer times add up to 0.87 of the timed p50; profiling slowed a call by 12 %" in section
    losses = re.findall(r"<tr><td>([^<]+)</td><td>(\w+)</td>", section.split('class="summary losses"')[1])
    assert losses == [("features.0", "conv"), ("ReorderOutput", "overhead"), ("features.6:MaxPool", "other")]
    assert "<svg" in section and "MAC reduction vs time reduction" in section


def test_layers_files_a_hostile_results_csv_names_are_left_out(tmp_path):
    outside = tmp_path / "outside.csv"
    outside.write_text(TABLE)
    d = _with_layers(
        tmp_path,
        {
            ("c-eb50", 1): "../outside.csv",  # leads out of the run directory
            ("c-eb50", 8): "/dev/zero",  # absolute, and a device
            ("c-mag50", 1): "samples/missing-layers.csv",
            ("c-mag50", 8): "samples/bad-layers.csv",  # not a layers table
            ("c-mpt50", 1): "samples/good-layers.csv",
        },
    )
    (d / "samples/bad-layers.csv").write_text("a,b\n1,2\n")
    (d / "samples/good-layers.csv").write_text(TABLE)
    tables = load_layer_tables(d, pd.read_csv(d / "results.csv"))
    assert [(t.case_id, t.batch_size) for t in tables] == [("c-mpt50", 1)]
    html = write_report([d], tmp_path / "r.html").read_text()
    assert html.count("<h3>small_cnn") == 1
