"""TensorRT int8 against fakes: the entropy calibrator feeds the real calibration images through the address it
hands out, its cache is written beside the engine, read back instead of recalibrating, and keyed like the engine;
trtexec gets a cache computed here and sent to the board; layers that did not run int8 are reported. Each measured
batch's engine (profile [1, B, B]) is calibrated and cached under its own key; TensorRT 11 (no implicit int8) is not
offered int8 and refuses it with the reason."""

from __future__ import annotations

import ctypes
import json
import struct
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from fixtures.jetson.boards import install_bin, make_board, path_with
from test_devices_gpu import fake_tensorrt

from ticketbench.devices import gpu
from ticketbench.devices import int8_calibration as int8
from ticketbench.devices.gpu import GpuDevice
from ticketbench.devices.jetson import JetsonDevice
from ticketbench.devices.trtexec import build_argv


def _read_floats(ptr: int, n: int) -> np.ndarray:
    return np.ctypeslib.as_array((ctypes.c_float * n).from_address(ptr)).copy()


LAYER_INFO = {
    "Layers": [
        {"Name": "conv1 + relu", "Outputs": [{"Name": "a", "Format/Datatype": "Int8 NC/32HW32"}]},
        {"Name": "pool", "Outputs": [{"Name": "b", "Format/Datatype": "Int8 NC/32HW32"}]},
        {"Name": "fc", "Outputs": [{"Name": "logits", "Format/Datatype": "Half NC/8HW8"}]},
        {"Name": "reformat", "Outputs": [{"Name": "out", "Format/Datatype": "Row major linear FP32"}]},
    ]
}


def int8_tensorrt(version: str = "10.3.0") -> types.ModuleType:
    """The fake TensorRT plus what int8 uses: IInt8EntropyCalibrator2, INT8 flag, calibration profile, inspector.

    Its builder calibrates like TensorRT: read the cache; without one, pull batches through get_batch (reading
    the floats at the returned address) until None, then write a cache."""
    trt = fake_tensorrt(version)
    trt.BuilderFlag = types.SimpleNamespace(FP16=1, INT8=2)
    trt.ProfilingVerbosity = types.SimpleNamespace(DETAILED="detailed")
    trt.LayerInformationFormat = types.SimpleNamespace(JSON="json")
    trt.calibrated = []  # per build: the batches the calibrator delivered (arrays), or "cache"

    class IInt8EntropyCalibrator2:
        def __init__(self):
            pass

    trt.IInt8EntropyCalibrator2 = IInt8EntropyCalibrator2
    base_builder = trt.Builder

    class Builder(base_builder):
        def create_builder_config(self):
            cfg = super().create_builder_config()
            cfg.set_calibration_profile = lambda p: setattr(cfg, "calibration_profile", p.shapes)
            return cfg

        def build_serialized_network(self, network, config):
            if 2 in config.flags:
                cal = config.int8_calibrator
                cache = cal.read_calibration_cache()
                if cache is None:
                    bs, batches = cal.get_batch_size(), []
                    shape = config.calibration_profile[network.input_name][1]
                    while (ptrs := cal.get_batch([network.input_name])) is not None:
                        batches.append(_read_floats(ptrs[0], int(np.prod(shape))).reshape(shape))
                        assert shape[0] == bs
                    cal.write_calibration_cache(b"TRT-100300-EntropyCalibration2\ninput: 3c010a14\n")
                    trt.calibrated.append(batches)
                else:
                    trt.calibrated.append("cache")
            return super().build_serialized_network(network, config)

    trt.Builder = Builder
    base_runtime = trt.Runtime

    class Runtime(base_runtime):
        def deserialize_cuda_engine(self, blob):
            engine = super().deserialize_cuda_engine(blob)
            engine.create_engine_inspector = lambda: types.SimpleNamespace(
                get_engine_information=lambda fmt: json.dumps(LAYER_INFO)
            )
            return engine

    trt.Runtime = Runtime
    return trt


@pytest.fixture
def trt_gpu(monkeypatch, tmp_path):
    trt = int8_tensorrt()
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    monkeypatch.setattr(gpu, "torch_cuda", lambda: True)
    monkeypatch.setattr(gpu, "available_backends", lambda: {"tensorrt": "", "torch-cuda": ""})
    dev = GpuDevice(engine_cache=tmp_path)
    dev.torch_device = "cpu"  # calibration and inference buffers on the CPU: there is no GPU here
    monkeypatch.setattr(dev, "identity_name", lambda: "Fake GPU")
    return trt, dev, tmp_path


def test_calibrator_feeds_the_calibration_set_and_writes_the_cache_beside_the_engine(trt_gpu, onnx_model):
    trt, dev, cache_dir = trt_gpu
    assert "int8" in dev.precisions and dev.int8_input == "calibrator"
    x = np.random.default_rng(0).standard_normal((70, 1, 8, 8), dtype=np.float32)
    sess = dev.load(onnx_model, "int8", batch_size=8, calibration=x)
    fed = trt.calibrated[0]
    assert len(fed) == 2  # 70 images in batches of 32: two full batches, the partial one dropped
    np.testing.assert_array_equal(np.concatenate(fed), x[:64])  # the real images went through the address
    config = trt.builds[0]
    assert {1, 2} <= config.flags  # INT8 with FP16 allowed for fallback
    assert config.calibration_profile == {"input": [[32, 1, 8, 8]] * 3}
    engines, caches = list(cache_dir.glob("*.engine")), list(cache_dir.glob("*.calib"))
    assert len(engines) == 1 and [c.stem for c in caches] == [engines[0].stem]  # keyed like the engine
    assert caches[0].read_bytes().startswith(b"TRT-100300-EntropyCalibration2")
    assert json.loads((cache_dir / f"{engines[0].stem}.json").read_text())["calibration"] == int8.calibration_sha256(x)
    rep = sess.int8_report
    assert rep.cache == str(caches[0]) and not rep.cache_hit
    assert rep.fallback_layers == ["fc", "reformat"] and "2 of 4 layers not int8" in rep.summary()
    out = sess.run(x[:8])
    assert out.shape == (8, 4)


def test_calibration_cache_is_read_instead_of_recalibrating_and_a_new_set_gets_its_own(trt_gpu, onnx_model):
    trt, dev, cache_dir = trt_gpu
    x = np.random.default_rng(0).standard_normal((64, 1, 8, 8), dtype=np.float32)
    dev.load(onnx_model, "int8", batch_size=8, calibration=x)
    for engine in cache_dir.glob("*.engine"):
        engine.unlink()  # engine gone, calibration cache kept: the rebuild must read it
    sess = dev.load(onnx_model, "int8", batch_size=8, calibration=x)
    assert trt.calibrated[1] == "cache" and sess.int8_report.cache_hit
    dev.load(onnx_model, "int8", batch_size=8, calibration=x[::-1].copy())  # other set: other key, calibrated anew
    assert isinstance(trt.calibrated[2], list) and len(list(cache_dir.glob("*.calib"))) == 2
    dev.load(onnx_model, "int8", batch_size=8, calibration=x)  # engine cached: no build, no calibration
    assert len(trt.calibrated) == 3


def test_each_measured_batch_gets_its_own_int8_engine_and_calibration_cache(trt_gpu, onnx_model):
    """Per-batch engines (profile [1, B, B]): each is calibrated and cached under its own key; the session's
    report is that of the latest engine, and a smaller batch runs on a covering engine without a new build."""
    trt, dev, cache_dir = trt_gpu
    x = np.random.default_rng(1).standard_normal((64, 1, 8, 8), dtype=np.float32)
    sess = dev.load(onnx_model, "int8", calibration=x)  # nothing built yet: engines come with their batches
    assert trt.calibrated == [] and sess.int8_report is None
    sess.prepare(8)
    first = sess.int8_report
    sess.prepare(32)
    assert [c.profiles[0]["input"][1][0] for c in trt.builds] == [8, 32]  # kOPT of each engine
    engines = sorted(p.stem for p in cache_dir.glob("*.engine"))
    assert sorted(p.stem for p in cache_dir.glob("*.calib")) == engines and len(engines) == 2
    assert {Path(first.cache).stem, Path(sess.int8_report.cache).stem} == set(engines)  # one report per engine
    assert sess.run(x[:5]).shape == (5, 4) and len(trt.builds) == 2  # covered by the batch-8 engine


def test_tensorrt_11_declares_no_int8_and_refuses_it_with_the_reason(monkeypatch, tmp_path, onnx_model):
    """TensorRT 11 has no implicit quantization (no IInt8EntropyCalibrator2): int8 is not declared, and asked
    for anyway it is refused with why; fp16 still works the strongly typed way."""
    trt = fake_tensorrt("11.0.0")
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    monkeypatch.setattr(gpu, "torch_cuda", lambda: True)
    monkeypatch.setattr(gpu, "available_backends", lambda: {"tensorrt": "", "torch-cuda": ""})
    dev = GpuDevice(engine_cache=tmp_path)
    dev.torch_device = "cpu"
    monkeypatch.setattr(dev, "identity_name", lambda: "Fake GPU")
    assert "int8" not in dev.precisions and dev.int8_input == "" and "strongly typed" in dev.int8_refusal
    x = np.zeros((4, 1, 8, 8), np.float32)
    with pytest.raises(RuntimeError, match="strongly typed"):
        dev.load(onnx_model, "int8", batch_size=8, calibration=x)
    assert dev.load(onnx_model, "fp16", batch_size=8).run(x).shape == (4, 4)


def test_int8_without_calibration_or_calibrator_api_is_refused(trt_gpu, onnx_model, monkeypatch):
    trt, dev, _ = trt_gpu
    with pytest.raises(ValueError, match="calibration"):
        dev.load(onnx_model, "int8", batch_size=8)
    del trt.IInt8EntropyCalibrator2
    with pytest.raises(RuntimeError, match="IInt8EntropyCalibrator2"):
        dev.load(onnx_model, "int8", batch_size=8, calibration=np.zeros((4, 1, 8, 8), np.float32))


def test_fp32_engine_keys_are_unchanged_by_the_calibration_field():
    from ticketbench.devices.tensorrt_engine import EngineKey

    k = EngineKey("ab" * 32, "G", "10.3.0", "fp32", {})
    assert k.digest() == EngineKey("ab" * 32, "G", "10.3.0", "fp32", {}, calibration="").digest()
    assert k.digest() != EngineKey("ab" * 32, "G", "10.3.0", "int8", {}, calibration="cd" * 32).digest()


def test_trtexec_cache_format_round_trips_scales():
    assert int8.trt_version_code("8.2.1") == 8201 and int8.trt_version_code("10.3.0") == 100300
    assert int8.trt_version_code("8.6.1.6") == 8601


def test_trtexec_cache_scales_are_amax_over_127(tmp_path):
    path = int8.write_trtexec_cache(
        {"input": (-2.0, 1.0), "relu": (0.0, 6.35), "dead": (0.0, 0.0)}, "8.2.1", tmp_path / "c"
    )
    header, scales = int8.read_trtexec_cache(path.read_text())
    assert header == "TRT-8201-EntropyCalibration2"
    assert scales["input"] == pytest.approx(2.0 / 127) and scales["relu"] == pytest.approx(0.05)
    assert scales["dead"] > 0
    assert path.read_text().splitlines()[1] == "dead: " + struct.pack(">f", 1 / 127).hex()


def test_layer_precisions_from_detailed_layer_info():
    assert int8.layer_precisions(LAYER_INFO) == {
        "conv1 + relu": "int8",
        "pool": "int8",
        "fc": "fp16",
        "reformat": "fp32",
    }
    assert int8.layer_precisions({"Layers": ["conv1", "fc"]}) == {}  # names only (not detailed): unknown, not int8


def test_trtexec_int8_argv_needs_calib():
    argv = build_argv(
        "trtexec", "m.onnx", "e", "int8", "input", None, None, None, calib="c.cache", layer_info="l.json",
        trt_version="8.2.1",
    )  # fmt: skip
    assert "--int8" in argv and "--fp16" in argv and "--calib=c.cache" in argv
    assert "--exportLayerInfo=l.json" in argv and "--profilingVerbosity=detailed" in argv
    with pytest.raises(ValueError, match="int8"):
        build_argv("trtexec", "m.onnx", "e", "int8", "input", None, None, None)
    with pytest.raises(ValueError, match="no --int8"):  # TensorRT 11's trtexec: strongly typed, no implicit int8
        build_argv("trtexec", "m.onnx", "e", "int8", "input", None, None, None, True, calib="c.cache")


@pytest.mark.e2e
def test_jetson_trtexec_int8_sends_a_cache_computed_here(tmp_path, monkeypatch, onnx_model):
    root = make_board(tmp_path / "board", "tx2")
    monkeypatch.setenv("PATH", path_with(install_bin(tmp_path / "bin", trt_version="8201")))
    work = tmp_path / "work"
    dev = JetsonDevice(root=str(root), workdir=str(work))
    assert "int8" in dev.precisions and dev.int8_input == "calibrator"
    x = np.random.default_rng(0).standard_normal((40, 1, 8, 8), dtype=np.float32)
    sess = dev.load(onnx_model, "int8", calibration=x)
    caches = list(work.rglob("calib-*.cache"))
    assert len(caches) == 1 and caches[0].name == f"calib-{int8.calibration_sha256(x)[:16]}-trt8.2.1.cache"
    header, scales = int8.read_trtexec_cache(caches[0].read_text())
    assert header == "TRT-8201-EntropyCalibration2" and "input" in scales and "logits" in scales
    out = sess.run(x[:4])  # builds the int8 engine with --calib, then runs it
    assert out.shape == (4, 10)
    engines = [p.name for p in work.rglob("*.engine")]
    assert engines and all(e.startswith(f"int8-{int8.calibration_sha256(x)[:16]}-") for e in engines)
    rep = sess.int8_report
    assert rep.layers and rep.cache == str(caches[0]).replace(str(work), dev.board.transport.workdir)
    import onnx

    graph = onnx.load(str(onnx_model)).graph
    no_scale = sorted(n.name or n.output[0] for n in graph.node if not all(o in scales for o in n.output))
    assert sorted(rep.fallback_layers) == no_scale  # what lacked a scale is what the board reports as fallback
    again = dev.load(onnx_model, "int8", batch_size=4, calibration=x)  # cache already on the board: not resent
    assert again.int8_report.cache_hit and again.int8_report.layers == rep.layers  # engine cached, layers re-read
    assert len(list(work.rglob("calib-*.cache"))) == 1
    dev.close()


@pytest.mark.e2e
def test_jetson_trtexec_80_builds_int8_without_the_layer_report_it_cannot_make(tmp_path, monkeypatch, onnx_model):
    """JetPack 4.6 ships TensorRT 8.0.1, whose trtexec has no --profilingVerbosity/--exportLayerInfo and stops on
    any unknown option: int8 is built without them, and the layer precisions are said to be unreported."""
    root = make_board(tmp_path / "board", "tx2")
    monkeypatch.setenv("PATH", path_with(install_bin(tmp_path / "bin", trt_version="8001")))
    dev = JetsonDevice(root=str(root), workdir=str(tmp_path / "work"))
    assert dev.trt_version() == "8.0.1" and "int8" in dev.precisions
    x = np.random.default_rng(0).standard_normal((40, 1, 8, 8), dtype=np.float32)
    sess = dev.load(onnx_model, "int8", calibration=x)
    assert sess.run(x[:4]).shape == (4, 10)  # the int8 engine was built (and run) by trtexec 8.0.1
    rep = sess.int8_report
    assert rep.layers == {} and "layer precisions not reported" in rep.summary()
    assert not list((tmp_path / "work").rglob("*.layers.json"))
    dev.close()


def test_jetson_trtexec_11_declares_no_int8(tmp_path, monkeypatch, onnx_model):
    """TensorRT 11's trtexec has no --int8: the board is not offered int8, and a direct session refuses it."""
    from ticketbench.devices.jetson import TrtexecSession

    root = make_board(tmp_path / "board", "orin_nano")
    monkeypatch.setenv("PATH", path_with(install_bin(tmp_path / "bin", trt_version="110000")))
    dev = JetsonDevice(root=str(root), workdir=str(tmp_path / "work"))
    assert "int8" not in dev.precisions and dev.int8_input == "" and "--int8" in dev.int8_refusal
    x = np.zeros((4, 1, 8, 8), np.float32)
    with pytest.raises(RuntimeError, match="no --int8"):
        TrtexecSession(dev.board, onnx_model, "int8", None, calibration=x)
    with pytest.raises(RuntimeError, match="no --int8"):
        dev.load(onnx_model, "int8", calibration=x)
    dev.close()


def test_local_jetson_tensorrt_backend_calibrates_like_the_gpu(tmp_path, monkeypatch, onnx_model):
    """On the board with the TensorRT Python API: the same load_tensorrt, so the same calibrator and cache."""
    from ticketbench.devices import jetson

    root = make_board(tmp_path / "board", "orin_nano")
    monkeypatch.setenv("PATH", path_with(install_bin(tmp_path / "bin")))
    trt = int8_tensorrt("10.3.0")
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    monkeypatch.setattr(jetson, "_torch_cuda", lambda: True)
    monkeypatch.setenv("TICKETBENCH_ENGINE_CACHE", str(tmp_path / "engines"))
    dev = JetsonDevice(root=str(root), workdir=str(tmp_path / "work"))
    assert dev.backend == "tensorrt" and "int8" in dev.precisions and dev.int8_input == "calibrator"
    dev.torch_device = "cpu"
    x = np.random.default_rng(2).standard_normal((32, 1, 8, 8), dtype=np.float32)
    sess = dev.load(onnx_model, "int8", batch_size=4, calibration=x)
    assert len(trt.calibrated[0]) == 1 and sess.int8_report.fallback_layers == ["fc", "reformat"]
    assert [p.suffix for p in sorted((tmp_path / "engines").glob("*.calib"))] == [".calib"]
    dev.close()


@pytest.mark.e2e
@pytest.mark.parametrize("trt_version", ["8201", "8001"])
def test_runner_int8_columns_read_the_sessions_report(tmp_path, monkeypatch, onnx_model, trt_version):
    """The runner's agreement pass (bench/runner._int8_agreement) adds the fallback count and names from the
    calibrator session's int8_report, here a trtexec session on a fake TX2. TensorRT 8.0 cannot report layer
    precisions: the count is then empty, not 0."""
    from ticketbench.bench import runner

    root = make_board(tmp_path / "board", "tx2")
    monkeypatch.setenv("PATH", path_with(install_bin(tmp_path / "bin", trt_version=trt_version)))
    dev = JetsonDevice(root=str(root), workdir=str(tmp_path / "work"))
    x = np.random.default_rng(3).standard_normal((40, 1, 8, 8), dtype=np.float32)
    sess = dev.load(onnx_model, "int8", calibration=x)
    monkeypatch.setattr(runner, "_numpy_batches", lambda data, bs: iter([(x[:16], np.zeros(16, np.int64))]))
    cols = runner._int8_agreement(sess, onnx_model, None)
    if trt_version == "8001":
        assert cols["int8_fallback_layers"] is None and "layer precisions not reported" in cols["int8_note"]
    else:
        assert cols["int8_fallback_layers"] == len(sess.int8_report.fallback_layers) > 0
        assert "layers not int8" in cols["int8_note"]
    assert "onnxruntime entropy → trtexec --calib cache" in cols["int8_note"]
    dev.close()
