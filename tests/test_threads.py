"""The one thread policy: physical cores (SMT and cgroup quota respected), fewer when the machine is busy,
an explicit --threads wins, and every runtime gets the same count."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from ticketbench import threads


@pytest.fixture
def fake_cpu(tmp_path, monkeypatch):
    """2 logical CPUs per core, no cgroup quota; returns a function to set the logical CPU count."""
    (tmp_path / "siblings").write_text("0,4\n")
    monkeypatch.setattr(threads, "SMT_SIBLINGS", tmp_path / "siblings")
    monkeypatch.setattr(threads, "CGROUP_V2_MAX", tmp_path / "none")
    monkeypatch.setattr(threads, "CGROUP_V1_DIR", tmp_path / "none")

    def set_cpus(n: int) -> None:
        monkeypatch.setattr(threads.os, "sched_getaffinity", lambda _pid: set(range(n)))

    set_cpus(8)
    return tmp_path


def test_physical_cores_divide_smt_siblings(fake_cpu):
    assert threads.usable_cpus() == 8
    assert threads.physical_cores() == 4  # "0,4": two hyper-threads per core


def test_sibling_ranges_are_counted(fake_cpu):
    (fake_cpu / "siblings").write_text("0-3\n")
    assert threads.physical_cores() == 2


def test_cgroup_quota_caps_the_cpus(fake_cpu, monkeypatch):
    (fake_cpu / "cpu.max").write_text("150000 100000\n")  # 1.5 CPUs
    monkeypatch.setattr(threads, "CGROUP_V2_MAX", fake_cpu / "cpu.max")
    assert threads.usable_cpus() == 2
    (fake_cpu / "cpu.max").write_text("max 100000\n")
    assert threads.usable_cpus() == 8


def test_busy_cores_from_proc_stat(tmp_path, monkeypatch):
    stat = tmp_path / "stat"
    # user nice system idle iowait irq softirq steal
    before = "cpu  100 0 100 800 0 0 0 0 0 0\n"
    after = "cpu  250 0 150 1000 0 0 0 0 0 0\n"  # 200 busy of 400 jiffies: half of the machine
    stat.write_text(before)
    monkeypatch.setattr(threads, "PROC_STAT", stat)
    monkeypatch.setattr(threads.time, "sleep", lambda _s: stat.write_text(after))
    monkeypatch.setattr(threads.os, "cpu_count", lambda: 4)
    assert threads.busy_cores() == pytest.approx(2.0)


def test_unreadable_proc_stat_gives_none(tmp_path, monkeypatch):
    monkeypatch.setattr(threads, "PROC_STAT", tmp_path / "missing")
    assert threads.busy_cores(0) is None


@pytest.mark.parametrize(
    ("busy", "expected", "source"),
    [(None, 4, "physical"), (0.3, 4, "physical"), (1.2, 3, "free"), (3.6, 1, "free"), (9.0, 1, "free")],
)
def test_a_busy_machine_gets_the_free_cores(fake_cpu, monkeypatch, busy, expected, source):
    monkeypatch.setattr(threads, "busy_cores", lambda: busy)
    policy = threads.choose()
    assert (policy.threads, policy.physical_cores) == (expected, 4)
    assert policy.source.startswith(source)


def test_explicit_threads_win_and_are_validated(fake_cpu, monkeypatch):
    monkeypatch.setattr(threads, "busy_cores", lambda: 3.9)
    assert threads.choose(6).threads == 6 and threads.choose(6).source == "--threads"
    with pytest.raises(ValueError, match="≥ 1"):
        threads.choose(0)


def test_apply_sets_torch_and_the_default_for_onnx_runtime(monkeypatch):
    from ticketbench.devices.cpu import CpuDevice

    before = torch.get_num_threads()
    monkeypatch.setattr(threads, "_applied", None)
    try:
        policy = threads.apply(1)
        assert torch.get_num_threads() == 1 and threads.current() == 1 and threads.applied() is policy
        assert CpuDevice().threads == 1
        assert CpuDevice(threads=3).threads == 3
    finally:
        torch.set_num_threads(before)


def test_cli_rejects_zero_threads_in_one_line():
    proc = subprocess.run([sys.executable, "-m", "bench", "run", "--threads", "0"], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "--threads" in proc.stderr


def test_cpu_sessions_stop_spinning_when_a_run_returns(onnx_model):
    """Several sessions live side by side in a run (each ticket and its dense reference): a pool still spinning
    after its run would take cores from the session timed next, so every CPU session stops spinning on return."""
    from ticketbench.devices.cpu import CpuDevice

    dev = CpuDevice(threads=1)
    session = dev.load(onnx_model)
    opts = session.sess.get_session_options()
    assert opts.get_session_config_entry("session.force_spinning_stop") == "1"
    assert dev.identity()["session_config"] == {"session.force_spinning_stop": "1"}


# -- the machine's other load during a window (what marks a row disturbed) ---------------------------------------------
PROC_STAT_TEXT = """cpu  {a} 0 {b} 900 0 0 0 0 0 0
cpu0 {c0} 0 0 300 0 0 0 {s0} 0 0
cpu1 {c1} 0 0 300 0 0 0 0 0 0
cpu2 500 0 0 300 0 0 0 0 0 0
intr 1 2 3
"""


def test_cpu_jiffies_sum_the_lines_of_our_cpus_steal_included(tmp_path, monkeypatch):
    stat = tmp_path / "stat"
    stat.write_text(PROC_STAT_TEXT.format(a=100, b=50, c0=40, s0=10, c1=20))
    monkeypatch.setattr(threads, "PROC_STAT", stat)
    assert threads.cpu_jiffies() == (150, 1050)  # the machine's line
    assert threads.cpu_jiffies({0, 1}) == (70, 670)  # cpu2 is not ours; cpu0's steal is busy
    with pytest.raises(ValueError):
        threads.cpu_jiffies({7})


def test_other_load_is_the_busy_time_on_our_cpus_that_is_not_ours(tmp_path, monkeypatch):
    """Over a 2 s window our CPUs were busy 3.0 s (300 ticks at 100 Hz) and this process used 1.2 s of it: the rest
    of the machine used 1.8 s, 0.9 cores on average."""
    stat = tmp_path / "stat"
    monkeypatch.setattr(threads, "PROC_STAT", stat)
    monkeypatch.setattr(threads.os, "sched_getaffinity", lambda _pid: {0, 1})
    monkeypatch.setattr(threads.os, "sysconf", lambda name: 100)
    clock, own = iter([10.0, 12.0]), iter([(0.5, 0.1), (1.5, 0.3)])
    monkeypatch.setattr(threads.time, "monotonic", lambda: next(clock))

    def times():
        user, system = next(own)
        return threads.os.times_result((user, system, 0.0, 0.0, 0.0))

    monkeypatch.setattr(threads.os, "times", times)
    stat.write_text(PROC_STAT_TEXT.format(a=0, b=0, c0=100, s0=0, c1=100))
    before = threads.cpu_sample()
    stat.write_text(PROC_STAT_TEXT.format(a=0, b=0, c0=250, s0=50, c1=200))  # 150 + 50 (steal) + 100 ticks
    after = threads.cpu_sample()
    assert (after.busy_s - before.busy_s, after.own_s - before.own_s) == (pytest.approx(3.0), pytest.approx(1.2))
    assert threads.other_load_cores(before, after) == pytest.approx(0.9)
    assert threads.other_load_cores(after, before) is None  # an empty or reversed window says nothing
    unreadable = threads.CpuSample(10.0, None, 0.0)
    assert threads.other_load_cores(unreadable, after) is None


@pytest.mark.parametrize(
    ("other", "threads_", "cores", "crowded"),
    [(0.4, 2, 2, False), (0.6, 2, 2, True), (1.0, 1, 2, False), (1.6, 1, 2, True), (None, 2, 2, False),
     (2.4, 4, 8, False), (4.6, 4, 8, True)],
)  # fmt: skip
def test_crowded_applies_the_policys_rounding_to_a_window(other, threads_, cores, crowded):
    assert threads.crowded(other, threads_, cores) is crowded
