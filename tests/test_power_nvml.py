"""NVML power against a fake pynvml module: energy counter on Volta+, power polling before, throttle reasons."""

from __future__ import annotations

import sys
import time
import types

import pytest

from ticketbench.devices.power import PowerSampler
from ticketbench.devices.power_nvml import (
    NvmlEnergyReader,
    NvmlPowerReader,
    nvml_identity,
    nvml_snapshot,
    probe_nvml_reader,
)
from ticketbench.devices.power_sources import probe_nvml


class NVMLError(Exception):
    pass


def fake_pynvml(volta: bool = True, watts: float = 250.0, reasons: int = 0, init_error: bool = False):
    """A pynvml stand-in whose energy counter advances at `watts` with the monotonic clock."""
    m = types.ModuleType("pynvml")
    start = time.monotonic()
    m.NVMLError = NVMLError
    m.NVML_CLOCK_SM, m.NVML_CLOCK_MEM, m.NVML_TEMPERATURE_GPU = 1, 2, 0
    m.calls = []

    def init():
        if init_error:
            raise NVMLError("Driver Not Loaded")

    def energy(handle):
        if not volta:
            raise NVMLError("Not Supported")
        return int((time.monotonic() - start) * watts * 1e3)  # mJ

    m.nvmlInit = init
    m.nvmlDeviceGetCount = lambda: 1
    m.nvmlDeviceGetHandleByIndex = lambda i: f"gpu{i}"
    m.nvmlDeviceGetTotalEnergyConsumption = energy
    m.nvmlDeviceGetPowerUsage = lambda h: int(watts * 1e3)  # mW
    m.nvmlDeviceGetClockInfo = lambda h, kind: {1: 1980, 2: 1593}[kind]
    m.nvmlDeviceGetTemperature = lambda h, kind: 61
    m.nvmlDeviceGetCurrentClocksThrottleReasons = lambda h: reasons
    m.nvmlDeviceGetName = lambda h: b"NVIDIA H100 80GB HBM3"
    m.nvmlSystemGetDriverVersion = lambda: "550.54.15"
    m.nvmlDeviceGetEnforcedPowerLimit = lambda h: 700000
    return m


def test_volta_uses_the_energy_counter(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml(volta=True, watts=250.0))
    reader, why = probe_nvml_reader(0)
    assert isinstance(reader, NvmlEnergyReader) and reader.source == "nvml-energy" and why == ""
    s = PowerSampler(reader, rate_hz=100).start()
    deadline = time.monotonic() + 10
    while len(s.t) < 8 and time.monotonic() < deadline:
        time.sleep(0.01)
    s.stop()
    t0, t1 = s.t[1], s.t[-1]
    # counter difference (mJ granularity) over the window: 250 W × duration
    assert s.window("w", t0, t1).energy_j == pytest.approx(250.0 * (t1 - t0), rel=0.02, abs=0.003)


def test_pre_volta_polls_power(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml(volta=False, watts=180.5))
    reader, _ = probe_nvml_reader(0)
    assert isinstance(reader, NvmlPowerReader) and reader.source == "nvml-power"
    assert reader.read_watts() == pytest.approx(180.5)
    assert reader.min_window_s >= 1.0  # 1-s averaged power on Ampere+: windows are lengthened


def test_nvml_failures_give_reasons(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml(init_error=True))
    reader, why = probe_nvml_reader(0)
    assert reader is None and "NVML init failed: Driver Not Loaded" in why
    assert probe_nvml() == (False, why)
    monkeypatch.setitem(sys.modules, "pynvml", None)  # not installed
    reader, why = probe_nvml_reader(0)
    assert reader is None and "nvidia-ml-py not installed" in why


def test_snapshot_and_throttle_reasons(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml(reasons=0x1 | 0x4 | 0x40))  # idle + power cap + thermal
    snap = nvml_snapshot(0)
    assert snap["clocks_mhz"] == {"sm": 1980, "mem": 1593} and snap["temps_c"] == {"gpu": 61}
    assert snap["throttle_reasons"] == ["sw_power_cap", "hw_thermal"]  # GPU idle is not throttling
    ident = nvml_identity(0)
    assert ident == {"device_name": "NVIDIA H100 80GB HBM3", "driver": "550.54.15", "power_limit_w": 700.0}
