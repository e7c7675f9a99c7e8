"""NVML power against a fake pynvml module: energy counter on Volta+, power polling before, throttle reasons."""

from __future__ import annotations

import ctypes
import sys
import time
import types

import pytest

from ticketbench.devices import gpu
from ticketbench.devices.measure import detect_throttle
from ticketbench.devices.power import PowerSampler
from ticketbench.devices.power_nvml import (
    NvmlEnergyReader,
    NvmlPowerReader,
    nvml_identity,
    nvml_snapshot,
    probe_nvml_reader,
)
from ticketbench.devices.power_sources import probe_nvml

NVML_ERROR_NOT_SUPPORTED, NVML_ERROR_NOT_FOUND, NVML_ERROR_FUNCTION_NOT_FOUND = 3, 6, 13


class NVMLError(Exception):
    """As in nvidia-ml-py: NVMLError(code) is an instance of the code's subclass, with `.value`."""

    _classes: dict[int, type] = {}

    def __new__(cls, value):
        obj = Exception.__new__(NVMLError._classes.get(value, cls) if cls is NVMLError else cls)
        obj.value = value
        return obj

    def __init__(self, value):
        super().__init__(value)

    def __str__(self):
        return {3: "Not Supported", 6: "Not Found", 9: "Driver Not Loaded", 13: "Function Not Found"}.get(
            self.value, f"NVML Error with code {self.value}"
        )


class NVMLError_FunctionNotFound(NVMLError):  # noqa: N801
    pass


class NVMLError_NotFound(NVMLError):  # noqa: N801
    pass


NVMLError._classes.update({13: NVMLError_FunctionNotFound, 6: NVMLError_NotFound})

# NVML enumerates in PCI order; CUDA (FASTEST_FIRST, CUDA_VISIBLE_DEVICES) numbers the same GPUs differently
GPUS = [
    {"bus": (0, 0x17), "name": b"NVIDIA RTX A2000", "watts": 45.0, "sm": 1200},
    {"bus": (0, 0x65), "name": b"NVIDIA H100 80GB HBM3", "watts": 250.0, "sm": 1980},
]


def _bus(domain: int, bus: int) -> bytes:
    return f"{domain:08X}:{bus:02X}:00.0".encode()


class DriverSegfault(BaseException):  # noqa: N818 - what the process would die of, not an error it could catch
    """The real driver dereferences the pointer c_char_p(int) makes; the process dies. BaseException, so no
    `except Exception` in the code under test can hide it."""


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in text.split("."))


def bus_id_argument(bus_id, bindings: str) -> bytes:
    """What nvmlDeviceGetHandleByPciBusId hands the driver, as the real bindings build it: from 11.515.48 a str
    is encoded first (@convertStrBytes); then `c_char_p(bus_id)`, which raises TypeError on a str and turns an
    int into a pointer to that address (the driver reads it: a segfault)."""
    if _version(bindings) >= (11, 515, 48) and isinstance(bus_id, str):
        bus_id = bus_id.encode()
    ptr = ctypes.c_char_p(bus_id)  # TypeError for str (old bindings), a raw address for an int
    if isinstance(bus_id, int):
        raise DriverSegfault(f"nvmlDeviceGetHandleByPciBusId(c_char_p({bus_id})): the driver reads address {bus_id}")
    assert ptr.value is not None
    return ptr.value


def fake_pynvml(
    volta: bool = True,
    watts: float | None = None,
    reasons: int = 0,
    init_error: bool = False,
    gpus: list[dict] | None = None,
    step_s: float = 0.05,
    driver_has_event_reasons: bool = True,
    bindings_have_event_reasons: bool = True,
    bindings: str = "13.580.82",
):
    """A pynvml stand-in: GPUs addressed by NVML index or PCI bus id; a total-energy counter (mJ) that steps
    every `step_s` as the real one does (~10-100 ms), advancing at each GPU's watts; bindings and a driver
    that may lack nvmlDeviceGetCurrentClocksEventReasons (bindings < 12.535 / drivers < R535). The bus-id
    lookup takes its argument as nvidia-ml-py `bindings` does (bus_id_argument)."""
    m = types.ModuleType("pynvml")
    start = time.monotonic()
    gpus = [dict(g) for g in (gpus or GPUS[-1:])]
    if watts is not None:
        for g in gpus:
            g["watts"] = watts
    m.start = start
    m.NVMLError = NVMLError
    m.NVMLError_FunctionNotFound = NVMLError_FunctionNotFound
    m.NVML_ERROR_FUNCTION_NOT_FOUND = NVML_ERROR_FUNCTION_NOT_FOUND
    m.NVML_CLOCK_SM, m.NVML_CLOCK_MEM, m.NVML_TEMPERATURE_GPU = 1, 2, 0

    def init():
        if init_error:
            raise NVMLError(9)

    def by_bus(bus_id):
        dom, bus, _ = bus_id_argument(bus_id, bindings).decode().split(":")
        for i, g in enumerate(gpus):
            if g["bus"] == (int(dom, 16), int(bus, 16)):
                return i
        raise NVMLError(NVML_ERROR_NOT_FOUND)

    def energy(h):
        if not volta:
            raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
        steps = int((time.monotonic() - start) / step_s)
        return int(steps * step_s * gpus[h]["watts"] * 1e3)  # mJ, changes once per step

    def event_reasons(h):
        if not driver_has_event_reasons:
            raise NVMLError(NVML_ERROR_FUNCTION_NOT_FOUND)  # what _nvmlGetFunctionPointer raises
        return reasons

    m.nvmlInit = init
    m.nvmlDeviceGetCount = lambda: len(gpus)
    m.nvmlDeviceGetHandleByIndex = lambda i: int(i)
    m.nvmlDeviceGetHandleByPciBusId = by_bus
    m.nvmlDeviceGetTotalEnergyConsumption = energy
    m.nvmlDeviceGetPowerUsage = lambda h: int(gpus[h]["watts"] * 1e3)  # mW
    m.nvmlDeviceGetClockInfo = lambda h, kind: {1: gpus[h]["sm"], 2: 1593}[kind]
    m.nvmlDeviceGetTemperature = lambda h, kind: 61
    m.nvmlDeviceGetCurrentClocksThrottleReasons = lambda h: reasons
    if bindings_have_event_reasons:
        m.nvmlDeviceGetCurrentClocksEventReasons = event_reasons
    m.nvmlDeviceGetName = lambda h: gpus[h]["name"]
    m.nvmlSystemGetDriverVersion = lambda: "550.54.15"
    m.nvmlDeviceGetEnforcedPowerLimit = lambda h: 700000
    return m


H100 = _bus(0, 0x65)


def test_volta_uses_the_energy_counter(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml(volta=True, watts=250.0))
    reader, why = probe_nvml_reader(H100)
    assert isinstance(reader, NvmlEnergyReader) and reader.source == "nvml-energy" and why == ""
    s = PowerSampler(reader, rate_hz=100).start()
    deadline = time.monotonic() + 10
    while len(s.t) < 8 and time.monotonic() < deadline:
        time.sleep(0.01)
    s.stop()
    t0, t1 = s.t[1], s.t[-1]
    # counter difference (mJ granularity) over the window: 250 W × duration
    assert s.window("w", t0, t1).energy_j == pytest.approx(250.0 * (t1 - t0), rel=0.05, abs=0.003)


def test_pre_volta_polls_power(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml(volta=False, watts=180.5))
    reader, _ = probe_nvml_reader(None)  # one GPU: unambiguous without a bus id
    assert isinstance(reader, NvmlPowerReader) and reader.source == "nvml-power"
    assert reader.read_watts() == pytest.approx(180.5)
    assert reader.min_window_s >= 1.0  # 1-s averaged power on Ampere+: windows are lengthened


def test_nvml_failures_give_reasons(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml(init_error=True))
    reader, why = probe_nvml_reader(H100)
    assert reader is None and "NVML init failed: Driver Not Loaded" in why
    assert probe_nvml() == (False, why)
    monkeypatch.setitem(sys.modules, "pynvml", None)  # not installed
    reader, why = probe_nvml_reader(H100)
    assert reader is None and "nvidia-ml-py not installed" in why


def test_snapshot_and_throttle_reasons(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml(reasons=0x1 | 0x4 | 0x40))  # idle + power cap + thermal
    snap = nvml_snapshot(H100)
    assert snap["clocks_mhz"] == {"sm": 1980, "mem": 1593} and snap["temps_c"] == {"gpu": 61}
    assert snap["throttle_reasons"] == ["sw_power_cap", "hw_thermal"]  # GPU idle is not throttling
    ident = nvml_identity(H100)
    assert ident == {
        "device_name": "NVIDIA H100 80GB HBM3",
        "pci_bus_id": H100.decode(),
        "driver": "550.54.15",
        "power_limit_w": 700.0,
    }


def test_old_driver_without_clocks_event_reasons_falls_back_to_throttle_reasons(monkeypatch):
    """nvidia-ml-py >= 12.535 has the new call; a pre-R535 driver answers FUNCTION_NOT_FOUND."""
    nv = fake_pynvml(reasons=0x8, driver_has_event_reasons=False)
    monkeypatch.setitem(sys.modules, "pynvml", nv)
    snap = nvml_snapshot(H100)
    assert snap["throttle_reasons"] == ["hw_slowdown"]  # silently empty before
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml(reasons=0x20, bindings_have_event_reasons=False))
    assert nvml_snapshot(H100)["throttle_reasons"] == ["sw_thermal"]  # old bindings: only the old call


def test_unreadable_throttle_reasons_are_said_not_hidden(monkeypatch):
    nv = fake_pynvml()

    def broken(h):
        raise NVMLError(NVML_ERROR_NOT_SUPPORTED)

    nv.nvmlDeviceGetCurrentClocksEventReasons = nv.nvmlDeviceGetCurrentClocksThrottleReasons = broken
    monkeypatch.setitem(sys.modules, "pynvml", nv)
    snap = nvml_snapshot(H100)
    assert "throttle_reasons" not in snap and "Not Supported" in snap["throttle_reasons_error"]
    throttled, note = detect_throttle(snap, snap)
    assert throttled is False and "throttle reasons unknown" in note


def test_nvml_index_is_not_the_cuda_index(monkeypatch):
    """CUDA device 0 is the H100 (fastest first), NVML's index 0 the A2000 (PCI order): map by PCI bus id."""
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml(gpus=GPUS))
    monkeypatch.setattr(gpu, "torch_cuda", lambda: True)
    monkeypatch.setattr(gpu, "available_backends", lambda: {"onnxruntime-cuda": "", "torch-cuda": ""})
    monkeypatch.setattr(gpu, "cuda_pci_bus_id", lambda index: {0: H100, 1: _bus(0, 0x17)}[index])
    dev = gpu.GpuDevice(index=0)
    ident = dev.identity()
    assert ident["device_name"] == "NVIDIA H100 80GB HBM3" and ident["pci_bus_id"] == H100.decode()
    assert dev.snapshot()["clocks_mhz"]["sm"] == 1980
    reader, _ = dev.power_reader()
    e0 = reader.read_joules()
    time.sleep(0.12)
    assert (reader.read_joules() - e0) / 0.12 > 100  # the H100's 250 W, not the A2000's 45 W
    # without a bus id (no CUDA torch) and two GPUs, NVML is not guessed
    reader, why = probe_nvml_reader(None)
    assert reader is None and "PCI bus id is unknown" in why


def test_stepped_energy_counter_is_placed_at_its_steps(monkeypatch):
    """The real counter changes every ~10-100 ms; stamping a read as 'now' would lag by up to one step."""
    nv = fake_pynvml(watts=100.0, step_s=0.1)
    monkeypatch.setitem(sys.modules, "pynvml", nv)
    reader, _ = probe_nvml_reader(H100)
    s = PowerSampler(reader, rate_hz=200).start()
    deadline = time.monotonic() + 10
    while (not s.t or s.t[-1] < nv.start + 1.2) and time.monotonic() < deadline:
        time.sleep(0.02)
    s.stop()
    # edges 10 ms after a step and 10 ms before one: a staircase stamped at read time is 1 resp. 9 steps' tenths low
    t0, t1 = nv.start + 0.51, nv.start + 0.99
    assert s.window("w", t0, t1).energy_j == pytest.approx(100.0 * (t1 - t0), rel=0.06)
    assert s.effective_rate_hz() < 20  # one stored sample per step (10 Hz), not per read (200 Hz)


@pytest.mark.parametrize("bindings", ["11.450.51", "11.515.48", "12.535.133", "13.580.82"])
def test_the_fake_takes_bus_ids_as_each_binding_version_does(bindings):
    """The fake's contract, checked against ctypes itself: bytes always, str only with @convertStrBytes."""
    assert bus_id_argument(H100, bindings) == H100
    if _version(bindings) < (11, 515, 48):
        with pytest.raises(TypeError):
            bus_id_argument(H100.decode(), bindings)
    else:
        assert bus_id_argument(H100.decode(), bindings) == H100
    with pytest.raises(DriverSegfault):
        bus_id_argument(1, bindings)


@pytest.mark.parametrize("bindings", ["11.450.51", "13.580.82"])
def test_the_gpu_adapter_finds_nvml_with_the_oldest_and_newest_bindings(monkeypatch, bindings):
    """A str bus id raised TypeError in bindings before 11.515.48; power_reader raised and throttle detection
    stopped. Bytes work in every version."""
    import torch

    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml(gpus=GPUS, bindings=bindings))
    monkeypatch.setattr(gpu, "torch_cuda", lambda: True)
    monkeypatch.setattr(gpu, "available_backends", lambda: {"onnxruntime-cuda": "", "torch-cuda": ""})
    # torch's view of CUDA device 1 (the real cuda_pci_bus_id formats it): the A2000 at bus 0x17
    props = types.SimpleNamespace(pci_domain_id=0, pci_bus_id=0x17, pci_device_id=0)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda index: props)
    dev = gpu.GpuDevice(index=1)
    reader, why = dev.power_reader()
    assert reader is not None and why == ""
    assert dev.identity()["device_name"] == "NVIDIA RTX A2000"
    assert dev.snapshot()["clocks_mhz"]["sm"] == 1200


def test_a_cuda_index_never_reaches_nvml_as_a_bus_id(monkeypatch):
    """nvml_handle refuses an int before the bindings see it: c_char_p(1) would make the driver read address 1."""
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml(gpus=GPUS))
    with pytest.raises(TypeError, match="bytes"):
        probe_nvml_reader(1)  # type: ignore[arg-type]


@pytest.mark.parametrize("train_device, name", [("cuda", "NVIDIA H100 80GB HBM3"), ("cuda:1", "NVIDIA RTX A2000")])
def test_training_energy_reads_the_training_gpu(monkeypatch, train_device, name):
    """--train-device cuda:1 passed the index 1 to NVML (a segfault with the real bindings); cuda:0 fell through to
    the GPU count and, with two GPUs, found no NVML at all."""
    from ticketbench.bench import training
    from ticketbench.devices import power_nvml
    from ticketbench.devices.base import DEVICES, Availability

    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml(gpus=GPUS))
    monkeypatch.setattr(power_nvml, "cuda_pci_bus_id", lambda index: {0: H100, 1: _bus(0, 0x17)}[index])
    jetson = DEVICES.get("jetson")
    monkeypatch.setattr(jetson, "probe", classmethod(lambda cls, **kw: Availability(False, "not a Jetson")))
    reader, why = training.training_power(train_device)
    assert reader is not None and why == "", why
    watts = {g["name"].decode(): g["watts"] for g in GPUS}[name]
    e0 = reader.read_joules()
    time.sleep(0.15)
    assert (reader.read_joules() - e0) / 0.15 == pytest.approx(watts, rel=0.5)


def test_doctor_checks_the_adapters_gpu(monkeypatch):
    """The doctor passed the CUDA index to NVML; now it uses the adapter's bus id (the adapter declares its sources)."""
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml(gpus=GPUS))
    monkeypatch.setattr(gpu, "torch_cuda", lambda: True)
    monkeypatch.setattr(gpu, "available_backends", lambda: {"onnxruntime-cuda": "", "torch-cuda": ""})
    monkeypatch.setattr(gpu, "cuda_pci_bus_id", lambda index: {0: H100, 1: _bus(0, 0x17)}[index])
    for index, watts in ((0, 250.0), (1, 45.0)):
        sources = gpu.GpuDevice(index=index).power_sources()
        assert [s.source for s in sources] == ["nvml-energy", "nvml-power"]
        assert all(s.reader is not None and s.limit_w == 700.0 for s in sources)
        assert sources[1].reader.read_watts() == pytest.approx(watts)
