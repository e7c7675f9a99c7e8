"""Where tickets train (`--train-device auto|cpu|cuda`) and the power meter on that training device.

models/ trains wherever the ticket context says and knows nothing of devices; this module gives the context an
energy function over the training device's own power source, which the device adapters declare
(`DeviceAdapter.torch_power`): NVML on a CUDA GPU (a Jetson's board power when the CUDA device is a local Jetson),
RAPL on the CPU. When none is usable the energy stays empty and the reason is kept (never an estimate).
"""

from __future__ import annotations

from ticketbench.devices.base import DEVICES
from ticketbench.devices.power import PowerReader
from ticketbench.devices.power_meter import PowerMeter
from ticketbench.models.train import resolve_train_device

TRAIN_DEVICES = ("auto", "cpu", "cuda")
# Adapters asked, in turn, which of them meters a torch device: a local Jetson's CUDA device is the board's GPU,
# so the jetson adapter answers before the gpu adapter (the order of devices.base.resolve_device).
TORCH_POWER_ORDER = ("jetson", "gpu", "cpu")


def training_power(train_device: str) -> tuple[PowerReader | None, str]:
    """The power reader of the torch device `train_device` names, or None and why."""
    for name in TORCH_POWER_ORDER:
        found = DEVICES.get(name).torch_power(train_device)
        if found is not None:
            return found
    return None, f"no device adapter meters torch device {train_device}"


def start_meter(train_device: str, rate_hz: float = 50.0) -> PowerMeter:
    """Resolve `auto`, open the device's power source and start sampling (ValueError on an unusable device).
    The meter's `device` is the resolved torch device; `energy(t0, t1)` is the TicketContext's energy function."""
    device = resolve_train_device(train_device)
    return PowerMeter.of(training_power(device), rate_hz, device).start()
