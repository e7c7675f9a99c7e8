"""TensorRT int8: an entropy calibrator fed from the case's calibration set, its cache, and what fell back.

- Python API (gpu, local Jetson): `entropy_calibrator` subclasses `trt.IInt8EntropyCalibrator2` (KL-divergence
  ranges), feeds the calibration array in fixed batches through a device buffer, and reads/writes its cache
  at `cache_path(dir, key)`: beside the engine cache, named by the same EngineKey digest (which, for int8,
  includes the calibration set's sha256), so a changed ONNX, GPU, TensorRT version or calibration set never
  reuses a stale cache, and a rebuilt engine with the same key skips calibration.
- trtexec (remote Jetsons, TensorRT 8.2 on a TX2): `trtexec --int8 --calib=<cache>` needs a cache file and no
  data, so the cache is computed on the controller and sent: `write_trtexec_cache` writes TensorRT's cache
  format (`TRT-<version>-EntropyCalibration2` header, then `tensor: <float32 scale as 8 hex digits>`,
  scale = amax / 127) from ONNX Runtime's entropy calibration of the same ONNX on the same calibration set
  (devices/int8_quantize.activation_ranges); the ONNX parser names TensorRT tensors after the ONNX tensors, which is
  what the cache is matched on. These are ONNX Runtime's ranges, not TensorRT's own calibrator's.
- Fallback: int8 builds also allow fp16, so layers without an int8 kernel run fp16 instead of fp32; the
  engine's layer information (ProfilingVerbosity.DETAILED; trtexec --exportLayerInfo) says which layers did
  not run int8, and `Int8Report` carries them to results.csv (int8_fallback_layers, int8_note).

Verified here only against fakes (tests/test_int8_tensorrt.py); no GPU or Jetson was available.
"""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ticketbench.files import atomic_write_bytes

CALIBRATION_BATCH = 32  # images per calibrator batch; a last partial batch is dropped (TensorRT wants full ones)


def calibration_sha256(x: np.ndarray) -> str:
    """Identity of a calibration array (shape, dtype, bytes); as int8_quantize.CalibrationSet digests it."""
    h = hashlib.sha256(json.dumps([list(x.shape), str(x.dtype)]).encode())
    h.update(np.ascontiguousarray(x).tobytes())
    return h.hexdigest()


def cache_path(cache_dir: Path, engine_digest: str) -> Path:
    """The calibration cache beside `<digest>.engine`."""
    return Path(cache_dir) / f"{engine_digest}.calib"


def entropy_calibrator(trt: Any, x: np.ndarray, cache: Path, device: str = "cuda", batch_size: int = CALIBRATION_BATCH):
    """A `trt.IInt8EntropyCalibrator2` over `x` (float32 N×C×H×W) whose cache lives at `cache`."""
    import torch

    if not hasattr(trt, "IInt8EntropyCalibrator2"):  # implicit quantization is gone from newer TensorRT
        raise RuntimeError(f"TensorRT {trt.__version__} has no IInt8EntropyCalibrator2 (implicit int8 calibration)")
    x = np.ascontiguousarray(x, dtype=np.float32)
    batch_size = min(batch_size, len(x))
    if batch_size < 1:
        raise ValueError("int8 calibration needs at least one image")

    class EntropyCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)
            self.cache, self.next, self.batches_read = Path(cache), 0, 0
            self.cache_hit = False
            self.buffer = torch.empty((batch_size, *x.shape[1:]), dtype=torch.float32, device=device)

        def get_batch_size(self) -> int:
            return batch_size

        def get_batch(self, names: list[str]) -> list[int] | None:
            if self.next + batch_size > len(x):
                return None
            self.buffer.copy_(torch.from_numpy(x[self.next : self.next + batch_size]))
            self.next += batch_size
            self.batches_read += 1
            return [int(self.buffer.data_ptr())] * len(names)

        def read_calibration_cache(self) -> bytes | None:
            if self.cache.is_file():
                self.cache_hit = True
                return self.cache.read_bytes()
            return None

        def write_calibration_cache(self, blob: Any) -> None:
            atomic_write_bytes(self.cache, bytes(blob))

    return EntropyCalibrator()


def configure_int8(trt: Any, builder: Any, config: Any, calibrator: Any, shapes: Mapping[str, list]) -> None:
    """int8 with fp16 fallback, the entropy calibrator, detailed layer information, and a calibration profile
    (the calibrator's batch size) when the input is dynamic."""
    config.set_flag(trt.BuilderFlag.INT8)
    config.set_flag(trt.BuilderFlag.FP16)  # a layer with no int8 kernel runs fp16 rather than fp32
    config.int8_calibrator = calibrator
    config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED  # so layer precisions can be read back
    if shapes:
        profile = builder.create_optimization_profile()
        b = calibrator.get_batch_size()
        for name, (_, opt, _) in shapes.items():
            shape = [b, *opt[1:]]
            profile.set_shape(name, shape, shape, shape)
        config.set_calibration_profile(profile)


def engine_layers(trt: Any, engine: Any) -> dict[str, str]:
    """Layer → precision of a deserialized engine (TensorRT ≥ 8.2's engine inspector); {} when unavailable."""
    if not hasattr(engine, "create_engine_inspector"):  # TensorRT < 8.2
        return {}
    info = engine.create_engine_inspector().get_engine_information(trt.LayerInformationFormat.JSON)
    return layer_precisions(info)


def key_fields(precision: str, calibration: np.ndarray | None) -> dict[str, str]:
    """The EngineKey field int8 adds (the calibration set's sha256); ValueError when int8 has no calibration."""
    if precision != "int8":
        return {}
    if calibration is None or len(calibration) == 0:
        raise ValueError("int8 on TensorRT needs calibration= (the calibration set, float32 N×C×H×W)")
    return {"calibration": calibration_sha256(np.ascontiguousarray(calibration, dtype=np.float32))}


def calibrator_for(
    trt: Any, precision: str, calibration: np.ndarray | None, cache_dir: Path, engine_digest: str, device: str
) -> Any:
    """The entropy calibrator of an int8 build (cache beside the engine, same digest); None otherwise."""
    if precision != "int8":
        return None
    if calibration is None:
        raise ValueError("TensorRT int8 needs a calibrator (the calibration set: load(..., calibration=x))")
    return entropy_calibrator(trt, calibration, cache_path(cache_dir, engine_digest), device)


def python_api_report(trt: Any, engine: Any, calibrator: Any) -> Int8Report:
    """After an int8 build or cache read: where the cache is, whether calibration ran, which layers fell back."""
    return Int8Report(
        str(calibrator.cache),
        calibrator.batches_read == 0,
        "tensorrt entropy2 (Python API)",
        engine_layers(trt, engine),
    )


def trt_version_code(version: str) -> int:
    """TensorRT's NV_TENSORRT_VERSION as caches spell it: 8.2.1 → 8201, 8.6.1 → 8601, 10.3.0 → 100300."""
    major, minor, patch = ([int(p) for p in str(version).split(".")[:3]] + [0, 0])[:3]
    return major * 1000 + minor * 100 + patch if major < 10 else major * 10000 + minor * 100 + patch


def write_trtexec_cache(ranges: Mapping[str, tuple[float, float]], version: str, path: Path) -> Path:
    """TensorRT's calibration-cache text from per-tensor (min, max) ranges: symmetric scale = max|·| / 127."""
    lines = [f"TRT-{trt_version_code(version)}-EntropyCalibration2"]
    for name in sorted(ranges):
        lo, hi = ranges[name]
        amax = max(abs(float(lo)), abs(float(hi)))
        scale = amax / 127.0 if amax > 0 else 1.0 / 127.0  # an all-zero tensor still needs a valid scale
        lines.append(f"{name}: {struct.pack('>f', scale).hex()}")
    atomic_write_bytes(Path(path), ("\n".join(lines) + "\n").encode())
    return Path(path)


def read_trtexec_cache(text: str) -> tuple[str, dict[str, float]]:
    """(header, {tensor: scale}) of a TensorRT calibration cache."""
    header, *rest = text.strip().splitlines()
    scales = {}
    for line in rest:
        name, _, hexval = line.rpartition(": ")
        scales[name] = struct.unpack(">f", bytes.fromhex(hexval.strip()))[0]
    return header, scales


def _precision_of(fmt: str) -> str:
    f = fmt.lower()
    if "int8" in f:
        return "int8"
    if "half" in f or "fp16" in f:
        return "fp16"
    if "float" in f or "fp32" in f:
        return "fp32"
    return "other"


def layer_precisions(info: str | dict) -> dict[str, str]:
    """Layer name → int8 | fp16 | fp32 | other, from TensorRT's detailed layer information (JSON).

    A layer's precision is read from its outputs' `Format/Datatype` (e.g. "Int8 NC/32HW32", "Half ...",
    "Row major linear FP32"); reformatting layers TensorRT inserts are listed like any other.
    """
    doc = json.loads(info) if isinstance(info, str) else info
    out = {}
    for layer in doc.get("Layers", []):
        if not isinstance(layer, dict):  # non-detailed verbosity lists names only: no precision known
            continue
        fmts = [str(o.get("Format/Datatype", "")) for o in layer.get("Outputs", [])]
        precs = {_precision_of(f) for f in fmts} or {"other"}
        out[str(layer.get("Name", "?"))] = "int8" if precs == {"int8"} else sorted(precs - {"int8"})[0]
    return out


@dataclass
class Int8Report:
    """How an int8 engine came about: its calibration cache, and the layers that did not run int8."""

    cache: str
    cache_hit: bool  # the cache existed, so no calibration batch ran
    calibration: str  # "tensorrt entropy2 (Python API)" or "onnxruntime entropy → trtexec cache"
    layers: dict[str, str] = field(default_factory=dict)  # layer → precision; empty when not reported

    @property
    def fallback_layers(self) -> list[str]:
        return [n for n, p in self.layers.items() if p != "int8"]

    def summary(self) -> str:
        if not self.layers:
            return f"{self.calibration}; layer precisions not reported by this TensorRT"
        fb = self.fallback_layers
        names = ", ".join(f"{n} ({self.layers[n]})" for n in fb[:8]) + (" …" if len(fb) > 8 else "")
        return f"{self.calibration}; {len(fb)} of {len(self.layers)} layers not int8" + (f": {names}" if fb else "")
