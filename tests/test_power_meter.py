"""The one power meter: named windows (nesting, overlap, refusals), empty energy with a reason, and energy over a
window equal to the hand-computed integral of a fake's known power trace; the adapters' declared sources."""

from __future__ import annotations

import time
import types

import pytest
from power_fakes import PushReader

from ticketbench.devices.measure import UNCOVERED
from ticketbench.devices.power import PowerReader, PowerSource
from ticketbench.devices.power_meter import NO_SOURCE, PowerMeter


def pushed(trace: list[tuple[float, float]]) -> PowerMeter:
    """A started meter over a push reader that delivered `trace` ((t_s, W) samples)."""
    reader = PushReader()
    meter = PowerMeter(reader).start()
    for t, w in trace:
        reader.sink(t, w)
    return meter


# A known trace: 2 W at t ≤ 5 s, a linear rise to 8 W at t = 6 s, 8 W to t = 10 s (samples every 0.5 s).
TRACE = [(i / 2, 2.0 if i <= 10 else 8.0 if i >= 12 else 5.0) for i in range(21)]


def test_energy_over_a_window_is_the_hand_computed_integral_of_the_trace():
    meter = pushed(TRACE)
    # [3, 8]: 2 W × 2 s + (2 + 8)/2 W × 1 s + 8 W × 2 s = 4 + 5 + 16 = 25 J
    m = meter.measure("latency", 3.0, 8.0)
    assert m.measured and m.energy_j == pytest.approx(25.0)
    assert m.duration_s == pytest.approx(5.0) and m.power_w_mean == pytest.approx(5.0)
    assert m.source == "fake-push" and m.reason == "" and m.samples == 11  # 3.0, 3.5, ..., 8.0
    # segments [1, 2] and [7, 9]: 2 J + 16 J over 3 s
    seg = meter.measure("eval", 1.0, 9.0, [(1.0, 2.0), (7.0, 9.0)])
    assert seg.energy_j == pytest.approx(18.0) and seg.duration_s == pytest.approx(3.0)
    assert seg.window is not None and seg.window.above_idle_j(2.0) == pytest.approx(12.0)
    meter.stop()


class Clock:
    """A monotonic clock the test moves by hand (patched into the meter)."""

    def __init__(self, t: float = 0.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def test_named_windows_nest_and_overlap_over_one_trace(monkeypatch):
    from ticketbench.devices import power_meter

    clock = Clock()
    monkeypatch.setattr(power_meter, "time", types.SimpleNamespace(monotonic=clock))  # this module's clock only
    meter = pushed(TRACE)
    clock.t = 1.0
    meter.begin_window("epoch")
    clock.t = 3.0
    meter.begin_window("inner")  # nested in "epoch"
    clock.t = 4.0
    meter.begin_window("overlap")  # opens inside "inner", ends after it
    clock.t = 5.0
    inner = meter.end_window("inner")  # [3, 5]: 2 W × 2 s
    clock.t = 7.0
    overlap = meter.end_window("overlap")  # [4, 7]: 2 + 5 + 8 = 15 J
    clock.t = 9.0
    epoch = meter.end_window("epoch")  # [1, 9]: 8 + 5 + 24 = 37 J
    assert inner.energy_j == pytest.approx(4.0) and (inner.t0, inner.t1) == (3.0, 5.0)
    assert overlap.energy_j == pytest.approx(15.0)
    assert epoch.energy_j == pytest.approx(37.0) and epoch.duration_s == pytest.approx(8.0)
    meter.stop()


def test_a_name_open_twice_or_ended_unopened_is_refused_and_a_failed_block_leaves_none_open():
    meter = pushed([(0.0, 1.0)])
    meter.begin_window("x")
    with pytest.raises(ValueError, match="'x' is already open"):
        meter.begin_window("x")
    with pytest.raises(ValueError, match="'y' is not open"):
        meter.end_window("y")
    meter.cancel_window("x")
    with pytest.raises(RuntimeError), meter.window("x"):
        raise RuntimeError("the workload failed")
    meter.begin_window("x")  # cancelled by the failed block, so it can open again
    meter.stop()
    with pytest.raises(RuntimeError, match="not started"):
        meter.begin_window("z")


def test_a_meter_without_a_source_gives_empty_energy_and_the_reason():
    with PowerMeter.of((None, "RAPL unavailable: no RAPL package domains under /x")) as meter:
        assert meter.source == "none" and not meter.sampling
        with meter.window("train") as span:
            pass
    m = span.measurement
    assert m is not None and not m.measured and m.energy_j is None and m.power_w_mean is None
    assert m.reason == "RAPL unavailable: no RAPL package domains under /x" and m.source == "none"
    assert m.duration_s >= 0 and meter.energy(0.0, 1.0) is None
    assert PowerMeter().measure("x", 0.0, 1.0).reason == NO_SOURCE
    assert meter.measure_idle(1.0) is None and len(meter.trace()[0]) == 0


def test_a_window_the_trace_does_not_cover_is_empty_not_extrapolated():
    meter = pushed([(0.0, 5.0), (1.0, 5.0)])
    meter.stop()
    m = meter.measure("late", 0.5, 3.0)
    assert m.energy_j is None and m.reason == UNCOVERED and m.window is None
    assert meter.measure("inside", 0.2, 0.8).energy_j == pytest.approx(3.0)


class Steady(PowerReader):
    source = "fake-steady"

    def read_watts(self) -> float:
        return 6.0


def test_a_polled_source_measures_a_real_window_and_the_idle_baseline():
    with PowerMeter(Steady(), rate_hz=200.0) as meter:
        idle = meter.measure_idle(0.1)
        with meter.window("load") as span:
            time.sleep(0.1)
    assert idle is not None and idle.watts == pytest.approx(6.0) and meter.idle is idle
    m = span.measurement
    assert m is not None and m.energy_j == pytest.approx(6.0 * m.duration_s) and m.samples >= 5
    assert meter.effective_rate_hz() is not None


def test_adapters_declare_their_sources():
    from ticketbench.devices.base import DeviceAdapter
    from ticketbench.devices.cpu import CpuDevice
    from ticketbench.devices.gpu import GpuDevice

    (rapl,) = CpuDevice().power_sources()
    assert rapl.source == "rapl" and (rapl.reader is not None or rapl.why_not)
    assert DeviceAdapter().power_sources() == [
        PowerSource("none", None, "no power source implemented for this device", owned=False)
    ]
    assert CpuDevice.torch_power("cuda:1") is None and GpuDevice.torch_power("cpu") is None
    assert CpuDevice.torch_power("cpu") is not None


def test_an_owned_source_is_closed_once_and_an_adapters_is_not():
    closed = []

    class Closing(Steady):
        def close(self) -> None:
            closed.append(self)
            raise OSError("already gone")  # best effort: not raised to the caller

    own, theirs = Closing(), Closing()
    PowerSource("a", own).close()
    PowerSource("b", theirs, owned=False).close()
    assert closed == [own]
