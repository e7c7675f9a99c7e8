"""`bench doctor`: the plausibility and agreement logic against fake sources (sane, 5 % and 20 % apart,
impossible values), the gpu path through torch-cuda with a fake NVML, and a real run on this CPU."""

from __future__ import annotations

import json
import sys
import threading
import time
import types
from pathlib import Path

import pytest
from power_fakes import PushReader

from ticketbench.bench import doctor
from ticketbench.bench.cli import main
from ticketbench.bench.doctor import (
    Check,
    DoctorOptions,
    PowerSource,
    SourceReading,
    agreement,
    exit_code,
    plausibility,
    power_checks,
    sample_sources,
)
from ticketbench.devices import gpu
from ticketbench.devices.base import Availability
from ticketbench.devices.power import PowerReader

REPO = Path(__file__).resolve().parents[1]
FAST = DoctorOptions(idle_s=0.3, load_s=0.6, latency_s=0.05, power_rate_hz=100.0)


def reading(source="nvml-energy", idle=80.0, load=400.0, energy=200.0, limit=700.0, readings=()):
    return SourceReading(source, idle, load, list(readings) or [idle, load], energy, limit, "NVML enforced power limit")


# -- pure logic ---------------------------------------------------------------------------------------------
def test_sane_reading_has_no_problems():
    assert plausibility(reading()) == []


def test_impossible_values_are_each_named():
    problems = plausibility(reading(idle=450.0, load=300.0, readings=[-3.0, 450.0, 900.0]))
    text = "; ".join(problems)
    assert "negative reading -3 W" in text
    assert "900.0 W above the NVML enforced power limit 700.0 W" in text
    assert "idle 450.00 W ≥ load 300.00 W" in text


def test_a_window_without_samples_is_a_problem_not_a_zero():
    assert plausibility(reading(idle=None)) == ["nvml-energy: samples do not cover the idle window"]


def test_sources_5_percent_apart_agree_and_20_percent_apart_do_not():
    ref = reading(energy=200.0)
    ok, msg = agreement(ref, reading("nvml-power", energy=210.0))
    assert ok and "(5.0%)" in msg
    ok, msg = agreement(ref, reading("nvml-power", energy=240.0))
    assert not ok and "differ by more than 5%" in msg and "(20.0%)" in msg


def test_exit_code_counts_only_failures():
    assert exit_code([Check("cpu", "power", "skipped", "no power source: x"), Check("cpu", "c", "warn", "")]) == 0
    assert exit_code([Check("gpu", "agreement", "failed", "20%")]) == 1


# -- fake sources through the real sampler ----------------------------------------------------------------
class Board:
    """Shared state of a fake device: idle or busy; sources read its power (W)."""

    def __init__(self, idle_w: float, load_w: float) -> None:
        self.idle_w, self.load_w, self.busy = idle_w, load_w, False
        self.lock = threading.Lock()
        self.counters: list[FakeCounter] = []

    def watts(self) -> float:
        return self.load_w if self.busy else self.idle_w

    def set_busy(self, busy: bool) -> None:
        with self.lock:
            for c in self.counters:
                c.advance()
            self.busy = busy

    def load(self, seconds: float) -> None:
        self.set_busy(True)
        time.sleep(seconds)
        self.set_busy(False)


class FakeCounter(PowerReader):
    source = "nvml-energy"
    kind = "counter"

    def __init__(self, board: Board) -> None:
        self.board, self.j, self.t = board, 0.0, time.monotonic()
        board.counters.append(self)

    def advance(self) -> None:
        now = time.monotonic()
        self.j += self.board.watts() * (now - self.t)
        self.t = now

    def read_joules(self) -> float:
        with self.board.lock:
            self.advance()
            return self.j

    def read_watts(self) -> float:
        return self.board.watts()


class FakePolled(PowerReader):
    def __init__(self, board: Board, source: str, scale: float = 1.0, offset: float = 0.0) -> None:
        self.board, self.source, self.scale, self.offset = board, source, scale, offset

    def read_watts(self) -> float:
        return self.board.watts() * self.scale + self.offset


def run_fake(scale: float, idle_w: float = 80.0, load_w: float = 400.0, offset: float = 0.0) -> list[Check]:
    board = Board(idle_w, load_w)
    sources = [
        PowerSource("nvml-energy", FakeCounter(board), "", 700.0, "NVML enforced power limit"),
        PowerSource(
            "nvml-power", FakePolled(board, "nvml-power", scale, offset), "", 700.0, "NVML enforced power limit"
        ),
    ]
    readings, _, _ = sample_sources(sources, board.load, FAST)
    return power_checks("gpu", sources, readings)


def by_name(checks: list[Check]) -> dict[str, Check]:
    return {c.name: c for c in checks}


@pytest.mark.e2e
def test_fake_sources_that_agree_pass():
    checks = by_name(run_fake(1.0))
    assert checks["power nvml-energy"].status == "ok" and checks["power nvml-power"].status == "ok"
    assert checks["agreement nvml-power vs nvml-energy"].status == "ok"
    assert checks["power nvml-energy"].data["load_w"] == pytest.approx(400.0, rel=0.02)


@pytest.mark.e2e
def test_fake_sources_5_percent_apart_pass_and_say_so():
    check = by_name(run_fake(1.05))["agreement nvml-power vs nvml-energy"]
    assert check.status == "ok" and "(5.0%)" in check.detail
    assert check.data["relative_difference"] == pytest.approx(0.05, abs=0.002)


@pytest.mark.e2e
def test_fake_sources_20_percent_apart_fail_with_the_difference():
    checks = run_fake(1.2)
    check = by_name(checks)["agreement nvml-power vs nvml-energy"]
    assert check.status == "failed" and "(20.0%)" in check.detail and exit_code(checks) == 1


@pytest.mark.e2e
def test_fake_source_with_impossible_values_fails():
    """A polled source that reads negative at idle and above the limit under load; and one with idle > load."""
    checks = by_name(run_fake(2.0, idle_w=40.0, load_w=450.0, offset=-100.0))
    assert checks["power nvml-power"].status == "failed"
    assert "negative reading" in checks["power nvml-power"].detail
    assert "above the NVML enforced power limit" in checks["power nvml-power"].detail
    checks = by_name(run_fake(1.0, idle_w=300.0, load_w=100.0))
    assert (
        checks["power nvml-energy"].status == "failed"
        and "the load did not register" in checks["power nvml-energy"].detail
    )


def test_no_reader_is_a_no_power_source_line():
    checks = power_checks("cpu", [PowerSource("rapl", None, "RAPL unavailable: no powercap")], [])
    assert [(c.status, c.detail) for c in checks] == [
        ("skipped", "no power source: rapl: RAPL unavailable: no powercap")
    ]


# -- the gpu adapter without TensorRT or onnxruntime-gpu: torch-cuda, with a fake NVML ---------------------
class NVMLError(Exception):
    pass


def fake_pynvml(board: Board, power_scale: float = 1.0) -> types.ModuleType:
    """Energy counter and power usage over the fake board; power usage scaled to disagree on purpose."""
    m = types.ModuleType("pynvml")
    counter = FakeCounter(board)
    m.NVMLError = NVMLError
    m.NVML_CLOCK_SM, m.NVML_CLOCK_MEM, m.NVML_TEMPERATURE_GPU = 1, 2, 0
    m.nvmlInit = lambda: None
    m.nvmlDeviceGetCount = lambda: 1
    m.nvmlDeviceGetHandleByIndex = lambda i: f"gpu{i}"
    m.nvmlDeviceGetTotalEnergyConsumption = lambda h: int(counter.read_joules() * 1e3) + 10**9  # mJ since boot
    m.nvmlDeviceGetPowerUsage = lambda h: int(board.watts() * power_scale * 1e3)  # mW
    m.nvmlDeviceGetClockInfo = lambda h, kind: {1: 1980, 2: 3201}[kind]
    m.nvmlDeviceGetTemperature = lambda h, kind: 41
    m.nvmlDeviceGetCurrentClocksThrottleReasons = lambda h: 0
    m.nvmlDeviceGetName = lambda h: b"NVIDIA H200"
    m.nvmlSystemGetDriverVersion = lambda: "570.86.15"
    m.nvmlDeviceGetEnforcedPowerLimit = lambda h: 700000
    return m


NO_ONNX_GPU = {
    "tensorrt": "tensorrt not installed (pip install 'ticketbench[gpu]')",
    "onnxruntime-tensorrt": "onnxruntime has no TensorrtExecutionProvider (install onnxruntime-gpu)",
    "onnxruntime-cuda": "onnxruntime has no CUDAExecutionProvider (install onnxruntime-gpu)",
    "torch-cuda": "",
}


@pytest.fixture
def fake_gpu(monkeypatch):
    """A GPU with torch CUDA only (run on the CPU here) and NVML over a fake board."""

    def install(power_scale: float = 1.0) -> Board:
        board = Board(70.0, 450.0)
        monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml(board, power_scale))
        monkeypatch.setattr(gpu, "available_backends", lambda: dict(NO_ONNX_GPU))
        monkeypatch.setattr(gpu, "torch_cuda", lambda: True)
        monkeypatch.setattr(gpu.GpuDevice, "probe", classmethod(lambda cls: Availability(True, "fake GPU")))
        init = gpu.GpuDevice.__init__

        def on_cpu(self, *a, **k):
            init(self, *a, **k)
            self.torch_device = "cpu"  # no CUDA here: the torch-cuda session runs its code on the CPU

        monkeypatch.setattr(gpu.GpuDevice, "__init__", on_cpu)
        monkeypatch.setattr(doctor, "matmul_load", lambda torch_device: board.load)
        monkeypatch.setattr(doctor, "IDLE_S", FAST.idle_s)
        return board

    return install


@pytest.mark.e2e
def test_gpu_without_onnx_backends_runs_torch_cuda_and_says_why_the_others_were_skipped(fake_gpu):
    fake_gpu()
    checks = doctor.run_doctor("gpu", opts=FAST)
    got = by_name(checks)
    assert got["latency torch-cuda"].status == "ok", got["latency torch-cuda"].detail
    for backend in ("tensorrt", "onnxruntime-tensorrt", "onnxruntime-cuda"):
        assert (
            got[f"latency {backend}"].status == "skipped" and got[f"latency {backend}"].detail == NO_ONNX_GPU[backend]
        )
    assert (
        got["power nvml-energy"].status == "ok"
        and "limit 700.0 W (NVML enforced power limit)" in got["power nvml-energy"].detail
    )
    assert got["agreement nvml-power vs nvml-energy"].status == "ok"
    assert "driver 570.86.15" in got["versions"].detail
    assert got["clocks"].status == "info" and "sm 1980" in got["clocks"].detail
    assert exit_code(checks) == 0


@pytest.mark.e2e
def test_gpu_whose_nvml_sources_disagree_by_20_percent_fails(fake_gpu):
    fake_gpu(power_scale=1.2)
    checks = doctor.run_doctor("gpu", opts=FAST)
    assert by_name(checks)["agreement nvml-power vs nvml-energy"].status == "failed" and exit_code(checks) == 1


# -- this machine, for real ----------------------------------------------------------------------------------
def test_doctor_on_this_cpu_times_a_real_model_and_names_the_missing_power_source(capsys, monkeypatch, tmp_path):
    monkeypatch.setattr(doctor, "DoctorOptions", lambda: FAST)
    rc = main(["doctor", "--device", "cpu", "--json", "--out", str(tmp_path)])
    report = json.loads(capsys.readouterr().out)
    assert rc == 0 and report["ok"] and json.loads((tmp_path / "doctor.json").read_text()) == report
    got = {c["name"]: c for c in report["checks"]}
    assert got["latency onnxruntime-cpu"]["status"] == "ok" and got["latency onnxruntime-cpu"]["data"]["samples"] >= 50
    if "power" in got:  # no readable RAPL (this CI machine): one clear line
        assert got["power"]["detail"].startswith("no power source: rapl: ")
    else:  # pragma: no cover - a machine with readable RAPL
        assert got["power rapl"]["status"] == "ok"


def test_doctor_table_and_usage_errors(capsys, monkeypatch):
    monkeypatch.setattr(doctor, "DoctorOptions", lambda: FAST)
    assert main(["doctor", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "latency onnxruntime-cpu ok" in " ".join(out.split()) and "every usable check is sane" in out
    assert main(["doctor", "--device", "tpu"]) == 2
    assert main(["doctor", "--device", "cpu", "--host", "me@board"]) == 2
    assert main(["doctor", "--device", "jetson", "--host", "-oProxyCommand=x"]) == 2  # not probed: exit 2
    if not gpu.GpuDevice.probe().ok:  # a named device that is absent is a failed check, with the reason
        assert main(["doctor", "--device", "gpu"]) == 1
        assert "FAILED gpu adapter: not available:" in capsys.readouterr().out


@pytest.mark.e2e
def test_bench_run_on_a_gpu_without_onnx_backends_measures_through_torch_cuda(fake_gpu, tmp_path):
    """Each row names its backend, says why the ONNX backends were skipped, and carries NVML energy for
    inference, the runner's training epoch and the ticket's own training."""
    import pandas as pd

    from ticketbench.bench.runner import Runner, RunOptions
    from ticketbench.bench.suite import load_suite

    fake_gpu()
    suite = load_suite(str(REPO / "tests" / "data" / "tiny_suite.toml"))
    suite.cases = suite.cases[:1]
    rows = Runner(suite, gpu.GpuDevice(), RunOptions(out=tmp_path / "run", show_progress=False)).run()
    df = pd.read_csv(tmp_path / "run" / "results.csv")
    assert [r["status"] for r in rows] == ["ok", "ok"] and (df["backend"] == "torch-cuda").all()
    assert df["backend_note"].str.contains("tensorrt: tensorrt not installed").all()
    assert df["backend_note"].str.contains("onnxruntime-cuda: onnxruntime has no CUDAExecutionProvider").all()
    assert (df["power_source"] == "nvml-energy").all() and (df["energy_mj_per_inference"] > 0).all()
    assert (df["energy_j_per_train_epoch"] > 0).all() and (df["energy_j_ticket_training"] > 0).all()
    meta = json.loads((tmp_path / "run" / "run.json").read_text())
    assert meta["train_power_source"] == "nvml-energy" and meta["device"]["backends"]["tensorrt"]


def test_clock_faults_at_idle_fail_and_a_power_cap_under_load_warns():
    idle = {"clocks_mhz": {"sm": 345}, "throttle_reasons": ["hw_slowdown"]}
    load = {"clocks_mhz": {"sm": 1980}, "throttle_reasons": ["sw_power_cap"]}
    checks = by_name(doctor.clock_checks("gpu", idle, load))
    assert checks["clocks"].status == "warn" and "throttle reasons under load: sw_power_cap" in checks["clocks"].detail
    assert checks["throttle at idle"].status == "failed" and "hw_slowdown" in checks["throttle at idle"].detail
    calm = doctor.clock_checks("gpu", {"clocks_mhz": {"sm": 345}}, {"clocks_mhz": {"sm": 1980}})
    assert [c.status for c in calm] == ["info"]  # clocks rising under load is not throttling


@pytest.mark.e2e
def test_local_jetson_board_power_mode_ina3221_limit_and_missing_sources(tmp_path, monkeypatch):
    """A fake TX2 (sysfs tree + fake trtexec): the load raises VDD_IN in sysfs, as a real load would."""
    from fixtures.jetson.boards import install_bin, make_board, path_with

    root = make_board(tmp_path / "board", "tx2")
    monkeypatch.setenv("PATH", path_with(install_bin(tmp_path / "bin")))
    monkeypatch.setenv("TICKETBENCH_JETSON_ROOT", str(root))
    monkeypatch.setenv("TICKETBENCH_JETSON_WORKDIR", str(tmp_path / "work"))
    rail = root / "sys/bus/i2c/drivers/ina3221x/0-0041/iio:device1"
    (rail / "crit_current_limit_0").write_text("4000\n")  # mA at 5000 mV: a 20 W ceiling

    def set_power(mw: str) -> None:
        """In place, as sysfs changes a value: write_text truncates first, and the sampler polling the open file
        beside it could read it empty."""
        with open(rail / "in_power0_input", "r+") as f:
            f.write(mw)

    def busy(session, x):
        def run(seconds: float) -> None:
            set_power("9500\n")
            time.sleep(seconds)
            set_power("3140\n")

        return run

    monkeypatch.setattr(doctor, "session_load", busy)
    # longer windows than FAST: the sysfs poller runs beside the fake trtexec process, and a loaded CI machine
    # can hold it off a 0.6 s window's edge
    checks = doctor.run_doctor("jetson", opts=DoctorOptions(idle_s=0.6, load_s=1.5, latency_s=0.05, power_rate_hz=50.0))
    got = by_name(checks)
    assert got["adapter"].detail == "NVIDIA Jetson TX2" and got["latency tensorrt-trtexec"].status == "ok"
    assert "nvpmodel" in got["power mode"].detail and "MAXN" in got["power mode"].detail
    power = got["power ina3221-sysfs"]
    assert power.status == "ok", power.detail
    assert "limit 20.0 W (INA3221 critical current × rail voltage)" in power.detail
    assert power.data["idle_w"] == pytest.approx(3.14, rel=0.02) and power.data["load_w"] == pytest.approx(
        9.5, rel=0.05
    )
    assert got["power jtop"].status == "skipped" and got["power tegrastats"].status == "skipped"
    assert exit_code(checks) == 0


class FakeBoardFeed(PushReader):
    """A remote board's power feed: it records its own samples and pushes them (no polling here)."""

    source = "ina3221-sysfs"

    def _record(self, watts: float, seconds: float) -> tuple[float, float]:
        t0 = time.monotonic()
        time.sleep(seconds + 0.01)  # the board samples while it works; its samples arrive afterwards
        for i in range(int(seconds * 100) + 3):  # 100 Hz, one sample past each edge
            self.sink(t0 - 0.01 + i * 0.01, watts)
        return t0, t0 + seconds

    def idle_window(self, seconds: float) -> tuple[float, float]:
        return self._record(4.0, seconds)


def test_a_board_feed_measures_its_own_idle_and_the_load_reports_its_work_window():
    feed = FakeBoardFeed()
    readings, _, _ = sample_sources(
        [PowerSource("ina3221-sysfs", feed, "", 30.0, "x")], lambda s: feed._record(9.0, s), FAST
    )
    assert readings[0].idle_w == pytest.approx(4.0) and readings[0].load_w == pytest.approx(9.0)
    assert plausibility(readings[0]) == []
