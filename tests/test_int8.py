"""int8 on the CPU: a seeded, recorded calibration set; ORT static QDQ quantization; agreement with fp32;
one row set per precision from one ticket; bad calibration input is exit 2 with one line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pandas as pd
import pytest
import torch
from fixtures.cifar import write_cifar
from onnx import numpy_helper
from torch.utils.data import TensorDataset

from ticketbench.bench.cli import main
from ticketbench.bench.runner import finalize_speedups
from ticketbench.devices.cpu import CpuDevice
from ticketbench.devices.int8_quantize import (
    CalibrationError,
    QuantizeConfig,
    calibration_set,
    compare_outputs,
    ort_outputs,
    quantize_onnx,
)
from ticketbench.models.data import DATASETS, DataBundle, load_dataset
from ticketbench.models.export import to_onnx_bytes
from ticketbench.models.train import TrainConfig, train
from ticketbench.models.zoo import create_model
from ticketbench.results import empty_row

TINY = Path(__file__).parent / "data" / "tiny_suite.toml"


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


@pytest.fixture(scope="module")
def trained_onnx(digits, tmp_path_factory):
    """A small CNN trained two epochs on digits (so its logits have margins worth keeping), as ONNX."""
    torch.manual_seed(0)
    model = create_model("small_cnn", num_classes=10, in_channels=1, width=8)
    train(model, digits, TrainConfig(epochs=2, lr=0.05), evaluate_each_epoch=False)
    path = tmp_path_factory.mktemp("q") / "m.onnx"
    path.write_bytes(to_onnx_bytes(model.eval(), digits.input_shape))
    return path


def test_calibration_set_is_seeded_recorded_and_rebuildable(digits, tmp_path):
    a, b, c = calibration_set(digits, 100, 0), calibration_set(digits, 100, 0), calibration_set(digits, 100, 1)
    assert a.indices == b.indices and a.sha256 == b.sha256 and a.indices != c.indices
    assert len(set(a.indices)) == 100 and a.x.shape == (100, 1, 8, 8) and a.x.dtype == np.float32
    rebuilt = np.stack([digits.train[i][0].numpy() for i in a.indices])
    np.testing.assert_array_equal(rebuilt, a.x)  # the recorded indices are the images used
    rec = json.loads(a.write(tmp_path).read_text())
    assert rec["indices"] == a.indices and rec["seed"] == 0 and rec["sha256"] == a.sha256 and rec["split"] == "train"
    assert len(calibration_set(digits, 10**6, 0).indices) == len(digits.train)  # capped at the split


def test_cifar_calibration_is_drawn_without_augmentation(tmp_path):
    write_cifar(tmp_path)
    data = load_dataset("cifar10", tmp_path)
    assert data.train.augment  # training keeps its random crops and flips …
    first, second = calibration_set(data, 20, 0), calibration_set(data, 20, 0)
    assert first.sha256 == second.sha256  # … the calibration set does not
    assert data.train.augment


def test_bad_calibration_input_is_a_calibration_error(digits):
    empty = DataBundle("empty", TensorDataset(torch.zeros(0, 1, 8, 8), torch.zeros(0)), digits.test, (1, 8, 8), 10)
    with pytest.raises(CalibrationError, match="training split is empty"):
        calibration_set(empty, 10)
    wrong = DataBundle("wrong", digits.train, digits.test, (3, 8, 8), 10)
    with pytest.raises(CalibrationError, match="has shape"):
        calibration_set(wrong, 10)
    with pytest.raises(CalibrationError, match="positive integer"):
        calibration_set(digits, 0)
    with pytest.raises(CalibrationError, match="unknown calibration method"):
        QuantizeConfig(method="mse")


def test_compare_outputs_counts_top1_agreement_and_max_error():
    ref = np.array([[2.0, 0.0], [0.0, 1.0], [1.0, 0.5], [0.0, 3.0]])
    out = np.array([[1.5, 0.0], [0.9, 0.1], [1.0, 0.5], [0.0, 3.0]])  # one flipped decision out of four
    a = compare_outputs(ref, out)
    assert a.top1_agreement == 75.0 and a.max_abs_error == pytest.approx(0.9) and a.reference_max_abs == 3.0
    assert not a.within_tolerance and "OUTSIDE tolerance" in a.note
    assert compare_outputs(ref, ref).within_tolerance


def test_quantize_onnx_is_qdq_per_channel_and_agrees_with_fp32(digits, trained_onnx, tmp_path):
    calib = calibration_set(digits, 128, 0)
    q = quantize_onnx(trained_onnx, calib, tmp_path / "m.int8.onnx", QuantizeConfig("entropy"))
    graph = onnx.load(str(q.path)).graph
    ops = {n.op_type for n in graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "Conv"} <= ops and q.quantized_nodes["Conv"] >= 3
    inits = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    conv_w = [i for i in graph.initializer if i.data_type == onnx.TensorProto.INT8 and len(i.dims) == 4]
    assert conv_w, "conv weights stored as int8"
    dq = [n for n in graph.node if n.op_type == "DequantizeLinear" and n.input[0] == conv_w[0].name][0]
    assert inits[dq.input[1]].shape == (conv_w[0].dims[0],)  # one scale per output channel
    assert q.float_nodes == 0 and q.calibration_sha256 == calib.sha256
    xs = [x.numpy() for x, _ in digits.loader("test", 128, shuffle=False)]
    a = compare_outputs(ort_outputs(trained_onnx, xs), ort_outputs(q.path, xs))
    assert a.within_tolerance and a.n == len(digits.test)
    bad = calibration_set(load_dataset("digits", size=16), 16, 0)
    with pytest.raises(CalibrationError, match="ONNX input"):
        quantize_onnx(trained_onnx, bad, tmp_path / "bad.onnx")


def test_cpu_adapter_runs_int8_only_from_a_qdq_model(digits, trained_onnx, tmp_path):
    dev = CpuDevice(threads=1)
    assert dev.precisions == ("fp32", "int8") and dev.int8_input == "qdq"
    with pytest.raises(ValueError, match="QDQ"):
        dev.load(trained_onnx, "int8")
    q = quantize_onnx(trained_onnx, calibration_set(digits, 64, 0), tmp_path / "q.onnx", QuantizeConfig("minmax"))
    x = digits.test[:4][0].numpy()
    assert dev.load(q.path, "int8").run(x).shape == (4, 10)


def test_speedup_vs_fp32_dense_combines_pruning_and_precision():
    key = dict(model="m", dataset="d", device="cpu", backend="b", batch_size=1, status="ok")
    d32 = empty_row(**key, precision="fp32", method="dense", latency_ms_p50=4.0)
    d8 = empty_row(**key, precision="int8", method="dense", latency_ms_p50=2.0)
    t8 = empty_row(**key, precision="int8", method="magnitude", latency_ms_p50=1.0, acceleration_rate=2.0)
    rows = [d32, d8, t8]
    finalize_speedups(rows)
    assert t8["speedup"] == 2.0 and t8["speedup_vs_fp32_dense"] == 4.0  # vs int8 dense; vs fp32 dense
    assert d8["speedup"] == 1.0 and d8["speedup_vs_fp32_dense"] == 2.0 and d32["speedup_vs_fp32_dense"] == 1.0


@pytest.fixture(scope="module")
def int8_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("int8run")
    suite = tmp / "tiny.toml"
    text = TINY.read_text().replace("[measure]\n", '[measure]\nprecisions = ["fp32", "int8"]\ncalibration_size = 96\n')
    suite.write_text(text)
    out = tmp / "out"
    return main(["run", "--suite", str(suite), "--out", str(out), "-q"]), out


@pytest.mark.e2e
def test_run_writes_a_row_set_per_precision_from_one_ticket(int8_run):
    code, out = int8_run
    assert code == 0
    df = pd.read_csv(out / "results.csv")
    assert (df["status"] == "ok").all() and len(df) == 8  # 2 cases × 2 precisions × 2 batch sizes
    assert sorted(df.groupby("precision").size().items()) == [("fp32", 4), ("int8", 4)]
    i8, f32 = df[df["precision"] == "int8"], df[df["precision"] == "fp32"]
    assert i8["int8_top1_agreement"].between(0, 100).all() and i8["int8_max_abs_error"].notna().all()
    assert i8["int8_calibration"].str.contains("n=96 seed=0").all() and f32["int8_calibration"].isna().all()
    for case, g in df.groupby("case_id"):
        assert g["accuracy_top1_torch"].nunique() == 1  # one ticket behind both precisions
        rec = json.loads((out / "tickets" / case / "calibration.json").read_text())
        assert len(rec["indices"]) == 96 and rec["seed"] == 0
        int8_onnx = out / "tickets" / case / "model.int8.onnx"
        assert (g.loc[g["precision"] == "int8", "size_mb"] == int8_onnx.stat().st_size / 1e6).all()
        assert (g.loc[g["precision"] == "fp32", "size_mb"] > 2 * int8_onnx.stat().st_size / 1e6).all()
    dense = df[df["method"] == "dense"].set_index(["precision", "batch_size"])["latency_ms_p50"]
    for r in df.itertuples():
        if r.speedup_basis == "paired":  # fp32 tickets: timed beside the fp32 dense reference, both figures paired
            assert r.precision == "fp32" and r.speedup_vs_fp32_dense == r.speedup
            continue
        # int8 rows (and the dense rows): nothing is timed beside them, so both figures are unpaired, and say so
        assert r.speedup_basis == ("reference" if r.method == "dense" else "unpaired")
        assert r.speedup_vs_fp32_dense == pytest.approx(dense["fp32", r.batch_size] / r.latency_ms_p50)
        assert r.speedup == pytest.approx(dense[r.precision, r.batch_size] / r.latency_ms_p50)
    assert (df[(df["precision"] == "int8") & (df["method"] != "dense")]["speedup_basis"] == "unpaired").all()
    assert len({f for f in df["samples_file"]}) == 8  # no precision overwrites another's samples
    meta = json.loads((out / "run.json").read_text())
    assert meta["suite"]["measure"]["precisions"] == ["fp32", "int8"]


@pytest.mark.e2e
def test_cli_precision_int8_replaces_the_suites_precisions(tmp_path):
    out = tmp_path / "out"
    assert main(["run", "--suite", str(TINY), "--precision", "int8", "--out", str(out), "-q"]) == 0
    df = pd.read_csv(out / "results.csv")
    assert set(df["precision"]) == {"int8"} and (df["status"] == "ok").all()


def test_empty_training_split_is_exit_2_one_line(tmp_path, capsys):
    suite = tmp_path / "s.toml"
    suite.write_text(
        '[defaults]\nmodel = "small_cnn"\ndataset = "synthetic"\ndata_options = { n_train = 0 }\n'
        '[measure]\nprecisions = ["fp32", "int8"]\n[[cases]]\nmethod = "dense"\n'
    )
    assert main(["run", "--suite", str(suite), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: int8 calibration:") and "empty" in err[0]
    assert not (tmp_path / "o" / "results.csv").exists()


def test_wrong_image_shape_is_exit_2_one_line(tmp_path, capsys, monkeypatch):
    def misshapen(data_root=None, **_):
        d = load_dataset("digits")
        return DataBundle("misshapen", d.train, d.test, (1, 16, 16), 10)  # says 16×16, holds 8×8

    monkeypatch.setitem(DATASETS._items, "misshapen", misshapen)
    suite = tmp_path / "s.toml"
    suite.write_text('[defaults]\nmodel = "small_cnn"\ndataset = "misshapen"\n[[cases]]\nmethod = "dense"\n')
    assert main(["run", "--suite", str(suite), "--precision", "int8", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "has shape (1, 8, 8), the model input is (1, 16, 16)" in err[0]


@pytest.mark.parametrize(
    "measure, needle",
    [
        ('precisions = ["fp32", "int4"]', "'int4' unknown"),
        ('precisions = ["int8", "int8"]', "repeat"),
        ("calibration_size = 0", "calibration_size must be a whole number in [1, 1000000]"),
        ('calibration_method = "mse"', "calibration_method must be one of entropy, minmax, percentile, got 'mse'"),
    ],
)
def test_bad_measure_settings_are_suite_errors(tmp_path, capsys, measure, needle):
    suite = tmp_path / "s.toml"
    suite.write_text(
        f'[defaults]\nmodel = "small_cnn"\ndataset = "digits"\n[measure]\n{measure}\n[[cases]]\nmethod = "dense"\n'
    )
    assert main(["run", "--suite", str(suite), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0]


@pytest.mark.e2e
def test_report_plots_accuracy_and_latency_per_precision(int8_run):
    from ticketbench.reports import plots
    from ticketbench.reports.html import load_report_inputs

    _, out = int8_run
    df = load_report_inputs([out]).df
    for svg in (plots.accuracy_vs_sparsity(df), plots.speed_vs_sparsity(df), plots.precision_gain(df)):
        assert svg is not None and "int8" in svg and "fp32" in svg  # one line per precision, labelled
    assert plots.precision_gain(df[df["precision"] == "fp32"]) is None  # one precision: nothing to compare
    assert "Precision: combined speedup and accuracy change" in (out / "report.html").read_text()
