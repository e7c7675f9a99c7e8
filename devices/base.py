"""The device protocol (`DeviceAdapter` makes `Session`s) and the registry of adapters.

Every capability is declared here with its default, so callers use it without probing (no hasattr):

DeviceAdapter (one per device kind, registered in DEVICES)
    probe(host=None, **options)    classmethod: can it be used here, and why not (same signature everywhere)
    identity()                     device_name, versions, clocks, power mode (run.json and results)
    load(onnx_path, precision, batch_size=None, module=None, calibration=None) -> Session
                                   `module` is the PyTorch model the ONNX came from: only backends that run
                                   PyTorch (gpu's torch-cuda) use it, every other adapter ignores it;
                                   `calibration` is the int8 calibration set (float32 N×C×H×W) for adapters
                                   whose int8_input is "calibrator", ignored by every other adapter
    power_reader()                 (reader, "") or (None, reason): the one source measurements use
                                   (devices/power_meter.PowerMeter samples it)
    power_sources()                every source on the device, each opened on its own, the reference first, with
                                   its limit (the doctor compares them); default: power_reader()'s
    torch_power(torch_device)      classmethod: (reader, "") or (None, why) metering PyTorch work on that torch
                                   device when this adapter's hardware runs it, else None (training energy)
    snapshot()                     clocks/temperatures/throttle reasons now ({} = nothing to show)
    close()
    torch_device                   where PyTorch training epochs run (None = not on this device)
    channel_alignment              keep compacted channel counts a multiple of this
    precisions                     what load() accepts
    int8_input                     how int8 is loaded: "qdq" (a quantized ONNX), "calibrator" (fp32 ONNX and
                                   calibration=), "" (no int8)
    max_onnx_opset                 highest ONNX opset the device's parser takes (None = no limit below ours)

Session (a prepared model; subclass it)
    run(x) -> outputs, sync()      required: one batch, and wait for the device
    prepare(batch_size)            build what a batch size needs before it is timed (TensorRT: an engine
                                   whose optimization profile is tuned for that batch); default: nothing
    snapshot()                     the adapter's snapshot, taken before and after each latency window
    min_window_s                   shortest latency window (s) the device's power source resolves (NVML: 1 s)
    self_timed                     True when the backend times itself (trtexec on a Jetson): devices/measure.py
                                   then delegates to timed_run(x, cfg) / eval_epoch(batches)
    profile_layers(x, calls)       per-layer times (ms per call) in a window of their own, beside the same calls
                                   unprofiled (devices/layer_profile.py); default: LayerProfileUnavailable
    close()
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ticketbench.devices.layer_profile import LayerProfile, LayerProfileUnavailable
from ticketbench.devices.power import PowerReader, PowerSource
from ticketbench.registry import Registry

# The protocol's value types: what a session's timing and evaluation return (devices/measure.py fills them).

@dataclass
class LatencyConfig:
    """Warm up, then run until BOTH min_iterations and min_seconds are reached (as trtexec does)."""

    warmup_iterations: int = 10
    warmup_seconds: float = 0.2
    min_iterations: int = 50
    min_seconds: float = 1.0
    max_iterations: int = 100_000


def latency_stats(samples_ms: np.ndarray, batch_size: int) -> dict[str, float]:
    """Results columns from per-iteration latencies (ms); throughput = inferences per timed second."""
    s = np.asarray(samples_ms, dtype=float)
    return {
        "latency_ms_p50": float(np.percentile(s, 50)),
        "latency_ms_p90": float(np.percentile(s, 90)),
        "latency_ms_p99": float(np.percentile(s, 99)),
        "latency_ms_mean": float(s.mean()),
        "latency_ms_std": float(s.std(ddof=1)) if len(s) > 1 else 0.0,
        "throughput_ips": float(batch_size * len(s) / (s.sum() / 1e3)),
    }


@dataclass
class TimingWindow:
    """One contiguous stretch of one target's timed iterations (monotonic s), the CPU time this process used
    during it (every thread, s), and its samples' positions [start, stop) in the result's samples_ms."""

    t0: float
    t1: float
    cpu_s: float
    start: int
    stop: int
    preempted: bool = False  # set by measure.mark_preempted: the window lost CPU to other processes

    @property
    def cpu_share(self) -> float:
        """CPU seconds per wall second: how many of our threads ran, on average, during the window."""
        return self.cpu_s / max(self.t1 - self.t0, 1e-9)


@dataclass
class LatencyResult:
    samples_ms: np.ndarray
    batch_size: int
    t0: float  # monotonic window start (s)
    t1: float
    throttled: bool | None = None  # None: the device exposes no clocks/temperatures to check
    throttle_note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)  # backend-specific facts (e.g. trtexec's own summary)
    windows: list[TimingWindow] = field(default_factory=list)  # alternating windows; [] when one contiguous window

    @property
    def stats(self) -> dict[str, float]:
        return latency_stats(self.samples_ms, self.batch_size)

    @property
    def kept_ms(self) -> np.ndarray:
        """The samples outside preempted windows (all of them when every window was preempted, or none marked)."""
        kept = [self.samples_ms[w.start : w.stop] for w in self.windows if not w.preempted]
        return np.concatenate(kept) if kept else self.samples_ms


@dataclass
class EvalResult:
    accuracy_top1: float  # %
    seconds: float
    n: int
    t0: float
    t1: float
    segments: list[tuple[float, float]] | None = None  # disjoint device-busy windows, when not [t0, t1]


@dataclass
class Availability:
    ok: bool
    reason: str = ""  # why not, when not ok; what was found, when ok


class Session:
    """A prepared model on a device: run one batch, wait for the device; optional capabilities declared below."""

    backend: str = "unknown"
    self_timed: bool = False  # True: timed_run/eval_epoch replace timing run() from outside
    # True: run() computes on this process's own CPU threads, so the process's CPU time during a timing window
    # shows whether other processes took the CPU from it (measure.mark_preempted); a GPU session waits instead
    host_cpu_bound: bool = False

    def __init__(self, snapshot: Callable[[], dict[str, Any]] | None = None, min_window_s: float = 0.0) -> None:
        self._snapshot = snapshot
        self.min_window_s = float(min_window_s)  # s; latency windows last at least this long

    def run(self, x: np.ndarray) -> np.ndarray:
        """Outputs of one batch, as a host array."""
        raise NotImplementedError

    def sync(self) -> None:
        """Wait until the device has finished everything queued so far."""

    def prepare(self, batch_size: int) -> None:
        """Build what `batch_size` needs before it is timed; nothing by default."""

    def snapshot(self) -> dict[str, Any]:
        """Clocks (MHz), temperatures (°C), limits and throttle reasons now; {} when the device shows none."""
        return self._snapshot() if self._snapshot is not None else {}

    def timed_run(self, x: np.ndarray, cfg: LatencyConfig) -> LatencyResult:
        """The backend's own timing loop (self_timed sessions only)."""
        raise NotImplementedError(f"{type(self).__name__} does not time itself")

    def eval_epoch(self, batches: Iterable[tuple[np.ndarray, np.ndarray]]) -> EvalResult:
        """The backend's own evaluation pass (self_timed sessions only)."""
        raise NotImplementedError(f"{type(self).__name__} does not time itself")

    def profile_layers(self, x: np.ndarray, calls: int) -> LayerProfile:
        """Per-layer times of `calls` runs of x (ms per call), taken apart from any timed window and beside the same
        runs without the profiler (its overhead); LayerProfileUnavailable when this backend has no profiler."""
        raise LayerProfileUnavailable(f"{self.backend}: no per-layer profiler for this backend")

    def close(self) -> None:
        """Release device memory and processes."""


class DeviceAdapter:
    """Base class: subclasses fill in probing, identity, model preparation and power."""

    name = "base"
    torch_device: str | None = None  # where PyTorch training epochs run on this device; None = not here
    # Keep compacted channel counts a multiple of this: ORT's NCHWc conv kernels (blocks of 8 on AVX2) and
    # TensorRT's tensor-core kernels run aligned widths faster than odd ones (benchmarks/bench_compaction.py).
    channel_alignment: int = 8
    precisions: tuple[str, ...] = ("fp32",)  # what load() accepts
    max_onnx_opset: int | None = None  # TensorRT 8.0-8.4's ONNX parser stops at opset 13; None: no limit
    # How load(precision="int8") wants its model: "qdq" = an ONNX the caller already quantized (QuantizeLinear /
    # DequantizeLinear, calibrated by devices/int8_quantize.py); "calibrator" = the fp32 ONNX plus `calibration=`, a
    # float32 N×C×H×W array the device calibrates with itself (TensorRT's entropy calibrator); "" = no int8.
    int8_input: str = ""

    @classmethod
    def probe(cls, host: str | None = None, **options: Any) -> Availability:  # pragma: no cover - overridden
        raise NotImplementedError

    def identity(self) -> dict[str, Any]:
        """device_name, versions, clocks, power mode: recorded in run.json and results."""
        raise NotImplementedError

    def load(
        self,
        onnx_path: Path,
        precision: str = "fp32",
        batch_size: int | None = None,
        module: Any | None = None,
        calibration: np.ndarray | None = None,
    ) -> Session:
        """A session for the ONNX file; `batch_size` is prepared now when given, `module` is for torch backends,
        `calibration` (float32 N×C×H×W) is the int8 calibration set of "calibrator" adapters (int8_input)."""
        raise NotImplementedError

    def power_reader(self) -> tuple[PowerReader | None, str]:
        """(reader, "") or (None, reason) when no power source is usable here."""
        return None, "no power source implemented for this device"

    def power_sources(self) -> list[PowerSource]:
        """Every power source of this device, the reference first; the adapter's own reader by default."""
        reader, why = self.power_reader()
        return [PowerSource(reader.source if reader else "none", reader, why, owned=False)]

    @classmethod
    def torch_power(cls, torch_device: str) -> tuple[PowerReader | None, str] | None:
        """The power source of PyTorch work on `torch_device` ("cpu", "cuda:1") when it runs on this adapter's
        hardware: (reader, "") or (None, why); None when the torch device is not this adapter's."""
        return None

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
    avail = cls.probe(**options)
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
