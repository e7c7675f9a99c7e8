"""Measurement method shared by every adapter: latency (trtexec's rule), eval epochs, energy windows.

- Latency: warm up, then time single synchronized iterations until BOTH a minimum iteration count and a
  minimum duration are reached (trtexec's rule); every sample is kept; p50/p90/p99 use numpy's linear
  interpolation between order statistics.
- Sessions that time themselves (`self_timed`: trtexec on a Jetson) implement `timed_run(x, cfg)` /
  `eval_epoch(batches)` and the functions below delegate to them, so the runner calls one API for every backend.
- Every session (devices/base.py) has `snapshot()` (clocks, temperatures, throttle reasons; {} when none),
  taken before and after each window, `min_window_s` (power counters update slowly: NVML), which lengthens
  the latency window, and `prepare(batch_size)`, called before anything of that batch size is timed.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ticketbench.devices.base import Session
from ticketbench.devices.power import PowerSampler, Window

UNCOVERED = "power trace does not cover the timed window: energy left empty"  # power_note when energy_window is None


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
class LatencyResult:
    samples_ms: np.ndarray
    batch_size: int
    t0: float  # monotonic window start (s)
    t1: float
    throttled: bool | None = None  # None: the device exposes no clocks/temperatures to check
    throttle_note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)  # backend-specific facts (e.g. trtexec's own summary)

    @property
    def stats(self) -> dict[str, float]:
        return latency_stats(self.samples_ms, self.batch_size)


def detect_throttle(before: dict, after: dict, rel_tol: float = 0.05) -> tuple[bool | None, str]:
    """Flag throttling or clock changes between two snapshots.

    A snapshot is {"clocks_mhz": {...}, "temps_c": {...}, "temp_limits_c": {...}, "throttle_reasons": [...]}.
    Flags: a clock that moved by more than `rel_tol`, an active throttle reason (NVML), a temperature at or
    above its limit (Jetson passive trip point). Unreadable throttle reasons (`throttle_reasons_error`) are
    named in the note without raising the flag. Returns (None, "") when neither snapshot has anything.
    """
    if not before and not after:
        return None, ""
    notes = []
    cb, ca = before.get("clocks_mhz", {}), after.get("clocks_mhz", {})
    for k in sorted(set(cb) & set(ca)):
        a, b = float(cb[k]), float(ca[k])
        if max(a, b) > 0 and abs(b - a) / max(a, b) > rel_tol:
            notes.append(f"{k} clock {a:g}→{b:g} MHz")
    reasons = sorted(set(before.get("throttle_reasons", [])) | set(after.get("throttle_reasons", [])))
    if reasons:
        notes.append("throttle reasons: " + ",".join(reasons))
    for snap in (before, after):
        limits = snap.get("temp_limits_c", {})
        for k, temp in sorted(snap.get("temps_c", {}).items()):
            if k in limits and float(temp) >= float(limits[k]):
                notes.append(f"{k} {float(temp):g}°C ≥ limit {float(limits[k]):g}°C")
    notes = list(dict.fromkeys(notes))
    unknown = before.get("throttle_reasons_error") or after.get("throttle_reasons_error")
    info = [f"throttle reasons unknown ({unknown})"] if unknown else []  # said, but not itself throttling
    return bool(notes), "; ".join(notes + info)


def _snapshot(session: Session) -> dict:
    try:
        return session.snapshot()
    except Exception as exc:  # a failed clock read must not fail the measurement
        return {"error": str(exc)}


def measure_latency(session: Session, x: np.ndarray, cfg: LatencyConfig | None = None) -> LatencyResult:
    """Time `session.run(x)` per iteration, synchronizing each so the device work is inside the sample."""
    cfg = cfg or LatencyConfig()
    if session.self_timed:
        return session.timed_run(x, cfg)
    session.prepare(int(x.shape[0]))  # e.g. a TensorRT engine tuned for this batch, built outside the window
    min_seconds = max(cfg.min_seconds, session.min_window_s)
    t_end = time.perf_counter() + cfg.warmup_seconds
    i = 0
    while i < cfg.warmup_iterations or time.perf_counter() < t_end:
        session.run(x)
        i += 1
    session.sync()
    before = _snapshot(session)
    samples = []
    t0 = time.monotonic()
    start = time.perf_counter()
    while len(samples) < cfg.max_iterations and (
        len(samples) < cfg.min_iterations or time.perf_counter() - start < min_seconds
    ):
        a = time.perf_counter()
        session.run(x)
        session.sync()
        samples.append((time.perf_counter() - a) * 1e3)
    t1 = time.monotonic()
    throttled, note = detect_throttle(before, _snapshot(session))
    return LatencyResult(np.array(samples), int(x.shape[0]), t0, t1, throttled, note)


@dataclass
class EvalResult:
    accuracy_top1: float  # %
    seconds: float
    n: int
    t0: float
    t1: float
    segments: list[tuple[float, float]] | None = None  # disjoint device-busy windows, when not [t0, t1]


def run_eval_epoch(session: Session, batches: Iterable[tuple[np.ndarray, np.ndarray]]) -> EvalResult:
    """One pass over the evaluation set on the device; accuracy from the device's own outputs.

    The first batch's size is prepared before the window opens (a TensorRT engine is built outside it).
    """
    if session.self_timed:
        return session.eval_epoch(batches)
    batches = iter(batches)
    first = next(batches, None)
    if first is not None:
        session.prepare(int(first[0].shape[0]))
    correct = n = 0
    session.sync()
    t0 = time.monotonic()
    for x, y in itertools.chain([first] if first is not None else [], batches):
        out = session.run(x)
        correct += int((out.argmax(1) == y).sum())
        n += len(y)
    session.sync()
    t1 = time.monotonic()
    return EvalResult(100.0 * correct / max(n, 1), t1 - t0, n, t0, t1)


def energy_window(
    sampler: PowerSampler | None,
    name: str,
    t0: float,
    t1: float,
    segments: list[tuple[float, float]] | None = None,
) -> Window | None:
    """Wait for a sample past t1 (so the integral covers the window), then integrate over [t0, t1]
    or, when given, over the disjoint `segments` only.

    None when there is no sampler, or when its trace does not cover the window (no sample at or before the
    start or at or after the end, e.g. the board's power source failed during the run): such an energy
    would be an extrapolation (0 J for an empty trace), and energy is never estimated.
    """
    if sampler is None:
        return None
    end = max(b for _, b in segments) if segments else t1
    deadline = time.monotonic() + 5.0 / sampler.rate_hz + 0.5
    while (not sampler.t or sampler.t[-1] < end) and time.monotonic() < deadline:
        time.sleep(1.0 / sampler.rate_hz)
    win = sampler.window_segments(name, segments) if segments else sampler.window(name, t0, t1)
    return win if win.covered else None


@dataclass
class IdleBaseline:
    watts: float  # mean board/package power while idle (W)
    seconds: float
    samples: int


def measure_idle(sampler: PowerSampler, seconds: float = 2.0) -> IdleBaseline | None:
    """Mean power over `seconds` of doing nothing: the baseline reported next to (never instead of)
    the measured energy, so energy above idle can be shown separately. None when the trace misses the window."""
    remote = sampler.reader.idle_window(seconds)  # a board sampling itself (remote Jetson) idles there
    if remote is not None:
        t0, t1 = remote
    else:
        t0 = time.monotonic()
        time.sleep(seconds)
        t1 = time.monotonic()
    win = energy_window(sampler, "idle", t0, t1)
    return IdleBaseline(win.power_w_mean, win.duration_s, win.samples) if win else None


def inference_energy_columns(
    win: Window | None, inferences: int, idle: IdleBaseline | None, sampling: bool, note: str = ""
) -> dict[str, object]:
    """The per-inference energy columns of a latency window, as results.csv names them.

    Empty (None) when there is no window; when a sampler ran but its trace did not cover the window, the
    power note says so (UNCOVERED) instead of any estimate.
    """
    out: dict[str, object] = {
        "power_w_mean": None,
        "energy_mj_per_inference": None,
        "power_w_idle": idle.watts if idle else None,
        "energy_mj_per_inference_above_idle": None,
        "power_note": note or None,
    }
    if win is None:
        if sampling:
            out["power_note"] = UNCOVERED
        return out
    out["power_w_mean"] = win.power_w_mean
    out["energy_mj_per_inference"] = win.energy_j / inferences * 1e3
    if idle:
        out["energy_mj_per_inference_above_idle"] = win.above_idle_j(idle.watts) / inferences * 1e3
    return out
