"""Measurement method shared by every adapter: latency (trtexec's rule), eval epochs, energy windows."""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from devices.base import Session
from devices.power import PowerSampler, Window


@dataclass
class LatencyConfig:
    """Warm up, then run until BOTH min_iterations and min_seconds are reached (as trtexec does)."""

    warmup_iterations: int = 10
    warmup_seconds: float = 0.2
    min_iterations: int = 50
    min_seconds: float = 1.0
    max_iterations: int = 100_000


@dataclass
class LatencyResult:
    samples_ms: np.ndarray
    batch_size: int
    t0: float  # monotonic window start (s)
    t1: float

    @property
    def stats(self) -> dict[str, float]:
        s = self.samples_ms
        return {
            "latency_ms_p50": float(np.percentile(s, 50)),
            "latency_ms_p90": float(np.percentile(s, 90)),
            "latency_ms_p99": float(np.percentile(s, 99)),
            "latency_ms_mean": float(s.mean()),
            "latency_ms_std": float(s.std(ddof=1)) if len(s) > 1 else 0.0,
            "throughput_ips": float(self.batch_size * len(s) / (s.sum() / 1e3)),
        }


def measure_latency(session: Session, x: np.ndarray, cfg: LatencyConfig | None = None) -> LatencyResult:
    """Time `session.run(x)` per iteration, synchronizing each so the device work is inside the sample."""
    cfg = cfg or LatencyConfig()
    t_end = time.perf_counter() + cfg.warmup_seconds
    i = 0
    while i < cfg.warmup_iterations or time.perf_counter() < t_end:
        session.run(x)
        i += 1
    session.sync()
    samples = []
    t0 = time.monotonic()
    start = time.perf_counter()
    while len(samples) < cfg.max_iterations and (
        len(samples) < cfg.min_iterations or time.perf_counter() - start < cfg.min_seconds
    ):
        a = time.perf_counter()
        session.run(x)
        session.sync()
        samples.append((time.perf_counter() - a) * 1e3)
    return LatencyResult(np.array(samples), int(x.shape[0]), t0, time.monotonic())


@dataclass
class EvalResult:
    accuracy_top1: float  # %
    seconds: float
    n: int
    t0: float
    t1: float


def run_eval_epoch(session: Session, batches: Iterable[tuple[np.ndarray, np.ndarray]]) -> EvalResult:
    """One pass over the evaluation set on the device; accuracy from the device's own outputs."""
    correct = n = 0
    t0 = time.monotonic()
    for x, y in batches:
        out = session.run(x)
        correct += int((out.argmax(1) == y).sum())
        n += len(y)
    session.sync()
    t1 = time.monotonic()
    return EvalResult(100.0 * correct / max(n, 1), t1 - t0, n, t0, t1)


def energy_window(sampler: PowerSampler | None, name: str, t0: float, t1: float) -> Window | None:
    """Wait for a sample past t1 (so the integral covers the window), then integrate."""
    if sampler is None:
        return None
    deadline = time.monotonic() + 5.0 / sampler.rate_hz + 0.5
    while (not sampler.t or sampler.t[-1] < t1) and time.monotonic() < deadline:
        time.sleep(1.0 / sampler.rate_hz)
    return sampler.window(name, t0, t1)
