"""GPU adapter against a fake `tensorrt` module (8.x bindings API, >=8.5/10.x tensor API, 11.x strongly typed).

The fake engine really reads its input and writes its output through the device addresses it is given
(ctypes on torch CPU tensors), so a wrong binding order or a stale address fails the numeric checks. Like
the real one it rejects input shapes outside its optimization profile (set_input_shape returns False),
records the stream each execution was enqueued on, and from 11.0 on has no BuilderFlag.FP16.

Per-layer profiling as the real API does it: an `IProfiler` subclass must call `IProfiler.__init__`; a context's
`profiler` gets report_layer_time(layer_name, ms) once per layer per execution, from `execute_v2` only up to 8.4
("enqueue() does not currently support profiling") and from `execute_async_v3` too from 8.5. Layers are named like
TensorRT's fused layers of the parsed ONNX ("<conv> + <relu>", an input reformat first), each reporting a fixed
time (`LAYER_MS`); from 8.2 the engine inspector returns them as JSON, names only unless the engine was built with
ProfilingVerbosity.DETAILED, with Metadata ("[ONNX Layer: x]" joined by \x1e in 8.6, \x1f from 10) from 8.6.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import sys
import types
import warnings

import numpy as np
import pytest
import torch

from ticketbench.devices import gpu, tensorrt_engine
from ticketbench.devices.gpu import GpuDevice, OrtGpuSession, available_backends
from ticketbench.devices.measure import LatencyConfig, measure_latency, run_eval_epoch
from ticketbench.devices.tensorrt_engine import EngineKey, cached_engine, io_api, load_tensorrt, profile_shapes
from ticketbench.models.export import to_onnx_bytes
from ticketbench.models.zoo import create_model

K = 4  # fake output classes
LAYER_MS = 0.25  # what the fake reports per layer and call, times the layer's position (1, 2, ...)


def fake_trt_layers(model) -> list[dict]:
    """TensorRT-style layers of an ONNX graph: a Conv or Gemm read only by a Relu fuses with it; an input reformat."""
    readers: dict[str, list] = {}
    for n in model.graph.node:
        for t in n.input:
            readers.setdefault(t, []).append(n)
    layers, fused = [], set()
    for n in model.graph.node:
        if n.name in fused or n.op_type == "Identity":
            continue
        nodes = [n]
        nxt = readers.get(n.output[0], [])
        if n.op_type in ("Conv", "Gemm") and len(nxt) == 1 and nxt[0].op_type == "Relu":
            nodes.append(nxt[0])
            fused.add(nxt[0].name)
        kind = {"Conv": "CaskConvolution", "Gemm": "CaskGemm"}.get(n.op_type, "CaskPooling")
        layers.append({"Name": " + ".join(m.name for m in nodes), "LayerType": kind, "nodes": [m.name for m in nodes]})
    first = layers[0]["Name"]
    reformat = {"Name": f"Reformatting CopyNode for Input Tensor 0 to {first}", "LayerType": "Reformat", "nodes": []}
    return [reformat, *layers]


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
    # TensorRT 11 removed weak typing: no FP16 (nor INT8, BF16, ...) builder flag
    trt.BuilderFlag = types.SimpleNamespace(FP16=1) if major < 11 else types.SimpleNamespace(REFIT=2)
    trt.parsed = []  # the ONNX models the parser saw
    trt.streams = []  # the stream handle of every execution
    trt.TensorIOMode = types.SimpleNamespace(INPUT="in", OUTPUT="out")
    trt.ProfilingVerbosity = types.SimpleNamespace(LAYER_NAMES_ONLY=0, DETAILED=2)
    trt.LayerInformationFormat = types.SimpleNamespace(ONELINE=0, JSON=1)

    class IProfiler:
        def __init__(self):
            self.initialized = True  # pybind11: a subclass that skips this is not a profiler TensorRT can call

    trt.IProfiler = IProfiler
    trt.DataType = types.SimpleNamespace(FLOAT="float32")
    trt.nptype = lambda dt: np.float32

    class Config:
        def __init__(self):
            self.flags, self.profiles = set(), []
            self.profiling_verbosity = None  # LAYER_NAMES_ONLY, the default

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
        layers: list = []

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
            profile = config.profiles[0][network.input_name] if config.profiles else None
            note = {
                "input": network.input_name,
                "fp16": 1 in config.flags,
                "profile": profile,
                "layers": network.layers,
                "detailed": config.profiling_verbosity == trt.ProfilingVerbosity.DETAILED,
            }
            return json.dumps(note).encode()

    class OnnxParser:
        num_errors = 0

        def __init__(self, network, logger):
            self.network = network

        def parse(self, blob):
            import onnx

            model = onnx.load_from_string(blob)
            trt.parsed.append(model)
            self.network.input_name = model.graph.input[0].name
            self.network.layers = fake_trt_layers(model)
            return True

    class Context:
        profiler = None

        def __init__(self, names, profile, layers=()):
            self.names, self.shapes, self.addr, self.profile = names, {}, {}, profile
            self.layers = list(layers)

        def _report(self):
            if self.profiler is not None:
                assert getattr(self.profiler, "initialized", False), "IProfiler.__init__ was not called"
                for i, layer in enumerate(self.layers):
                    self.profiler.report_layer_time(layer["Name"], LAYER_MS * (i + 1))

        def _accept(self, shape):
            """Like TensorRT: False (and nothing set) for a batch outside the optimization profile."""
            return self.profile is None or self.profile[0][0] <= shape[0] <= self.profile[2][0]

        def _compute(self, x_ptr, y_ptr):
            b = self.shapes[self.names[0]][0]
            n = int(np.prod(self.shapes[self.names[0]]))
            x = _floats(x_ptr, n).reshape(b, -1)
            _floats(y_ptr, b * K)[:] = (x.sum(1, keepdims=True) * np.arange(1, K + 1)).ravel()
            return True

    class Context10(Context):
        def set_input_shape(self, name, shape):
            if not self._accept(shape):
                return False
            self.shapes[name] = tuple(shape)
            return True

        def get_tensor_shape(self, name):
            return (self.shapes[self.names[0]][0], K)

        def set_tensor_address(self, name, ptr):
            self.addr[name] = ptr

        def execute_async_v3(self, stream):
            trt.streams.append(stream)
            ok = self._compute(self.addr[self.names[0]], self.addr[self.names[1]])
            self._report()  # >= 8.5: enqueue emits the profile (enqueue_emits_profile defaults to True)
            return ok

    class Context8(Context):
        def set_binding_shape(self, i, shape):
            if not self._accept(shape):
                return False
            self.shapes[self.names[i]] = tuple(shape)
            return True

        def get_binding_shape(self, i):
            return (self.shapes[self.names[0]][0], K)

        def execute_async_v2(self, bindings, stream_handle):
            trt.streams.append(stream_handle)
            return self._compute(bindings[0], bindings[1])  # 8.0-8.4: enqueue does not profile

        def execute_v2(self, bindings):
            ok = self._compute(bindings[0], bindings[1])
            self._report()
            return ok

    class Inspector:
        def __init__(self, note):
            self.note = note

        def get_engine_information(self, fmt):
            assert fmt == trt.LayerInformationFormat.JSON
            layers = self.note.get("layers") or []
            if not self.note.get("detailed"):
                return json.dumps({"Layers": [la["Name"] for la in layers], "Bindings": ["input", "logits"]})
            sep = "\x1e" if (major, minor) < (10, 0) else "\x1f"
            out = []
            for la in layers:
                rec = {"Name": la["Name"], "LayerType": la["LayerType"]}
                if (major, minor) >= (8, 6):
                    rec["Metadata"] = sep.join(f"[ONNX Layer: {n}]" for n in la["nodes"])
                out.append(rec)
            return json.dumps({"Layers": out, "Bindings": ["input", "logits"]})

    class Engine:
        note: dict = {}

        def create_engine_inspector(self):
            return Inspector(self.note)

    if (major, minor) < (8, 2):  # the engine inspector came with 8.2
        del Engine.create_engine_inspector

    class Engine10(Engine):
        num_io_tensors = 2

        def __init__(self, names, profile):
            self.names, self.profile = names, profile

        def get_tensor_name(self, i):
            return self.names[i]

        def get_tensor_mode(self, name):
            return trt.TensorIOMode.INPUT if name == self.names[0] else trt.TensorIOMode.OUTPUT

        def get_tensor_dtype(self, name):
            return trt.DataType.FLOAT

        def create_execution_context(self):
            return Context10(self.names, self.profile, self.note.get("layers") or [])

    class Engine8(Engine):
        num_bindings = 2

        def __init__(self, names, profile):
            self.names, self.profile = names, profile

        def get_binding_name(self, i):
            return self.names[i]

        def binding_is_input(self, i):
            return i == 0

        def get_binding_dtype(self, i):
            return trt.DataType.FLOAT

        def create_execution_context(self):
            return Context8(self.names, self.profile, self.note.get("layers") or [])

    class Runtime:
        def __init__(self, logger):
            pass

        def deserialize_cuda_engine(self, blob):
            note = json.loads(blob)
            names = [note["input"], "logits"]
            engine = Engine10(names, note.get("profile")) if tensor_api else Engine8(names, note.get("profile"))
            engine.note = note
            return engine

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


def test_tensorrt11_fp16_comes_from_the_graph_not_a_builder_flag(onnx_path, tmp_path):
    """TensorRT 11 has no BuilderFlag.FP16 (strongly typed networks): the parsed ONNX carries fp16 itself."""
    import onnx

    trt = fake_tensorrt("11.0.0")
    cached_engine(trt, onnx_path, key(trt_version="11.0.0", precision="fp16"), tmp_path)
    model = trt.parsed[-1]
    onnx.checker.check_model(model)
    assert all(t.data_type == onnx.TensorProto.FLOAT16 for t in model.graph.initializer if t.dims)
    io = [*model.graph.input, *model.graph.output]
    assert all(v.type.tensor_type.elem_type == onnx.TensorProto.FLOAT for v in io)  # callers still feed fp32
    assert trt.builds[-1].flags == set()
    cached_engine(trt, onnx_path, key(trt_version="11.0.0"), tmp_path)  # fp32: the ONNX as it is
    assert trt.parsed[-1].graph.initializer[0].data_type == onnx.TensorProto.FLOAT


def test_fp16_graph_matches_the_fp32_one(onnx_path):
    import onnx
    import onnxruntime as ort

    from ticketbench.devices.onnx_fp16 import convert_bytes

    blob = onnx_path.read_bytes()
    half = convert_bytes(blob)
    onnx.shape_inference.infer_shapes(onnx.load_from_string(half), strict_mode=True)
    x = np.random.default_rng(0).standard_normal((4, 1, 8, 8), dtype=np.float32)
    ref, got = (
        ort.InferenceSession(b, providers=["CPUExecutionProvider"]).run(None, {"input": x})[0] for b in (blob, half)
    )
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, ref, atol=2e-3 * max(1.0, float(np.abs(ref).max())))


def _session(monkeypatch, version, tmp_path, onnx_path, batch_size=None):
    trt = fake_tensorrt(version)
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    sess = load_tensorrt(onnx_path, "fp32", "cpu", "Fake GPU", tmp_path, batch_size)
    return trt, sess


@pytest.mark.parametrize("version,api", [("8.2.1", "_BindingApi"), ("8.4.3", "_BindingApi"), ("10.3.0", "_TensorApi")])
def test_session_binds_buffers_for_each_api(version, api, onnx_path, tmp_path, monkeypatch):
    trt, sess = _session(monkeypatch, version, tmp_path, onnx_path, batch_size=5)
    assert type(sess.engines[5].api).__name__ == api
    rng = np.random.default_rng(0)
    for batch in (3, 5, 3):  # shape changes rebind the buffers
        x = rng.standard_normal((batch, 1, 8, 8), dtype=np.float32)
        np.testing.assert_allclose(sess.run(x), expected(x), rtol=1e-5)
    sess.sync()
    assert len(trt.builds) == 1  # batch 3 ran on the batch-5 engine (profile 1..5)


def test_each_measured_batch_gets_an_engine_tuned_for_it(monkeypatch, onnx_path, tmp_path):
    """TensorRT selects kernels for the profile's kOPT: an engine built for batch 1 measures batch 32 slowly."""
    trt, sess = _session(monkeypatch, "10.3.0", tmp_path, onnx_path)
    cfg = LatencyConfig(warmup_iterations=1, warmup_seconds=0.0, min_iterations=3, min_seconds=0.0)
    for batch in (1, 32):
        measure_latency(sess, np.ones((batch, 1, 8, 8), np.float32), cfg)
    opts = [c.profiles[0]["input"][1][0] for c in trt.builds]
    assert opts == [1, 32]  # kOPT = the measured batch, built by prepare() before the window
    x1, x2 = np.ones((16, 1, 8, 8), np.float32), np.ones((5, 1, 8, 8), np.float32)
    run_eval_epoch(sess, [(x1, np.zeros(16, int)), (x2, np.zeros(5, int))])
    assert [c.profiles[0]["input"][1][0] for c in trt.builds] == [1, 32, 16]  # the last, smaller batch reuses 16's


def test_a_batch_outside_the_profile_is_an_error_not_ignored(monkeypatch, onnx_path, tmp_path):
    trt, sess = _session(monkeypatch, "10.3.0", tmp_path, onnx_path, batch_size=8)
    with pytest.raises(ValueError, match=r"outside the engine's optimization profile \(batch 1\.\.8\)"):
        sess.engines[8].run(np.ones((9, 1, 8, 8), np.float32), sess.stream)


def test_execution_uses_the_sessions_own_stream(monkeypatch, onnx_path, tmp_path):
    """Not the default stream (TensorRT warns of extra synchronizations there); synchronized at window edges."""

    class FakeStream:
        handle = 0xBEEF

        def __init__(self):
            self.syncs = 0

        def use(self):
            return contextlib.nullcontext()

        def synchronize(self):
            self.syncs += 1

    stream = FakeStream()
    monkeypatch.setattr(tensorrt_engine, "new_stream", lambda torch, device: stream)
    trt, sess = _session(monkeypatch, "10.3.0", tmp_path, onnx_path)
    measure_latency(sess, np.ones((2, 1, 8, 8), np.float32), LatencyConfig(1, 0.0, 4, 0.0))
    assert trt.streams and set(trt.streams) == {0xBEEF}
    assert stream.syncs >= 4  # each timed iteration waits for the stream


def test_engines_are_built_deserialized_and_run_on_the_sessions_gpu(monkeypatch, onnx_path, tmp_path):
    """TensorRT works on CUDA's current device, torch's buffers on the device they name: a session on cuda:1 must
    build, deserialize and execute with cuda:1 current, or cuda:1 addresses meet an engine made on cuda:0."""
    current = ["cuda:0"]  # CUDA's current device, as torch.cuda.device() would set and restore it
    seen: list[tuple[str, str]] = []

    @contextlib.contextmanager
    def scope(torch, device):
        before, current[0] = current[0], f"cuda:{device.index}"
        try:
            yield
        finally:
            current[0] = before

    monkeypatch.setattr(tensorrt_engine, "device_scope", scope)
    trt = fake_tensorrt("10.3.0")
    build, deserialize = trt.Builder.build_serialized_network, trt.Runtime.deserialize_cuda_engine

    def build_here(self, network, config):
        seen.append(("build", current[0]))
        return build(self, network, config)

    def deserialize_here(self, blob):
        seen.append(("deserialize", current[0]))
        engine = deserialize(self, blob)
        make_context = engine.create_execution_context

        def context_here():
            ctx = make_context()
            run = ctx.execute_async_v3
            ctx.execute_async_v3 = lambda stream: seen.append(("execute", current[0])) or run(stream)
            return ctx

        engine.create_execution_context = context_here
        return engine

    monkeypatch.setattr(trt.Builder, "build_serialized_network", build_here)
    monkeypatch.setattr(trt.Runtime, "deserialize_cuda_engine", deserialize_here)
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    sess = load_tensorrt(onnx_path, "fp32", "cpu", "Fake GPU", tmp_path)
    sess.device = torch.device("cuda", 1)  # the scope's device; buffers stay on the CPU (no GPU here)
    monkeypatch.setattr(tensorrt_engine.TrtEngine, "__init__", _cpu_buffers(tensorrt_engine.TrtEngine.__init__))
    x = np.ones((2, 1, 8, 8), np.float32)
    np.testing.assert_allclose(sess.run(x), expected(x), rtol=1e-5)
    assert seen == [("build", "cuda:1"), ("deserialize", "cuda:1"), ("execute", "cuda:1")]
    assert current == ["cuda:0"]  # restored after each call


def _cpu_buffers(init):
    """TrtEngine.__init__ that keeps its buffers on the CPU whatever device it is given (no GPU here)."""

    def wrapped(self, trt, engine_bytes, torch_mod, device, profile):
        init(self, trt, engine_bytes, torch_mod, torch_mod.device("cpu"), profile)

    return wrapped


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
    assert dev.backend == "tensorrt" and dev.precisions == ("fp32", "fp16") and dev.max_onnx_opset is None
    dev.torch_device = "cpu"  # buffers on the CPU: there is no GPU here
    monkeypatch.setattr(dev, "identity_name", lambda: "Fake GPU")
    sess = dev.load(onnx_path, "fp32", batch_size=8)
    x = np.ones((8, 1, 8, 8), np.float32)
    np.testing.assert_allclose(sess.run(x), expected(x))
    assert sess.min_window_s >= 1.0 and sess.snapshot() == {}  # no NVML here: no clocks
    assert len(list(tmp_path.glob("*.engine"))) == 1
    monkeypatch.setitem(sys.modules, "tensorrt", fake_tensorrt("8.2.1"))
    assert GpuDevice().max_onnx_opset == 13  # onnx-tensorrt 8.2 parses up to opset 13


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
