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
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ticketbench.devices.base import DEVICES, Availability, DeviceAdapter, Session
from ticketbench.devices.layer_profile import LayerProfile, LayerProfileUnavailable, torch_profile
from ticketbench.devices.power import PowerReader, PowerSource
from ticketbench.devices.power_nvml import cuda_pci_bus_id

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


def tensorrt_max_opset() -> int | None:
    """Highest ONNX opset the installed TensorRT's parser documents (onnx-tensorrt): 13 up to 8.4, else no
    limit below ours (8.5-8.6: 17; 10.x more)."""
    try:
        import tensorrt as trt

        from ticketbench.devices.tensorrt_engine import max_opset_for

        return max_opset_for(str(trt.__version__))
    except ImportError:
        return None


def tensorrt_int8_refusal() -> str:
    """Why the installed TensorRT cannot calibrate int8 ("" when it can; tensorrt_engine.int8_refusal)."""
    try:
        import tensorrt as trt
    except ImportError:
        return "tensorrt not installed"
    from ticketbench.devices.tensorrt_engine import int8_refusal

    return int8_refusal(trt)


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


class OrtGpuSession(Session):
    """ONNX Runtime on the GPU; run() returns host outputs, so each call has finished on the device."""

    def __init__(
        self,
        onnx_path: Path,
        backend: str,
        precision: str,
        index: int = 0,
        snapshot: Callable[[], dict[str, Any]] | None = None,
        min_window_s: float = 0.0,
    ) -> None:
        import onnxruntime as ort

        super().__init__(snapshot, min_window_s)
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

    def profile_layers(self, x: np.ndarray, calls: int) -> LayerProfile:
        """Not offered: ONNX Runtime's node events time each kernel's host-side call, and on the GPU providers
        kernels run asynchronously (per-kernel GPU times need an onnxruntime built with --enable_cuda_profiling;
        the TensorRT provider runs its whole subgraph as one node)."""
        raise LayerProfileUnavailable(
            f"{self.backend}: ONNX Runtime's node times on a GPU are kernel launches, not kernels "
            "(CUDA kernel profiling is a build option of onnxruntime)"
        )


class TorchCudaSession(Session):
    """A PyTorch module on CUDA (fp32 or fp16); sync() waits for the device."""

    backend = "torch-cuda"

    def __init__(
        self,
        module: Any,
        device: str,
        precision: str,
        snapshot: Callable[[], dict[str, Any]] | None = None,
        min_window_s: float = 0.0,
    ) -> None:
        import torch

        super().__init__(snapshot, min_window_s)
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

    def profile_layers(self, x: np.ndarray, calls: int) -> LayerProfile:
        """torch.profiler over the module's leaf modules (devices/layer_profile.torch_profile)."""

        def plain() -> None:
            self.run(x)
            self.sync()

        return torch_profile(self.module, self.device, self.dtype, x, calls, plain, self.backend)


@DEVICES.register("gpu")
class GpuDevice(DeviceAdapter):
    name = "gpu"

    def __init__(self, backend: str = "auto", index: int = 0, engine_cache: Path | None = None) -> None:
        self.index = index  # CUDA's index (after CUDA_VISIBLE_DEVICES); NVML is addressed by PCI bus id
        self.pci_bus_id = cuda_pci_bus_id(index) if torch_cuda() else None
        self.requested = backend
        self.engine_cache = engine_cache
        self.backends = available_backends()
        self.torch_device = f"cuda:{index}" if torch_cuda() else None
        usable = [b for b in ONNX_BACKENDS if self.backends.get(b, "unknown backend") == ""]
        self.backend = backend if backend != "auto" else (usable[0] if usable else "torch-cuda")
        self.precisions = ("fp32",) if self.backend == "onnxruntime-cuda" else ("fp32", "fp16")
        self.max_onnx_opset = tensorrt_max_opset() if self.backend == "tensorrt" else None
        # int8: TensorRT's entropy calibrator on the calibration set, where this TensorRT still has one
        self.int8_refusal = tensorrt_int8_refusal() if self.backend == "tensorrt" else f"{self.backend} has no int8"
        if not self.int8_refusal:
            self.precisions, self.int8_input = (*self.precisions, "int8"), "calibrator"
        self._reader: PowerReader | None = None

    @classmethod
    def probe(cls, host: str | None = None, **options: Any) -> Availability:
        if host:
            return Availability(False, "the gpu adapter measures this machine only (--host is for jetson)")
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

            ident.update(nvml_identity(self.pci_bus_id))
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

            return nvml_snapshot(self.pci_bus_id)
        except Exception:
            return {}

    def load(
        self,
        onnx_path: Path,
        precision: str = "fp32",
        batch_size: int | None = None,
        module: Any | None = None,
        calibration: np.ndarray | None = None,
    ) -> Session:
        """`module` (the PyTorch model the ONNX was exported from) is used by the torch-cuda backend only;
        the ONNX backends ignore it, so callers may always pass it. `calibration` (float32 N×C×H×W) is what
        TensorRT's int8 calibrator reads (tensorrt backend, precision int8)."""
        from ticketbench.devices.power_nvml import MIN_WINDOW_S

        device = self.torch_device or f"cuda:{self.index}"
        if self.backend == "torch-cuda":
            if module is None:
                raise RuntimeError(
                    "no ONNX backend on this GPU (install tensorrt or onnxruntime-gpu); "
                    "torch-cuda runs a PyTorch module: GpuDevice.load(..., module=m)"
                )
            return TorchCudaSession(module, device, precision, self.snapshot, MIN_WINDOW_S)
        if self.backends.get(self.backend, "unknown backend"):
            raise RuntimeError(f"backend {self.backend} unavailable: {self.backends.get(self.backend, 'unknown')}")
        if self.backend == "tensorrt":
            from ticketbench.devices.tensorrt_engine import load_tensorrt

            return load_tensorrt(
                Path(onnx_path),
                precision,
                device,
                self.identity_name(),
                self.engine_cache,
                batch_size,
                self.snapshot,
                MIN_WINDOW_S,
                calibration,
            )
        return OrtGpuSession(Path(onnx_path), self.backend, precision, self.index, self.snapshot, MIN_WINDOW_S)

    def identity_name(self) -> str:
        """The GPU's name for the engine cache key: torch's (same index space as CUDA), else NVML's by bus id."""
        try:
            import torch

            return torch.cuda.get_device_name(self.index)
        except (ImportError, RuntimeError, AssertionError):
            from ticketbench.devices.power_nvml import nvml_identity

            return nvml_identity(self.pci_bus_id)["device_name"]

    def power_reader(self) -> tuple[PowerReader | None, str]:
        from ticketbench.devices.power_nvml import probe_nvml_reader

        self._reader, why = probe_nvml_reader(self.pci_bus_id)
        return self._reader, why

    def power_sources(self) -> list[PowerSource]:
        """NVML energy counter (the reference) and NVML power polling on this GPU, found by its PCI bus id (NVML's
        index is not CUDA's), each checked against the enforced power limit."""
        from ticketbench.devices.power_nvml import NvmlEnergyReader, NvmlPowerReader, nvml_identity, probe_nvml_reader

        reader, why = probe_nvml_reader(self.pci_bus_id)
        if reader is None:
            return [PowerSource("nvml", None, why)]
        try:
            limit = nvml_identity(self.pci_bus_id).get("power_limit_w")
        except Exception:  # the limit is a bound to check against; its absence only weakens the check
            limit = None
        what = "NVML enforced power limit" if limit else ""
        out = [PowerSource(reader.source, reader, "", limit, what)]
        if isinstance(reader, NvmlEnergyReader):
            out.append(PowerSource("nvml-power", NvmlPowerReader(reader.nvml, reader.handle), "", limit, what))
        else:
            out.append(PowerSource("nvml-energy", None, "the GPU has no NVML energy counter (pre-Volta)"))
        return out

    @classmethod
    def torch_power(cls, torch_device: str) -> tuple[PowerReader | None, str] | None:
        """NVML on the CUDA device torch calls `torch_device`, addressed by its bus id (never by CUDA's index)."""
        kind, _, index = torch_device.partition(":")
        if kind != "cuda":
            return None
        from ticketbench.devices.power_nvml import cuda_pci_bus_id, probe_nvml_reader

        return probe_nvml_reader(cuda_pci_bus_id(int(index or 0)))
