"""Energy integral, sampler (polling, counter and push readers) and RAPL against a fake powercap tree."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from power_fakes import PushReader

from ticketbench.devices.power import (
    PowerReader,
    PowerSampler,
    RaplReader,
    counter_energy,
    integrate_energy,
    probe_rapl,
)


# -- the integral on known traces ----------------------------------------------------------------------
def test_constant_trace_integrates_to_power_times_duration():
    t = np.arange(0.0, 10.01, 0.5)
    w = np.full_like(t, 4.0)
    assert integrate_energy(t, w, 2.0, 7.0) == pytest.approx(20.0)
    assert integrate_energy(t, w, 2.2, 2.3) == pytest.approx(0.4)  # window between two samples


def test_step_trace_is_trapezoid_across_the_step():
    # 2 W until t=5 s, 6 W from t=6 s on, samples every second: the step is seen between t=5 and t=6,
    # where the trapezoid takes the mean (4 W). ∫ over [3, 8] = 2·2 + 4·1 + 6·2 = 20 J.
    t = np.arange(0.0, 11.0)
    w = np.where(t <= 5, 2.0, 6.0)
    assert integrate_energy(t, w, 3.0, 8.0) == pytest.approx(20.0)
    # window edges inside sample intervals are interpolated: [5.5, 6] sees 4 W→6 W, mean 5 W ⇒ 2.5 J
    assert integrate_energy(t, w, 5.5, 6.0) == pytest.approx(2.5)


def test_ramp_trace_is_exact_for_linear_power():
    # P(t) = 3 + 2t (W): ∫_1^4 = 3·3 + (16 − 1) = 24 J, exactly, whatever the sample spacing.
    t = np.array([0.0, 0.7, 1.9, 2.2, 3.6, 5.0])
    w = 3 + 2 * t
    assert integrate_energy(t, w, 1.0, 4.0) == pytest.approx(24.0)


def test_integral_degenerate_windows():
    assert integrate_energy(np.array([]), np.array([]), 0, 1) == 0.0
    assert integrate_energy(np.array([1.0]), np.array([5.0]), 0, 2) == pytest.approx(10.0)
    assert integrate_energy(np.array([0.0, 1.0]), np.array([5.0, 5.0]), 1, 1) == 0.0


def test_counter_energy_interpolates_the_counter():
    t = np.array([0.0, 1.0, 2.0, 3.0])
    e = np.array([0.0, 10.0, 30.0, 60.0])  # 10 W, then 20 W, then 30 W
    assert counter_energy(t, e, 0.5, 2.5) == pytest.approx(45.0 - 5.0)


# -- the sampler ---------------------------------------------------------------------------------------
class ConstantReader(PowerReader):
    source = "fake"

    def read_watts(self) -> float:
        return 7.0


class LinearCounter(PowerReader):
    """E(t) = 5 W × (t − t_base): any window's energy is 5 × its length, however the thread is scheduled."""

    source = "fake-counter"
    kind = "counter"

    def __init__(self) -> None:
        self.base = time.monotonic()

    def read_joules(self) -> float:
        return 5.0 * (time.monotonic() - self.base)

    def read_watts(self) -> float:  # pragma: no cover - the sampler prefers read_joules
        raise AssertionError("counter readers are read as counters")


def _run(sampler: PowerSampler, n: int) -> None:
    deadline = time.monotonic() + 10
    while len(sampler.t) < n and time.monotonic() < deadline:
        time.sleep(0.01)
    sampler.stop()


def test_polling_sampler_constant_power():
    s = PowerSampler(ConstantReader(), rate_hz=200).start()
    _run(s, 12)
    t0, t1 = s.t[2], s.t[9]
    win = s.window("w", t0, t1)
    assert win.energy_j == pytest.approx(7.0 * (t1 - t0))
    assert win.power_w_mean == pytest.approx(7.0)
    assert win.samples == 8 and win.covered
    assert all(b > a for a, b in zip(s.t, s.t[1:]))  # monotonic timestamps


def test_counter_sampler_uses_counter_differences():
    """Energy over a window is the counter's difference (interpolated at the window edges), not integrated
    power. Fed known (time, joules) reads directly, so thread scheduling cannot blur the check."""
    s = PowerSampler(LinearCounter(), rate_hz=200)
    assert s.counter
    for i in range(11):  # a read every 10 ms of a counter rising at 5 W
        s._counter_sample(i * 0.01, 5.0 * i * 0.01)
    t0, t1 = 0.015, 0.075
    assert s.window("w", t0, t1).energy_j == pytest.approx(5.0 * (t1 - t0), rel=1e-9)
    assert np.nanmean(s.w[1:]) == pytest.approx(5.0, rel=1e-9)  # derived power trace for samples/


def test_live_counter_sampler_covers_its_windows():
    """The same through the sampler's own thread: every read changes the counter, so every read is stored."""
    s = PowerSampler(LinearCounter(), rate_hz=200).start()
    _run(s, 10)
    assert len(s.t) >= 10 and all(b > a for a, b in zip(s.t, s.t[1:]))
    assert s.window("w", s.t[1], s.t[-2]).energy_j == pytest.approx(5.0 * (s.t[-2] - s.t[1]), rel=0.05)


def test_push_sampler_and_segments():
    reader = PushReader()
    s = PowerSampler(reader, rate_hz=50).start()
    for i in range(11):  # 0..10 s: 2 W for t < 5, then 8 W
        reader.sink(float(i), 2.0 if i < 5 else 8.0)
    s.stop()
    assert reader.sink is None  # detached
    win = s.window_segments("eval", [(1.0, 3.0), (6.0, 9.0)])
    assert win.energy_j == pytest.approx(2 * 2.0 + 3 * 8.0)
    assert win.duration_s == pytest.approx(5.0)
    assert win.power_w_mean == pytest.approx(28.0 / 5.0)
    assert win.above_idle_j(1.0) == pytest.approx(28.0 - 5.0)
    assert not s.window("late", 9.5, 12.0).covered  # past the last sample: held, and flagged


def test_max_rate_of_the_reader_caps_the_sampler():
    class Slow(ConstantReader):
        max_rate_hz = 2.0

    assert PowerSampler(Slow(), rate_hz=50).rate_hz == 2.0


# -- RAPL against a fake powercap tree ------------------------------------------------------------------
def _rapl_tree(root: Path, energies: dict[str, int], ranges: dict[str, int]) -> None:
    for dom, uj in energies.items():
        d = root / dom
        d.mkdir(parents=True, exist_ok=True)
        (d / "energy_uj").write_text(f"{uj}\n")
        (d / "max_energy_range_uj").write_text(f"{ranges[dom]}\n")
        (d / "name").write_text("package-" + dom.split(":")[1] if dom.count(":") == 1 else "core")


def test_rapl_sums_packages_and_unwraps(tmp_path):
    rng = 262143328850
    _rapl_tree(
        tmp_path,
        {"intel-rapl:0": rng - 1000, "intel-rapl:1": 5_000_000, "intel-rapl:0:0": 77},
        {"intel-rapl:0": rng, "intel-rapl:1": rng, "intel-rapl:0:0": rng},
    )
    r = RaplReader(tmp_path)
    assert [d.name for d in r.domains] == ["intel-rapl:0", "intel-rapl:1"]  # the core subdomain is not counted
    (tmp_path / "intel-rapl:0/energy_uj").write_text("500000\n")  # wrapped: +1000 + 500000 µJ
    (tmp_path / "intel-rapl:1/energy_uj").write_text("6000000\n")  # +1,000,000 µJ
    assert r.read_joules() == pytest.approx((1000 + 500000 + 1_000_000) / 1e6)
    (tmp_path / "intel-rapl:0/energy_uj").write_text("700000\n")
    assert r.read_joules() == pytest.approx((1000 + 700000 + 1_000_000) / 1e6)  # cumulative


def test_rapl_permission_error_gives_reason(tmp_path, monkeypatch):
    _rapl_tree(tmp_path, {"intel-rapl:0": 1}, {"intel-rapl:0": 10})
    real = Path.read_text

    def denied(self, *a, **k):
        if self.name == "energy_uj":
            raise PermissionError(13, "Permission denied", str(self))
        return real(self, *a, **k)

    monkeypatch.setattr(Path, "read_text", denied)
    reader, why = probe_rapl(tmp_path)
    assert reader is None
    assert "not readable" in why and "energy_uj" in why


def test_rapl_missing_powercap_gives_reason(tmp_path):
    reader, why = probe_rapl(tmp_path / "nope")
    assert reader is None and "no RAPL package domains" in why
