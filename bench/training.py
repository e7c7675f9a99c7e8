"""Where tickets train (`--train-device auto|cpu|cuda`) and the power source that meters that training.

models/ trains wherever the ticket context says and knows nothing of devices; this module gives the context
an energy function over the training device's own power source: NVML on a CUDA GPU (a Jetson's board power
when the CUDA device is a local Jetson), RAPL on the CPU. When none is usable the energy stays empty and
the reason is kept (never an estimate).
"""

from __future__ import annotations

from dataclasses import dataclass

from ticketbench.devices.measure import energy_window
from ticketbench.devices.power import PowerReader, PowerSampler
from ticketbench.models.train import resolve_train_device

TRAIN_DEVICES = ("auto", "cpu", "cuda")


def training_power(train_device: str) -> tuple[PowerReader | None, str]:
    """The power reader of the device `train_device` names, or None and why."""
    if train_device == "cpu":
        from ticketbench.devices.power import probe_rapl

        return probe_rapl()
    from ticketbench.devices.base import DEVICES

    if DEVICES.get("jetson").probe().ok:  # a local Jetson: CUDA is the board's integrated GPU
        from ticketbench.devices.jetson_board import open_power

        reader, reasons = open_power()
        return reader, "; ".join(f"{k}: {v}" for k, v in reasons.items()) if reader is None else ""
    from ticketbench.devices.power_nvml import cuda_pci_bus_id, probe_nvml_reader

    index = int(train_device.split(":")[1]) if ":" in train_device else 0
    return probe_nvml_reader(cuda_pci_bus_id(index))  # NVML is addressed by bus id, never by CUDA's index


@dataclass
class TrainingMeter:
    """A sampler on the training device; `energy(t0, t1)` is the measured J over a window, or None."""

    device: str
    sampler: PowerSampler | None
    note: str  # why there is no sampler, when there is none

    @property
    def source(self) -> str:
        return self.sampler.reader.source if self.sampler else "none"

    def energy(self, t0: float, t1: float) -> float | None:
        win = energy_window(self.sampler, "train", t0, t1)
        return win.energy_j if win else None

    def stop(self) -> None:
        if self.sampler:
            self.sampler.stop()


def start_meter(train_device: str, rate_hz: float = 50.0) -> TrainingMeter:
    """Resolve `auto`, open the device's power source and start sampling (ValueError on an unusable device)."""
    device = resolve_train_device(train_device)
    reader, why = training_power(device)
    sampler = PowerSampler(reader, rate_hz=rate_hz).start() if reader else None
    return TrainingMeter(device, sampler, why)
