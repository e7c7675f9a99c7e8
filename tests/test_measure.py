"""The measurement method: trtexec's stopping rule, statistics, throttle flags, delegation, idle baseline."""

from __future__ import annotations

import numpy as np
import pytest

from ticketbench.devices.base import Session
from ticketbench.devices.measure import (
    EvalResult,
    LatencyConfig,
    LatencyResult,
    detect_throttle,
    energy_window,
    latency_stats,
    measure_idle,
    measure_latency,
    run_eval_epoch,
)
from ticketbench.devices.power import PowerReader, PowerSampler


class CountingSession(Session):
    backend = "fake"

    def __init__(self, snaps=None) -> None:
        super().__init__()
        self.runs = self.syncs = 0
        self.snaps = list(snaps or [])

    def run(self, x):
        self.runs += 1
        return np.eye(10, dtype=np.float32)[np.arange(len(x)) % 10]  # predicts class i % 10 for row i

    def sync(self) -> None:
        self.syncs += 1


def test_latency_stats_by_hand():
    s = latency_stats(np.array([1.0, 2.0, 3.0, 4.0]), batch_size=8)
    assert s["latency_ms_p50"] == 2.5
    assert s["latency_ms_p90"] == pytest.approx(3.7)  # linear interpolation between order statistics
    assert s["latency_ms_p99"] == pytest.approx(3.97)
    assert s["latency_ms_mean"] == 2.5
    assert s["latency_ms_std"] == pytest.approx(np.sqrt(5 / 3))  # sample std (ddof=1)
    assert s["throughput_ips"] == pytest.approx(8 * 4 / 0.010)  # 32 inferences in 10 ms


def test_iteration_minimum_and_every_sample_kept():
    sess = CountingSession()
    cfg = LatencyConfig(warmup_iterations=3, warmup_seconds=0.0, min_iterations=25, min_seconds=0.0)
    res = measure_latency(sess, np.zeros((2, 4), np.float32), cfg)
    assert len(res.samples_ms) == 25 and sess.runs == 28  # 3 warm-up + 25 timed
    assert sess.syncs >= 25  # each timed iteration waits for the device
    assert res.batch_size == 2 and res.t1 >= res.t0
    assert res.throttled is None  # no snapshot: unknown, not "fine"


def test_duration_minimum_also_applies():
    cfg = LatencyConfig(warmup_iterations=0, warmup_seconds=0.0, min_iterations=1, min_seconds=0.05)
    res = measure_latency(CountingSession(), np.zeros((1, 4), np.float32), cfg)
    assert len(res.samples_ms) > 1  # one iteration is far shorter than 50 ms: it kept going
    assert res.t1 - res.t0 >= 0.05


def test_session_min_window_lengthens_the_window():
    sess = CountingSession()
    sess.min_window_s = 0.05  # e.g. NVML's averaging period
    cfg = LatencyConfig(warmup_iterations=0, warmup_seconds=0.0, min_iterations=1, min_seconds=0.0)
    res = measure_latency(sess, np.zeros((1, 4), np.float32), cfg)
    assert res.t1 - res.t0 >= 0.05


def test_clock_change_is_flagged():
    snaps = iter([{"clocks_mhz": {"gpu": 1300.0}}, {"clocks_mhz": {"gpu": 1100.0}}])
    sess = CountingSession()
    sess._snapshot = lambda: next(snaps)  # what an adapter passes as Session(snapshot=...)
    cfg = LatencyConfig(warmup_iterations=1, warmup_seconds=0.0, min_iterations=2, min_seconds=0.0)
    res = measure_latency(sess, np.zeros((1, 4), np.float32), cfg)
    assert res.throttled is True and "gpu clock 1300→1100 MHz" in res.throttle_note


@pytest.mark.parametrize(
    "before,after,flag,text",
    [
        ({}, {}, None, ""),
        ({"clocks_mhz": {"sm": 1980}}, {"clocks_mhz": {"sm": 1950}}, False, ""),  # 1.5 %: within tolerance
        ({"throttle_reasons": ["hw_thermal"]}, {}, True, "hw_thermal"),
        ({"temps_c": {"GPU-therm": 97.5}, "temp_limits_c": {"GPU-therm": 97.0}}, {}, True, "GPU-therm 97.5°C"),
        ({"temps_c": {"GPU-therm": 60.0}, "temp_limits_c": {"GPU-therm": 97.0}}, {"clocks_mhz": {}}, False, ""),
    ],
)
def test_detect_throttle(before, after, flag, text):
    got, note = detect_throttle(before, after)
    assert got is flag
    assert text in note


def test_delegation_to_self_timing_sessions():
    class SelfTimed(Session):
        backend = "self"
        self_timed = True

        def timed_run(self, x, cfg):
            return LatencyResult(np.array([1.0, 3.0]), len(x), 10.0, 11.0)

        def eval_epoch(self, batches):
            return EvalResult(50.0, 0.2, 4, 1.0, 2.0, [(1.0, 1.1), (1.9, 2.0)])

    assert measure_latency(SelfTimed(), np.zeros((3, 1))).stats["latency_ms_mean"] == 2.0
    assert run_eval_epoch(SelfTimed(), []).segments == [(1.0, 1.1), (1.9, 2.0)]


def test_eval_epoch_accuracy_from_device_outputs():
    x = np.zeros((10, 4), np.float32)
    y = np.array([0, 1, 2, 3, 4, 0, 0, 0, 0, 0])  # the fake predicts 0..9: the first five are right
    res = run_eval_epoch(CountingSession(), [(x, y)])
    assert res.accuracy_top1 == pytest.approx(50.0) and res.n == 10 and res.segments is None


class Push(PowerReader):
    source = "fake"
    kind = "push"

    def attach(self, sink):
        self.sink = sink

    def detach(self):
        pass


def test_energy_window_segments_and_idle():
    reader = Push()
    s = PowerSampler(reader).start()
    for i in range(21):
        reader.sink(i * 0.1, 3.0)
    assert energy_window(None, "x", 0, 1) is None
    assert energy_window(s, "lat", 0.2, 1.2).energy_j == pytest.approx(3.0)
    seg = energy_window(s, "eval", 0.0, 2.0, [(0.0, 0.5), (1.5, 2.0)])
    assert seg.energy_j == pytest.approx(3.0) and seg.duration_s == pytest.approx(1.0)

    def idle_window(seconds):  # a board that samples itself while idle returns its window
        return 0.0, seconds

    reader.idle_window = idle_window
    idle = measure_idle(s, 1.5)
    assert idle.watts == pytest.approx(3.0) and idle.seconds == pytest.approx(1.5)


def test_energy_window_is_empty_when_the_trace_misses_the_window():
    """No samples (a board whose power source failed during the run) must not read as 0 J; a trace that ends
    before the window does not either: both would be extrapolations, and energy is never estimated."""
    reader = Push()
    s = PowerSampler(reader, rate_hz=1000.0).start()
    assert energy_window(s, "lat", 0.0, 1.0) is None
    reader.idle_window = lambda seconds: (0.0, seconds)
    assert measure_idle(s, 1.0) is None
    for i in range(5):
        reader.sink(i * 0.1, 2.0)  # samples up to 0.4 s only
    assert energy_window(s, "lat", 0.0, 1.0) is None
    assert energy_window(s, "lat", 0.1, 0.3).energy_j == pytest.approx(0.4)


def test_inference_energy_columns_hand_computed():
    from ticketbench.devices.measure import UNCOVERED, IdleBaseline, inference_energy_columns
    from ticketbench.devices.power import Window

    win = Window("latency", 0.0, 0.5, energy_j=6.0, power_w_mean=12.0, samples=25, duration_s=0.5)
    cols = inference_energy_columns(win, 200, IdleBaseline(watts=4.0, seconds=2.0, samples=100), sampling=True)
    assert cols["power_w_mean"] == 12.0
    assert cols["energy_mj_per_inference"] == pytest.approx(30.0)  # 6 J / 200 inferences
    assert cols["power_w_idle"] == 4.0
    assert cols["energy_mj_per_inference_above_idle"] == pytest.approx(20.0)  # (6 − 4 W × 0.5 s) / 200
    assert cols["power_note"] is None
    none = inference_energy_columns(None, 200, None, sampling=False, note="no RAPL here")
    assert none["energy_mj_per_inference"] is None and none["power_note"] == "no RAPL here"
    missed = inference_energy_columns(None, 200, None, sampling=True)
    assert missed["energy_mj_per_inference"] is None and missed["power_note"] == UNCOVERED


def test_rounds_interleave_targets_and_split_the_budget():
    """Round 1 of every target, then round 2 of every target...; the budget is split evenly over the rounds."""
    from ticketbench.devices.measure import measure_rounds

    order = []

    class Tagged(CountingSession):
        def __init__(self, tag):
            super().__init__()
            self.tag = tag

        def run(self, x):
            if not order or order[-1] != self.tag:
                order.append(self.tag)
            return super().run(x)

    a, b = Tagged("a"), Tagged("b")
    cfg = LatencyConfig(warmup_iterations=3, warmup_seconds=0.0, min_iterations=20, min_seconds=0.0)
    res = measure_rounds([(a, np.zeros((2, 4), np.float32)), (b, np.zeros((1, 4), np.float32))], cfg, rounds=4)
    assert order == ["a", "b"] * 4
    assert [len(r.samples_ms) for r in res[0].rounds] == [5] * 4  # 20 iterations over 4 rounds
    assert a.runs == 3 + 5 + 3 * (2 + 5)  # the first round warms up as configured, later ones with 2 iterations
    assert len(res[0].samples_ms) == 20 and list(res[0].round_index) == [0] * 5 + [1] * 5 + [2] * 5 + [3] * 5
    assert res[1].batch_size == 1 and len(res[0].segments) == 4
    assert all(s0[1] <= s1[0] for s0, s1 in zip(res[0].segments, res[0].segments[1:]))  # b's windows lie between


def test_round_statistics_by_hand():
    from ticketbench.devices.measure import RoundedLatency, round_cv

    lat = RoundedLatency(
        [LatencyResult(np.array(v), 4, 0.0, 1.0) for v in ([1.0, 2.0, 3.0], [2.0, 2.0, 9.0], [3.0, 4.0, 5.0])]
    )
    assert list(lat.round_medians_ms) == [2.0, 2.0, 4.0]
    s = lat.stats
    assert s["latency_rounds"] == 3
    assert s["latency_ms_round_cv"] == pytest.approx(np.std([2, 2, 4], ddof=1) / (8 / 3))
    assert s["latency_ms_p50"] == 3.0  # over all nine iterations, not the per-round medians
    assert round_cv(np.array([2.0])) is None


def test_rounds_must_be_positive():
    from ticketbench.devices.measure import measure_rounds

    with pytest.raises(ValueError, match="rounds"):
        measure_rounds([(CountingSession(), np.zeros((1, 4), np.float32))], rounds=0)


def test_iteration_interleave_alternates_same_shaped_targets():
    from ticketbench.devices.measure import measure_rounds

    order = []

    class Tagged(CountingSession):
        def __init__(self, tag):
            super().__init__()
            self.tag = tag

        def run(self, x):
            order.append((self.tag, len(x)))
            return super().run(x)

    a, b = Tagged("a"), Tagged("b")
    x1, x2 = np.zeros((1, 4), np.float32), np.zeros((2, 4), np.float32)
    cfg = LatencyConfig(warmup_iterations=0, warmup_seconds=0.0, min_iterations=6, min_seconds=0.0)
    res = measure_rounds([(a, x1), (b, x1), (a, x2), (b, x2)], cfg, rounds=2, interleave="iteration")
    assert order[:6] == [("a", 1), ("b", 1)] * 3 and order[6:12] == [("a", 2), ("b", 2)] * 3  # round 1
    assert [len(r.samples_ms) for r in res] == [6, 6, 6, 6] and all(len(r.rounds) == 2 for r in res)
    assert res[0].rounds[0].t0 == res[1].rounds[0].t0  # one shared window per round and shape


def test_self_timing_sessions_always_get_windows():
    from ticketbench.devices.measure import measure_rounds

    class SelfTimed(Session):
        backend = "self"
        self_timed = True

        def timed_run(self, x, cfg):
            return LatencyResult(np.array([1.0, 3.0]), len(x), 10.0, 11.0)

    res = measure_rounds([(SelfTimed(), np.zeros((1, 1)))], rounds=3, interleave="iteration")
    assert res[0].round_medians_ms.tolist() == [2.0, 2.0, 2.0]


# -- alternating windows, preemption, adaptive rounds (the gate under load) ---------------------------------------
class Clocked(Session):
    """Each run advances a shared fake clock by `ms` and this process's fake CPU time by `ms` × `share`: a session
    whose windows can be preempted on demand, with a log of which session ran when."""

    host_cpu_bound = True

    def __init__(self, name, clock, ms) -> None:
        super().__init__()
        self.name, self.clock, self.ms, self.share = name, clock, ms, 1.0

    def run(self, x):
        self.clock["t"] += self.ms / 1e3
        self.clock["cpu"] += self.share * self.ms / 1e3
        self.clock["log"].append(self.name)
        return x


@pytest.fixture
def fake_clock(monkeypatch):
    from ticketbench.devices import measure

    clock = {"t": 0.0, "cpu": 0.0, "log": []}
    monkeypatch.setattr(measure.time, "perf_counter", lambda: clock["t"])
    monkeypatch.setattr(measure.time, "monotonic", lambda: clock["t"])
    monkeypatch.setattr(measure.time, "process_time", lambda: clock["cpu"])
    return clock


def test_alternating_windows_take_turns_each_after_one_untimed_call(fake_clock):
    from ticketbench.devices.measure import MIN_WINDOW_ITERATIONS, measure_rounds

    ticket, ref = Clocked("T", fake_clock, 1.0), Clocked("R", fake_clock, 4.0)
    x = np.zeros((1, 3), np.float32)
    cfg = LatencyConfig(warmup_iterations=0, warmup_seconds=0.0, min_iterations=1, min_seconds=0.2)
    t, r = measure_rounds([(ticket, x), (ref, x)], cfg, rounds=2, interleave="alternate", window_s=0.01)
    assert len(t.rounds) == len(r.rounds) == 2
    windows = sorted(t.windows + r.windows, key=lambda w: w.t0)
    owners = ["T" if w in t.windows else "R" for w in windows]
    assert owners[:4] == ["T", "R", "T", "R"]  # turns, not one contiguous window each
    for a, b in zip(windows, windows[1:]):
        assert a.t1 <= b.t0  # disjoint in time: energy can integrate each target's own windows
    for w in t.windows:  # 10 ms of 1 ms calls (11 where the fake clock's float sum falls short of 10 ms)
        assert w.stop - w.start in (10, 11)
    for w in r.windows:  # the 4 ms reference: at least MIN_WINDOW_ITERATIONS calls, though 12 ms > 10 ms
        assert w.stop - w.start == MIN_WINDOW_ITERATIONS
    # every window begins with one untimed call: calls = timed samples + windows + round 2's brief warm-up (2)
    assert fake_clock["log"].count("T") == len(t.samples_ms) + len(t.windows) + 2
    assert t.segments == [(w.t0, w.t1) for w in t.windows]
    assert t.stats["latency_windows"] == len(t.windows) and t.stats["latency_windows_preempted"] == 0


def test_a_window_that_lost_cpu_is_marked_and_left_out_of_the_round_median(fake_clock):
    from ticketbench.devices.measure import measure_rounds

    ticket, ref = Clocked("T", fake_clock, 1.0), Clocked("R", fake_clock, 1.0)
    x = np.zeros((1, 3), np.float32)
    cfg = LatencyConfig(warmup_iterations=0, warmup_seconds=0.0, min_iterations=1, min_seconds=0.1)
    calls = {"n": 0}
    inner = ticket.run

    def run(x):  # the ticket's 3rd window (its untimed call 23, timed 24-27): a neighbour takes the CPU
        calls["n"] += 1
        slowed = 23 <= calls["n"] <= 27  # 3 ms of wall per call, 1 ms of it on our CPU
        ticket.ms, ticket.share = (3.0, 1 / 3) if slowed else (1.0, 1.0)
        return inner(x)

    ticket.run = run
    (t, _) = measure_rounds([(ticket, x), (ref, x)], cfg, rounds=1, interleave="alternate", window_s=0.01)
    marked = [w for w in t.windows if w.preempted]
    assert len(marked) == 1 and marked[0].cpu_share == pytest.approx(1 / 3)
    assert t.stats["latency_windows_preempted"] == 1
    assert np.median(t.rounds[0].samples_ms) == pytest.approx(1.0)  # most windows were quiet anyway
    assert t.rounds[0].kept_ms.max() == pytest.approx(1.0)  # the slow window's samples are gone from the round
    assert len(t.rounds[0].kept_ms) == len(t.samples_ms) - (marked[0].stop - marked[0].start)


def test_mark_preempted_by_hand():
    from ticketbench.devices.base import TimingWindow
    from ticketbench.devices.measure import RoundedLatency, mark_preempted

    shares = [2.0, 1.95, 2.0, 1.6, 1.9, 2.0, 1.0, 2.0, 1.98, 2.0]  # 90th percentile: 2.0; bound 15%: below 1.7
    wins = [TimingWindow(i, i + 1.0, s, 2 * i, 2 * i + 2) for i, s in enumerate(shares)]
    res = LatencyResult(np.arange(20, dtype=float), 1, 0.0, 10.0, windows=wins)
    mark_preempted(RoundedLatency([res]))
    assert [w.preempted for w in wins] == [s < 1.7 for s in shares]
    assert list(res.kept_ms) == [v for i, v in enumerate(np.arange(20.0)) if shares[i // 2] >= 1.7]
    for w in wins:
        w.preempted = True
    assert len(res.kept_ms) == 20  # every window preempted: nothing better to keep, the round keeps all


def test_ratio_interval_by_hand():
    from scipy import stats

    from ticketbench.devices.measure import ratio_interval

    r = np.array([0.30, 0.33, 0.27, 0.31])
    logs = np.log(r)
    half = stats.t.ppf(0.975, 3) * logs.std(ddof=1) / 2.0
    assert ratio_interval(r) == pytest.approx(np.exp(half) - 1)
    assert ratio_interval(np.array([0.3, 0.3])) == 0.0 and ratio_interval(np.array([0.3])) is None


def test_rounds_are_added_until_enough_or_the_cap(fake_clock):
    from ticketbench.devices.measure import measure_rounds

    a, b = Clocked("A", fake_clock, 1.0), Clocked("B", fake_clock, 2.0)
    x = np.zeros((1, 3), np.float32)
    cfg = LatencyConfig(warmup_iterations=0, warmup_seconds=0.0, min_iterations=1, min_seconds=0.05)
    seen = []

    def enough(results):
        seen.append(len(results[0].rounds))
        return len(results[0].rounds) >= 7

    out = measure_rounds([(a, x), (b, x)], cfg, 3, "alternate", window_s=0.01, max_rounds=10, enough=enough)
    assert len(out[0].rounds) == len(out[1].rounds) == 7 and seen == [3, 4, 5, 6, 7]
    capped = measure_rounds([(a, x), (b, x)], cfg, 3, "alternate", window_s=0.01, max_rounds=5, enough=lambda r: False)
    assert len(capped[0].rounds) == 5
    plain = measure_rounds([(a, x), (b, x)], cfg, 3, "alternate", window_s=0.01)  # no rule: exactly `rounds`
    assert len(plain[0].rounds) == 3
