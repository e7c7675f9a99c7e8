"""GPU adapter against a fake `tensorrt` module (8.x bindings API and >=8.5/10.x tensor API), CPU buffers.

The fake engine really reads its input and writes its output through the device addresses it is given
(ctypes on torch CPU tensors), so a wrong binding order or a stale address fails the numeric checks.
"""

from __future__ import annotations

import ctypes
import json
import sys
import types
import warnings

import numpy as np
import pytest
import torch

from ticketbench.devices import gpu
from ticketbench.devices.gpu import GpuDevice, OrtGpuSession, available_backends
from ticketbench.devices.tensorrt_engine import EngineKey, TrtSession, cached_engine, io_api, profile_shapes
from ticketbench.models.export import to_onnx_bytes
from ticketbench.models.zoo import create_model

K = 4  # fake output classes


def _floats(ptr: int, n: int) -> np.ndarray:
    return np.ctypeslib.as_array((ctypes.c_float * n).from_address(ptr))


def fake_tensorrt(version: str) -> types.ModuleType:
    """The slice of the TensorRT Python API ticketbench uses; `logits = sum(x) * [1..K]` as the 'network'."""
    trt = types.ModuleType("tensorrt")
    trt.__version__ = version
    major, minor = (int(p) for p in version.split(".")[:2])
    tensor_api = (major, minor) >= (8, 5)
    trt.builds = []

    class Logger:
        WARNING = 2

        def __init__(self, level):
            self.level = level

    trt.Logger = Logger
    trt.NetworkDefinitionCreationFlag = types.SimpleNamespace(EXPLICIT_BATCH=0)
    trt.MemoryPoolType = types.SimpleNamespace(WORKSPACE=0)
    trt.BuilderFlag = types.SimpleNamespace(FP16=1)
    trt.TensorIOMode = types.SimpleNamespace(INPUT="in", OUTPUT="out")
    trt.DataType = types.SimpleNamespace(FLOAT="float32")
    trt.nptype = lambda dt: np.float32

    class Config:
        def __init__(self):
            self.flags, self.profiles = set(), []

        def set_flag(self, f):
            self.flags.add(f)

        def add_optimization_profile(self, p):
            self.profiles.append(p.shapes)

    if (major, minor) >= (8, 4):
        Config.set_memory_pool_limit = lambda self, pool, size: None

    class Profile:
        def __init__(self):
            self.shapes = {}

        def set_shape(self, name, mn, opt, mx):
            self.shapes[name] = [list(mn), list(opt), list(mx)]

    class Network:
        input_name = None

    class Builder:
        def __init__(self, logger):
            pass

        def create_network(self, flags):
            return Network()

        def create_builder_config(self):
            return Config()

        def create_optimization_profile(self):
            return Profile()

        def build_serialized_network(self, network, config):
            trt.builds.append(config)
            return json.dumps({"input": network.input_name, "fp16": 1 in config.flags}).encode()

    class OnnxParser:
        num_errors = 0

        def __init__(self, network, logger):
            self.network = network

        def parse(self, blob):
            import onnx

            self.network.input_name = onnx.load_from_string(blob).graph.input[0].name
            return True

    class Context:
        def __init__(self, names):
            self.names, self.shapes, self.addr = names, {}, {}

        def _compute(self, x_ptr, y_ptr):
            b = self.shapes[self.names[0]][0]
            n = int(np.prod(self.shapes[self.names[0]]))
            x = _floats(x_ptr, n).reshape(b, -1)
            _floats(y_ptr, b * K)[:] = (x.sum(1, keepdims=True) * np.arange(1, K + 1)).ravel()
            return True

    class Context10(Context):
        def set_input_shape(self, name, shape):
            self.shapes[name] = tuple(shape)

        def get_tensor_shape(self, name):
            return (self.shapes[self.names[0]][0], K)

        def set_tensor_address(self, name, ptr):
            self.addr[name] = ptr

        def execute_async_v3(self, stream):
            return self._compute(self.addr[self.names[0]], self.addr[self.names[1]])

    class Context8(Context):
        def set_binding_shape(self, i, shape):
            self.shapes[self.names[i]] = tuple(shape)

        def get_binding_shape(self, i):
            return (self.shapes[self.names[0]][0], K)

        def execute_async_v2(self, bindings, stream_handle):
            return self._compute(bindings[0], bindings[1])

    class Engine10:
        num_io_tensors = 2

        def __init__(self, names):
            self.names = names

        def get_tensor_name(self, i):
            return self.names[i]

        def get_tensor_mode(self, name):
            return trt.TensorIOMode.INPUT if name == self.names[0] else trt.TensorIOMode.OUTPUT

        def get_tensor_dtype(self, name):
            return trt.DataType.FLOAT

        def create_execution_context(self):
            return Context10(self.names)

    class Engine8:
        num_bindings = 2

        def __init__(self, names):
            self.names = names

        def get_binding_name(self, i):
            return self.names[i]

        def binding_is_input(self, i):
            return i == 0

        def get_binding_dtype(self, i):
            return trt.DataType.FLOAT

        def create_execution_context(self):
            return Context8(self.names)

    class Runtime:
        def __init__(self, logger):
            pass

        def deserialize_cuda_engine(self, blob):
            names = [json.loads(blob)["input"], "logits"]
            return Engine10(names) if tensor_api else Engine8(names)

    trt.Builder, trt.OnnxParser, trt.Runtime = Builder, OnnxParser, Runtime
    return trt


@pytest.fixture(scope="module")
def onnx_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("m") / "m.onnx"
    path.write_bytes(to_onnx_bytes(create_model("small_cnn", num_classes=10, in_channels=1, width=8), (1, 8, 8)))
    return path


def expected(x: np.ndarray) -> np.ndarray:
    return x.reshape(len(x), -1).sum(1, keepdims=True) * np.arange(1, K + 1)


def key(**kw) -> EngineKey:
    base = {"onnx_sha256": "ab" * 32, "gpu": "NVIDIA H100", "trt_version": "10.3.0", "precision": "fp32"}
    base["shapes"] = {"input": profile_shapes([None, 1, 8, 8], 1, 32, 256)}
    base.update(kw)
    return EngineKey(**base)


def test_cache_key_covers_everything_the_engine_depends_on():
    k = key().digest()
    assert key().digest() == k
    assert key(precision="fp16").digest() != k
    assert key(gpu="NVIDIA RTX 4090").digest() != k
    assert key(trt_version="8.6.1").digest() != k
    assert key(onnx_sha256="cd" * 32).digest() != k
    assert key(shapes={"input": profile_shapes([None, 1, 8, 8], 1, 1, 1)}).digest() != k


@pytest.mark.parametrize("version", ["8.2.1", "10.3.0"])
def test_engine_built_once_then_cached(version, onnx_path, tmp_path):
    trt = fake_tensorrt(version)
    k = key(trt_version=version)
    blob, cached = cached_engine(trt, onnx_path, k, tmp_path)
    assert not cached and len(trt.builds) == 1
    assert trt.builds[0].profiles == [{"input": [[1, 1, 8, 8], [32, 1, 8, 8], [256, 1, 8, 8]]}]
    blob2, cached2 = cached_engine(trt, onnx_path, k, tmp_path)
    assert cached2 and blob2 == blob and len(trt.builds) == 1
    cached_engine(trt, onnx_path, key(trt_version=version, precision="fp16"), tmp_path)
    assert len(trt.builds) == 2 and 1 in trt.builds[1].flags  # FP16 flag set
    assert json.loads((tmp_path / f"{k.digest()}.json").read_text())["gpu"] == "NVIDIA H100"
    with pytest.raises(ValueError, match="int8"):
        cached_engine(trt, onnx_path, key(trt_version=version, precision="int8"), tmp_path)


@pytest.mark.parametrize("version,api", [("8.2.1", "_BindingApi"), ("8.4.3", "_BindingApi"), ("10.3.0", "_TensorApi")])
def test_session_binds_buffers_for_each_api(version, api, onnx_path, tmp_path):
    trt = fake_tensorrt(version)
    blob, _ = cached_engine(trt, onnx_path, key(trt_version=version), tmp_path)
    sess = TrtSession(trt, blob, device="cpu")
    assert type(sess.api).__name__ == api
    rng = np.random.default_rng(0)
    for batch in (3, 5, 3):  # shape changes rebind the buffers
        x = rng.standard_normal((batch, 1, 8, 8), dtype=np.float32)
        np.testing.assert_allclose(sess.run(x), expected(x), rtol=1e-5)
    sess.sync()


def test_io_api_choice_follows_the_engine():
    trt = fake_tensorrt("10.0.1")
    engine = trt.Runtime(None).deserialize_cuda_engine(json.dumps({"input": "input"}).encode())
    api = io_api(trt, engine)
    assert api.inputs == ["input"] and api.outputs == ["logits"]


def test_gpu_adapter_tensorrt_path_with_fakes(monkeypatch, onnx_path, tmp_path):
    monkeypatch.setitem(sys.modules, "tensorrt", fake_tensorrt("10.3.0"))
    monkeypatch.setattr(gpu, "torch_cuda", lambda: True)
    monkeypatch.setattr(gpu, "available_backends", lambda: {"tensorrt": "", "torch-cuda": ""})
    dev = GpuDevice(engine_cache=tmp_path)
    assert dev.backend == "tensorrt" and dev.precisions == ("fp32", "fp16", "int8")  # int8: entropy calibrator
    dev.torch_device = "cpu"  # buffers on the CPU: there is no GPU here
    monkeypatch.setattr(dev, "identity_name", lambda: "Fake GPU")
    sess = dev.load(onnx_path, "fp32", batch_size=8)
    x = np.ones((8, 1, 8, 8), np.float32)
    np.testing.assert_allclose(sess.run(x), expected(x))
    assert sess.min_window_s >= 1.0 and sess.snapshot() == {}  # no NVML here: no clocks
    assert len(list(tmp_path.glob("*.engine"))) == 1


def test_torch_module_backend_and_missing_onnx_backend(monkeypatch, onnx_path):
    monkeypatch.setattr(gpu, "torch_cuda", lambda: True)
    monkeypatch.setattr(gpu, "available_backends", lambda: {"tensorrt": "not installed", "torch-cuda": ""})
    dev = GpuDevice()
    assert dev.backend == "torch-cuda"
    with pytest.raises(RuntimeError, match="install tensorrt or onnxruntime-gpu"):
        dev.load(onnx_path)
    dev.torch_device = "cpu"
    module = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 3))
    sess = dev.load(onnx_path, module=module)
    x = np.ones((2, 1, 8, 8), np.float32)
    with torch.no_grad():
        want = module(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(sess.run(x), want, rtol=1e-6)


def test_onnx_backend_ignores_a_passed_module(monkeypatch, onnx_path):
    """The runner always passes the module; an ONNX backend must still run the ONNX, not the module."""
    monkeypatch.setattr(gpu, "available_backends", lambda: {"onnxruntime-cuda": "", "torch-cuda": ""})
    dev = GpuDevice()
    assert dev.backend == "onnxruntime-cuda"
    used = []
    monkeypatch.setattr(gpu, "OrtGpuSession", lambda *a, **k: used.append(a) or types.SimpleNamespace())
    dev.load(onnx_path, module=torch.nn.Identity())
    assert used and used[0][1] == "onnxruntime-cuda"


def test_no_gpu_here_says_why():
    avail = GpuDevice.probe()
    if avail.ok:  # pragma: no cover - only on a machine with a GPU
        pytest.skip("a GPU is present")
    assert "no NVIDIA GPU" in avail.reason or "NVML" in avail.reason
    reasons = available_backends()
    assert reasons["torch-cuda"] == "torch has no CUDA"


def test_ort_gpu_session_refuses_to_fall_back_to_cpu(onnx_path):
    if "CUDAExecutionProvider" in __import__("onnxruntime").get_available_providers():  # pragma: no cover
        pytest.skip("onnxruntime-gpu present")
    with warnings.catch_warnings(), pytest.raises((RuntimeError, ValueError)):
        warnings.simplefilter("ignore")
        OrtGpuSession(onnx_path, "onnxruntime-cuda", "fp32")
