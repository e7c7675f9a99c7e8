"""NVML power for desktop NVIDIA GPUs (pynvml from nvidia-ml-py, imported lazily).

- Volta and newer: nvmlDeviceGetTotalEnergyConsumption, a millijoule counter since driver load; read as a
  counter reader, so a window's energy is the counter difference (power_source = nvml-energy).
- Older GPUs (the call raises NVMLError): nvmlDeviceGetPowerUsage in milliwatts, polled and integrated
  (power_source = nvml-power). On Ampere (except GA100) and newer that value is a 1-second average, so
  windows shorter than MIN_WINDOW_S are lengthened by the latency loop.
  The counter steps every ~10-100 ms; devices/power.py places each step where it happened.
- Snapshots (SM/memory clocks, temperature, active clock-throttle reasons) feed throttle detection.
  Throttle reasons come from nvmlDeviceGetCurrentClocksEventReasons (nvidia-ml-py >= 12.535, drivers
  >= 535); a driver without it answers NVMLError FUNCTION_NOT_FOUND, and the old
  nvmlDeviceGetCurrentClocksThrottleReasons (same bits) is used instead.
- NVML numbers GPUs in PCI order over every GPU in the machine; CUDA numbers them fastest first and after
  CUDA_VISIBLE_DEVICES. The two indices differ, so the GPU is found by its PCI bus id (from torch), never
  by the CUDA index. The bus id is passed as bytes: nvmlDeviceGetHandleByPciBusId hands its argument to
  ctypes.c_char_p, which before nvidia-ml-py 11.515.48 (no @convertStrBytes) raises TypeError on a str,
  and in every version turns an int into a pointer to that address (a CUDA index 1 segfaults in the driver).

Written for nvidia-ml-py >= 11.450 (Python bindings of NVML, R450+ drivers); verified here only against a
fake pynvml module (tests/test_power_nvml.py); no GPU was available.
"""

from __future__ import annotations

from typing import Any

from ticketbench.devices.power import PowerReader

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


def cuda_pci_bus_id(index: int) -> bytes | None:
    """NVML-style PCI bus id (b'00000000:65:00.0') of CUDA device `index` as this process sees it (after
    CUDA_VISIBLE_DEVICES); None without a CUDA torch. Bytes, the one type every nvidia-ml-py version accepts."""
    try:
        import torch

        if not torch.cuda.is_available():
            return None
        p: Any = torch.cuda.get_device_properties(index)  # pci_* are in the C++ struct, not torch's stubs
        return f"{p.pci_domain_id:08X}:{p.pci_bus_id:02X}:{p.pci_device_id:02X}.0".encode()
    except (ImportError, RuntimeError, AssertionError, AttributeError):
        return None


def nvml_handle(nvml: Any, pci_bus_id: bytes | None) -> Any:
    """NVML's handle of the GPU at `pci_bus_id`. Without a bus id only an unambiguous machine (one GPU) is
    accepted: NVML's index is not CUDA's, so guessing would read another GPU's power and name."""
    if pci_bus_id is not None and not isinstance(pci_bus_id, bytes):
        # c_char_p(int) is a pointer to that address: the driver would read it and the process would die
        raise TypeError(f"PCI bus id must be bytes (b'00000000:65:00.0'), got {type(pci_bus_id).__name__}")
    if pci_bus_id:
        return nvml.nvmlDeviceGetHandleByPciBusId(pci_bus_id)
    count = int(nvml.nvmlDeviceGetCount())
    if count == 1:
        return nvml.nvmlDeviceGetHandleByIndex(0)
    raise LookupError(
        f"NVML sees {count} GPUs and the CUDA device's PCI bus id is unknown (needs a CUDA torch): "
        "NVML's index is not CUDA's, so no GPU is guessed"
    )


class NvmlEnergyReader(PowerReader):
    """Counter reader over nvmlDeviceGetTotalEnergyConsumption (mJ → J)."""

    source = "nvml-energy"
    kind = "counter"
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


class NvmlPowerReader(PowerReader):
    """Power reader over nvmlDeviceGetPowerUsage (mW → W), for GPUs without the energy counter."""

    source = "nvml-power"
    min_window_s = MIN_WINDOW_S

    def __init__(self, nvml: Any, handle: Any) -> None:
        self.nvml, self.handle = nvml, handle

    def read_watts(self) -> float:
        return int(self.nvml.nvmlDeviceGetPowerUsage(self.handle)) / 1e3


def probe_nvml_reader(pci_bus_id: bytes | None) -> tuple[NvmlEnergyReader | NvmlPowerReader | None, str]:
    """The energy counter when the GPU at `pci_bus_id` has it, else power polling; or None and the reason.
    A CUDA device index is turned into its bus id with `cuda_pci_bus_id` first (NVML's index is not CUDA's)."""
    try:
        nvml = _nvml()
    except ImportError:
        return None, "nvidia-ml-py not installed (pip install 'ticketbench[gpu]')"
    except Exception as exc:  # NVMLError: driver not loaded, library missing
        return None, f"NVML init failed: {exc}"
    try:
        handle = nvml_handle(nvml, pci_bus_id)
    except (nvml.NVMLError, LookupError) as exc:
        return None, f"NVML has no GPU {_text(pci_bus_id or b'')}: {exc}".replace("  ", " ")
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


def throttle_bits(nvml: Any, handle: Any) -> tuple[int | None, str]:
    """Active clock-event (throttle) reason bits, and "" or why they are unknown.

    The new call exists in nvidia-ml-py >= 12.535 but raises FUNCTION_NOT_FOUND on drivers older than R535;
    the old call (deprecated, same bits) then answers.
    """
    new = getattr(nvml, "nvmlDeviceGetCurrentClocksEventReasons", None)  # absent from bindings < 12.535
    if new is not None:
        try:
            return int(new(handle)), ""
        except nvml.NVMLError as exc:
            if getattr(exc, "value", None) != getattr(nvml, "NVML_ERROR_FUNCTION_NOT_FOUND", 13):
                return None, f"clocks event reasons: {exc}"
    try:
        return int(nvml.nvmlDeviceGetCurrentClocksThrottleReasons(handle)), ""
    except nvml.NVMLError as exc:
        return None, f"clocks throttle reasons: {exc}"


def nvml_snapshot(pci_bus_id: bytes | None) -> dict[str, Any]:
    """SM/memory clocks (MHz), GPU temperature (°C) and active throttle reasons, for throttle detection.

    When the reasons cannot be read, `throttle_reasons_error` says why (no reasons is not "not throttled").
    """
    nvml = _nvml()
    h = nvml_handle(nvml, pci_bus_id)
    snap: dict[str, Any] = {
        "clocks_mhz": {
            "sm": nvml.nvmlDeviceGetClockInfo(h, nvml.NVML_CLOCK_SM),
            "mem": nvml.nvmlDeviceGetClockInfo(h, nvml.NVML_CLOCK_MEM),
        },
        "temps_c": {"gpu": nvml.nvmlDeviceGetTemperature(h, nvml.NVML_TEMPERATURE_GPU)},
    }
    bits, why = throttle_bits(nvml, h)
    if bits is None:
        snap["throttle_reasons_error"] = why
    else:
        snap["throttle_reasons"] = [name for bit, name in THROTTLE_BITS.items() if bits & bit]
    return snap


def nvml_identity(pci_bus_id: bytes | None) -> dict[str, Any]:
    """GPU name, PCI bus id, driver version and power limit (W) as NVML reports them."""
    nvml = _nvml()
    h = nvml_handle(nvml, pci_bus_id)
    out: dict[str, Any] = {
        "device_name": _text(nvml.nvmlDeviceGetName(h)),
        "pci_bus_id": _text(pci_bus_id) if pci_bus_id is not None else None,
        "driver": _text(nvml.nvmlSystemGetDriverVersion()),
    }
    try:
        out["power_limit_w"] = nvml.nvmlDeviceGetEnforcedPowerLimit(h) / 1e3
    except (nvml.NVMLError, AttributeError):
        pass
    return out
