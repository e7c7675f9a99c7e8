"""The Jetson adapter in local trtexec mode against a fake board (sysfs tree + fake trtexec on PATH)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from fixtures.jetson.boards import TX2_VDD_IN_MW, install_bin, make_board, path_with

from ticketbench.devices.base import DeviceUnavailable, get_device
from ticketbench.devices.jetson import JetsonDevice
from ticketbench.devices.measure import LatencyConfig, energy_window, measure_latency, run_eval_epoch
from ticketbench.devices.power import PowerSampler


def cpu_logits(onnx_path: Path, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    return sess.run(None, {"input": x})[0]


def trtexec_board(tmp_path, monkeypatch, kind: str, trt_version: str) -> JetsonDevice:
    """A local fake board of `kind` whose PATH holds the fake trtexec of `trt_version` (its banner's digits)."""
    root = make_board(tmp_path / "board", kind)
    monkeypatch.setenv("PATH", path_with(install_bin(tmp_path / "bin", trt_version=trt_version)))
    return JetsonDevice(root=str(root), workdir=str(tmp_path / "work"))


@pytest.fixture
def board(tmp_path, monkeypatch):
    root = make_board(tmp_path / "board", "tx2")
    bindir = install_bin(tmp_path / "bin")
    monkeypatch.setenv("PATH", path_with(bindir))
    return root, tmp_path / "work"


def test_local_board_identity_and_power(board):
    root, work = board
    dev = JetsonDevice(root=str(root), workdir=str(work))
    ident = dev.identity()
    assert ident["device_name"] == "NVIDIA Jetson TX2"
    assert ident["backend"] == "tensorrt-trtexec"  # no tensorrt module here: trtexec
    assert ident["tensorrt"] == "10.3.0" and ident["l4t"] == "32.7.1"
    assert ident["nvpmodel"]["name"] == "MAXN" and ident["jetson_clocks"]["state"] == "off"
    assert ident["power_source"] == "ina3221-sysfs"
    reader, why = dev.power_reader()
    assert reader.source == "ina3221-sysfs" and why == ""
    assert dev.snapshot()["clocks_mhz"]["gpu"] == pytest.approx(1300.5)
    dev.close()


@pytest.mark.e2e
def test_latency_and_eval_with_trtexec(board, onnx_model):
    root, work = board
    dev = JetsonDevice(root=str(root), workdir=str(work))
    reader, _ = dev.power_reader()
    sampler = PowerSampler(reader).start()
    session = dev.load(onnx_model, "fp32")
    cfg = LatencyConfig(warmup_seconds=0.01, min_iterations=20, min_seconds=0.1)
    lat = measure_latency(session, np.zeros((4, 1, 8, 8), np.float32), cfg)
    assert len(lat.samples_ms) >= 20 and lat.batch_size == 4
    assert lat.extra["trtexec"]["version"] == "10.3.0"
    assert lat.extra["trtexec"]["latency_ms"]["min"] == pytest.approx(lat.samples_ms.min(), abs=1e-3)
    assert lat.throttled is False  # fake clocks did not move, temperatures below the passive trips
    win = energy_window(sampler, "latency", lat.t0, lat.t1)
    assert win.covered and win.samples >= 1
    assert win.power_w_mean == pytest.approx(TX2_VDD_IN_MW / 1e3)  # constant VDD_IN ⇒ exact
    assert win.energy_j == pytest.approx(TX2_VDD_IN_MW / 1e3 * (lat.t1 - lat.t0))

    rng = np.random.default_rng(1)
    x1, x2 = rng.standard_normal((5, 1, 8, 8), dtype=np.float32), rng.standard_normal((3, 1, 8, 8), dtype=np.float32)
    y1, y2 = cpu_logits(onnx_model, x1).argmax(1), cpu_logits(onnx_model, x2).argmax(1)
    y2[0] = (y2[0] + 1) % 10  # one wrong label out of 8
    ev = run_eval_epoch(session, [(x1, y1), (x2, y2)])
    assert ev.n == 8 and ev.accuracy_top1 == pytest.approx(100 * 7 / 8)  # outputs are the real ones
    assert len(ev.segments) == 2 and all(b > a for a, b in ev.segments)
    e = energy_window(sampler, "eval", ev.t0, ev.t1, ev.segments)
    assert e.duration_s == pytest.approx(sum(b - a for a, b in ev.segments))
    np.testing.assert_allclose(session.run(x2), cpu_logits(onnx_model, x2), atol=1e-4)
    engines = sorted(p.name for p in work.rglob("*.engine"))
    assert engines == ["fp32-b1-256-256-trt10.3.0.engine", "fp32-b4-4-4-trt10.3.0.engine"]  # built once each
    sampler.stop()
    dev.close()


@pytest.mark.e2e
def test_trt82_trace_with_warmups(tmp_path, monkeypatch, onnx_model):
    dev = trtexec_board(tmp_path, monkeypatch, "tx2", "8201")
    session = dev.load(onnx_model, "fp16")
    lat = measure_latency(session, np.zeros((1, 1, 8, 8), np.float32), LatencyConfig(0, 0.05, 10, 0.1))
    s = lat.extra["trtexec"]
    assert s["version"] == "8.2.1" and "end_to_end_ms" in s
    assert s["timed_queries"] == len(lat.samples_ms)  # warm-up queries were dropped from the 8.2 trace
    assert s["latency_ms"]["max"] == pytest.approx(lat.samples_ms.max(), abs=1e-3)
    with pytest.raises(ValueError, match="int8"):
        dev.load(onnx_model, "int8")
    dev.close()


def test_board_without_total_rail_reports_why(tmp_path, monkeypatch):
    root = make_board(tmp_path / "board", "xavier_agx")
    monkeypatch.setenv("PATH", path_with(install_bin(tmp_path / "bin")))
    dev = JetsonDevice(root=str(root), workdir=str(tmp_path / "w"))
    reader, why = dev.power_reader()
    assert reader is None
    assert "no total-board rail" in why and "tegrastats" in why
    dev.close()


def test_not_a_jetson(tmp_path, monkeypatch):
    monkeypatch.setenv("TICKETBENCH_JETSON_ROOT", str(tmp_path))
    with pytest.raises(DeviceUnavailable, match="not a Jetson"):
        get_device("jetson")


def test_no_trtexec_on_board(tmp_path, monkeypatch):
    root = make_board(tmp_path / "board", "tx2")
    monkeypatch.setenv("PATH", str(Path(sys.executable).parent))
    monkeypatch.setattr("ticketbench.devices.jetson_board.TRTEXEC_FALLBACK", str(tmp_path / "none"))
    with pytest.raises(RuntimeError, match="trtexec not found"):
        JetsonDevice(root=str(root), workdir=str(tmp_path / "w"))


@pytest.mark.e2e
def test_tensorrt11_trtexec_gets_an_fp16_graph_instead_of_the_removed_fp16_flag(tmp_path, monkeypatch, onnx_model):
    """trtexec 11 has no --fp16 (strongly typed networks): the board receives an fp16 ONNX instead."""
    import onnx

    dev = trtexec_board(tmp_path, monkeypatch, "orin_nano", "110000")
    session = dev.load(onnx_model, "fp16")
    lat = measure_latency(session, np.zeros((2, 1, 8, 8), np.float32), LatencyConfig(0, 0.01, 5, 0.05))
    assert lat.extra["trtexec"]["version"] == "11.0.0" and len(lat.samples_ms) >= 5
    sent = next((tmp_path / "work").rglob("model-fp16.onnx"))
    assert onnx.load(str(sent)).graph.initializer[0].data_type == onnx.TensorProto.FLOAT16
    x = np.random.default_rng(3).standard_normal((3, 1, 8, 8), dtype=np.float32)
    np.testing.assert_allclose(session.run(x), cpu_logits(onnx_model, x), atol=5e-3)
    dev.close()


@pytest.mark.e2e
def test_tensorrt11_trtexec_times_the_copies_without_a_cuda_graph(tmp_path, monkeypatch, onnx_model):
    """trtexec 11 leaves H2D/D2H out of the timing and captures a CUDA graph by default: rows would not compare with
    8.x/10.x rows, and the energy window would miss the copies. The session asks for both back."""
    dev = trtexec_board(tmp_path, monkeypatch, "orin_nano", "110000")
    session = dev.load(onnx_model, "fp32")
    measure_latency(session, np.zeros((2, 1, 8, 8), np.float32), LatencyConfig(0, 0.01, 5, 0.05))
    job = session.last_run["jobs"][0]
    trace = json.loads(next(iter(job["files"].values())))
    assert trace and all(q["h2dMs"] > 0 and q["d2hMs"] > 0 for q in trace)  # the copies were timed
    assert "Capturing CUDA graph" not in job["log"]
    dev.close()


@pytest.mark.e2e
def test_trt80_board_jetpack46_measures_fp32(tmp_path, monkeypatch, onnx_model):
    """JetPack 4.6 (TX2) ships TensorRT 8.0.1: nothing in the fp32 path uses an option its trtexec lacks."""
    dev = trtexec_board(tmp_path, monkeypatch, "tx2", "8001")
    session = dev.load(onnx_model, "fp32")
    lat = measure_latency(session, np.zeros((2, 1, 8, 8), np.float32), LatencyConfig(0, 0.01, 5, 0.05))
    assert lat.extra["trtexec"]["version"] == "8.0.1" and len(lat.samples_ms) >= 5
    x = np.random.default_rng(3).standard_normal((3, 1, 8, 8), dtype=np.float32)
    np.testing.assert_allclose(session.run(x), cpu_logits(onnx_model, x), atol=1e-4)
    dev.close()


def test_trt82_board_gets_a_validated_opset13_export(tmp_path, monkeypatch):
    """onnx-tensorrt 8.2 parses operators up to opset 13: the export for a TX2 uses it, and is validated."""
    import onnx
    import torch

    from ticketbench.models.export import OPSET, export_onnx
    from ticketbench.models.zoo import create_model

    dev = trtexec_board(tmp_path, monkeypatch, "tx2", "8201")
    assert dev.max_onnx_opset == 13 and dev.identity()["max_onnx_opset"] == 13
    torch.manual_seed(0)
    model = create_model("small_cnn", num_classes=10, in_channels=1, width=8)
    opset = min(OPSET, dev.max_onnx_opset)  # what the runner exports with
    res = export_onnx(model, model, (1, 8, 8), tmp_path / "m.onnx", opset=opset)
    assert res.opset == 13 and res.max_abs_error <= res.tolerance * max(1.0, res.reference_max_abs)
    assert [o.version for o in onnx.load(str(res.path)).opset_import if o.domain in ("", "ai.onnx")] == [13]
    session = dev.load(res.path, "fp32")
    x = np.random.default_rng(4).standard_normal((2, 1, 8, 8), dtype=np.float32)
    np.testing.assert_allclose(session.run(x), cpu_logits(res.path, x), atol=1e-4)
    dev.close()


def test_local_tensorrt_backend_shares_the_gpu_helper(tmp_path, monkeypatch, onnx_model):
    """On the board with the TensorRT Python API: the same load_tensorrt as the gpu adapter, board snapshots."""
    from test_devices_gpu import expected, fake_tensorrt

    from ticketbench.devices import jetson
    from ticketbench.devices.tensorrt_engine import TrtSession

    root = make_board(tmp_path / "board", "orin_nano")
    monkeypatch.setenv("PATH", path_with(install_bin(tmp_path / "bin")))
    monkeypatch.setitem(sys.modules, "tensorrt", fake_tensorrt("10.3.0"))
    monkeypatch.setattr(jetson, "_torch_cuda", lambda: True)
    monkeypatch.setenv("TICKETBENCH_ENGINE_CACHE", str(tmp_path / "engines"))
    dev = JetsonDevice(root=str(root), workdir=str(tmp_path / "work"))
    assert dev.backend == "tensorrt" and dev.identity()["tensorrt"] == "10.3.0"
    dev.torch_device = "cpu"  # buffers on the CPU: there is no GPU here
    session = dev.load(onnx_model, "fp32", batch_size=4)
    assert isinstance(session, TrtSession) and session.snapshot()["clocks_mhz"]["gpu"] == pytest.approx(1300.5)
    x = np.ones((4, 1, 8, 8), np.float32)
    np.testing.assert_allclose(session.run(x), expected(x))
    dev.close()
