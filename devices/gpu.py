"""Desktop NVIDIA GPU adapter: TensorRT, ONNX Runtime CUDA/TensorRT EP, or torch CUDA; NVML power.

Backends for an ONNX file, in `auto` order: `tensorrt` (Python API, engine cached, needs tensorrt and a
CUDA torch for buffers), `onnxruntime-tensorrt`, `onnxruntime-cuda` (onnxruntime-gpu providers).
`torch-cuda` runs a PyTorch module, not the ONNX file (there is no ONNX→torch importer among our
dependencies): pass `module=` to `load()`; the runner's training epochs also run there (torch_device).
With no ONNX-capable GPU backend installed, `load()` of an ONNX file fails and says what to install.

Every window is synchronized at its edges (session.sync), and latency windows last at least
power_nvml.MIN_WINDOW_S so the NVML counter/average covers them. Nothing here was run on a GPU: the
TensorRT path and NVML were exercised against fakes only (tests/test_devices_gpu.py, test_power_nvml.py).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np

from ticketbench.devices.base import DEVICES, Availability, DeviceAdapter, Session
from ticketbench.devices.power import PowerReader

ONNX_BACKENDS = ("tensorrt", "onnxruntime-tensorrt", "onnxruntime-cuda")
ORT_PROVIDERS = {"onnxruntime-tensorrt": "TensorrtExecutionProvider", "onnxruntime-cuda": "CUDAExecutionProvider"}


def nvidia_gpu_present() -> tuple[bool, str]:
    """Whether an NVIDIA GPU is visible, and how we know (NVML, then torch, then nvidia-smi)."""
    try:
        import pynvml

        pynvml.nvmlInit()
        n = pynvml.nvmlDeviceGetCount()
        if n:
            return True, f"NVML sees {n} GPU(s)"
    except ImportError:
        pass
    except Exception as exc:  # NVML library missing or driver not loaded
        return False, f"NVML failed: {exc}"
    try:
        import torch

        if torch.cuda.is_available():
            return True, f"torch sees {torch.cuda.device_count()} CUDA device(s)"
    except ImportError:
        pass
    if shutil.which("nvidia-smi") is None:
        return False, "no NVIDIA GPU: NVML not installed, torch.cuda unavailable, nvidia-smi not found"
    return False, "no NVIDIA GPU visible to NVML or torch"


def torch_cuda() -> bool:
    try:
        import torch

        return bool(torch.cuda.is_available())
    except ImportError:
        return False


def available_backends() -> dict[str, str]:
    """{backend: "" if usable, else why not}."""
    out = {}
    try:
        import tensorrt  # noqa: F401

        out["tensorrt"] = "" if torch_cuda() else "tensorrt installed, but torch has no CUDA for its buffers"
    except ImportError:
        out["tensorrt"] = "tensorrt not installed (pip install 'ticketbench[gpu]')"
    try:
        import onnxruntime as ort

        have = set(ort.get_available_providers())
        for name, provider in ORT_PROVIDERS.items():
            out[name] = "" if provider in have else f"onnxruntime has no {provider} (install onnxruntime-gpu)"
    except ImportError:
        for name in ORT_PROVIDERS:
            out[name] = "onnxruntime not installed"
    out["torch-cuda"] = "" if torch_cuda() else "torch has no CUDA"
    return out


class OrtGpuSession:
    """ONNX Runtime on the GPU; run() returns host outputs, so each call has finished on the device."""

    def __init__(self, onnx_path: Path, backend: str, precision: str, index: int = 0) -> None:
        import onnxruntime as ort

        provider = ORT_PROVIDERS[backend]
        options: dict[str, Any] = {"device_id": index}
        if precision == "fp16":
            if backend != "onnxruntime-tensorrt":
                raise ValueError("onnxruntime-cuda runs the fp32 graph; fp16 needs onnxruntime-tensorrt or tensorrt")
            options["trt_fp16_enable"] = True
        elif precision != "fp32":
            raise ValueError(f"{backend} supports fp32/fp16 (asked for {precision})")
        self.backend = backend
        self.sess = ort.InferenceSession(str(onnx_path), providers=[(provider, options)])
        if provider not in self.sess.get_providers():
            raise RuntimeError(f"onnxruntime did not enable {provider} (got {self.sess.get_providers()})")
        self.input_name = self.sess.get_inputs()[0].name

    def run(self, x: np.ndarray) -> np.ndarray:
        return self.sess.run(None, {self.input_name: x})[0]

    def sync(self) -> None:  # outputs are copied to the host before run() returns
        pass


class TorchCudaSession:
    """A PyTorch module on CUDA (fp32 or fp16); sync() waits for the device."""

    backend = "torch-cuda"

    def __init__(self, module: Any, device: str, precision: str) -> None:
        import torch

        if precision not in ("fp32", "fp16"):
            raise ValueError(f"torch-cuda supports fp32/fp16 (asked for {precision})")
        self.torch, self.device = torch, torch.device(device)
        self.dtype = torch.float16 if precision == "fp16" else torch.float32
        self.module = module.to(self.device, self.dtype).eval()

    def run(self, x: np.ndarray) -> np.ndarray:
        with self.torch.inference_mode():
            out = self.module(self.torch.from_numpy(x).to(self.device, self.dtype))
        return out.float().cpu().numpy()

    def sync(self) -> None:
        if self.device.type == "cuda":
            self.torch.cuda.synchronize(self.device)


@DEVICES.register("gpu")
class GpuDevice(DeviceAdapter):
    name = "gpu"

    def __init__(self, backend: str = "auto", index: int = 0, engine_cache: Path | None = None) -> None:
        self.index = index
        self.requested = backend
        self.engine_cache = engine_cache
        self.backends = available_backends()
        self.torch_device = f"cuda:{index}" if torch_cuda() else None
        usable = [b for b in ONNX_BACKENDS if self.backends.get(b, "unknown backend") == ""]
        self.backend = backend if backend != "auto" else (usable[0] if usable else "torch-cuda")
        self.precisions = ("fp32",) if self.backend == "onnxruntime-cuda" else ("fp32", "fp16")
        if self.backend == "tensorrt":  # int8: TensorRT's entropy calibrator on the calibration set (issue 14)
            self.precisions, self.int8_input = (*self.precisions, "int8"), "calibrator"
        self._reader: PowerReader | None = None

    @classmethod
    def probe(cls) -> Availability:
        present, why = nvidia_gpu_present()
        if not present:
            return Availability(False, why)
        backends = available_backends()
        usable = [b for b, reason in backends.items() if not reason]
        if not usable:
            return Availability(False, f"{why}, but no backend: " + "; ".join(backends.values()))
        onnx_ok = [b for b in usable if b in ONNX_BACKENDS]
        note = "" if onnx_ok else " (no ONNX backend: install tensorrt or onnxruntime-gpu; torch-cuda needs a module)"
        return Availability(True, f"{why}; backends: {', '.join(usable)}{note}")

    def identity(self) -> dict[str, Any]:
        ident: dict[str, Any] = {"device": "gpu", "backend": self.backend, "backends": self.backends}
        try:
            from ticketbench.devices.power_nvml import nvml_identity

            ident.update(nvml_identity(self.index))
        except Exception as exc:  # no NVML: fall back to torch's name
            ident["nvml"] = f"unavailable: {exc}"
            if torch_cuda():
                import torch

                ident["device_name"] = torch.cuda.get_device_name(self.index)
        for mod in ("tensorrt", "onnxruntime", "torch"):
            try:
                ident[mod] = __import__(mod).__version__
            except ImportError:
                pass
        if torch_cuda():
            import torch

            ident["cuda"] = torch.version.cuda
        ident["clocks"] = self.snapshot()
        return ident

    def snapshot(self) -> dict[str, Any]:
        try:
            from ticketbench.devices.power_nvml import nvml_snapshot

            return nvml_snapshot(self.index)
        except Exception:
            return {}

    def load(
        self,
        onnx_path: Path,
        precision: str = "fp32",
        batch_size: int = 1,
        module: Any | None = None,
        calibration: np.ndarray | None = None,
    ) -> Session:
        """`module` (the PyTorch model the ONNX was exported from) is used by the torch-cuda backend only;
        the ONNX backends ignore it, so callers may always pass it. `calibration` (float32 N×C×H×W) is what
        TensorRT's int8 calibrator reads."""
        if self.backend == "torch-cuda":
            if module is None:
                raise RuntimeError(
                    "no ONNX backend on this GPU (install tensorrt or onnxruntime-gpu); "
                    "torch-cuda runs a PyTorch module: GpuDevice.load(..., module=m)"
                )
            session: Any = TorchCudaSession(module, self.torch_device or f"cuda:{self.index}", precision)
        elif self.backends.get(self.backend, "unknown backend"):
            raise RuntimeError(f"backend {self.backend} unavailable: {self.backends.get(self.backend, 'unknown')}")
        elif self.backend == "tensorrt":
            session = self._load_tensorrt(Path(onnx_path), precision, batch_size, calibration)
        else:
            session = OrtGpuSession(Path(onnx_path), self.backend, precision, self.index)
        from ticketbench.devices.power_nvml import MIN_WINDOW_S

        session.snapshot = self.snapshot
        session.min_window_s = MIN_WINDOW_S
        return session

    def _load_tensorrt(
        self, onnx_path: Path, precision: str, batch_size: int, calibration: np.ndarray | None = None
    ) -> Session:
        import tensorrt as trt

        from ticketbench.devices import int8_calibration as int8
        from ticketbench.devices.tensorrt_engine import (
            DEFAULT_CACHE,
            EngineKey,
            TrtSession,
            cached_engine,
            file_sha256,
            onnx_input,
            profile_shapes,
        )

        name, dims = onnx_input(onnx_path)
        shapes = {}
        if dims and dims[0] is None:  # dynamic batch: one profile from 1 to max(batch, 256) optimized for batch
            shapes[name] = profile_shapes(dims, 1, batch_size, max(batch_size, 256))
        key = EngineKey(
            file_sha256(onnx_path),
            self.identity_name(),
            str(trt.__version__),
            precision,
            shapes,
            **int8.key_fields(precision, calibration),
        )
        cache_dir = self.engine_cache or DEFAULT_CACHE
        device = self.torch_device or f"cuda:{self.index}"
        calibrator = int8.calibrator_for(trt, precision, calibration, cache_dir, key.digest(), device)
        blob, _ = cached_engine(trt, onnx_path, key, cache_dir, calibrator)
        session = TrtSession(trt, blob, device)
        if calibrator is not None:
            session.int8_report = int8.python_api_report(trt, session.engine, calibrator)
        return session

    def identity_name(self) -> str:
        try:
            from ticketbench.devices.power_nvml import nvml_identity

            return nvml_identity(self.index)["device_name"]
        except Exception:
            import torch

            return torch.cuda.get_device_name(self.index)

    def power_reader(self) -> tuple[PowerReader | None, str]:
        from ticketbench.devices.power_nvml import probe_nvml_reader

        self._reader, why = probe_nvml_reader(self.index)
        return self._reader, why
