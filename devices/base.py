"""The device protocol and registry."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from devices.power import PowerReader
from models.registry import Registry


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
    precisions: tuple[str, ...] = ("fp32",)  # what load() accepts

    @classmethod
    def probe(cls) -> Availability:  # pragma: no cover - overridden
        raise NotImplementedError

    def identity(self) -> dict[str, Any]:
        """device_name, versions, clocks, power mode: recorded in run.json and results."""
        raise NotImplementedError

    def load(self, onnx_path: Path, precision: str = "fp32", batch_size: int = 1) -> Session:
        raise NotImplementedError

    def power_reader(self) -> tuple[PowerReader | None, str]:
        """(reader, "") or (None, reason) when no power source is usable here."""
        return None, "no power source implemented for this device"

    def close(self) -> None:
        """Release resources (samplers, connections)."""


DEVICES: Registry[type[DeviceAdapter]] = Registry("device")


class DeviceUnavailable(RuntimeError):
    """The requested device cannot be used here; the message says why."""


def get_device(name: str) -> DeviceAdapter:
    cls = DEVICES.get(name)
    avail = cls.probe()
    if not avail.ok:
        raise DeviceUnavailable(f"device {name!r} is not available: {avail.reason}")
    return cls()


def resolve_device(name: str) -> str:
    """'auto' picks jetson, then gpu, then cpu, whichever is available first."""
    if name != "auto":
        DEVICES.get(name)  # raises KeyError for unknown names
        return name
    for candidate in ("jetson", "gpu", "cpu"):
        if DEVICES.get(candidate).probe().ok:
            return candidate
    return "cpu"
