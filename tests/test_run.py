"""The whole pipeline end to end on the embedded digits: run dir, contract columns, resume, failures."""

import copy
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pandas as pd
import pytest
import torch

from ticketbench.bench import runner as runner_mod
from ticketbench.bench.cli import main
from ticketbench.devices.power import PowerReader
from ticketbench.models import pipeline
from ticketbench.results import COLUMNS, CONTRACT_COLUMNS

REPO = Path(__file__).resolve().parents[1]


ONNX_EXPORTS: list[str] = []  # every torch.onnx.export of the tiny run, by the exported module's class


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("run")
    suite = tmp / "tiny.toml"
    suite.write_text((Path(__file__).parent / "data" / "tiny_suite.toml").read_text())
    out = tmp / "out"
    real = torch.onnx.export
    with pytest.MonkeyPatch.context() as mp:  # a spy: every exporter of the run goes through torch.onnx.export
        mp.setattr(torch.onnx, "export", lambda m, *a, **k: ONNX_EXPORTS.append(type(m).__name__) or real(m, *a, **k))
        code = main(["run", "--suite", str(suite), "--out", str(out), "-q"])
    return code, out, suite


@pytest.mark.e2e
def test_run_writes_every_artifact(tiny_run):
    code, out, _ = tiny_run
    assert code == 0
    for name in ("run.json", "results.csv", "report.html"):
        assert (out / name).is_file()
    meta = json.loads((out / "run.json").read_text())
    assert meta["run_id"] and meta["end_time"] and meta["versions"]["torch"] and meta["device"]["device"] == "cpu"
    df = pd.read_csv(out / "results.csv")
    assert list(df.columns[: len(CONTRACT_COLUMNS)]) == CONTRACT_COLUMNS
    assert (df["status"] == "ok").all()
    assert set(df["method"]) == {"dense", "magnitude"}
    assert len(df) == 4  # 2 cases × batch sizes 1, 4
    for case in df["case_id"].unique():
        tdir = out / "tickets" / case
        onnx.checker.check_model(onnx.load(str(tdir / "model.onnx")))
        assert (tdir / "ticket.pt").is_file() and (tdir / "cost.json").is_file()
    assert len(list((out / "samples").glob("*-latency.csv"))) == 4


@pytest.mark.e2e
def test_each_case_and_the_dense_reference_are_exported_once(tiny_run):
    """The tiny suite: two cases of one architecture. Each case's compacted ticket is exported once, and the dense
    reference once for the whole run (its cost, its size and the session timed beside the magnitude ticket all
    come from that one file); before the pipeline it was exported twice, 4 exports in all."""
    code, out, _ = tiny_run
    assert code == 0
    cases = pd.read_csv(out / "results.csv")["case_id"].nunique()
    assert cases == 2 and len(ONNX_EXPORTS) == cases + 1, ONNX_EXPORTS
    assert ONNX_EXPORTS.count("SmallCNN") == 1  # the dense reference; the tickets' compacted modules are FX graphs


def test_the_dense_reference_is_built_and_exported_once_per_architecture(tmp_path, monkeypatch):
    """Runner._dense_reference caches by what determines the reference (architecture, data, input shape, model
    options): its cost, size, session and node map come from one export; another width is another reference."""
    from ticketbench.bench.runner import Runner, RunOptions
    from ticketbench.bench.suite import load_suite
    from ticketbench.devices.cpu import CpuDevice

    exports = []
    real = runner_mod.export_dense
    monkeypatch.setattr(runner_mod, "export_dense", lambda *a, **k: exports.append(a[2]) or real(*a, **k))
    suite = load_suite(str(Path(__file__).parent / "data" / "tiny_suite.toml"))
    runner = Runner(suite, CpuDevice(), RunOptions(out=tmp_path / "out", show_progress=False))
    dense_case, magnitude_case = suite.cases
    data = runner.data(dense_case.ticket)
    try:
        ref = runner._dense_reference(dense_case, data, None)
        assert runner._dense_reference(magnitude_case, data, None) is ref and ref.export.path.is_file()
        session = runner._reference_session(magnitude_case, data)
        assert session is not None and runner._reference_session(magnitude_case, data) is session
        assert ref.nodes and set(ref.nodes.values()) <= {lc.name for lc in ref.export.cost.layers}
        assert len(exports) == 1 and ref.export.size_mb == pytest.approx(ref.export.path.stat().st_size / 1e6)
        wider = copy.deepcopy(magnitude_case)
        wider.ticket.options = {"model_kwargs": {"width": 4}}
        assert runner._dense_reference(wider, data, None) is not ref and len(exports) == 2
    finally:
        runner._close_references()
    assert not ref.export.path.exists()


@pytest.mark.e2e
def test_results_values_are_consistent(tiny_run):
    _, out, _ = tiny_run
    df = pd.read_csv(out / "results.csv")
    dense = df[df.method == "dense"]
    pruned = df[df.method == "magnitude"]
    assert (dense["speedup"] == 1.0).all()
    assert (dense["acceleration_rate"] == 1.0).all() and (dense["weight_sparsity"] == 0).all()
    assert pruned["weight_sparsity"].between(0.79, 0.81).all()
    assert (pruned["acceleration_rate"] >= 1.0).all()
    assert (df["onnx_max_abs_error"] < 1e-3).all()
    assert (df["latency_ms_p50"] <= df["latency_ms_p99"]).all()
    # realization is against what compaction removed (macs_dense / macs), not the seeds' kernel AR
    assert (df["mac_reduction"] == df["macs_dense"] / df["macs"]).all()
    assert ((df["realization"] - df["speedup"] / df["mac_reduction"]).abs() < 1e-9).all()
    # tickets: the paired speedup, inside its rounds' range; the dense rows are the reference
    assert (pruned["speedup_basis"] == "paired").all() and (dense["speedup_basis"] == "reference").all()
    assert (pruned["speedup_lo"] <= pruned["speedup"]).all() and (pruned["speedup"] <= pruned["speedup_hi"]).all()
    assert (pruned["speedup_vs_fp32_dense"] == pruned["speedup"]).all()
    # every row says how many threads measured it, and how busy the rest of the machine was meanwhile
    meta = json.loads((out / "run.json").read_text())
    assert (df["threads"] == meta["device"]["threads"]).all() and df["runtime_settings"].str.contains("threads").all()
    assert df["other_load_cores"].ge(0).all() and df["disturbed"].isin([True, False]).all()
    assert (df["disturbed"] == df["disturbance_note"].notna()).all()
    assert df["accuracy_top1"].between(0, 100).all()
    assert (df["params"] <= df["params_dense"]).all()
    # no power source here: energy is empty and the reason is given, never an estimate
    if (df["power_source"] == "none").all():
        assert df["energy_mj_per_inference"].isna().all() and df["power_note"].notna().all()
    assert df["train_s_per_epoch"].gt(0).all()


@pytest.mark.e2e
def test_rounds_and_dense_reference_are_recorded(tiny_run):
    """Each (case, batch) is timed in 5 interleaved rounds, tickets beside the dense reference in each, taking turns
    in short windows; rounds are added (up to 15) until each ticket's ratio to its reference is known to ±2%."""
    _, out, _ = tiny_run
    df = pd.read_csv(out / "results.csv")
    dense = df["method"] == "dense"
    assert (df.loc[dense, "latency_rounds"] == 5).all() and df["latency_rounds"].between(5, 15).all()
    assert df["latency_ms_round_cv"].ge(0).all()
    assert df["latency_windows"].ge(df["latency_rounds"]).all()  # every round: one window or more per target
    assert df["latency_windows_preempted"].between(0, df["latency_windows"]).all()
    for r in df.itertuples():
        lat = pd.read_csv(out / r.samples_file)
        every_round = list(range(r.latency_rounds))
        assert list(lat.columns) == ["latency_ms", "round"] and sorted(lat["round"].unique()) == every_round
        assert len(lat) == r.latency_samples and lat["latency_ms"].median() == pytest.approx(r.latency_ms_p50)
        rounds = pd.read_csv(out / r.samples_file.replace("-latency.csv", "-rounds.csv"))
        assert list(rounds["round"]) == every_round and rounds["iterations"].sum() == r.latency_samples
        medians = lat.groupby("round")["latency_ms"].median().to_numpy()
        assert rounds["latency_ms_median"].to_numpy() == pytest.approx(medians, abs=1e-6)
        # the dense row is its own reference; a ticket carries the dense architecture's time from the same rounds
        assert rounds["reference_ms_median"].isna().all() == (r.method == "dense")
        assert rounds["ratio_median"].isna().all() == (r.method == "dense")
        if r.method != "dense":  # the printed speedup is the one the rounds file holds: the median round's gain
            gains = 1 / rounds["ratio_median"]
            assert r.speedup == pytest.approx(gains.median(), rel=1e-5)
            assert (r.speedup_lo, r.speedup_hi) == (
                pytest.approx(gains.min(), rel=1e-5),
                pytest.approx(gains.max(), rel=1e-5),
            )


@pytest.mark.e2e
def test_every_row_has_its_per_layer_table_beside_the_dense_reference(tiny_run):
    """Profiled after the timed rounds: one layers table per row, each conv of the compacted ticket (cost.json) a row
    of its own with a time in the ticket and, for the ticket timed beside its reference, in the dense model too."""
    _, out, _ = tiny_run
    df = pd.read_csv(out / "results.csv")
    assert df["layers_file"].notna().all() and (df["layers_coverage"] > 0).all()
    assert df["layers_profile_overhead"].notna().all()
    for r in df.to_dict("records"):
        table = pd.read_csv(out / r["layers_file"])
        cost = json.loads((out / "tickets" / r["case_id"] / "cost.json").read_text())
        convs = table[table["kind"].isin(["conv", "linear"])]
        assert set(convs["layer"]) == {lc["name"] for lc in cost["compacted"]["layers"]}
        assert convs["ticket_ms"].notna().all() and (convs["mac_reduction"].dropna() >= 1).all()
        paired = r["method"] != "dense"
        assert convs["dense_ms"].notna().all() == paired and convs["realization"].notna().all() == paired
        meta = json.loads((out / r["layers_file"].replace(".csv", ".json")).read_text())
        assert meta["ticket"]["source"].startswith("onnxruntime") and (meta["dense"] is not None) == paired
        assert meta["coverage"] == pytest.approx(r["layers_coverage"]) and meta["gap_ms"] is not None


def test_paired_ratios_cancel_a_machine_state_shared_by_adjacent_iterations():
    """A tenant takes a core for some iterations: case and reference iterations beside each other slow alike, so
    the per-round median of their pairwise ratios is exact where the ratio of the two medians is not."""
    from ticketbench.bench.runner import paired_ratios
    from ticketbench.devices.measure import LatencyResult, RoundedLatency

    machine = np.array([1.0, 1.0, 2.0, 2.0, 2.0, 1.0, 2.0])  # per iteration pair: 1 = free, 2 = core taken
    case = RoundedLatency([LatencyResult(1.2 * machine, 1, 0.0, 1.0)])
    ref = RoundedLatency([LatencyResult(machine * np.array([1, 1, 1, 1, 0.5, 2, 1]), 1, 0.0, 1.0)])  # noisy ref
    assert paired_ratios(case, ref)[0] == pytest.approx(1.2)
    apart = RoundedLatency([LatencyResult(machine[:3], 1, 5.0, 6.0)])  # separate windows: ratio of medians
    assert paired_ratios(RoundedLatency([LatencyResult(1.2 * machine, 1, 0.0, 1.0)]), apart)[0] == pytest.approx(
        1.2 * 2.0 / 1.0
    )
    assert paired_ratios(case, None) is None


@pytest.mark.e2e
def test_bench_measure_goes_through_the_runner_measurement(tiny_run, monkeypatch, capsys):
    _, out, _ = tiny_run
    seen = []
    real = runner_mod.measure_session
    monkeypatch.setattr(runner_mod, "measure_session", lambda *a, **k: seen.append(a[2]) or real(*a, **k))
    model = next((out / "tickets").glob("*dense*/model.onnx"))
    args = ["measure", str(model), "--batch", "2", "--min-seconds", "0.05", "--rounds", "3", "--json"]
    assert main(args) == 0
    row = json.loads(capsys.readouterr().out)
    assert seen and seen[0].rounds == 3 and seen[0].batch_sizes == [2]
    assert set(row) == set(COLUMNS) and row["latency_rounds"] == 3 and row["batch_size"] == 2
    assert row["status"] == "ok" and row["latency_ms_p50"] > 0 and row["power_source"]


@pytest.mark.e2e
def test_report_is_self_contained(tiny_run):
    _, out, _ = tiny_run
    html = (out / "report.html").read_text()
    assert "<svg" in html and "Accuracy vs sparsity" in html
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html)


@pytest.mark.e2e
def test_resume_skips_finished_cases(tiny_run, monkeypatch):
    _, out, suite = tiny_run
    before = pd.read_csv(out / "results.csv")
    calls = []
    monkeypatch.setattr(runner_mod.Runner, "run_case", lambda self, case, rid: calls.append(case) or [])
    assert main(["run", "--suite", str(suite), "--out", str(out), "--resume", "-q"]) == 0
    assert calls == []
    after = pd.read_csv(out / "results.csv")
    pd.testing.assert_frame_equal(before, after)


@pytest.mark.e2e
def test_interrupt_keeps_finished_cases_then_resume_completes(tmp_path, monkeypatch):
    suite = tmp_path / "tiny.toml"
    suite.write_text((Path(__file__).parent / "data" / "tiny_suite.toml").read_text())
    out = tmp_path / "out"
    real = runner_mod.Runner.run_case
    seen = []

    def interrupt_second(self, case, rid):
        seen.append(case.case_id)
        if len(seen) == 2:
            raise KeyboardInterrupt
        return real(self, case, rid)

    monkeypatch.setattr(runner_mod.Runner, "run_case", interrupt_second)
    assert main(["run", "--suite", str(suite), "--out", str(out), "-q"]) == 130
    df = pd.read_csv(out / "results.csv")
    assert set(df["case_id"]) == {seen[0]}
    monkeypatch.setattr(runner_mod.Runner, "run_case", real)
    assert main(["run", "--suite", str(suite), "--out", str(out), "--resume", "-q"]) == 0
    df = pd.read_csv(out / "results.csv")
    assert set(df["case_id"]) == set(seen) and (df["status"] == "ok").all()


@pytest.mark.e2e
def test_failing_case_is_recorded_and_run_continues(tmp_path, monkeypatch):
    suite = tmp_path / "tiny.toml"
    suite.write_text((Path(__file__).parent / "data" / "tiny_suite.toml").read_text())
    out = tmp_path / "out"

    def broken_export(*a, **k):
        raise RuntimeError("exporter exploded\nsecond line")

    monkeypatch.setattr(pipeline, "export_onnx", broken_export)
    assert main(["run", "--suite", str(suite), "--out", str(out), "-q"]) == 1
    df = pd.read_csv(out / "results.csv")
    assert (df["status"] == "failed").all()
    assert (df["error"] == "RuntimeError: exporter exploded").all()


@pytest.mark.e2e
def test_default_run_from_repo_root(tmp_path):
    """The README's main command: no suite/device arguments, embedded data, device auto → cpu."""
    out = tmp_path / "r"
    res = subprocess.run(
        [sys.executable, "-m", "bench", "run", "--out", str(out)], cwd=REPO, capture_output=True, text=True
    )
    assert res.returncode == 0, res.stderr[-2000:]
    assert "report: " in res.stdout
    df = pd.read_csv(out / "results.csv")
    assert (df["status"] == "ok").all()
    # the default suite tells the story: dense, unstructured magnitude, an EB channel ticket, an MPT group ticket
    assert sorted(df["method"].unique()) == ["dense", "eb", "magnitude", "mpt"]
    by = df.drop_duplicates("method").set_index("method")
    assert by.loc["eb", "channels_removed"] > 0 and by.loc["eb", "params"] < by.loc["dense", "params"]
    assert by.loc["mpt", "structure"] == "group" and by.loc["mpt", "acceleration_rate"] > 1.5


class ConstantPower(PowerReader):
    """A power reader at a fixed 12.5 W: energy must come out as watts × measured window, nothing else."""

    source = "rapl"

    def read_watts(self) -> float:
        return 12.5


def _run_tiny_with_reader(tmp_path, monkeypatch, reader) -> list[dict]:
    """The tiny suite on the CPU adapter with `reader` as its power source and a 0.1 s idle baseline."""
    from ticketbench.bench.runner import Runner, RunOptions
    from ticketbench.bench.suite import load_suite
    from ticketbench.devices.cpu import CpuDevice

    monkeypatch.setattr(CpuDevice, "power_reader", lambda self: (reader, ""))
    suite = load_suite(str(Path(__file__).parent / "data" / "tiny_suite.toml"))
    suite.measure.idle_seconds = 0.1
    rows = Runner(suite, CpuDevice(), RunOptions(out=tmp_path / "out", show_progress=False)).run()
    assert rows and all(r["status"] == "ok" for r in rows)
    return rows


@pytest.mark.e2e
def test_energy_columns_follow_the_power_reader(tmp_path, monkeypatch):
    rows = _run_tiny_with_reader(tmp_path, monkeypatch, ConstantPower())
    for r in rows:
        assert r["power_source"] == "rapl" and r["power_note"] is None
        assert r["power_w_mean"] == pytest.approx(12.5)
        assert r["power_w_idle"] == pytest.approx(12.5)
        # constant power: everything above idle is zero, and energy/inference = P × window / inferences
        assert r["energy_mj_per_inference_above_idle"] == pytest.approx(0.0, abs=1e-9)
        window_s = r["energy_mj_per_inference"] / 1e3 * r["latency_samples"] * r["batch_size"] / 12.5
        assert window_s >= r["latency_ms_mean"] * r["latency_samples"] / 1e3 * 0.999
        assert r["energy_j_per_eval_epoch"] > 0 and r["energy_j_per_train_epoch"] > 0
        assert r["energy_j_per_train_epoch"] == pytest.approx(12.5 * r["train_s_per_epoch"], rel=0.05)
    meta = json.loads((tmp_path / "out" / "run.json").read_text())
    assert meta["power_source"] == "rapl" and meta["idle_baseline"]["watts"] == pytest.approx(12.5)
    assert len(list((tmp_path / "out" / "samples").glob("*-power.csv"))) == len(rows)


class SilentPush(PowerReader):
    """A push reader that delivers nothing (a board whose power source failed mid-run)."""

    source = "ina3221-sysfs"
    kind = "push"

    def attach(self, sink) -> None:
        pass

    def detach(self) -> None:
        pass


@pytest.mark.e2e
def test_power_trace_missing_the_window_leaves_energy_empty_with_a_reason(tmp_path, monkeypatch):
    from ticketbench.devices.measure import UNCOVERED

    rows = _run_tiny_with_reader(tmp_path, monkeypatch, SilentPush())
    for r in rows:  # no samples: not 0 J, but empty energy, the source named and the reason given
        assert r["power_source"] == "ina3221-sysfs" and r["power_note"] == UNCOVERED
        assert r["energy_mj_per_inference"] is None and r["power_w_mean"] is None and r["power_w_idle"] is None
        assert r["energy_j_per_eval_epoch"] is None


def test_finalize_speedups_matches_resumed_rows():
    """A dense row read back from results.csv (empty cells → None after resume) still anchors new rows."""
    from ticketbench.bench.runner import finalize_speedups
    from ticketbench.results import empty_row

    key = dict(model="m", dataset="d", device="cpu", backend="b", precision="fp32", batch_size=1, status="ok")
    macs = dict(macs_dense=1000, macs=500)
    dense = empty_row(**key, method="dense", latency_ms_p50=2.0, acceleration_rate=1.0, macs_dense=1000, macs=1000)
    imported = empty_row(**key, method="magnitude", latency_ms_p50=0.5, acceleration_rate=2.0, **macs)
    rows = [dense, imported]
    finalize_speedups(rows)
    assert imported["speedup"] == 4.0 and imported["speedup_basis"] == "unpaired" and imported["mac_reduction"] == 2.0
    assert imported["realization"] == 2.0 and imported["speedup_vs_fp32_dense"] == 4.0
    assert dense["speedup"] == 1.0 and dense["speedup_basis"] == "reference" and dense["realization"] == 1.0


# Rounds shaped like the ones reported in issue 24 (an Early-Bird 50% b32 row on a machine that got busy): every
# round timed the ticket at 0.19-0.30 of the dense reference beside it (median 0.25), while the dense row, timed
# minutes earlier under another load, made the unpaired figure 1.08.
EB_B32_ROUND_RATIOS = np.array([0.19, 0.25, 0.30, 0.22, 0.27])


def test_the_paired_speedup_is_the_median_rounds_gain_whatever_the_dense_row_says():
    from ticketbench.bench.runner import finalize_speedups, paired_speedup
    from ticketbench.results import empty_row

    cols = paired_speedup(EB_B32_ROUND_RATIOS)
    assert cols["speedup"] == pytest.approx(4.0) and cols["speedup_basis"] == "paired"
    assert (cols["speedup_lo"], cols["speedup_hi"]) == (pytest.approx(1 / 0.30), pytest.approx(1 / 0.19))
    assert cols["speedup_round_cv"] == pytest.approx(EB_B32_ROUND_RATIOS.std(ddof=1) / EB_B32_ROUND_RATIOS.mean())
    # one wild round of five does not move it: the median round's gain, not the mean's
    assert paired_speedup(np.array([0.19, 0.25, 0.95, 0.22, 0.27]))["speedup"] == pytest.approx(4.0)
    key = dict(model="m", dataset="d", device="cpu", backend="b", precision="fp32", batch_size=32, status="ok")
    dense = empty_row(**key, method="dense", latency_ms_p50=3.0, macs_dense=100, macs=100)
    eb = empty_row(**key, method="eb", latency_ms_p50=2.78, macs_dense=100, macs=25, **cols)  # 3 / 2.78 = 1.08
    finalize_speedups([dense, eb])
    assert eb["speedup"] == pytest.approx(4.0) and eb["realization"] == pytest.approx(1.0)
    assert eb["speedup_vs_fp32_dense"] == pytest.approx(4.0)
    assert paired_speedup(None) == {} and paired_speedup(np.array([0.2, np.nan])) == {}


def test_int8_rows_have_no_reference_beside_them_and_say_so():
    from ticketbench.bench.runner import finalize_speedups
    from ticketbench.results import empty_row

    key = dict(model="m", dataset="d", device="cpu", backend="b", batch_size=1, status="ok", macs_dense=8, macs=4)
    rows = [
        empty_row(**key, precision="fp32", method="dense", latency_ms_p50=4.0),
        empty_row(**key, precision="int8", method="dense", latency_ms_p50=2.0),
        empty_row(**key, precision="int8", method="eb", latency_ms_p50=1.0),
    ]
    finalize_speedups(rows)
    eb8 = rows[2]
    assert (eb8["speedup"], eb8["speedup_basis"], eb8["speedup_vs_fp32_dense"]) == (2.0, "unpaired", 4.0)
    assert rows[1]["speedup_basis"] == "reference" and rows[1]["speedup_vs_fp32_dense"] == 2.0


def test_a_row_is_disturbed_when_its_rounds_disagree_or_others_crowd_its_threads():
    from ticketbench.bench.runner import ROUND_CV_BOUND, disturbance, paired_speedup

    quiet = {**paired_speedup(np.array([0.25, 0.26, 0.25, 0.24, 0.25])), "other_load_cores": 0.1}
    assert disturbance(quiet, threads=2, cores=2) == {"disturbed": False, "disturbance_note": None}
    spread = {**paired_speedup(EB_B32_ROUND_RATIOS), "other_load_cores": 0.1}  # 18% between rounds
    d = disturbance(spread, threads=2, cores=2)
    assert (
        d["disturbed"] and f"bound {ROUND_CV_BOUND:.0%}" in d["disturbance_note"] and "ratio" in d["disturbance_note"]
    )
    # one core taken by a neighbour: crowded at 2 threads on 2 cores, not at 1 thread (the core it needs is free)
    one = {**quiet, "other_load_cores": 0.9}
    assert disturbance(one, threads=2, cores=2)["disturbed"] and not disturbance(one, threads=1, cores=2)["disturbed"]
    assert "0.90 of 2 cores beside 2 thread(s)" in disturbance(one, threads=2, cores=2)["disturbance_note"]
    assert disturbance({**quiet, "other_load_cores": 1.6}, threads=1, cores=2)["disturbed"]
    # rows without a reference: their time's spread between rounds
    dense = {"latency_ms_round_cv": 0.2, "other_load_cores": None}
    assert "time spread 20%" in disturbance(dense, threads=2, cores=2)["disturbance_note"]
    assert disturbance({}, threads=None)["disturbed"] is None  # nothing measured: unknown, not "quiet"


def test_rows_record_the_threads_and_settings_they_ran_with():
    from ticketbench.bench.runner import runtime_columns

    cpu = {"device": "cpu", "threads": 3, "session_config": {"session.force_spinning_stop": "1"}}
    cols = runtime_columns(cpu)
    assert cols["threads"] == 3 and "session_config session.force_spinning_stop=1" in cols["runtime_settings"]
    board = {"device": "jetson", "host": "nvidia@tx2", "nvpmodel": "MAXN", "jetson_clocks": True}
    assert runtime_columns(board) == {"threads": None, "runtime_settings": "nvpmodel MAXN; jetson_clocks True"}


@pytest.mark.e2e
def test_resuming_a_copied_run_makes_a_run_of_its_own(tiny_run, monkeypatch, tmp_path):
    """A copy of a run directory, resumed elsewhere, kept the original's run id: storing it rewrote the original's
    run_dir (and rows) in the results database."""
    import shutil

    from ticketbench.bench.store import ResultsStore

    _, out, suite = tiny_run
    db = f"sqlite:///{tmp_path / 'r.sqlite'}"
    store = ResultsStore(db)
    original = store.ingest(out).run_id
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    monkeypatch.setattr(runner_mod.Runner, "run_case", lambda self, case, rid: [])
    assert main(["run", "--suite", str(suite), "--out", str(copy), "--resume", "--db", db, "-q"]) == 0
    meta = json.loads((copy / "run.json").read_text())
    assert meta["run_id"] != original and meta["run_dir"] == str(copy.resolve())
    assert set(pd.read_csv(copy / "results.csv")["run_id"]) == {meta["run_id"]}
    runs = store.runs().set_index("run_id")
    assert runs.loc[original, "run_dir"] == str(out) or Path(runs.loc[original, "run_dir"]).resolve() == out.resolve()
    assert meta["run_id"] in runs.index
    assert json.loads((out / "run.json").read_text())["run_id"] == original  # the original is untouched
    store.close()
