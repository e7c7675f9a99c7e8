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
