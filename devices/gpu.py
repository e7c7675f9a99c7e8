"""Desktop NVIDIA GPU adapter (TensorRT / ONNX Runtime CUDA / torch CUDA, NVML power).

Only detection lives here so far; measurement arrives with the device-adapter issue.
"""

from __future__ import annotations

import shutil

from devices.base import DEVICES, Availability, DeviceAdapter


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


@DEVICES.register("gpu")
class GpuDevice(DeviceAdapter):
    name = "gpu"

    @classmethod
    def probe(cls) -> Availability:
        present, why = nvidia_gpu_present()
        if not present:
            return Availability(False, why)
        return Availability(False, f"{why}, but the gpu adapter's measurement path is not built yet")
