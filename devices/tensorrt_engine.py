"""TensorRT Python API: build an engine from ONNX (serialized and cached) per batch size, and run it.

- Written for TensorRT 8.2-8.6, 10.x and 11.x (`tensorrt` imported lazily by the caller and passed in).
- Cache: one file per key = sha256(ONNX) + GPU name + TensorRT version + precision + input shapes, under
  ~/.cache/ticketbench/engines (or TICKETBENCH_ENGINE_CACHE); engines are not portable across GPUs or
  TensorRT versions, which is why both are in the key.
- Batch: TensorRT selects kernels for a profile's kOPT shape, so each measured batch gets its own engine
  with profile [1, B, B] (`TrtSession.prepare(B)`); a smaller batch (an evaluation set's last one) runs
  on a covering engine. `set_input_shape`'s False (shape outside the profile) is an error, not ignored.
- Precision: fp16 is `BuilderFlag.FP16` up to TensorRT 10 (deprecated since 10.12); TensorRT 11 removed
  weak typing, networks are strongly typed, so fp16 comes from the ONNX's own types: the fp32 graph is
  converted (devices/onnx_fp16.py: fp16 weights, fp32 I/O with Casts at the edges) before parsing.
  int8 (up to TensorRT 10, which still has IInt8EntropyCalibrator2): each batch's engine is built with the
  entropy calibrator of devices/int8_calibration.py over the calibration set, fp16 allowed for fallback; its
  calibration cache is `<engine digest>.calib` beside the engine (the key adds the calibration set's sha256),
  and the layers that did not run int8 are read back into `TrtSession.int8_report`. TensorRT 11 (strongly
  typed, no implicit quantization) refuses int8 with that reason.
- Execution: TensorRT >= 8.5 (incl. 10.x, 11.x) names I/O tensors (`num_io_tensors`, `set_input_shape`,
  `set_tensor_address`, `execute_async_v3`); TensorRT 8.0-8.4 uses binding indices (`num_bindings`,
  `set_binding_shape`, `execute_async_v2`). The choice follows the API the engine has. Each session
  enqueues its copies and execution on its own CUDA stream (TensorRT warns that the default stream costs
  extra synchronizations) and synchronizes that stream at window edges.
- Device buffers and the stream come from torch (a core dependency), so neither pycuda nor cuda-python
  is needed.

Verified here only against a fake `tensorrt` module (tests/test_devices_gpu.py); no GPU was available.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ticketbench.devices import int8_calibration as int8
from ticketbench.devices.base import Session
from ticketbench.devices.layer_profile import (
    LayerProfile,
    LayerTimeSink,
    OnnxGraph,
    paired_times,
    read_layer_info,
    resolve_trt_layers,
    tensorrt_profiler,
)
from ticketbench.files import atomic_write_bytes, atomic_write_text

log = logging.getLogger("ticketbench.devices.tensorrt")

DEFAULT_CACHE = Path(os.environ.get("TICKETBENCH_ENGINE_CACHE", Path.home() / ".cache" / "ticketbench" / "engines"))


def default_cache() -> Path:
    """The engine cache directory: TICKETBENCH_ENGINE_CACHE (read now, not at import), else DEFAULT_CACHE."""
    env = os.environ.get("TICKETBENCH_ENGINE_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "ticketbench" / "engines"


STRONGLY_TYPED_FROM = 11  # TensorRT major version without BuilderFlag.FP16 (weak typing removed)


def trt_major(version: str) -> int:
    """8 from '8.2.1'; 0 when unknown."""
    head = str(version).split(".")[0]
    return int(head) if head.isdigit() else 0


def onnx_opset(onnx_path: Path) -> int | None:
    """The default-domain opset an ONNX file declares."""
    import onnx

    model = onnx.load(str(onnx_path), load_external_data=False)
    return next((int(o.version) for o in model.opset_import if o.domain in ("", "ai.onnx")), None)


def trt_version_tuple(trt: Any) -> tuple[int, int]:
    major, minor = (int(p) for p in str(trt.__version__).split(".")[:2])
    return major, minor


def max_opset_for(version: str) -> int | None:
    """Highest ONNX opset TensorRT `version`'s parser takes when below ticketbench's export opset (17), else None.

    onnx-tensorrt's operator docs: 8.0 and 8.2 "support operators up to Opset 13", 8.5 and 8.6 up to 17;
    8.4 is given 13 too (not confirmed from its docs: the lower opset is the safe side).
    """
    try:
        major, minor = (int(p) for p in str(version).split(".")[:2])
    except ValueError:
        return None
    return 13 if (major, minor) < (8, 5) else None


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclass
class EngineKey:
    """Everything an engine depends on; its digest names the cache file."""

    onnx_sha256: str
    gpu: str
    trt_version: str
    precision: str
    shapes: dict[str, list[list[int]]] = field(default_factory=dict)  # input → [min, opt, max]
    calibration: str = ""  # int8: sha256 of the calibration set; empty otherwise, and then left out of the digest

    def digest(self) -> str:
        fields = asdict(self)
        if not fields["calibration"]:  # fp32/fp16 keys hash as before int8 existed: their cached engines stay valid
            del fields["calibration"]
        return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:24]


def onnx_input(onnx_path: Path) -> tuple[str, list[int | None]]:
    """The first graph input's name and dims (None for symbolic dims such as the batch)."""
    import onnx

    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    inits = {i.name for i in graph.initializer}
    inp = next(i for i in graph.input if i.name not in inits)
    dims = [d.dim_value if d.dim_value > 0 else None for d in inp.type.tensor_type.shape.dim]
    return inp.name, dims


def static_dims(dims: Sequence[int | None]) -> list[int]:
    """The input's dims after the batch; only the batch may be dynamic (one optimization profile over batch)."""
    rest = list(dims[1:])
    if any(d is None for d in rest):
        raise ValueError(f"input dims {list(dims)}: only the batch dimension may be dynamic")
    return [int(d) for d in rest if d is not None]


def profile_shapes(dims: Sequence[int | None], min_b: int, opt_b: int, max_b: int) -> list[list[int]]:
    """[min, opt, max] shapes for a batch-dynamic input; other dims must be static."""
    rest = static_dims(dims)
    return [[min_b, *rest], [opt_b, *rest], [max_b, *rest]]


def build_engine(
    trt: Any, onnx_path: Path, key: EngineKey, workspace_bytes: int = 1 << 30, calibrator: Any = None
) -> bytes:
    """Parse ONNX with TensorRT's parser and build a serialized engine (explicit batch, one profile).

    int8 needs `calibrator` (int8_calibration.entropy_calibrator) and a TensorRT with implicit quantization."""
    major = trt_version_tuple(trt)[0]
    strongly_typed = major >= STRONGLY_TYPED_FROM
    if key.precision == "int8":
        if strongly_typed:
            raise RuntimeError(f"TensorRT {trt.__version__} builds strongly typed networks only: no calibrated int8")
        if calibrator is None:
            raise ValueError("TensorRT int8 needs a calibrator (the calibration set: load(..., calibration=x))")
    elif key.precision not in ("fp32", "fp16"):
        raise ValueError(f"TensorRT path supports fp32, fp16 and calibrated int8 (asked for {key.precision})")
    blob = Path(onnx_path).read_bytes()
    if key.precision == "fp16" and strongly_typed:  # the types must be in the graph itself
        from ticketbench.devices.onnx_fp16 import convert_bytes

        blob = convert_bytes(blob)
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 0
    if major < 10:  # explicit batch is the only mode from 10.0 on
        flags = 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(blob):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT could not parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    if hasattr(config, "set_memory_pool_limit"):  # 8.4+
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_bytes)
    else:
        config.max_workspace_size = workspace_bytes
    if key.precision == "fp16" and not strongly_typed:
        config.set_flag(trt.BuilderFlag.FP16)
    if key.shapes:
        profile = builder.create_optimization_profile()
        for name, (mn, opt, mx) in key.shapes.items():
            profile.set_shape(name, mn, opt, mx)
        config.add_optimization_profile(profile)
    if key.precision == "int8":
        int8.configure_int8(trt, builder, config, calibrator, key.shapes)
    engine = builder.build_serialized_network(network, config)
    if engine is None:
        raise RuntimeError(f"TensorRT failed to build an engine for {onnx_path}")
    return bytes(engine)


def cached_engine(
    trt: Any, onnx_path: Path, key: EngineKey, cache_dir: Path = DEFAULT_CACHE, calibrator: Any = None
) -> tuple[bytes, bool]:
    """The serialized engine for `key`, built once and then read from the cache: (bytes, was_cached).

    `calibrator` (int8 only) is used when the engine has to be built."""
    cache_dir = Path(cache_dir)
    path = cache_dir / f"{key.digest()}.engine"
    if path.is_file():
        return path.read_bytes(), True
    blob = build_engine(trt, onnx_path, key, calibrator=calibrator)
    atomic_write_bytes(path, blob)  # a unique temp name: two processes building one engine never share a file
    atomic_write_text(cache_dir / f"{key.digest()}.json", json.dumps(asdict(key), indent=2))
    return blob, False


class _TensorApi:
    """TensorRT >= 8.5: I/O tensors by name, execute_async_v3."""

    def __init__(self, trt: Any, engine: Any) -> None:
        self.trt, self.engine = trt, engine
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        self.inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.outputs = [n for n in names if n not in self.inputs]

    def dtype(self, name: str) -> np.dtype:
        return np.dtype(self.trt.nptype(self.engine.get_tensor_dtype(name)))

    def set_input_shape(self, ctx: Any, name: str, shape: tuple[int, ...]) -> bool:
        return ctx.set_input_shape(name, shape) is not False

    def output_shape(self, ctx: Any, name: str) -> tuple[int, ...]:
        return tuple(ctx.get_tensor_shape(name))

    def execute(self, ctx: Any, addresses: dict[str, int], stream: int, profiled: bool = False) -> bool:
        """Enqueue on `stream`; with a profiler attached, TensorRT >= 8.5 reports its layer times from enqueue
        itself (IExecutionContext.enqueue_emits_profile defaults to True: enqueue then returns when done)."""
        for name, ptr in addresses.items():
            ctx.set_tensor_address(name, ptr)
        return ctx.execute_async_v3(stream)


class _BindingApi:
    """TensorRT 8.0-8.4: binding indices, execute_async_v2."""

    def __init__(self, trt: Any, engine: Any) -> None:
        self.trt, self.engine = trt, engine
        self.index = {engine.get_binding_name(i): i for i in range(engine.num_bindings)}
        self.inputs = [n for n, i in self.index.items() if engine.binding_is_input(i)]
        self.outputs = [n for n, i in self.index.items() if not engine.binding_is_input(i)]

    def dtype(self, name: str) -> np.dtype:
        return np.dtype(self.trt.nptype(self.engine.get_binding_dtype(self.index[name])))

    def set_input_shape(self, ctx: Any, name: str, shape: tuple[int, ...]) -> bool:
        return ctx.set_binding_shape(self.index[name], shape) is not False

    def output_shape(self, ctx: Any, name: str) -> tuple[int, ...]:
        return tuple(ctx.get_binding_shape(self.index[name]))

    def execute(self, ctx: Any, addresses: dict[str, int], stream: int, profiled: bool = False) -> bool:
        """Enqueue on `stream`; `profiled`: the synchronous execute_v2, the only call TensorRT 8.0-8.4 profiles
        ("enqueue() does not currently support profiling", IProfiler's docs of those versions)."""
        bindings = [0] * len(self.index)
        for name, ptr in addresses.items():
            bindings[self.index[name]] = ptr
        if profiled:
            return ctx.execute_v2(bindings)
        return ctx.execute_async_v2(bindings=bindings, stream_handle=stream)


def io_api(trt: Any, engine: Any) -> _TensorApi | _BindingApi:
    """The tensor-address API when the engine has it (>= 8.5), else the binding API."""
    return _TensorApi(trt, engine) if hasattr(engine, "num_io_tensors") else _BindingApi(trt, engine)


class HostStream:
    """Stand-in for a stream when buffers live on the CPU (tests with a fake TensorRT): handle 0, no waiting."""

    handle = 0

    def use(self) -> contextlib.AbstractContextManager:
        return contextlib.nullcontext()

    def synchronize(self) -> None:
        pass


class CudaStream:
    """A dedicated CUDA stream: its handle goes to TensorRT, torch's copies are enqueued on it (`use`)."""

    def __init__(self, torch: Any, device: Any) -> None:
        self.torch, self.stream = torch, torch.cuda.Stream(device)
        self.handle = int(self.stream.cuda_stream)

    def use(self) -> contextlib.AbstractContextManager:
        return self.torch.cuda.stream(self.stream)

    def synchronize(self) -> None:
        self.stream.synchronize()


def device_scope(torch: Any, device: Any) -> contextlib.AbstractContextManager:
    """Make `device` CUDA's current device for what runs inside: TensorRT builds, deserializes and executes on
    the current device, while torch puts the buffers on the device they name. Without this, a session on
    cuda:1 would build and deserialize its engines on cuda:0 and bind cuda:1 addresses to them."""
    return torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext()


def new_stream(torch: Any, device: Any) -> CudaStream | HostStream:
    """The session's own stream (never the default stream, on which TensorRT adds synchronizations)."""
    return CudaStream(torch, device) if device.type == "cuda" else HostStream()


class TrtEngine:
    """One deserialized engine, its execution context and device buffers for the current input shape."""

    def __init__(self, trt: Any, engine_bytes: bytes, torch: Any, device: Any, profile: Sequence[int] | None) -> None:
        self.torch, self.device = torch, device
        self.profile = tuple(profile) if profile else None  # (min, opt, max) batch; None: static shapes
        self.runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self.engine = self.runtime.deserialize_cuda_engine(engine_bytes)
        if self.engine is None:
            raise RuntimeError("TensorRT could not deserialize the engine (built by another version or GPU?)")
        self.context = self.engine.create_execution_context()
        self.api = io_api(trt, self.engine)
        self.buffers: dict[str, Any] = {}
        self.shape: tuple[int, ...] | None = None

    def covers(self, batch: int) -> bool:
        return self.profile is None or self.profile[0] <= batch <= self.profile[2]

    def bind(self, shape: tuple[int, ...]) -> None:
        """Set the input shape (checked: False means outside the profile) and allocate buffers for it."""
        torch, name = self.torch, self.api.inputs[0]
        if not self.api.set_input_shape(self.context, name, shape):
            raise ValueError(
                f"TensorRT rejected input shape {shape}: outside the engine's optimization profile "
                f"(batch {self.profile[0]}..{self.profile[2]})"
                if self.profile
                else f"TensorRT rejected input shape {shape} (static engine)"
            )
        self.buffers = {name: torch.empty(shape, dtype=_torch_dtype(torch, self.api.dtype(name)), device=self.device)}
        for out in self.api.outputs:
            oshape = self.api.output_shape(self.context, out)
            self.buffers[out] = torch.empty(oshape, dtype=_torch_dtype(torch, self.api.dtype(out)), device=self.device)
        self.shape = shape

    def run(self, x: np.ndarray, stream: CudaStream | HostStream, profiled: Any = None) -> np.ndarray:
        """Copy in, execute and copy out, all on `stream`; the device→host copy waits for it. `profiled`: a context
        from `profiled_context` for this input shape, executed instead of the timed one (same buffers and copies)."""
        if x.shape != self.shape:
            self.bind(tuple(x.shape))
        name = self.api.inputs[0]
        ctx = self.context if profiled is None else profiled
        with stream.use():
            self.buffers[name].copy_(self.torch.from_numpy(np.ascontiguousarray(x, dtype=self.api.dtype(name))))
            addresses = {n: b.data_ptr() for n, b in self.buffers.items()}
            ok = self.api.execute(ctx, addresses, stream.handle, profiled is not None)
            if ok is False:
                raise RuntimeError("TensorRT execution failed")
            return self.buffers[self.api.outputs[0]].cpu().numpy()

    def profiled_context(self, profiler: Any, shape: tuple[int, ...]) -> Any:
        """A second execution context of this engine for input `shape`, with `profiler` attached: the timed context
        never carries one."""
        ctx = self.engine.create_execution_context()
        ctx.profiler = profiler
        if not self.api.set_input_shape(ctx, self.api.inputs[0], shape):
            raise ValueError(f"TensorRT rejected input shape {shape} on the profiling context")
        return ctx

    def layer_info(self, trt: Any) -> str | None:
        """The engine inspector's JSON (TensorRT >= 8.2): layer names, and with detailed verbosity their types and
        ONNX nodes; None before 8.2."""
        if not hasattr(self.engine, "create_engine_inspector"):
            return None
        return str(self.engine.create_engine_inspector().get_engine_information(trt.LayerInformationFormat.JSON))


EngineFactory = Callable[["tuple[int, int, int] | None"], bytes]  # batch profile (min, opt, max) → engine bytes


class TrtSession(Session):
    """An ONNX model as TensorRT engines, one per prepared batch size (profile [1, B, B], kOPT = B).

    `engine_for(profile)` returns the serialized engine for a batch profile (None: the ONNX has a static
    batch), built or read from the cache. run() uses the engine tuned for the batch when there is one, else
    one whose profile covers it, else builds one; prepare(B) builds B's engine ahead of timing.
    `report_int8(engine)` (int8 only) describes a new engine: `int8_report` is that of the latest one built.
    """

    backend = "tensorrt"
    int8_report: int8.Int8Report | None = None  # int8: calibration cache and fallback layers of the latest engine
    onnx_path: Path | None = None  # the model's ONNX: what profile_layers maps TensorRT's layer names back to

    def __init__(
        self,
        trt: Any,
        engine_for: EngineFactory,
        device: str = "cuda",
        dynamic_batch: bool = True,
        snapshot: Callable[[], dict[str, Any]] | None = None,
        min_window_s: float = 0.0,
        report_int8: Callable[[Any], int8.Int8Report] | None = None,
    ) -> None:
        import torch

        super().__init__(snapshot, min_window_s)
        self.trt, self.torch, self.device = trt, torch, torch.device(device)
        self.engine_for, self.dynamic, self.report_int8 = engine_for, dynamic_batch, report_int8
        self.stream = new_stream(torch, self.device)
        self.engines: dict[int, TrtEngine] = {}  # kOPT batch (0: static engine) → engine

    def prepare(self, batch_size: int) -> None:
        self._engine(int(batch_size), exact=True)

    def _engine(self, batch: int, exact: bool) -> TrtEngine:
        if not self.dynamic:
            if 0 not in self.engines:
                self.engines[0] = self._new_engine(None)
            return self.engines[0]
        if batch in self.engines:
            return self.engines[batch]
        if not exact:
            covering = [e for b, e in sorted(self.engines.items()) if e.covers(batch)]
            if covering:
                return covering[0]
        profile = (1, batch, batch)
        log.info("building a TensorRT engine for batch %d (profile %s)", batch, profile)
        self.engines[batch] = self._new_engine(profile)
        return self.engines[batch]

    def _new_engine(self, profile: tuple[int, int, int] | None) -> TrtEngine:
        with device_scope(self.torch, self.device):  # built (and calibrated) and deserialized on our GPU
            engine = TrtEngine(self.trt, self.engine_for(profile), self.torch, self.device, profile)
        if self.report_int8 is not None:
            self.int8_report = self.report_int8(engine.engine)
        return engine

    def run(self, x: np.ndarray) -> np.ndarray:
        engine = self._engine(int(x.shape[0]), exact=False)
        with device_scope(self.torch, self.device):
            return engine.run(x, self.stream)

    def sync(self) -> None:
        self.stream.synchronize()

    def profile_layers(self, x: np.ndarray, calls: int) -> LayerProfile:
        """TensorRT's per-layer times through an IProfiler on a second context of the engine that runs this batch,
        timed in alternating windows beside the unprofiled context (same buffers, same copies)."""
        batch = int(x.shape[0])
        engine = self._engine(batch, exact=False)
        sink = LayerTimeSink()
        with device_scope(self.torch, self.device):
            engine.run(x, self.stream)  # binds the buffers for this shape
            ctx = engine.profiled_context(tensorrt_profiler(self.trt, sink), tuple(x.shape))

            def plain() -> None:
                engine.run(x, self.stream)
                self.stream.synchronize()

            def profiled() -> None:
                engine.run(x, self.stream, ctx)
                self.stream.synchronize()

            for _ in range(2):  # warm-up of the new context, not counted
                profiled()
            sink.ms.clear()
            a, b = paired_times(plain, profiled, calls)
            info = engine.layer_info(self.trt)
        layers = sink.layers(len(b))
        if self.onnx_path is not None:
            resolve_trt_layers(layers, OnnxGraph.load(self.onnx_path), read_layer_info(info) if info else None)
        call = "execute_async_v3" if isinstance(engine.api, _TensorApi) else "execute_v2"
        return LayerProfile(
            self.backend,
            batch,
            len(b),
            layers,
            float(np.median(b)),
            float(np.median(a)),
            f"tensorrt {self.trt.__version__} IProfiler ({call})",
        )

    def close(self) -> None:
        self.engines.clear()


def load_tensorrt(
    onnx_path: Path,
    precision: str,
    device: str,
    gpu_name: str,
    cache_dir: Path | None = None,
    batch_size: int | None = None,
    snapshot: Callable[[], dict[str, Any]] | None = None,
    min_window_s: float = 0.0,
    calibration: np.ndarray | None = None,
) -> TrtSession:
    """A TensorRT session for an ONNX file on `device` (a torch device string): the one entry point that the
    gpu and jetson adapters share. Engines are cached per GPU name, TensorRT version, precision and batch
    profile (int8: and the calibration set); `batch_size`, when given, is built now. int8 needs `calibration`
    (float32 N×C×H×W), which each engine build calibrates on unless its calibration cache exists."""
    import tensorrt as trt

    onnx_path = Path(onnx_path)
    if precision not in ("fp32", "fp16", "int8"):
        raise ValueError(f"TensorRT path supports fp32, fp16 and calibrated int8 (asked for {precision})")
    if precision == "int8" and int8_refusal(trt):
        raise RuntimeError(int8_refusal(trt))
    extra = int8.key_fields(precision, calibration)  # ValueError: int8 without a calibration set
    name, dims = onnx_input(onnx_path)
    dynamic = bool(dims) and dims[0] is None
    sha = file_sha256(onnx_path)
    cache = Path(cache_dir or default_cache())
    calibrators: list[Any] = []  # the calibrator of each engine asked for, in order

    def engine_for(profile: tuple[int, int, int] | None) -> bytes:
        shapes = {name: profile_shapes(dims, *profile)} if profile else {}
        key = EngineKey(sha, gpu_name, str(trt.__version__), precision, shapes, **extra)
        calibrator = int8.calibrator_for(trt, precision, calibration, cache, key.digest(), device)
        calibrators.append(calibrator)
        return cached_engine(trt, onnx_path, key, cache, calibrator)[0]

    def report_int8(engine: Any) -> int8.Int8Report:
        return int8.python_api_report(trt, engine, calibrators[-1])

    session = TrtSession(
        trt, engine_for, device, dynamic, snapshot, min_window_s, report_int8 if precision == "int8" else None
    )
    session.onnx_path = onnx_path
    if batch_size is not None:
        session.prepare(batch_size)
    return session


def int8_refusal(trt: Any) -> str:
    """Why this TensorRT cannot build calibrated int8 engines ("" when it can): TensorRT 11 builds strongly
    typed networks only, and any version without IInt8EntropyCalibrator2 has no implicit quantization."""
    if trt_version_tuple(trt)[0] >= STRONGLY_TYPED_FROM:
        return f"TensorRT {trt.__version__} builds strongly typed networks only: no IInt8EntropyCalibrator2 (int8)"
    if not hasattr(trt, "IInt8EntropyCalibrator2"):
        return f"TensorRT {trt.__version__} has no IInt8EntropyCalibrator2 (implicit int8 calibration)"
    return ""


def _torch_dtype(torch: Any, dtype: np.dtype) -> Any:
    return torch.from_numpy(np.zeros(1, dtype=dtype)).dtype
