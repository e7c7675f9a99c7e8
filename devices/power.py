"""Power readers behind one sampler, and the energy integral over a measured window.

Three kinds of reader plug into `PowerSampler`:

- *power* readers return instantaneous power (W) from `read_watts()`; the sampler polls them in a thread
  and a window's energy is the trapezoid integral of the trace (INA3221 sysfs, NVML power, jtop);
- *counter* readers also have `read_joules()`, a cumulative energy counter (J, wraparound already
  unwrapped); the sampler stores the counter and a window's energy is the counter difference, linearly
  interpolated to the window edges, so no integration error accumulates (RAPL energy_uj, NVML total energy).
  A counter may step: NVML's total energy changes every ~10-100 ms, not at every read. The sampler keeps
  only reads where the value changed and stamps each at the middle of the interval in which it changed
  (between the last read that still showed the old value and this one), so the trace holds the counter's
  true steps rather than a staircase lagging by up to one update period;
- *push* readers have `attach(sink)` / `detach()` and deliver `(t_monotonic_s, watts)` samples themselves
  (a tegrastats stream, the samples a Jetson board recorded next to trtexec); no polling thread runs.

All timestamps are `time.monotonic()` seconds. Energy is integrated over the measured window only.
`PowerSource` is one source a device adapter declares (DeviceAdapter.power_sources) with the limit it is checked
against; devices/power_meter.py's `PowerMeter` owns a sampler over the adapter's chosen source and measures named
windows on it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

COUNTER_HOLD_S = 1.0  # an unchanged counter is stored again after this long (s), so idle windows stay covered

Sink = Callable[[float, float], None]  # (t_monotonic_s, watts)


class PowerReader:
    """A power source. `kind` says how the sampler reads it; every capability is declared with its default.

    - kind "power": read_watts() is polled; "counter": read_joules() is polled (cumulative J);
      "push": attach(sink)/detach() deliver (t_monotonic_s, W) samples themselves.
    - max_rate_hz: the source refreshes no faster than this (jtop's interval), so polling is capped there.
    - min_window_s: windows shorter than this (s) are not resolved (NVML's 1-s averaged power).
    - idle_window(seconds): a source that samples elsewhere (a remote board) records an idle window there
      and returns it in local monotonic time; None (the default) means "sleep here while sampling".
    Board-side readers (devices/jetson_board.py, standard library only) declare the same attributes.
    """

    source: str = "none"  # a power_source value: rapl, nvml-energy, nvml-power, jtop, ina3221-sysfs, tegrastats
    kind: str = "power"
    max_rate_hz: float | None = None
    min_window_s: float = 0.0

    def read_watts(self) -> float:
        raise NotImplementedError

    def read_joules(self) -> float:
        raise NotImplementedError

    def attach(self, sink: Sink) -> None:
        raise NotImplementedError

    def detach(self) -> None:
        pass

    def idle_window(self, seconds: float) -> tuple[float, float] | None:
        return None

    def close(self) -> None:
        pass


def is_counter(reader: PowerReader) -> bool:
    """Counter readers expose cumulative energy (J); windows then use counter differences."""
    return reader.kind == "counter"


def is_push(reader: PowerReader) -> bool:
    """Push readers deliver their own timestamped samples; the sampler runs no thread for them."""
    return reader.kind == "push"


def integrate_energy(t: np.ndarray, w: np.ndarray, t0: float, t1: float) -> float:
    """∫ P dt (J) over [t0, t1] by the trapezoid rule, interpolating power at the window edges.

    Outside the sampled range the first/last sample is held (np.interp clamps); `Window.covered`
    says whether that happened.
    """
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


def counter_energy(t: np.ndarray, e: np.ndarray, t0: float, t1: float) -> float:
    """Energy (J) over [t0, t1] from a cumulative counter trace, interpolated linearly at the edges."""
    t = np.asarray(t, dtype=float)
    e = np.asarray(e, dtype=float)
    if t1 <= t0 or len(t) < 2:
        return 0.0
    return float(np.interp(t1, t, e) - np.interp(t0, t, e))


@dataclass
class Window:
    """Energy over one measured window (or over the union of several segments)."""

    name: str
    t0: float
    t1: float
    energy_j: float
    power_w_mean: float  # energy / measured duration (W)
    samples: int  # samples inside the window
    covered: bool = True  # samples exist at or before t0 and at or after t1 (no edge extrapolation)
    duration_s: float = 0.0  # measured duration; the sum of segment lengths for segmented windows

    @property
    def rate_hz(self) -> float:
        """Effective sampling rate inside the window (samples per second): what the energy rests on."""
        return self.samples / self.duration_s if self.duration_s > 0 else float("nan")

    def above_idle_j(self, idle_w: float) -> float:
        """Energy above an idle baseline (J): what the workload added on top of the idle board."""
        return self.energy_j - idle_w * self.duration_s


@dataclass
class PowerSampler:
    """Samples a reader at `rate_hz` (polling thread) or receives its pushed samples."""

    reader: PowerReader
    rate_hz: float = 50.0
    t: list[float] = field(default_factory=list)
    w: list[float] = field(default_factory=list)
    e: list[float] = field(default_factory=list)  # cumulative J, counter readers only

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.counter = is_counter(self.reader)
        self._last_value: float | None = None  # counter readers: the last value read
        self._last_repeat_t: float | None = None  # ...and when it was last read unchanged
        max_rate = self.reader.max_rate_hz
        if max_rate:  # e.g. jtop refreshes at its own interval: polling faster only repeats values
            self.rate_hz = min(self.rate_hz, float(max_rate))

    def start(self) -> PowerSampler:
        self._stop.clear()
        if is_push(self.reader):
            self.reader.attach(self.push)
            return self
        self._thread = threading.Thread(target=self._loop, name="power-sampler", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 1.0  # a window opened right after start() must begin inside the trace
        while not self.t and time.monotonic() < deadline:
            time.sleep(0.001)
        return self

    def push(self, t: float, watts: float) -> None:
        """Append one (monotonic s, W) sample; push readers call this, in time order."""
        with self._lock:
            self.t.append(t)
            self.w.append(watts)

    def _loop(self) -> None:
        period = 1.0 / self.rate_hz
        nxt = time.monotonic()
        read = self.reader.read_joules if self.counter else self.reader.read_watts
        while not self._stop.is_set():
            before = time.monotonic()
            value = read()
            now = (before + time.monotonic()) / 2  # stamp the middle of the read
            with self._lock:
                if not self.counter:
                    self.w.append(value)
                    self.t.append(now)
                else:
                    self._counter_sample(now, value)
            nxt += period
            self._stop.wait(max(0.0, nxt - time.monotonic()))

    def _counter_sample(self, now: float, value: float) -> None:
        """Store a counter read where it changed; a stepped counter's change lies between the last read that
        still showed the old value and this one, so it is stamped at their middle (caller holds the lock)."""
        if self._last_value is not None and value == self._last_value:
            self._last_repeat_t = now
            if now - self.t[-1] < COUNTER_HOLD_S:
                return
            stamp = now  # unchanged for a long time: the value holds now
        else:
            stamp = (self._last_repeat_t + now) / 2 if self._last_repeat_t is not None else now
            self._last_repeat_t = None
        self._last_value = value
        if self.t:
            dt = stamp - self.t[-1]
            watts = (value - self.e[-1]) / dt if dt > 0 else 0.0
            if len(self.w) == 1:
                self.w[0] = watts  # the first sample has no interval of its own
        else:
            watts = float("nan")
        self.e.append(value)
        self.w.append(watts)
        self.t.append(stamp)

    def stop(self) -> None:
        self._stop.set()
        if is_push(self.reader):
            self.reader.detach()
        if self._thread:
            self._thread.join(timeout=2)

    def effective_rate_hz(self) -> float | None:
        """Samples per second over the whole trace so far (None with fewer than two): the rate really achieved,
        below `rate_hz` when the source refreshes more slowly (jtop, a stepped counter, tegrastats)."""
        with self._lock:
            if len(self.t) < 2 or self.t[-1] <= self.t[0]:
                return None
            return (len(self.t) - 1) / (self.t[-1] - self.t[0])

    def _arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        with self._lock:
            return np.array(self.t), np.array(self.w), np.array(self.e)

    def window(self, name: str, t0: float, t1: float) -> Window:
        """Energy over [t0, t1] (monotonic seconds) from the samples taken so far."""
        return self.window_segments(name, [(t0, t1)])

    def window_segments(self, name: str, segments: Sequence[tuple[float, float]]) -> Window:
        """Energy summed over disjoint segments (e.g. the inference phases of several trtexec runs)."""
        t, w, e = self._arrays()
        energy, n, dur, covered = 0.0, 0, 0.0, len(t) > 0
        for a, b in segments:
            energy += counter_energy(t, e, a, b) if self.counter else integrate_energy(t, w, a, b)
            n += int(((t >= a) & (t <= b)).sum())
            dur += max(0.0, b - a)
            covered = covered and bool(t[0] <= a and t[-1] >= b)
        t0, t1 = min(a for a, _ in segments), max(b for _, b in segments)
        return Window(name, t0, t1, energy, energy / dur if dur > 0 else float("nan"), n, covered, dur)

    def trace(self, t0: float | None = None, t1: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The raw (t_s, W) samples, optionally restricted to [t0, t1]."""
        t, w, _ = self._arrays()
        sel = np.ones(len(t), bool)
        if t0 is not None:
            sel &= t >= t0
        if t1 is not None:
            sel &= t <= t1
        return t[sel], w[sel]


@dataclass
class PowerSource:
    """One power source a device offers (DeviceAdapter.power_sources): a reader, or why there is none, and the
    ceiling its readings are checked against (the doctor's plausibility check)."""

    source: str  # a power_source value
    reader: PowerReader | None
    why_not: str = ""
    limit_w: float | None = None
    limit_what: str = ""  # where the limit came from (NVML enforced power limit, RAPL max, INA3221 crit)
    owned: bool = True  # opened for whoever asked (who closes it); False: the adapter's own reader, closed by it

    def close(self) -> None:
        """Close an owned reader; best effort (what it measured is already taken)."""
        if self.owned and self.reader is not None:
            try:
                self.reader.close()
            except Exception:  # a reader that fails to close must not hide the checks made with it
                pass


def read_float(path: Path) -> float | None:
    """The first number in a sysfs file, or None when it is missing or not a number."""
    try:
        return float(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


class RaplReader(PowerReader):
    """Intel/AMD RAPL package energy via powercap sysfs, summed over package domains (a counter reader).

    Each domain's energy_uj wraps at its max_energy_range_uj; a negative delta between two reads means
    one wrap, corrected by adding the range (reads at ≥ 1 Hz never miss a wrap: ranges are minutes long).
    """

    source = "rapl"
    kind = "counter"

    def __init__(self, root: Path = Path("/sys/class/powercap")) -> None:
        self.domains = sorted(d for d in Path(root).glob("intel-rapl:*") if d.name.count(":") == 1)
        if not self.domains:
            raise FileNotFoundError(f"no RAPL package domains under {root}")
        self.ranges = [int((d / "max_energy_range_uj").read_text()) for d in self.domains]
        self._last = self._read_uj()
        self._total_uj = 0
        self._last_j, self._last_t = 0.0, time.monotonic()

    def _read_uj(self) -> list[int]:
        return [int((d / "energy_uj").read_text()) for d in self.domains]

    def read_joules(self) -> float:
        """Cumulative package energy (J) since this reader was created, wraparound unwrapped."""
        now = self._read_uj()
        for cur, last, rng in zip(now, self._last, self.ranges):
            delta = cur - last
            self._total_uj += delta + rng if delta < 0 else delta
        self._last = now
        return self._total_uj / 1e6

    def read_watts(self) -> float:
        """Mean power (W) since the previous read_watts call."""
        j, t = self.read_joules(), time.monotonic()
        dt = t - self._last_t
        watts = (j - self._last_j) / dt if dt > 0 else 0.0
        self._last_j, self._last_t = j, t
        return watts

    def max_power_w(self) -> tuple[float | None, str]:
        """The package domains' summed ceiling (W) and where it came from: constraint_N_max_power_uw where the
        firmware gives one, else the highest constraint_N_power_limit_uw (PL2 ≥ PL1); None when a domain has neither."""
        total, what = 0.0, set()
        for d in self.domains:
            maxes = [v for f in sorted(d.glob("constraint_*_max_power_uw")) if (v := read_float(f))]
            limits = [v for f in sorted(d.glob("constraint_*_power_limit_uw")) if (v := read_float(f))]
            if maxes:
                total += max(maxes) / 1e6
                what.add("RAPL max power")
            elif limits:
                total += max(limits) / 1e6
                what.add("RAPL power limit")
            else:
                return None, ""
        return (total, " + ".join(sorted(what))) if what else (None, "")


def probe_rapl(root: Path = Path("/sys/class/powercap")) -> tuple[RaplReader | None, str]:
    """A RAPL reader, or None and the reason (missing powercap, permission denied)."""
    try:
        return RaplReader(root), ""
    except PermissionError as exc:
        return None, f"RAPL energy_uj not readable ({exc.filename}): run as root or chmod it"
    except (FileNotFoundError, OSError, ValueError) as exc:
        return None, f"RAPL unavailable: {exc}"
