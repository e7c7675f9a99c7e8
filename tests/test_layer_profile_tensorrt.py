"""Per-layer profiles on TensorRT, against fakes of the real interfaces: the Python API's IProfiler on the fake
`tensorrt` of test_devices_gpu (8.0-8.4 profile execute_v2 only; 8.5+ execute_async_v3; the engine inspector from
8.2, Metadata from 8.6), and trtexec's --exportProfile / --exportLayerInfo on the fake trtexec of
tests/fixtures/jetson (8.0 has no --exportLayerInfo, 11 deprecates --separateProfileRun)."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from fixtures.jetson.boards import install_bin, make_board, path_with
from test_devices_gpu import LAYER_MS, fake_tensorrt

from ticketbench.bench.layers import layer_rows
from ticketbench.devices.jetson import JetsonDevice
from ticketbench.devices.tensorrt_engine import load_tensorrt
from ticketbench.devices.trtexec import profile_argv
from ticketbench.models.cost import analyze
from ticketbench.models.zoo import create_model

SMALL_CONVS = ["features.0", "features.3", "features.7", "features.10"]


def _small_cost():
    import torch

    torch.manual_seed(0)
    return analyze(create_model("small_cnn", num_classes=10, in_channels=1, width=8), (1, 8, 8)).layers


@pytest.mark.parametrize(
    "version,call",
    [("8.2.1", "execute_v2"), ("8.4.3", "execute_v2"), ("8.6.1", "execute_async_v3"), ("10.3.0", "execute_async_v3")],
)
def test_iprofiler_reports_every_layer_and_maps_it_to_its_module(version, call, onnx_model, tmp_path, monkeypatch):
    trt = fake_tensorrt(version)
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    sess = load_tensorrt(onnx_model, "fp32", "cpu", "Fake GPU", tmp_path, batch_size=4)
    x = np.ones((4, 1, 8, 8), np.float32)
    prof = sess.profile_layers(x, 6)
    assert prof.source == f"tensorrt {version} IProfiler ({call})"
    assert prof.iterations == 6 and prof.plain_ms is not None and prof.profiled_ms is not None
    # the fake reports LAYER_MS × position per layer and call: the median per call is exactly that
    assert [lt.ms for lt in prof.layers] == pytest.approx([LAYER_MS * (i + 1) for i in range(len(prof.layers))])
    assert prof.layers[0].inserted and prof.layers[0].name.startswith("Reformatting CopyNode")
    rows = {r.layer: r for r in layer_rows(prof, _small_cost())}
    assert all(rows[c].ticket_ms == pytest.approx(LAYER_MS * (i + 2)) for i, c in enumerate(SMALL_CONVS[:2]))
    assert rows["classifier"].kind == "linear" and rows[f"Reformat → {SMALL_CONVS[0]}"].kind == "overhead"
    np.testing.assert_allclose(sess.run(x), x.reshape(4, -1).sum(1, keepdims=True) * np.arange(1, 5))  # unprofiled


def test_tensorrt_84_enqueue_does_not_profile_so_execute_v2_is_used(onnx_model, tmp_path, monkeypatch):
    """The fake's execute_async_v2 reports nothing, as TensorRT 8.0-8.4's enqueue: a profile taken through it
    would be empty."""
    trt = fake_tensorrt("8.4.3")
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    sess = load_tensorrt(onnx_model, "fp32", "cpu", "Fake GPU", tmp_path, batch_size=2)
    context_type = type(sess.engines[2].context)
    calls = []
    real = context_type.execute_v2
    monkeypatch.setattr(context_type, "execute_v2", lambda self, b: calls.append(1) or real(self, b))
    prof = sess.profile_layers(np.ones((2, 1, 8, 8), np.float32), 3)
    assert len(calls) == 2 + 3 and len(prof.layers) == 9  # 2 warm-up + 3 profiled calls, all through execute_v2


def test_detailed_engine_information_gives_metadata_from_86(onnx_model, tmp_path, monkeypatch):
    trt = fake_tensorrt("8.6.1")
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    sess = load_tensorrt(onnx_model, "fp32", "cpu", "Fake GPU", tmp_path, batch_size=1)
    engine = sess.engines[1]
    engine.engine.note["detailed"] = True  # as if built with ProfilingVerbosity.DETAILED
    prof = sess.profile_layers(np.ones((1, 1, 8, 8), np.float32), 3)
    conv = prof.layers[1]
    assert conv.op == "CaskConvolution" and conv.onnx_nodes == [
        "/features/features.0/Conv",
        "/features/features.2/Relu",
    ]
    assert prof.layers[0].op == "Reformat" and prof.layers[0].inserted


@pytest.mark.parametrize(
    "version,info,separate",
    [("8.0.1", False, True), ("8.2.1", True, True), ("10.3.0", True, True), ("11.0.0", True, False)],
)
def test_profile_argv_follows_the_trtexec_version(version, info, separate):
    argv = profile_argv("trtexec", "e.engine", "input", [4, 1, 8, 8], 200, 20, "p.json", "l.json", version)
    assert "--exportProfile=p.json" in argv and "--iterations=20" in argv and "--duration=0" in argv
    assert ("--exportLayerInfo=l.json" in argv) is info
    assert ("--separateProfileRun" in argv) is separate


@pytest.mark.e2e
@pytest.mark.parametrize("version", ["8001", "8201", "8601", "100300", "110000"])
def test_trtexec_profile_on_a_fake_board(version, onnx_model, tmp_path, monkeypatch):
    """The whole trtexec path: argv the version accepts, its profile and layer information read back and mapped."""
    root = make_board(tmp_path / "board", "tx2")
    bindir = install_bin(tmp_path / "bin", trt_version=version)
    monkeypatch.setenv("PATH", path_with(bindir))
    dev = JetsonDevice(root=str(root), workdir=str(tmp_path / "work"))
    session = dev.load(onnx_model, "fp32", batch_size=2)
    prof = session.profile_layers(np.zeros((2, 1, 8, 8), np.float32), 5)
    dev.close()
    assert prof.iterations == 5 and prof.profiled_ms is None and prof.plain_ms is not None
    names = "no --exportLayerInfo" if version == "8001" else "layer names from --exportLayerInfo"
    assert names in prof.source
    assert prof.layers[0].inserted and all(lt.ms >= 0 for lt in prof.layers)
    rows = {r.layer: r for r in layer_rows(prof, _small_cost())}
    assert all(rows[c].ticket_ms is not None and rows[c].kind == "conv" for c in SMALL_CONVS)
    assert rows["classifier"].kind == "linear"
