"""NVML power for desktop NVIDIA GPUs (pynvml from nvidia-ml-py, imported lazily).

- Volta and newer: nvmlDeviceGetTotalEnergyConsumption, a millijoule counter since driver load; read as a
  counter reader, so a window's energy is the counter difference (power_source = nvml-energy).
- Older GPUs (the call raises NVMLError): nvmlDeviceGetPowerUsage in milliwatts, polled and integrated
  (power_source = nvml-power). On Ampere (except GA100) and newer that value is a 1-second average, so
  windows shorter than MIN_WINDOW_S are lengthened by the latency loop.
- Snapshots (SM/memory clocks, temperature, active clock-throttle reasons) feed throttle detection.

Verified here only against a fake pynvml module (tests/test_power_nvml.py); no GPU was available.
"""

from __future__ import annotations

from typing import Any

MIN_WINDOW_S = 1.0  # NVML power is averaged over up to 1 s, and the counter updates at a similar cadence

# nvmlClocksThrottleReason* bits that mean the GPU is being slowed (idle and app-clock settings are not)
THROTTLE_BITS = {
    0x4: "sw_power_cap",
    0x8: "hw_slowdown",
    0x20: "sw_thermal",
    0x40: "hw_thermal",
    0x80: "hw_power_brake",
}


def _nvml() -> Any:
    import pynvml

    pynvml.nvmlInit()
    return pynvml


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class NvmlEnergyReader:
    """Counter reader over nvmlDeviceGetTotalEnergyConsumption (mJ → J)."""

    source = "nvml-energy"
    min_window_s = MIN_WINDOW_S

    def __init__(self, nvml: Any, handle: Any) -> None:
        self.nvml, self.handle = nvml, handle
        self._origin = self._mj()
        self._last_j = 0.0
        self._last_t: float | None = None

    def _mj(self) -> int:
        return int(self.nvml.nvmlDeviceGetTotalEnergyConsumption(self.handle))

    def read_joules(self) -> float:
        return (self._mj() - self._origin) / 1e3

    def read_watts(self) -> float:
        import time

        j, t = self.read_joules(), time.monotonic()
        watts = (j - self._last_j) / (t - self._last_t) if self._last_t is not None and t > self._last_t else 0.0
        self._last_j, self._last_t = j, t
        return watts


class NvmlPowerReader:
    """Power reader over nvmlDeviceGetPowerUsage (mW → W), for GPUs without the energy counter."""

    source = "nvml-power"
    min_window_s = MIN_WINDOW_S

    def __init__(self, nvml: Any, handle: Any) -> None:
        self.nvml, self.handle = nvml, handle

    def read_watts(self) -> float:
        return int(self.nvml.nvmlDeviceGetPowerUsage(self.handle)) / 1e3


def probe_nvml_reader(index: int = 0) -> tuple[NvmlEnergyReader | NvmlPowerReader | None, str]:
    """The energy counter when the GPU has it, else power polling; or None and the reason."""
    try:
        nvml = _nvml()
    except ImportError:
        return None, "nvidia-ml-py not installed (pip install 'ticketbench[gpu]')"
    except Exception as exc:  # NVMLError: driver not loaded, library missing
        return None, f"NVML init failed: {exc}"
    try:
        handle = nvml.nvmlDeviceGetHandleByIndex(index)
    except Exception as exc:
        return None, f"NVML has no GPU {index}: {exc}"
    try:
        return NvmlEnergyReader(nvml, handle), ""
    except nvml.NVMLError:
        pass  # pre-Volta: no total-energy counter
    try:
        reader = NvmlPowerReader(nvml, handle)
        reader.read_watts()
        return reader, ""
    except nvml.NVMLError as exc:
        return None, f"NVML power readings not supported on this GPU: {exc}"


def nvml_snapshot(index: int = 0) -> dict[str, Any]:
    """SM/memory clocks (MHz), GPU temperature (°C) and active throttle reasons, for throttle detection."""
    nvml = _nvml()
    h = nvml.nvmlDeviceGetHandleByIndex(index)
    snap: dict[str, Any] = {
        "clocks_mhz": {
            "sm": nvml.nvmlDeviceGetClockInfo(h, nvml.NVML_CLOCK_SM),
            "mem": nvml.nvmlDeviceGetClockInfo(h, nvml.NVML_CLOCK_MEM),
        },
        "temps_c": {"gpu": nvml.nvmlDeviceGetTemperature(h, nvml.NVML_TEMPERATURE_GPU)},
    }
    # renamed "clocks event reasons" in recent NVML; the old name remains in older bindings
    get_reasons = getattr(nvml, "nvmlDeviceGetCurrentClocksEventReasons", None)
    get_reasons = get_reasons or nvml.nvmlDeviceGetCurrentClocksThrottleReasons
    try:
        bits = int(get_reasons(h))
        snap["throttle_reasons"] = [name for bit, name in THROTTLE_BITS.items() if bits & bit]
    except nvml.NVMLError:
        pass
    return snap


def nvml_identity(index: int = 0) -> dict[str, Any]:
    """GPU name, driver version and power limit (W) as NVML reports them."""
    nvml = _nvml()
    h = nvml.nvmlDeviceGetHandleByIndex(index)
    out: dict[str, Any] = {
        "device_name": _text(nvml.nvmlDeviceGetName(h)),
        "driver": _text(nvml.nvmlSystemGetDriverVersion()),
    }
    try:
        out["power_limit_w"] = nvml.nvmlDeviceGetEnforcedPowerLimit(h) / 1e3
    except (nvml.NVMLError, AttributeError):
        pass
    return out
