"""Power readers behind one sampler thread, and the energy integral over a measured window.

A reader returns instantaneous board/package power in watts. Counter-based sources (RAPL energy_uj,
NVML total energy) are read as energy and turned into power by differencing, so the integral over a
window telescopes back to the counter delta.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np


class PowerReader(Protocol):
    source: str  # a power_source value: rapl, nvml-energy, nvml-power, jtop, ina3221-sysfs, tegrastats

    def read_watts(self) -> float: ...


def integrate_energy(t: np.ndarray, w: np.ndarray, t0: float, t1: float) -> float:
    """∫ P dt (J) over [t0, t1] by the trapezoid rule, interpolating power at the window edges."""
    t = np.asarray(t, dtype=float)
    w = np.asarray(w, dtype=float)
    if t1 <= t0 or len(t) == 0:
        return 0.0
    if len(t) == 1:
        return float(w[0] * (t1 - t0))
    inside = (t > t0) & (t < t1)
    ts = np.concatenate([[t0], t[inside], [t1]])
    ws = np.concatenate([[np.interp(t0, t, w)], w[inside], [np.interp(t1, t, w)]])
    return float(np.sum((ws[1:] + ws[:-1]) * np.diff(ts)) / 2.0)


@dataclass
class Window:
    name: str
    t0: float
    t1: float
    energy_j: float
    power_w_mean: float
    samples: int


@dataclass
class PowerSampler:
    """Polls a reader at `rate_hz` in a daemon thread; timestamps from time.monotonic()."""

    reader: PowerReader
    rate_hz: float = 50.0
    t: list[float] = field(default_factory=list)
    w: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def start(self) -> PowerSampler:
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="power-sampler", daemon=True)
        self._thread.start()
        return self

    def _loop(self) -> None:
        period = 1.0 / self.rate_hz
        nxt = time.monotonic()
        while not self._stop.is_set():
            watts = self.reader.read_watts()
            now = time.monotonic()
            with self._lock:
                self.t.append(now)
                self.w.append(watts)
            nxt += period
            self._stop.wait(max(0.0, nxt - time.monotonic()))

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=2)

    def window(self, name: str, t0: float, t1: float) -> Window:
        """Energy over [t0, t1] (monotonic seconds) from the samples taken so far."""
        with self._lock:
            t, w = np.array(self.t), np.array(self.w)
        e = integrate_energy(t, w, t0, t1)
        n = int(((t >= t0) & (t <= t1)).sum())
        return Window(name, t0, t1, e, e / (t1 - t0) if t1 > t0 else float("nan"), n)

    def trace(self, t0: float | None = None, t1: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        with self._lock:
            t, w = np.array(self.t), np.array(self.w)
        sel = np.ones(len(t), bool)
        if t0 is not None:
            sel &= t >= t0
        if t1 is not None:
            sel &= t <= t1
        return t[sel], w[sel]


class RaplReader:
    """Intel/AMD RAPL package energy via powercap sysfs, summed over package domains.

    energy_uj wraps at max_energy_range_uj; a delta that goes negative is corrected by adding it.
    """

    source = "rapl"

    def __init__(self, root: Path = Path("/sys/class/powercap")) -> None:
        self.domains = sorted(d for d in Path(root).glob("intel-rapl:*") if ":" in d.name and d.name.count(":") == 1)
        if not self.domains:
            raise FileNotFoundError(f"no RAPL package domains under {root}")
        self.ranges = [int((d / "max_energy_range_uj").read_text()) for d in self.domains]
        self._last = self._read_uj()
        self._last_t = time.monotonic()

    def _read_uj(self) -> list[int]:
        return [int((d / "energy_uj").read_text()) for d in self.domains]

    def read_watts(self) -> float:
        now_uj, now_t = self._read_uj(), time.monotonic()
        total = 0
        for cur, last, rng in zip(now_uj, self._last, self.ranges):
            delta = cur - last
            total += delta + rng if delta < 0 else delta
        dt = now_t - self._last_t
        self._last, self._last_t = now_uj, now_t
        return (total / 1e6) / dt if dt > 0 else 0.0


def probe_rapl(root: Path = Path("/sys/class/powercap")) -> tuple[RaplReader | None, str]:
    """A RAPL reader, or None and the reason (missing powercap, permission denied)."""
    try:
        return RaplReader(root), ""
    except PermissionError as exc:
        return None, f"RAPL energy_uj not readable ({exc.filename}): run as root or chmod it"
    except (FileNotFoundError, OSError) as exc:
        return None, f"RAPL unavailable: {exc}"
