"""The device protocol and registry.

An adapter reports its identity, prepares a model (ONNX → session), exposes a power reader, and
optionally a `snapshot()` of clocks/temperatures/throttle reasons (taken around every latency window).
A session runs one batch (`run`) and waits for the device (`sync`); sessions that time themselves
(trtexec on a Jetson) add `timed_run` / `eval_epoch`, which devices/measure.py delegates to.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ticketbench.devices.power import PowerReader
from ticketbench.registry import Registry


@dataclass
class Availability:
    ok: bool
    reason: str = ""  # why not, when not ok; what was found, when ok


class Session(Protocol):
    """A prepared model on a device: run one batch, and wait for the device to finish."""

    backend: str

    def run(self, x: np.ndarray) -> np.ndarray: ...

    def sync(self) -> None: ...


class DeviceAdapter:
    """Base class: subclasses fill in probing, identity, model preparation and power."""

    name = "base"
    torch_device: str | None = None  # where PyTorch training epochs run on this device; None = not here
    # Keep compacted channel counts a multiple of this: ORT's NCHWc conv kernels (blocks of 8 on AVX2) and
    # TensorRT's tensor-core kernels run aligned widths faster than odd ones (benchmarks/bench_compaction.py).
    channel_alignment: int = 8
    precisions: tuple[str, ...] = ("fp32",)  # what load() accepts
    # How load(precision="int8") wants its model: "qdq" = an ONNX the caller already quantized (QuantizeLinear /
    # DequantizeLinear, calibrated by models/quantize.py); "calibrator" = the fp32 ONNX plus `calibration=`, a
    # float32 N×C×H×W array the device calibrates with itself (TensorRT's entropy calibrator); "" = no int8.
    int8_input: str = ""

    @classmethod
    def probe(cls, **options: Any) -> Availability:  # pragma: no cover - overridden
        raise NotImplementedError

    def identity(self) -> dict[str, Any]:
        """device_name, versions, clocks, power mode: recorded in run.json and results."""
        raise NotImplementedError

    def load(self, onnx_path: Path, precision: str = "fp32", batch_size: int = 1) -> Session:
        raise NotImplementedError

    def power_reader(self) -> tuple[PowerReader | None, str]:
        """(reader, "") or (None, reason) when no power source is usable here."""
        return None, "no power source implemented for this device"

    def snapshot(self) -> dict[str, Any]:
        """Clocks (MHz), temperatures (°C), limits and throttle reasons now; {} when the device shows none."""
        return {}

    def close(self) -> None:
        """Release resources (samplers, connections)."""


DEVICES: Registry[type[DeviceAdapter]] = Registry("device")


class DeviceUnavailable(RuntimeError):
    """The requested device cannot be used here; the message says why."""


def get_device(name: str, **options: Any) -> DeviceAdapter:
    """Probe and construct an adapter; options (e.g. host= for a remote Jetson) go to both."""
    cls = DEVICES.get(name)
    avail = cls.probe(**options) if options else cls.probe()
    if not avail.ok:
        raise DeviceUnavailable(f"device {name!r} is not available: {avail.reason}")
    try:
        return cls(**options)
    except (OSError, RuntimeError) as exc:
        raise DeviceUnavailable(f"device {name!r} could not be opened: {exc}") from exc


def resolve_device(name: str, host: str | None = None) -> str:
    """'auto' picks jetson (always, when a --host is given), then gpu, then cpu, whichever is available first."""
    if name != "auto":
        DEVICES.get(name)  # raises KeyError for unknown names
        return name
    if host:
        return "jetson"
    for candidate in ("jetson", "gpu", "cpu"):
        if DEVICES.get(candidate).probe().ok:
            return candidate
    return "cpu"
