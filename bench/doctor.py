"""`python -m bench doctor`: a real self-check of this machine's adapters, backends and power sources.

Why: every NVIDIA path was first written against fakes; before a night of farm runs a user needs one
command that says whether latency and power readings on *their* machine are sane. For each usable
device it:

- loads a tiny model (small_cnn, 1×8×8) on every usable backend, times it (devices/measure.py's rule) and
  compares its outputs with PyTorch on the CPU;
- for every power source of the device: samples idle, then under load (a matmul loop where torch runs on
  the device, else the tiny model's inference loop), and checks plausibility (`plausibility`): no
  negative reading, nothing above the device's own limit (NVML enforced power limit, RAPL max power,
  INA3221 critical current × rail voltage), idle < load;
- where two sources measure the same device (NVML energy counter vs polled NVML power; jtop vs INA3221
  sysfs vs tegrastats) compares their energies over the same window (`agreement`): within 5 %, or it
  says by how much they differ;
- reports clocks and throttle reasons around the load, nvpmodel/jetson_clocks on a Jetson, and versions.

Exit code 0 when every usable check is sane, 1 when one failed (one line each), 2 on bad usage (cli.py).
Nothing is estimated: a device without a power source gets a "no power source: <why>" line.
"""

from __future__ import annotations

import json
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ticketbench.bench.options import device_at, probe_device
from ticketbench.devices.base import DEVICES, DeviceAdapter
from ticketbench.devices.gpu import GpuDevice
from ticketbench.devices.measure import LatencyConfig, measure_latency
from ticketbench.devices.power import PowerSource
from ticketbench.devices.power_meter import PowerMeter

AGREEMENT_TOL = 0.05  # two sources of one device must agree within 5 % over the same window
LIMIT_SLACK = 0.05  # a window mean may exceed the device's limit by 5 % (limits are enforced over longer windows)
IDLE_S = 2.0  # idle sampling (s); NVML power is a 1-s average on Ampere+, so windows of ≥ 2 s
LOAD_S = 3.0  # load sampling (s); its first SETTLE_S and last SETTLE_S / 4 are left out of the source comparison
SETTLE_S = 1.0
# NVML throttle reasons that are a problem even at idle (a power cap under a matmul is expected, not a fault)
FAULT_REASONS = {"hw_slowdown", "hw_thermal", "sw_thermal", "hw_power_brake"}
STATUSES = ("ok", "failed", "skipped", "warn", "info")


@dataclass
class Check:
    """One line of the doctor's report; `detail` is the one-line reason or finding."""

    device: str
    name: str
    status: str  # ok | failed | skipped | warn | info (only failed makes the exit code 1)
    detail: str
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class SourceReading:
    """What one power source measured (W, J); None where its trace did not cover the window."""

    source: str
    idle_w: float | None
    load_w: float | None
    readings_w: list[float]  # the values checked against the bounds: raw samples (polled) or window means (counters)
    energy_j: float | None  # over the shared comparison window (the settled part of the load window)
    limit_w: float | None  # the device's own ceiling, when it exposes one
    limit_what: str = ""  # where the limit came from (NVML enforced power limit, RAPL max, INA3221 crit)


@dataclass
class DoctorOptions:
    idle_s: float = IDLE_S
    load_s: float = LOAD_S
    latency_s: float = 0.5  # minimum timed seconds per backend (a GPU session lengthens it to NVML's 1 s)
    power_rate_hz: float = 50.0


# -- pure checks ------------------------------------------------------------------------------------------
def plausibility(r: SourceReading) -> list[str]:
    """Why `r` is implausible (empty list when it is sane): no samples, negative, above the limit, idle ≥ load."""
    if r.idle_w is None or r.load_w is None:
        missing = "idle" if r.idle_w is None else "load"
        return [f"{r.source}: samples do not cover the {missing} window"]
    problems = []
    values = [v for v in (*r.readings_w, r.idle_w, r.load_w) if v is not None]
    if any(not np.isfinite(v) for v in values):
        problems.append(f"{r.source}: non-finite reading")
    finite = [v for v in values if np.isfinite(v)]
    if finite and min(finite) < 0:
        problems.append(f"{r.source}: negative reading {min(finite):.3g} W")
    if r.limit_w and finite and max(finite) > r.limit_w * (1 + LIMIT_SLACK):
        problems.append(f"{r.source}: {max(finite):.1f} W above the {r.limit_what or 'limit'} {r.limit_w:.1f} W")
    if r.idle_w >= r.load_w:
        problems.append(f"{r.source}: idle {r.idle_w:.2f} W ≥ load {r.load_w:.2f} W (the load did not register)")
    return problems


def relative_difference(reference_j: float, other_j: float) -> float:
    """|other − reference| / |reference| (fraction); inf when the reference is zero and the other is not."""
    if reference_j == 0:
        return 0.0 if other_j == 0 else float("inf")
    return abs(other_j - reference_j) / abs(reference_j)


def agreement(reference: SourceReading, other: SourceReading, tol: float = AGREEMENT_TOL) -> tuple[bool, str]:
    """Whether two sources' energies over the same window agree within `tol` (relative to the reference,
    the more direct source: an energy counter, or the board's own rail), at the 0.1-point resolution the
    message shows (timestamps of two samplers differ by microseconds); the message gives the difference."""
    if reference.energy_j is None or other.energy_j is None:
        which = reference.source if reference.energy_j is None else other.source
        return False, f"{which} has no energy over the comparison window"
    pct = round(100 * relative_difference(reference.energy_j, other.energy_j), 1)  # compared as shown: 0.1 points
    ok = pct <= round(100 * tol, 1)
    verdict = "agree" if ok else f"differ by more than {tol:.0%}"
    return (
        ok,
        f"{other.source} {other.energy_j:.3f} J vs {reference.source} {reference.energy_j:.3f} J: "
        f"{verdict} ({pct:.1f}%)",
    )


def exit_code(checks: Sequence[Check]) -> int:
    return 1 if any(c.status == "failed" for c in checks) else 0


# -- sampling ---------------------------------------------------------------------------------------------
# Each device adapter declares its power sources (DeviceAdapter.power_sources: the reference first, each with the
# limit it is checked against); the doctor samples each with a PowerMeter of its own over shared windows.
LoadFn = Callable[[float], "tuple[float, float] | None"]  # runs for ~seconds; may return its own work window


def sample_sources(
    sources: Sequence[PowerSource],
    load: LoadFn,
    opts: DoctorOptions,
    snapshot: Callable[[], dict] = dict,
) -> tuple[list[SourceReading], dict, dict]:
    """Sample every source at once: idle for opts.idle_s, then `load(opts.load_s)`; returns the readings
    and the clock snapshots taken at the end of the idle window and 80 % into the load (from a timer thread).

    A board that samples itself (a remote Jetson's feed) measures its own idle window (`idle_window`), and a
    load that reports its work window (a trtexec run, placed on the local clock) is integrated over that window
    instead of the wall time around the call (process start-up and engine loading excluded)."""
    meters = {s.source: PowerMeter(s.reader, rate_hz=opts.power_rate_hz).start() for s in sources if s.reader}
    try:
        # a board that samples itself records the idle window there (PowerReader.idle_window; None = sleep here)
        window = next((own for s in sources if s.reader and (own := s.reader.idle_window(opts.idle_s))), None)
        if window is not None:
            t0, t1 = window
        else:
            time.sleep(0.2)  # a sample before the idle window starts, so the window is covered
            t0 = time.monotonic()
            time.sleep(opts.idle_s)
            t1 = time.monotonic()
        idle_snap = _safe(snapshot)
        time.sleep(
            2.0 / opts.power_rate_hz
        )  # a sample between idle and load: the idle edge is not interpolated into load
        load_snap: dict = {}
        timer = threading.Timer(0.8 * opts.load_s, lambda: load_snap.update(_safe(snapshot)))
        t2 = time.monotonic()
        timer.start()
        work = load(opts.load_s)
        t3 = time.monotonic()
        timer.join()
        if work is not None:
            t2, t3 = work
        deadline = time.monotonic() + 2.0  # wait for a sample past the load window (push sources lag)
        while time.monotonic() < deadline and not all(m.covers(t3) for m in meters.values()):
            time.sleep(0.05)
    finally:
        for m in meters.values():
            m.stop()
    settle = min(SETTLE_S, (t3 - t2) / 3)
    out = []
    for src in sources:
        meter = meters.get(src.source)
        if meter is None:
            continue
        idle_w = meter.measure("idle", t0, t1).power_w_mean
        load_w = meter.measure("load", t2, t3).power_w_mean
        energy = meter.measure("compare", t2 + settle, t3 - settle / 4).energy_j  # clear of both edges of the load
        if meter.counter:
            readings = [v for v in (idle_w, load_w) if v is not None]  # counters: per-sample watts are quantized
        else:
            _, w = meter.trace(t0, t3)
            readings = [float(v) for v in w]
        out.append(SourceReading(src.source, idle_w, load_w, readings, energy, src.limit_w, src.limit_what))
    return out, idle_snap, load_snap


def _safe(fn: Callable[[], dict]) -> dict:
    try:
        return fn() or {}
    except Exception as exc:  # a failed clock read must not fail the power check
        return {"error": str(exc)}


def power_checks(device: str, sources: Sequence[PowerSource], readings: Sequence[SourceReading]) -> list[Check]:
    """Plausibility per source, agreement of every other source with the first (the reference)."""
    checks = [Check(device, f"power {s.source}", "skipped", f"unusable: {s.why_not}") for s in sources if not s.reader]
    if not readings:
        why = "; ".join(f"{s.source}: {s.why_not}" for s in sources) or "none implemented for this device"
        return [Check(device, "power", "skipped", f"no power source: {why}")]
    for r in readings:
        problems = plausibility(r)
        data = {k: v for k, v in asdict(r).items() if k != "readings_w"}
        limit = f", limit {r.limit_w:.1f} W ({r.limit_what})" if r.limit_w else ", no limit exposed"
        if problems:
            checks.append(Check(device, f"power {r.source}", "failed", "; ".join(problems), data))
        else:
            detail = f"idle {r.idle_w:.2f} W < load {r.load_w:.2f} W{limit}"
            checks.append(Check(device, f"power {r.source}", "ok", detail, data))
    ref = readings[0]
    for other in readings[1:]:
        ok, msg = agreement(ref, other)
        diff = (
            relative_difference(ref.energy_j, other.energy_j)
            if ref.energy_j is not None and other.energy_j is not None
            else None
        )
        checks.append(
            Check(
                device,
                f"agreement {other.source} vs {ref.source}",
                "ok" if ok else "failed",
                msg,
                {"relative_difference": diff},
            )
        )
    return checks


# -- loads --------------------------------------------------------------------------------------------------
def matmul_load(torch_device: str, n: int | None = None) -> LoadFn:
    """A load on the device itself: n×n fp32 matmuls for `seconds` (synchronized at the end). Values stay
    at unit scale (÷√n per product): GPU power depends on the data, and underflowing to zeros would lower it."""

    def run(seconds: float) -> None:  # the wall time around the call is the work window
        import torch

        dev = torch.device(torch_device)
        size = n or (8192 if dev.type == "cuda" else 512)
        a = torch.randn(size, size, device=dev)
        b = torch.randn(size, size, device=dev)
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            for _ in range(4):
                a = torch.mm(a, b).mul_(size**-0.5)
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)

    return run


def session_load(session: Any, x: np.ndarray) -> LoadFn:
    """A load through the device's own inference loop (a remote Jetson, where torch does not run); returns the
    timed window (for trtexec: its trace, on the local clock)."""

    def run(seconds: float) -> tuple[float, float]:
        lat = measure_latency(session, x, LatencyConfig(warmup_iterations=0, warmup_seconds=0.0, min_seconds=seconds))
        return lat.t0, lat.t1

    return run


# -- latency ------------------------------------------------------------------------------------------------
@dataclass
class TinyModel:
    module: Any
    onnx: Path
    x: np.ndarray
    reference: np.ndarray  # PyTorch on the CPU, the outputs every backend is compared with


def tiny_model(tmp: Path) -> TinyModel:
    import torch

    from ticketbench.models.export import to_onnx_bytes
    from ticketbench.models.zoo import create_model

    torch.manual_seed(0)
    module = create_model("small_cnn", num_classes=10, in_channels=1, width=8).eval()
    path = tmp / "doctor_small_cnn.onnx"
    path.write_bytes(to_onnx_bytes(module, (1, 8, 8)))
    x = np.random.default_rng(0).standard_normal((1, 1, 8, 8), dtype=np.float32)
    with torch.no_grad():
        ref = module(torch.from_numpy(x)).numpy()
    return TinyModel(module, path, x, ref)


def latency_check(device: DeviceAdapter, backend: str, model: TinyModel, opts: DoctorOptions) -> tuple[Check, Any]:
    """Load the tiny model, compare outputs with PyTorch (CPU), time it; (check, session or None)."""
    import copy

    try:
        session = device.load(model.onnx, "fp32", 1, module=copy.deepcopy(model.module))  # ignored off torch
        out = np.asarray(session.run(model.x), dtype=np.float32)
        err = float(np.abs(out - model.reference).max())
        scale = max(1.0, float(np.abs(model.reference).max()))
        cfg = LatencyConfig(warmup_iterations=10, warmup_seconds=0.1, min_iterations=50, min_seconds=opts.latency_s)
        lat = measure_latency(session, model.x, cfg)
    except Exception as exc:
        msg = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
        return Check(device.name, f"latency {backend}", "failed", msg), None
    stats = lat.stats
    data = {**stats, "samples": len(lat.samples_ms), "max_abs_error": err, "backend": backend}
    detail = (
        f"small_cnn b1: p50 {stats['latency_ms_p50']:.4g} ms, p99 {stats['latency_ms_p99']:.4g} ms "
        f"over {len(lat.samples_ms)} runs; max |out − torch cpu| {err:.2g}"
    )
    if err > 1e-2 * scale:  # TF32 convolutions on CUDA differ by ~1e-3; more means wrong outputs
        return Check(device.name, f"latency {backend}", "failed", f"outputs differ from PyTorch: {detail}", data), None
    return Check(device.name, f"latency {backend}", "ok", detail, data), session


def backends_to_check(device: DeviceAdapter) -> list[tuple[str, str]]:
    """[(backend, "" if usable else why not)] for this adapter; the gpu adapter lists all four."""
    backends = getattr(device, "backends", None)
    if device.name == "gpu" and isinstance(backends, dict):
        from ticketbench.devices.gpu import ONNX_BACKENDS

        order = [*ONNX_BACKENDS, "torch-cuda"]
        return [(b, backends.get(b, "unknown backend")) for b in order]
    return [(str(device.identity().get("backend") or device.name), "")]


def device_for_backend(device: DeviceAdapter, backend: str) -> DeviceAdapter:
    if isinstance(device, GpuDevice) and backend != device.backend:
        return GpuDevice(backend=backend, index=device.index)
    return device


# -- one device ----------------------------------------------------------------------------------------------
def versions(identity: dict[str, Any]) -> dict[str, str | None]:
    """driver, CUDA, TensorRT, ONNX Runtime, torch: from the adapter's identity, else the installed packages."""
    out: dict[str, str | None] = {}
    try:
        import torch

        out["torch"] = torch.__version__
        out["cuda"] = torch.version.cuda
    except ImportError:
        out["torch"] = None
    try:
        import onnxruntime

        out["onnxruntime"] = onnxruntime.__version__
    except ImportError:
        out["onnxruntime"] = None
    try:
        import tensorrt

        out["tensorrt"] = str(tensorrt.__version__)
    except ImportError:
        out["tensorrt"] = None
    for key in ("driver", "cuda", "tensorrt", "onnxruntime", "l4t", "jetpack"):
        if identity.get(key):
            out[key] = str(identity[key])
    return out


def clock_checks(device: str, idle: dict, load: dict) -> list[Check]:
    """Clocks at idle and under the doctor's load, and throttle reasons: a fault reason (thermal, HW slowdown,
    power brake) at idle is a failure; a reason under load is a warning (a power cap under a matmul is
    expected); clocks rising under load are not throttling, so idle and load clocks are only reported."""
    if not idle and not load:
        return [Check(device, "clocks", "info", "the device exposes no clocks or throttle reasons")]

    def clocks(snap: dict) -> str:
        return ", ".join(f"{k} {float(v):g}" for k, v in sorted(snap.get("clocks_mhz", {}).items())[:6]) or "-"

    reasons = sorted(load.get("throttle_reasons", []))
    detail = f"idle: {clocks(idle)} MHz; under load: {clocks(load)} MHz; throttle reasons under load: "
    detail += ",".join(reasons) or "none"
    hot = [
        k
        for k, t in load.get("temps_c", {}).items()
        if k in load.get("temp_limits_c", {}) and float(t) >= float(load["temp_limits_c"][k])
    ]
    if hot:
        detail += "; at the temperature limit: " + ",".join(sorted(hot))
    checks = [Check(device, "clocks", "warn" if reasons or hot else "info", detail, {"idle": idle, "load": load})]
    idle_faults = sorted(set(idle.get("throttle_reasons", [])) & FAULT_REASONS)
    if idle_faults:
        checks.append(Check(device, "throttle at idle", "failed", "active at idle: " + ",".join(idle_faults)))
    return checks


def power_mode(ident: dict[str, Any]) -> str:
    """nvpmodel mode and jetson_clocks state as the adapter read them (dicts from jetson_board, or text)."""
    nv, jc = ident.get("nvpmodel") or {}, ident.get("jetson_clocks") or {}
    nv_text = f"{nv.get('name', '?')} (mode {nv.get('id', '?')})" if isinstance(nv, dict) else str(nv or "-")
    jc_text = f"{jc.get('state', '?')} ({jc.get('evidence', '')})" if isinstance(jc, dict) else str(jc or "-")
    return f"nvpmodel {nv_text}; jetson_clocks {jc_text}"


def doctor_device(name: str, host: str | None, opts: DoctorOptions, tmp: Path) -> list[Check]:
    """Every check for one device; an adapter that cannot be opened is one failed check."""
    try:
        device = device_at(name, host)
    except Exception as exc:
        return [Check(name, "adapter", "failed", f"{type(exc).__name__}: {exc}".splitlines()[0])]
    checks: list[Check] = []
    sources: list[PowerSource] = []
    try:
        ident = device.identity()
        checks.append(Check(name, "adapter", "ok", str(ident.get("device_name") or name), {"identity": ident}))
        vers = versions(ident)
        checks.append(Check(name, "versions", "info", ", ".join(f"{k} {v or '-'}" for k, v in vers.items()), vers))
        if name == "jetson":
            checks.append(Check(name, "power mode", "info", power_mode(ident)))
        # opened before any session: a remote Jetson's sessions deliver the board's samples to the feed it has
        sources = device.power_sources()
        model = tiny_model(tmp)
        session = None
        for backend, why in backends_to_check(device):
            if why:
                checks.append(Check(name, f"latency {backend}", "skipped", why))
                continue
            check, sess = latency_check(device_for_backend(device, backend), backend, model, opts)
            checks.append(check)
            session = session or sess
        if device.torch_device:
            load = matmul_load(device.torch_device)
        elif session is not None:
            load = session_load(session, model.x)
        else:
            checks.append(Check(name, "power", "skipped", "no load to measure under: no backend ran"))
            return checks
        if any(s.reader for s in sources):
            readings, idle_snap, load_snap = sample_sources(sources, load, opts, device.snapshot)
        else:  # nothing to sample: no point in loading the device
            readings, idle_snap, load_snap = [], _safe(device.snapshot), {}
        checks.extend(power_checks(name, sources, readings))
        checks.extend(clock_checks(name, idle_snap, load_snap))
    except Exception as exc:  # report, don't crash: the other devices' checks still count
        checks.append(Check(name, "doctor", "failed", f"{type(exc).__name__}: {exc}".splitlines()[0][:300]))
    finally:
        for src in sources:  # readers opened for the doctor (INA3221 files, jtop); the adapter closes its own
            src.close()
        device.close()
    return checks


def run_doctor(device: str = "auto", host: str | None = None, opts: DoctorOptions | None = None) -> list[Check]:
    """`auto` checks every adapter that is available here (unavailable ones are listed as skipped, with why);
    a named device that is unavailable is a failed check."""
    opts = opts or DoctorOptions()
    names = [device] if device != "auto" else (["jetson"] if host else DEVICES.names())
    checks: list[Check] = []
    with tempfile.TemporaryDirectory(prefix="ticketbench-doctor-") as d:
        for name in names:
            avail = probe_device(name, host)
            if not avail.ok:
                status = "failed" if device != "auto" else "skipped"
                checks.append(Check(name, "adapter", status, f"not available: {avail.reason}"))
                continue
            checks.extend(doctor_device(name, host, opts, Path(d)))
    return checks


# -- output --------------------------------------------------------------------------------------------------
def to_json(checks: Sequence[Check]) -> dict[str, Any]:
    return {
        "ok": exit_code(checks) == 0,
        "exit_code": exit_code(checks),
        "checks": [asdict(c) for c in checks],
        "failed": [f"{c.device} {c.name}: {c.detail}" for c in checks if c.status == "failed"],
    }


def table(checks: Sequence[Check]) -> str:
    w = max([len(c.name) for c in checks] + [5])
    lines = [f"{'device':7s} {'check':{w}s} {'status':8s} detail"]
    lines += [f"{c.device:7s} {c.name:{w}s} {c.status:8s} {c.detail}" for c in checks]
    failed = [c for c in checks if c.status == "failed"]
    lines += [f"FAILED {c.device} {c.name}: {c.detail}" for c in failed]
    lines.append("doctor: " + (f"{len(failed)} check(s) failed" if failed else "every usable check is sane"))
    return "\n".join(lines)


def write_out(out: Path, checks: Sequence[Check]) -> Path:
    from ticketbench.files import atomic_write_text

    out.mkdir(parents=True, exist_ok=True)
    path = out / "doctor.json"
    atomic_write_text(path, json.dumps(to_json(checks), indent=2, default=str))
    return path
