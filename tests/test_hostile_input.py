"""Hostile and careless input (issue 11): every probe ends in one line on stderr and exit 2 (or 1 where a run
legitimately fails), no traceback, and no file changed that the command should not touch.

Most probes call `main()` in-process (fast); `run_cli` runs a few as real subprocesses to prove that the whole
process prints no traceback.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import onnx
import pandas as pd
import pytest
from onnx import TensorProto, helper
from test_report import make_run_dir

from ticketbench.bench import runner as runner_mod
from ticketbench.bench.cli import main
from ticketbench.files import InputError, safe_component
from ticketbench.reports.artifacts import load_run_artifacts
from ticketbench.results import COLUMNS

REPO = Path(__file__).resolve().parents[1]
TINY = Path(__file__).parent / "data" / "tiny_suite.toml"


def run_cli(*args: str, cwd: Path = REPO, env: dict | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "bench", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


def snapshot(root: Path) -> dict[str, str]:
    """relative path → sha256 of every file under root: to prove a command changed nothing."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(Path(root).rglob("*"))
        if p.is_file()
    }


def one_error_line(err: str, needle: str = "") -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ") and "Traceback" not in err, err
    assert needle in lines[0], lines[0]
    return lines[0]


def assert_usage_error(capsys, args: list[str], needle: str = "") -> str:
    assert main(args) == 2
    return one_error_line(capsys.readouterr().err, needle)


def make_ticket(directory: Path, artifacts: dict | None = None) -> Path:
    """A small untrained magnitude-style ticket saved as the pipeline saves one (no training: fast)."""
    import numpy as np
    import torch

    from ticketbench.models.tickets import Ticket, TicketConfig
    from ticketbench.models.zoo import create_model

    torch.manual_seed(0)
    kwargs = {"num_classes": 10, "in_channels": 1, "width": 8}
    model = create_model("small_cnn", **kwargs)
    masks = {n: (p.abs() > p.abs().median()).float() for n, p in model.named_parameters() if p.dim() > 1}
    cfg = TicketConfig("small_cnn", "digits", "magnitude", 0.5, options={"model_kwargs": {"width": 8}})
    arts = artifacts if artifacts is not None else {"eb_mask_distances": np.eye(3), "hist": torch.ones(4)}
    prov = {"model_kwargs": kwargs, "input_shape": [1, 8, 8], "note": np.float32(1.5)}
    Ticket(model, masks, cfg, 91.0, [{"epoch": 1, "loss": np.float64(0.3)}], prov, arts).save(directory)
    return directory


@pytest.fixture
def saved_ticket(tmp_path) -> Path:
    return make_ticket(tmp_path / "ticket")


# -- 4: outputs that destroy inputs -------------------------------------------------------------------------
@pytest.fixture
def two_runs(tmp_path):
    a, b = make_run_dir(tmp_path / "a", "RA"), make_run_dir(tmp_path / "b", "RB", device="gpu")
    return a, b


@pytest.mark.parametrize(
    "flag, target, needle",
    [
        ("--csv", "a/results.csv", "is an input"),
        ("--html", "a/results.csv", "is an input"),
        ("--csv", "b/results.csv", "is an input"),
        ("--html", "a/run.json", "is an input"),
        ("--html", "a/tickets/c-dense/cost.json", "own files"),
        ("--csv", "b/samples/new.csv", "own files"),
    ],
)
def test_report_refuses_outputs_that_overwrite_its_inputs(two_runs, tmp_path, capsys, flag, target, needle):
    before = snapshot(tmp_path)
    a, b = two_runs
    assert_usage_error(capsys, ["report", str(a), str(b), flag, str(tmp_path / target)], needle)
    assert snapshot(tmp_path) == before


def test_report_refuses_a_symlink_to_an_input_and_one_path_twice(two_runs, tmp_path, capsys):
    a, _ = two_runs
    (tmp_path / "link.csv").symlink_to(a / "results.csv")
    before = snapshot(a)
    assert_usage_error(capsys, ["report", str(a), "--csv", str(tmp_path / "link.csv")], "is an input")
    same = str(tmp_path / "out.x")
    assert_usage_error(capsys, ["report", str(a), "--csv", same, "--html", same], "same file")
    assert snapshot(a) == before and not (tmp_path / "out.x").exists()


@pytest.mark.e2e
def test_report_csv_beside_the_runs_still_works(two_runs, tmp_path):
    a, b = two_runs
    assert main(["report", str(a), str(b), "--csv", str(tmp_path / "all.csv")]) == 0
    assert len(pd.read_csv(tmp_path / "all.csv")) == 2 * len(pd.read_csv(a / "results.csv"))


def test_compare_refuses_outputs_over_its_inputs(two_runs, capsys):
    a, b = two_runs
    before = snapshot(a.parent)
    assert_usage_error(capsys, ["compare", str(a), str(b), "--md", str(a / "results.csv")], "is an input")
    assert_usage_error(capsys, ["compare", str(a), str(b), "--html", str(b / "run.json")], "is an input")
    assert snapshot(a.parent) == before


def test_export_refuses_out_over_the_ticket(tmp_path, capsys, saved_ticket):
    before = snapshot(saved_ticket)
    assert_usage_error(capsys, ["export", str(saved_ticket), "--out", str(saved_ticket / "ticket.pt")], "is an input")
    assert snapshot(saved_ticket) == before


# -- 5: ids and names that become paths ---------------------------------------------------------------------
@pytest.mark.parametrize("bad", ["../x", "..", ".", "a/b", "a\\b", "", "-x", ".hidden", "x\n", "a b", "x" * 201, 3])
def test_safe_component_rejects_anything_but_one_plain_name(bad):
    with pytest.raises(InputError):
        safe_component(bad)


def test_safe_component_accepts_case_ids_and_nights():
    for good in ("small_cnn-digits-magnitude-s0.50-1a2b3c", "20261128T101500Z", "nightly_2026-11-28"):
        assert safe_component(good) == good


def test_case_id_from_results_csv_never_reads_outside_the_run(tmp_path, capsys):
    run = make_run_dir(tmp_path / "run", artifacts=False)
    outside = tmp_path / "x"
    outside.mkdir()
    (outside / "cost.json").write_text(
        json.dumps({"ticket": {"layers": [{"name": "SECRET", "kernels": 9, "zero_kernels": 1}]}})
    )
    (run / "tickets").mkdir(exist_ok=True)
    df = pd.read_csv(run / "results.csv")
    df.loc[0, "case_id"] = "../../x"
    df.to_csv(run / "results.csv", index=False)
    assert load_run_artifacts(run, ["../../x", "../x"]) == []
    assert main(["report", str(run), "--html", str(tmp_path / "r.html")]) == 0
    assert "SECRET" not in (tmp_path / "r.html").read_text()


def test_farm_night_outside_the_farm_folder_is_refused(tmp_path, capsys):
    inv = tmp_path / "farm.toml"
    inv.write_text(f'[farm]\nout = "{tmp_path / "farm"}"\n[[device]]\nname = "d"\nkind = "cpu"\n')
    assert_usage_error(capsys, ["farm", "nightly", "--inventory", str(inv), "--night", "../escape"], "--night")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["farm.toml"]


# -- 6 and 8: suites validated up front ----------------------------------------------------------------------
BASE = '[defaults]\nmodel = "small_cnn"\ndataset = "digits"\nmethod = "magnitude"\n'


@pytest.mark.parametrize(
    "body, needle",
    [
        ("[measure]\nbatch_sizes = [0]\n[[cases]]\nsparsity = 0.5\n", "batch_sizes"),
        ("[measure]\nbatch_sizes = []\n[[cases]]\n", "batch_sizes"),
        ('[measure]\nbatch_sizes = "1"\n[[cases]]\n', "batch_sizes"),
        ("[measure]\nbatch_sizes = [1.5]\n[[cases]]\n", "batch_sizes"),
        ("[measure]\nmin_iterations = 0\n[[cases]]\n", "min_iterations"),
        ('[measure]\nprecision = "fp64"\n[[cases]]\n', "precision"),
        ("[measure]\nmin_seconds = -1\n[[cases]]\n", "min_seconds"),
        ('[[cases]]\nsparsity = "abc"\n', "sparsity"),
        ("[[cases]]\nsparsity = -0.1\n", "sparsity"),
        ("[[cases]]\nsparsity = 1.5\n", "sparsity"),
        ("[[cases]]\nsparsity = [0.5, 1.0]\n", "sparsity"),
        ("[[cases]]\nmodel = 1\n", "unknown model"),
        ('[[cases]]\ndataset = ["x"]\n', "unknown dataset"),
        ('[[cases]]\nmodel = "resnet9000"\n', "unknown model"),
        ('[[cases]]\nmethod = "magic"\n', "unknown method"),
        ('[[cases]]\ndataset = "mnist"\n', "unknown dataset"),
        ('[[cases]]\nepochs = "ten"\n', "epochs"),
        ("[[cases]]\nepochs = -1\n", "epochs"),
        ("[[cases]]\nlr = 0\n", "lr"),
        ("[[cases]]\nbatch_size = 0\n", "batch_size"),
        ("[[cases]]\noptions = 3\n", "options"),
        ('cases = "x"\n', "cases"),
        ("name = 3\n[[cases]]\n", "name"),
    ],
)
def test_bad_suite_values_are_one_line_before_anything_runs(tmp_path, capsys, body, needle):
    suite = tmp_path / "s.toml"
    suite.write_text(BASE + body)
    out = tmp_path / "out"
    assert_usage_error(capsys, ["run", "--suite", str(suite), "--out", str(out), "-q"], needle)
    assert not out.exists()


def test_unreadable_suite_files(tmp_path, capsys):
    (tmp_path / "dir.toml").mkdir()
    assert_usage_error(capsys, ["run", "--suite", str(tmp_path / "dir.toml")], "is a directory")
    (tmp_path / "bin.toml").write_bytes(b"\xff\xfe\x00name")
    assert_usage_error(capsys, ["run", "--suite", str(tmp_path / "bin.toml")], "not UTF-8")


def test_out_that_cannot_be_written(tmp_path, capsys):
    (tmp_path / "file").write_text("keep")
    assert_usage_error(capsys, ["run", "--suite", str(TINY), "--out", str(tmp_path / "file" / "sub")], "--out")
    assert (tmp_path / "file").read_text() == "keep"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_out_under_a_read_only_directory(tmp_path, capsys):
    ro = tmp_path / "ro"
    ro.mkdir(mode=0o555)
    assert_usage_error(capsys, ["run", "--suite", str(TINY), "--out", str(ro / "run")], "cannot write")


def _fake_run(root: Path, suite: Path) -> Path:
    """A finished run of `suite` as the runner records it (run.json + results.csv), made without running it."""
    from dataclasses import asdict

    from ticketbench.bench.suite import load_suite

    s = load_suite(str(suite))
    root.mkdir(parents=True)
    meta = {"run_id": "R1", "suite": {"name": s.name, "source": str(suite), "measure": asdict(s.measure)}}
    meta["cases"] = [c.case_id for c in s.cases]
    (root / "run.json").write_text(json.dumps(meta))
    rows = [
        dict.fromkeys(COLUMNS)
        | dict(run_id="R1", case_id=c.case_id, model="small_cnn", dataset="digits", method=c.ticket.method)
        | dict(device="cpu", backend="ort-cpu", precision="fp32", batch_size=b, status="ok")
        for c in s.cases
        for b in s.measure.batch_sizes
    ]
    pd.DataFrame(rows, columns=COLUMNS).to_csv(root / "results.csv", index=False)
    return root


@pytest.mark.parametrize(
    "change, needle",
    [
        (("batch_sizes = [1, 4]", "batch_sizes = [1, 8]"), "[measure] batch_sizes"),
        (("min_iterations = 5", "min_iterations = 6"), "[measure] min_iterations"),
        (("sparsity = [0.8]", "sparsity = [0.8, 0.9]"), "cases differ: 1 new case"),
        (("epochs = 2", "epochs = 3"), "cases differ"),
    ],
)
def test_resume_with_a_different_suite_is_refused_naming_the_difference(tmp_path, capsys, change, needle):
    run = _fake_run(tmp_path / "run", TINY)
    other = tmp_path / "other.toml"
    other.write_text(TINY.read_text().replace(*change))
    before = snapshot(run)
    line = assert_usage_error(capsys, ["run", "--suite", str(other), "--out", str(run), "--resume", "-q"], needle)
    assert "differs" in line
    assert snapshot(run) == before


def test_resume_with_another_precision_is_refused(tmp_path, capsys):
    run = _fake_run(tmp_path / "run", TINY)
    args = ["run", "--suite", str(TINY), "--out", str(run), "--resume", "--precision", "int8", "-q"]
    assert_usage_error(capsys, args, "precision")


@pytest.mark.parametrize(
    "name, content, needle",
    [
        ("results.csv", "\x00\x01garbage,\n1,2,3\n", "results.csv"),
        ("results.csv", "run_id,case_id\nR1,c\n", "missing columns"),
        ("run.json", "{not json", "not valid JSON"),
        ("run.json", "[1, 2]", "expected a JSON object"),
    ],
)
def test_resume_over_corrupt_run_files(tmp_path, capsys, name, content, needle):
    run = _fake_run(tmp_path / "run", TINY)
    (run / name).write_text(content)
    before = snapshot(run)
    assert_usage_error(capsys, ["run", "--suite", str(TINY), "--out", str(run), "--resume", "-q"], needle)
    assert snapshot(run) == before


# -- 8: report and compare on malformed files ----------------------------------------------------------------
def _break(run: Path, how: str) -> None:
    csv = run / "results.csv"
    if how == "missing-columns":
        pd.read_csv(csv).drop(columns=["status", "batch_size"]).to_csv(csv, index=False)
    elif how == "garbage":
        csv.write_bytes(os.urandom(64) + b"\n\xff\xfe")
    elif how == "extra-fields":
        csv.write_text(csv.read_text().replace("\n", ",x\n", 3).replace(",x\n", "\n", 1))
    elif how == "bad-number":
        df = pd.read_csv(csv).astype(object)
        df.loc[1, "latency_ms_p50"] = "fast"
        df.to_csv(csv, index=False)
    elif how == "bad-status":
        df = pd.read_csv(csv)
        df.loc[0, "status"] = "<b>ok</b>"
        df.to_csv(csv, index=False)
    elif how == "empty":
        csv.write_text("")
    elif how == "run-json":
        (run / "run.json").write_text("not json at all")
    elif how == "run-json-list":
        (run / "run.json").write_text("[]")


BREAKS = [
    "missing-columns",
    "garbage",
    "extra-fields",
    "bad-number",
    "bad-status",
    "empty",
    "run-json",
    "run-json-list",
]


@pytest.mark.parametrize("how", BREAKS)
def test_report_on_malformed_run_files(tmp_path, capsys, how):
    run = make_run_dir(tmp_path / "run")
    _break(run, how)
    before = snapshot(tmp_path)
    assert_usage_error(capsys, ["report", str(run), "--html", str(tmp_path / "r.html")], str(run))
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("how", BREAKS)
def test_compare_on_malformed_run_files(tmp_path, capsys, how):
    base, cur = make_run_dir(tmp_path / "base"), make_run_dir(tmp_path / "cur")
    _break(cur, how)
    before = snapshot(tmp_path)
    assert_usage_error(capsys, ["compare", str(base), str(cur)], str(cur))
    assert snapshot(tmp_path) == before


@pytest.mark.e2e
def test_cost_json_with_wrong_types_leaves_the_plot_out(tmp_path):
    run = make_run_dir(tmp_path / "run")
    for cost in (run / "tickets").glob("*/cost.json"):
        cost.write_text(json.dumps({"ticket": {"layers": [{"name": "a", "kernels": "many", "zero_kernels": [1]}]}}))
    for art in (run / "tickets").glob("*/artifacts.json"):
        art.write_text(json.dumps({"eb_epoch": 10**400, "mask_distance_matrix": [[1, "x"]], "score_hist": {"a": 5}}))
    assert main(["report", str(run), "--html", str(tmp_path / "r.html")]) == 0
    assert "no pruned conv kernels stored" in (tmp_path / "r.html").read_text()


def test_db_that_is_not_sqlite(tmp_path, capsys):
    db = tmp_path / "not.sqlite"
    db.write_bytes(b"this is not an SQLite database" * 100)
    before = db.read_bytes()
    assert_usage_error(capsys, ["compare", "RUN-A", "RUN-B", "--db", str(db)], "not a database")
    inv = tmp_path / "farm.toml"
    inv.write_text('[[device]]\nname = "d"\nkind = "cpu"\n')
    assert_usage_error(capsys, ["farm", "nightly", "--inventory", str(inv), "--db", str(db)], "not a database")
    assert db.read_bytes() == before


@pytest.mark.parametrize(
    "device, needle",
    [
        ('timeout_s = "soon"', "timeout_s"),
        ("timeout_s = -5", "timeout_s"),
        ("labels = 3", "labels"),
        ("run_args = [1]", "run_args"),
        ('suites = "quick"', "suites"),
        ('host = "-E.pwned"', "starts with '-'"),
        ('host = "u@h;touch x"', "host"),
        ('host = "u@h h"', "host"),
    ],
)
def test_farm_inventory_values_are_checked(tmp_path, capsys, device, needle):
    inv = tmp_path / "farm.toml"
    inv.write_text(f'[farm]\nout = "{tmp_path / "farm"}"\n[[device]]\nname = "d"\nkind = "cpu"\n{device}\n')
    assert_usage_error(capsys, ["farm", "nightly", "--inventory", str(inv)], needle)
    assert not (tmp_path / "farm").exists()


# -- 8: measure on ONNX files it cannot feed -------------------------------------------------------------------
def _bytes(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _onnx(path: Path, elem=TensorProto.FLOAT, dims=(1, 4), inputs: bool = True) -> Path:
    x = helper.make_tensor_value_info("x", elem, list(dims))
    y = helper.make_tensor_value_info("y", elem, list(dims))
    node = helper.make_node("Identity", ["x" if inputs else "c"], ["y"])
    init = [] if inputs else [helper.make_tensor("c", elem, list(dims), [0] * int(__import__("math").prod(dims)))]
    graph = helper.make_graph([node], "g", [x] if inputs else [], [y], initializer=init)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


@pytest.mark.parametrize(
    "make, needle",
    [
        (lambda p: _bytes(p, b""), "empty file"),
        (lambda p: _bytes(p, bytes(range(256))), "not an ONNX model"),
        (lambda p: _onnx(p, inputs=False), "0 graph inputs"),
        (lambda p: _onnx(p, elem=TensorProto.INT64), "INT64"),
        (lambda p: _onnx(p, dims=(1, 100000, 100000)), "too large"),
    ],
)
def test_measure_on_onnx_it_cannot_feed(tmp_path, capsys, make, needle):
    path = make(tmp_path / "m.onnx")
    assert_usage_error(capsys, ["measure", str(path), "--device", "cpu", "--duration", "0.01"], needle)


# -- 7: one bad case never aborts the run ----------------------------------------------------------------------
def test_finalize_speedups_with_unhashable_values_does_not_raise():
    rows = [
        {"model": "m", "dataset": ["x"], "method": "dense", "status": "ok", "latency_ms_p50": 2.0, "batch_size": 1},
        {"model": "m", "dataset": ["x"], "method": "mag", "status": "ok", "latency_ms_p50": 1.0, "batch_size": 1},
    ]
    rows[1].update(acceleration_rate=4.0, macs_dense=8, macs=2)
    runner_mod.finalize_speedups(rows)
    assert rows[1]["speedup"] == 2.0 and rows[1]["realization"] == 0.5  # speedup / (macs_dense / macs)


def test_a_case_that_fails_still_gets_a_row_and_the_run_its_report(tmp_path, monkeypatch, capsys):
    """The first case's rows carry a value finalize_speedups cannot key on; the second case raises. Both are
    recorded, the run ends, its report is written: exit 1 (failed cases), no traceback."""
    from ticketbench.results import empty_row

    def fake(self, case, base):
        if case.ticket.method == "magnitude":
            raise RuntimeError("boom\nsecond line")
        return [empty_row(**{**base, "dataset": ["x"]}, batch_size=b, status="ok", latency_ms_p50=1.0)
                for b in self.suite.measure.batch_sizes]  # fmt: skip

    monkeypatch.setattr(runner_mod.Runner, "_measure_case", fake)
    out = tmp_path / "run"
    assert main(["run", "--suite", str(TINY), "--out", str(out), "--device", "cpu", "-q"]) == 1
    df = pd.read_csv(out / "results.csv")
    assert sorted(df["status"]) == ["failed", "failed", "ok", "ok"]
    assert (df.loc[df["status"] == "failed", "error"] == "RuntimeError: boom").all()
    assert (out / "report.html").is_file()


def test_a_failing_report_does_not_hide_the_run(tmp_path, monkeypatch, capsys):
    from ticketbench.reports import html as html_mod
    from ticketbench.results import empty_row

    monkeypatch.setattr(
        runner_mod.Runner,
        "_measure_case",
        lambda self, case, base: [empty_row(**base, batch_size=1, status="ok", latency_ms_p50=1.0)],
    )
    monkeypatch.setattr(html_mod, "write_report", lambda *a, **k: (_ for _ in ()).throw(ValueError("bad\nplot")))
    out = tmp_path / "run"
    assert main(["run", "--suite", str(TINY), "--out", str(out), "--device", "cpu", "-q"]) == 1
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("error")]
    assert err == ["error: report not written: ValueError: bad plot"]
    assert (out / "results.csv").is_file()


# -- a few probes as real processes: no traceback anywhere ---------------------------------------------------------
@pytest.mark.e2e
def test_probes_as_subprocesses_print_one_line_and_no_traceback(tmp_path):
    run = make_run_dir(tmp_path / "run")
    suite = tmp_path / "s.toml"
    suite.write_text(BASE + '[[cases]]\nsparsity = "abc"\n')
    before = snapshot(run)
    probes = [
        (["report", str(run), "--csv", str(run / "results.csv")], "is an input"),
        (["run", "--suite", str(suite), "--out", str(tmp_path / "o")], "sparsity"),
        (["measure", str(_onnx(tmp_path / "i.onnx", elem=TensorProto.INT64))], "INT64"),
    ]
    for args, needle in probes:
        res = run_cli(*args)
        assert res.returncode == 2, res.stderr
        one_error_line(res.stderr, needle)
    assert snapshot(run) == before and not (tmp_path / "o").exists()


def test_run_with_a_db_that_is_not_sqlite_stops_before_running(tmp_path, capsys):
    db = tmp_path / "not.sqlite"
    db.write_bytes(b"garbage" * 100)
    out = tmp_path / "run"
    assert_usage_error(capsys, ["run", "--suite", str(TINY), "--out", str(out), "--db", str(db), "-q"], "--db")
    assert not out.exists() and db.read_bytes() == b"garbage" * 100


def test_default_report_html_that_links_to_results_csv_is_refused(tmp_path, capsys):
    run = make_run_dir(tmp_path / "run")
    (run / "report.html").symlink_to(run / "results.csv")
    before = snapshot(run)
    assert_usage_error(capsys, ["report", str(run)], "is an input")
    assert snapshot(run) == before


def test_ticket_out_that_cannot_be_written(tmp_path, capsys):
    (tmp_path / "file").write_text("keep")
    args = ["ticket", "--model", "small_cnn", "--method", "dense", "--sparsity", "0", "--epochs", "0"]
    assert_usage_error(capsys, [*args, "--out", str(tmp_path / "file" / "t")], "--out")
    assert (tmp_path / "file").read_text() == "keep"


def test_one_line_never_spills_a_traceback():
    from ticketbench.files import one_line

    exc = RuntimeError("trtexec failed:\n  [E] bad\tnode\n\n")
    assert one_line(exc) == "trtexec failed: [E] bad node"
    assert one_line(exc, with_type=True) == "RuntimeError: trtexec failed: [E] bad node"
    assert one_line(ValueError()) == one_line(ValueError(), with_type=True) == "ValueError"
    assert len(one_line(OSError("x" * 1000))) == 300
