"""Measurement method shared by every adapter: latency (trtexec's rule), eval epochs, energy windows.

- Latency: warm up, then time single synchronized iterations until BOTH a minimum iteration count and a
  minimum duration are reached (trtexec's rule); every sample is kept; p50/p90/p99 use numpy's linear
  interpolation between order statistics.
- Sessions that time themselves (`self_timed`: trtexec on a Jetson) implement `timed_run(x, cfg)` /
  `eval_epoch(batches)` and the functions below delegate to them, so the runner calls one API for every backend.
- Every session (devices/base.py) has `snapshot()` (clocks, temperatures, throttle reasons; {} when none),
  taken before and after each window, `min_window_s` (power counters update slowly: NVML), which lengthens
  the latency window, and `prepare(batch_size)`, called before anything of that batch size is timed.
- Rounds: one long window per case hides between-window drift (frequency, caches, other tenants) behind
  thousands of autocorrelated samples. `measure_rounds` splits the budget into k short windows interleaved
  across its targets (a case and its dense reference), so drift hits them alike and the spread of the
  per-round medians is the run's own estimate of between-window noise: the unit a regression test needs.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace

import numpy as np

from ticketbench.devices.base import (  # noqa: F401  (the value types are the protocol's; re-exported here)
    EvalResult,
    LatencyConfig,
    LatencyResult,
    Session,
    TimingWindow,
    latency_stats,
)
from ticketbench.devices.power import PowerSampler, Window

UNCOVERED = "power trace does not cover the timed window: energy left empty"  # power_note when energy_window is None


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


def _warm_up(session: Session, x: np.ndarray, cfg: LatencyConfig) -> None:
    """cfg.warmup_iterations runs and at least cfg.warmup_seconds, then a sync: nothing of it is timed."""
    t_end = time.perf_counter() + cfg.warmup_seconds
    i = 0
    while i < cfg.warmup_iterations or time.perf_counter() < t_end:
        session.run(x)
        i += 1
    session.sync()


def measure_latency(session: Session, x: np.ndarray, cfg: LatencyConfig | None = None) -> LatencyResult:
    """Time `session.run(x)` per iteration, synchronizing each so the device work is inside the sample."""
    cfg = cfg or LatencyConfig()
    if session.self_timed:
        return session.timed_run(x, cfg)
    session.prepare(int(x.shape[0]))  # e.g. a TensorRT engine tuned for this batch, built outside the window
    min_seconds = max(cfg.min_seconds, session.min_window_s)
    _warm_up(session, x, cfg)
    before = _snapshot(session)
    samples: list[float] = []
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


def round_cv(values: np.ndarray) -> float | None:
    """Between-round spread: sample std / mean of per-round statistics (None with fewer than 2 rounds)."""
    v = np.asarray(values, dtype=float)
    if v.size < 2 or not np.all(np.isfinite(v)) or v.mean() <= 0:
        return None
    return float(v.std(ddof=1) / v.mean())


@dataclass
class RoundedLatency:
    """One target's k interleaved windows: every iteration kept, plus the per-round medians (ms)."""

    rounds: list[LatencyResult]

    @property
    def batch_size(self) -> int:
        return self.rounds[0].batch_size

    @property
    def samples_ms(self) -> np.ndarray:
        return np.concatenate([r.samples_ms for r in self.rounds])

    @property
    def round_index(self) -> np.ndarray:
        """The round of each sample in samples_ms."""
        return np.concatenate([np.full(len(r.samples_ms), i) for i, r in enumerate(self.rounds)])

    @property
    def round_medians_ms(self) -> np.ndarray:
        """Each round's median over the samples outside preempted windows (LatencyResult.kept_ms)."""
        return np.array([float(np.median(r.kept_ms)) for r in self.rounds])

    @property
    def segments(self) -> list[tuple[float, float]]:
        """The timed windows (monotonic s): energy integrates over these only, not the other targets' windows."""
        return [(w.t0, w.t1) for r in self.rounds for w in r.windows] or [(r.t0, r.t1) for r in self.rounds]

    @property
    def windows(self) -> list[TimingWindow]:
        return [w for r in self.rounds for w in r.windows]

    @property
    def throttled(self) -> bool | None:
        flags = [r.throttled for r in self.rounds if r.throttled is not None]
        return any(flags) if flags else None

    @property
    def throttle_note(self) -> str:
        return "; ".join(dict.fromkeys(r.throttle_note for r in self.rounds if r.throttle_note))

    @property
    def stats(self) -> dict[str, float | int | None]:
        """p50/p90/p99/mean/std/throughput over all iterations, plus the round count, the between-round spread and
        the timing windows (None when the rounds were single contiguous windows) with how many were preempted."""
        windows = self.windows
        return {
            **latency_stats(self.samples_ms, self.batch_size),
            "latency_rounds": len(self.rounds),
            "latency_ms_round_cv": round_cv(self.round_medians_ms),
            "latency_windows": len(windows) if windows else None,
            "latency_windows_preempted": sum(w.preempted for w in windows) if windows else None,
        }


def round_config(cfg: LatencyConfig, rounds: int, first: bool) -> LatencyConfig:
    """One round's window: the budget (min iterations and seconds) split evenly over the rounds; the first round
    warms up as configured, later ones briefly (the session is warm, only caches need refilling)."""
    per_round = replace(
        cfg, min_iterations=max(1, math.ceil(cfg.min_iterations / rounds)), min_seconds=cfg.min_seconds / rounds
    )
    return per_round if first else replace(per_round, warmup_iterations=2, warmup_seconds=0.0)


def _interleaved_round(targets: Sequence[tuple[Session, np.ndarray]], cfg: LatencyConfig) -> list[LatencyResult]:
    """One round in which the targets alternate iteration by iteration (A B A B ...), until each has
    cfg.min_iterations samples and the round has lasted cfg.min_seconds per target. Adjacent iterations see the
    same machine (a core freed or taken by another tenant), so the per-round ratio of their medians stays steady
    under load where two back-to-back windows would not."""
    for session, x in targets:
        _warm_up(session, x, cfg)
    before = [_snapshot(s) for s, _ in targets]
    samples: list[list[float]] = [[] for _ in targets]
    t0 = time.monotonic()
    start = time.perf_counter()
    budget = cfg.min_seconds * len(targets)
    while min(len(v) for v in samples) < cfg.max_iterations and (
        min(len(v) for v in samples) < cfg.min_iterations or time.perf_counter() - start < budget
    ):
        for (session, x), out in zip(targets, samples):
            a = time.perf_counter()
            session.run(x)
            session.sync()
            out.append((time.perf_counter() - a) * 1e3)
    t1 = time.monotonic()
    results = []
    for (session, x), snap, v in zip(targets, before, samples):
        throttled, note = detect_throttle(snap, _snapshot(session))
        results.append(LatencyResult(np.array(v), int(x.shape[0]), t0, t1, throttled, note))
    return results


# Fewest timed iterations in one alternating window, so one slow iteration cannot make a window's median.
MIN_WINDOW_ITERATIONS = 3
# A window is preempted when its CPU share (CPU s per wall s, every thread of this process) is more than this
# below the share of the same target's busiest windows (their 90th percentile): other processes held a CPU our
# threads were ready to use. Quick suite, 2 threads on the 2-core VM, quiet: a target's window shares spread
# within a few % of its 90th percentile; beside a neighbour busy in turns, its busy turns cut them by a third.
PREEMPT_BOUND = 0.15


def _alternating_round(
    targets: Sequence[tuple[Session, np.ndarray]], cfg: LatencyConfig, window_s: float
) -> list[LatencyResult]:
    """One round in which the targets take turns in short windows (A A A, B B B, A A A, ...) until each has
    cfg.min_iterations samples and cfg.min_seconds of timed windows. Each window starts with one untimed
    iteration, which refills the caches the other target's window evicted, then times iterations for `window_s`
    (at least MIN_WINDOW_ITERATIONS). Neighbouring windows see nearly the same machine, so a load change between
    them moves the two targets alike; the process CPU time of each window is kept to tell a preempted window."""
    for session, x in targets:
        _warm_up(session, x, cfg)
    before = [_snapshot(s) for s, _ in targets]
    samples: list[list[float]] = [[] for _ in targets]
    windows: list[list[TimingWindow]] = [[] for _ in targets]
    timed_s = [0.0 for _ in targets]
    t0 = time.monotonic()

    def wanting() -> bool:
        full = any(len(v) >= cfg.max_iterations for v in samples)
        return not full and any(
            len(v) < cfg.min_iterations or t < cfg.min_seconds for v, t in zip(samples, timed_s)
        )

    while wanting():
        for i, (session, x) in enumerate(targets):
            session.run(x)  # untimed: caches refilled after the other target's window
            session.sync()
            start, c0, m0, w0 = len(samples[i]), time.process_time(), time.monotonic(), time.perf_counter()
            while True:
                a = time.perf_counter()
                session.run(x)
                session.sync()
                b = time.perf_counter()
                samples[i].append((b - a) * 1e3)
                n = len(samples[i]) - start
                if (b - w0 >= window_s and n >= MIN_WINDOW_ITERATIONS) or len(samples[i]) >= cfg.max_iterations:
                    break
            windows[i].append(TimingWindow(m0, time.monotonic(), time.process_time() - c0, start, len(samples[i])))
            timed_s[i] += time.perf_counter() - w0
    t1 = time.monotonic()
    results = []
    for (session, x), snap, v, w in zip(targets, before, samples, windows):
        throttled, note = detect_throttle(snap, _snapshot(session))
        results.append(LatencyResult(np.array(v), int(x.shape[0]), t0, t1, throttled, note, windows=w))
    return results


def mark_preempted(rounded: RoundedLatency, bound: float = PREEMPT_BOUND) -> None:
    """Mark the windows whose CPU share fell more than `bound` below the 90th percentile of the target's own
    window shares (see PREEMPT_BOUND); their samples then leave the per-round statistic (LatencyResult.kept_ms)."""
    windows = rounded.windows
    if len(windows) < 2:
        return
    busiest = float(np.percentile([w.cpu_share for w in windows], 90))
    for w in windows:
        w.preempted = w.cpu_share < (1.0 - bound) * busiest


def ratio_interval(ratios: np.ndarray) -> float | None:
    """Relative half-width of the 95% t-interval of the mean log ratio over rounds (0.02 = ±2%), None below 2."""
    r = np.asarray(ratios, dtype=float)
    if r.size < 2 or not np.all(np.isfinite(r) & (r > 0)):
        return None
    from scipy import stats

    logs = np.log(r)
    half = float(stats.t.ppf(0.975, r.size - 1) * logs.std(ddof=1) / np.sqrt(r.size))
    return float(np.expm1(half))


def measure_rounds(
    targets: Sequence[tuple[Session, np.ndarray]],
    cfg: LatencyConfig | None = None,
    rounds: int = 5,
    interleave: str = "window",
    *,
    window_s: float = 0.01,
    max_rounds: int | None = None,
    enough: Callable[[list[RoundedLatency]], bool] | None = None,
) -> list[RoundedLatency]:
    """Time every (session, input) in `rounds` interleaved rounds: round 1 of each, then round 2 of each, ...

    interleave="window": within a round each target gets its own contiguous window (what a power trace needs:
    energy integrates over a target's windows only). interleave="alternate": within a round the targets of the same
    input shape take turns in short windows of `window_s` (at least the sessions' min_window_s), each preceded by
    one untimed iteration (see _alternating_round); windows preempted by other processes are marked and leave the
    per-round medians (mark_preempted, CPU-bound sessions only). interleave="iteration": the targets alternate
    iteration by iteration (kept for comparison: every switch evicts the other's weights, timing both cold).
    Sessions that time themselves (trtexec) always get windows. A load change during the measurement hits every
    target alike, and each target's per-round medians show the run's own between-round noise.

    Adaptive: after `rounds` rounds, more are added while `enough(results so far)` is False, up to `max_rounds`
    (each with the same budget as the first ones).
    Returns one RoundedLatency per target, in order.
    """
    cfg = cfg or LatencyConfig()
    if rounds < 1:
        raise ValueError(f"rounds must be ≥ 1, got {rounds}")
    if interleave not in ("window", "alternate", "iteration"):
        raise ValueError(f"interleave must be 'window', 'alternate' or 'iteration', got {interleave!r}")
    grouped = interleave != "window" and not any(s.self_timed for s, _ in targets)
    out: list[list[LatencyResult]] = [[] for _ in targets]
    limit = max(rounds, max_rounds or rounds)
    for k in range(limit):
        if k >= rounds and (enough is None or enough(_rounded(targets, out, interleave))):
            break
        rcfg = round_config(cfg, rounds, first=k == 0)
        if grouped:  # take turns only among targets of the same input shape: a shape change costs re-planning
            for shape in dict.fromkeys(x.shape for _, x in targets):
                idx = [i for i, (_, x) in enumerate(targets) if x.shape == shape]
                group = [targets[i] for i in idx]
                if interleave == "alternate":
                    wait = max([window_s] + [s.min_window_s for s, _ in group])
                    results = _alternating_round(group, rcfg, wait)
                else:
                    results = _interleaved_round(group, rcfg)
                for i, res in zip(idx, results):
                    out[i].append(res)
            continue
        for i, (session, x) in enumerate(targets):
            out[i].append(measure_latency(session, x, rcfg))
    return _rounded(targets, out, interleave)


def _rounded(
    targets: Sequence[tuple[Session, np.ndarray]], out: list[list[LatencyResult]], interleave: str
) -> list[RoundedLatency]:
    """The results so far, with preempted windows marked (alternating windows of CPU-bound sessions)."""
    rounded = [RoundedLatency(r) for r in out]
    if interleave == "alternate":
        for (session, _), r in zip(targets, rounded):
            if session.host_cpu_bound:
                mark_preempted(r)
    return rounded


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
