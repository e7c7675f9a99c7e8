"""One power meter per measured device: a sampler over the adapter's chosen source and energy over named windows.

Modelled on ml-energy/zeus's `ZeusMonitor.begin_window(name)` / `end_window(name)`:

    with PowerMeter.of(device.power_reader(), rate_hz=50.0) as meter:   # sampling from here on
        meter.begin_window("train")
        ...
        m = meter.end_window("train")        # Measurement: energy J, duration s, mean W, samples, source
        m = meter.measure("eval", t0, t1, segments)   # a window timed elsewhere (a self-timed backend's trace)

Windows of different names may nest and overlap (they read the same trace); a name already open is refused, and
so is ending a name that is not open (ValueError). A meter without a source measures nothing: every window comes
back with `energy_j` None and the reason, as does a window the trace does not cover. Energy is never estimated.

The runner (inference, eval epoch, training epoch), the ticket training meter (bench/training.py) and the doctor
(one meter per source it compares) all measure through this class. It lives beside power.py rather than in it
because it builds on devices/measure.py's window rule (`energy_window`: wait for a sample past the end, refuse an
uncovered window) and idle baseline, which themselves build on power.py.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import TracebackType

import numpy as np

from ticketbench.devices.measure import UNCOVERED, IdleBaseline, energy_window, measure_idle
from ticketbench.devices.power import PowerReader, PowerSampler, Window, is_counter

NO_SOURCE = "no power source"  # the reason of a source-less meter's windows when the adapter gave none


@dataclass(frozen=True)
class Measurement:
    """What one window measured; `energy_j` None means not measured, and `reason` says why (never an estimate)."""

    name: str
    source: str  # the power_source value ("none" without a source)
    t0: float  # monotonic s
    t1: float
    duration_s: float  # the sum of the segments' lengths for a segmented window
    energy_j: float | None
    power_w_mean: float | None
    samples: int = 0  # samples inside the window
    reason: str = ""  # why energy_j is None
    window: Window | None = None  # the covered integral behind energy_j (Window.above_idle_j and friends)

    @property
    def measured(self) -> bool:
        return self.energy_j is not None


@dataclass
class Span:
    """An open window of `PowerMeter.window()`; `measurement` is set when the block leaves without an error."""

    name: str
    measurement: Measurement | None = None


@dataclass
class PowerMeter:
    """Samples one power source for its lifetime (start/stop, or a `with` block) and measures named windows.

    `PowerMeter()` is the meter of a device without a power source; `note` is then why (a results `power_note`).
    `idle` is the idle baseline once `measure_idle` ran. `device` names what is metered (logs, the training device).
    """

    reader: PowerReader | None = None
    note: str = ""
    rate_hz: float = 50.0
    device: str = ""
    idle: IdleBaseline | None = None
    sampler: PowerSampler | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        if self.reader is not None:
            self.note = ""
            self.sampler = PowerSampler(self.reader, rate_hz=self.rate_hz)
        self._open: dict[str, float] = {}
        self._running = False

    @classmethod
    def of(cls, found: tuple[PowerReader | None, str], rate_hz: float = 50.0, device: str = "") -> PowerMeter:
        """A meter over an adapter's `power_reader()` answer, (reader, "") or (None, why); not started yet."""
        reader, why = found
        return cls(reader, why, rate_hz, device)

    # -- lifetime ------------------------------------------------------------------------------------------
    @property
    def source(self) -> str:
        """The power_source value: the reader's source, "none" without one."""
        return self.reader.source if self.reader is not None else "none"

    @property
    def sampling(self) -> bool:
        """Whether there is a source to sample (windows can be measured)."""
        return self.sampler is not None

    @property
    def counter(self) -> bool:
        """The source is a cumulative energy counter (its per-sample watts are quantized)."""
        return self.reader is not None and is_counter(self.reader)

    def start(self) -> PowerMeter:
        if self.sampler is not None and not self._running:
            self.sampler.start()
        self._running = True
        return self

    def stop(self) -> None:
        """Stop sampling; windows over what was sampled can still be measured. The adapter closes its reader."""
        if self.sampler is not None and self._running:
            self.sampler.stop()
        self._running = False

    def __enter__(self) -> PowerMeter:
        return self.start()

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    # -- windows -------------------------------------------------------------------------------------------
    def begin_window(self, name: str) -> float:
        """Open window `name` now; returns its start (monotonic s). Refused when `name` is open already."""
        if not self._running:
            raise RuntimeError(f"power window {name!r}: the meter is not started")
        if name in self._open:
            raise ValueError(f"power window {name!r} is already open")
        self._open[name] = t0 = time.monotonic()
        return t0

    def end_window(self, name: str) -> Measurement:
        """Close window `name` now and measure it. Refused when `name` is not open."""
        t1 = time.monotonic()
        if name not in self._open:
            raise ValueError(f"power window {name!r} is not open (begin_window first)")
        return self.measure(name, self._open.pop(name), t1)

    def cancel_window(self, name: str) -> None:
        """Forget window `name` (open or not) without measuring it."""
        self._open.pop(name, None)

    @contextmanager
    def window(self, name: str) -> Iterator[Span]:
        """begin_window/end_window around a block; a block that raises leaves its window cancelled, not open."""
        span = Span(name)
        self.begin_window(name)
        try:
            yield span
        except BaseException:
            self.cancel_window(name)
            raise
        span.measurement = self.end_window(name)

    def measure(
        self, name: str, t0: float, t1: float, segments: Sequence[tuple[float, float]] | None = None
    ) -> Measurement:
        """A window timed elsewhere: [t0, t1] (monotonic s), or only its disjoint `segments` (a self-timed backend's
        inference phases). Waits briefly for a sample past the end; an uncovered window is not measured."""
        segs = list(segments) if segments else [(t0, t1)]
        duration = sum(max(0.0, b - a) for a, b in segs)
        if self.sampler is None:
            return Measurement(name, self.source, t0, t1, duration, None, None, 0, self.note or NO_SOURCE)
        win = energy_window(self.sampler, name, t0, t1, segs if segments else None)
        if win is None:
            return Measurement(name, self.source, t0, t1, duration, None, None, 0, UNCOVERED)
        return Measurement(
            name, self.source, win.t0, win.t1, win.duration_s, win.energy_j, win.power_w_mean, win.samples, "", win
        )

    def energy(self, t0: float, t1: float) -> float | None:
        """Measured J over [t0, t1], or None: the energy function a TicketContext takes (per training epoch)."""
        return self.measure("train", t0, t1).energy_j

    def measure_idle(self, seconds: float) -> IdleBaseline | None:
        """Sample `seconds` of doing nothing (on a board that samples itself, there) and keep it as `idle`:
        reported beside the measured energy, never subtracted from it. None without a source or a covered window."""
        if self.sampler is not None and seconds > 0:
            self.idle = measure_idle(self.sampler, seconds)
        return self.idle

    # -- the trace -----------------------------------------------------------------------------------------
    def trace(self, t0: float | None = None, t1: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The raw (t_s, W) samples, optionally restricted to [t0, t1]; empty without a source."""
        if self.sampler is None:
            return np.array([]), np.array([])
        return self.sampler.trace(t0, t1)

    def covers(self, t: float) -> bool:
        """Whether a sample at or after `t` has arrived (push sources deliver late)."""
        return self.sampler is not None and bool(self.sampler.t) and self.sampler.t[-1] >= t

    def effective_rate_hz(self) -> float | None:
        """Samples per second really delivered so far (None without a source or with fewer than two samples)."""
        return self.sampler.effective_rate_hz() if self.sampler is not None else None
