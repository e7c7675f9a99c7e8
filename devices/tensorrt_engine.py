"""TensorRT Python API: build an engine from ONNX (serialized and cached), and run it.

- Cache: one file per key = sha256(ONNX) + GPU name + TensorRT version + precision + input shapes, under
  ~/.cache/ticketbench/engines (or TICKETBENCH_ENGINE_CACHE); engines are not portable across GPUs or
  TensorRT versions, which is why both are in the key.
- Execution: TensorRT >= 8.5 (incl. 10.x) names I/O tensors (`num_io_tensors`, `set_input_shape`,
  `set_tensor_address`, `execute_async_v3`); TensorRT 8.0-8.4 uses binding indices (`num_bindings`,
  `set_binding_shape`, `execute_async_v2`). Both are handled; the choice follows the API the engine has.
- Device buffers and the stream come from torch (a core dependency), so neither pycuda nor cuda-python
  is needed. `tensorrt` is imported lazily by the caller and passed in.

Verified here only against a fake `tensorrt` module (tests/test_devices_gpu.py); no GPU was available.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ticketbench.devices.int8_calibration import configure_int8

DEFAULT_CACHE = Path(os.environ.get("TICKETBENCH_ENGINE_CACHE", Path.home() / ".cache" / "ticketbench" / "engines"))


def trt_version_tuple(trt: Any) -> tuple[int, int]:
    major, minor = (int(p) for p in str(trt.__version__).split(".")[:2])
    return major, minor


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
    calibration: str = ""  # int8: sha256 of the calibration set (empty otherwise, and then left out of the digest)

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


def profile_shapes(dims: Sequence[int | None], min_b: int, opt_b: int, max_b: int) -> list[list[int]]:
    """[min, opt, max] shapes for a batch-dynamic input; other dims must be static."""
    rest = [int(d) for d in dims[1:]]
    return [[min_b, *rest], [opt_b, *rest], [max_b, *rest]]


def build_engine(
    trt: Any, onnx_path: Path, key: EngineKey, workspace_bytes: int = 1 << 30, calibrator: Any = None
) -> bytes:
    """Parse ONNX with TensorRT's parser and build a serialized engine (explicit batch, one profile).

    int8 needs `calibrator` (devices/int8_calibration.entropy_calibrator)."""
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 0
    if trt_version_tuple(trt)[0] < 10:  # explicit batch is the only mode from 10.0 on
        flags = 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(Path(onnx_path).read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT could not parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    if hasattr(config, "set_memory_pool_limit"):  # 8.4+
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_bytes)
    else:
        config.max_workspace_size = workspace_bytes
    if key.precision == "fp16":
        config.set_flag(trt.BuilderFlag.FP16)
    elif key.precision != "fp32" and not (key.precision == "int8" and calibrator is not None):
        raise ValueError(
            f"TensorRT path supports fp32 and fp16, and int8 with a calibrator (asked for {key.precision})"
        )
    if key.shapes:
        profile = builder.create_optimization_profile()
        for name, (mn, opt, mx) in key.shapes.items():
            profile.set_shape(name, mn, opt, mx)
        config.add_optimization_profile(profile)
    if key.precision == "int8":
        configure_int8(trt, builder, config, calibrator, key.shapes)
    blob = builder.build_serialized_network(network, config)
    if blob is None:
        raise RuntimeError(f"TensorRT failed to build an engine for {onnx_path}")
    return bytes(blob)


def cached_engine(
    trt: Any, onnx_path: Path, key: EngineKey, cache_dir: Path = DEFAULT_CACHE, calibrator: Any = None
) -> tuple[bytes, bool]:
    """The serialized engine for `key`, built once and then read from the cache: (bytes, was_cached)."""
    cache_dir = Path(cache_dir)
    path = cache_dir / f"{key.digest()}.engine"
    if path.is_file():
        return path.read_bytes(), True
    blob = build_engine(trt, onnx_path, key, calibrator=calibrator)
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(blob)
    tmp.replace(path)
    (cache_dir / f"{key.digest()}.json").write_text(json.dumps(asdict(key), indent=2))
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

    def set_input_shape(self, ctx: Any, name: str, shape: tuple[int, ...]) -> None:
        ctx.set_input_shape(name, shape)

    def output_shape(self, ctx: Any, name: str) -> tuple[int, ...]:
        return tuple(ctx.get_tensor_shape(name))

    def execute(self, ctx: Any, addresses: dict[str, int], stream: int) -> bool:
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

    def set_input_shape(self, ctx: Any, name: str, shape: tuple[int, ...]) -> None:
        ctx.set_binding_shape(self.index[name], shape)

    def output_shape(self, ctx: Any, name: str) -> tuple[int, ...]:
        return tuple(ctx.get_binding_shape(self.index[name]))

    def execute(self, ctx: Any, addresses: dict[str, int], stream: int) -> bool:
        bindings = [0] * len(self.index)
        for name, ptr in addresses.items():
            bindings[self.index[name]] = ptr
        return ctx.execute_async_v2(bindings=bindings, stream_handle=stream)


def io_api(trt: Any, engine: Any) -> _TensorApi | _BindingApi:
    """The tensor-address API when the engine has it (>= 8.5), else the binding API."""
    return _TensorApi(trt, engine) if hasattr(engine, "num_io_tensors") else _BindingApi(trt, engine)


class TrtSession:
    """A deserialized engine with torch-allocated device buffers; run() returns host outputs."""

    backend = "tensorrt"
    int8_report: Any = None  # an int8_calibration.Int8Report for engines built with a calibrator

    def __init__(self, trt: Any, engine_bytes: bytes, device: str = "cuda") -> None:
        import torch

        self.torch, self.device = torch, torch.device(device)
        self.runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self.engine = self.runtime.deserialize_cuda_engine(engine_bytes)
        if self.engine is None:
            raise RuntimeError("TensorRT could not deserialize the engine (built by another version or GPU?)")
        self.context = self.engine.create_execution_context()
        self.api = io_api(trt, self.engine)
        self.buffers: dict[str, Any] = {}
        self.shape: tuple[int, ...] | None = None
        self.cuda = self.device.type == "cuda"

    def _stream(self) -> int:
        return self.torch.cuda.current_stream(self.device).cuda_stream if self.cuda else 0

    def _bind(self, shape: tuple[int, ...]) -> None:
        torch = self.torch
        name = self.api.inputs[0]
        self.api.set_input_shape(self.context, name, shape)
        self.buffers = {name: torch.empty(shape, dtype=_torch_dtype(torch, self.api.dtype(name)), device=self.device)}
        for out in self.api.outputs:
            oshape = self.api.output_shape(self.context, out)
            self.buffers[out] = torch.empty(oshape, dtype=_torch_dtype(torch, self.api.dtype(out)), device=self.device)
        self.shape = shape

    def run(self, x: np.ndarray) -> np.ndarray:
        if x.shape != self.shape:
            self._bind(tuple(x.shape))
        name = self.api.inputs[0]
        self.buffers[name].copy_(self.torch.from_numpy(np.ascontiguousarray(x, dtype=self.api.dtype(name))))
        ok = self.api.execute(self.context, {n: b.data_ptr() for n, b in self.buffers.items()}, self._stream())
        if ok is False:
            raise RuntimeError("TensorRT execution failed")
        return self.buffers[self.api.outputs[0]].cpu().numpy()  # the device→host copy waits for the stream

    def sync(self) -> None:
        if self.cuda:
            self.torch.cuda.synchronize(self.device)


def _torch_dtype(torch: Any, dtype: np.dtype) -> Any:
    return torch.from_numpy(np.zeros(1, dtype=dtype)).dtype
