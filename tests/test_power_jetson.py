"""Jetson power readers and board facts against recorded tegrastats lines, fake sysfs trees, a fake jtop."""

from __future__ import annotations

import ast
import sys
import time
from pathlib import Path

import pytest
from fixtures.jetson.boards import ORIN_VDD_IN_MA, ORIN_VDD_IN_MV, TX2_VDD_IN_MW, install_bin, make_board, path_with
from fixtures.jetson.jtop_fake import CANT_ACCESS, fake_jtop_module, v3_power, v4_power

from ticketbench.devices import jetson_board as jb
from ticketbench.devices.power import PowerSampler
from ticketbench.devices.power_sources import probe_ina3221

FIX = Path(__file__).parent / "fixtures" / "tegrastats"


def lines(name: str) -> list[str]:
    return [ln for ln in (FIX / name).read_text().splitlines() if ln and not ln.startswith("#")]


# -- tegrastats formats -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "name,rail,cur_mw,avg_mw",
    [
        ("tx2.txt", "VDD_IN", 3140, 3208),
        ("tx2_r28.txt", "VDD_IN", 1931, 1931),
        ("tx1.txt", "VDD_IN", 2532, 2698),
        ("nano.txt", "POM_5V_IN", 877, 877),
        ("orin_nano.txt", "VDD_IN", 5263, 5263),
    ],
)
def test_tegrastats_total_rail_per_board(name, rail, cur_mw, avg_mw):
    p = jb.parse_tegrastats(lines(name)[0])
    assert p["total_rail"] == rail
    assert p["rails"][rail] == [cur_mw, avg_mw]
    assert p["total_w"] == pytest.approx(cur_mw / 1e3)  # the instant value, never the running average


@pytest.mark.parametrize("name", ["xavier_agx.txt", "orin_agx.txt"])
def test_boards_without_total_rail_give_no_power(name):
    p = jb.parse_tegrastats(lines(name)[0])
    assert p["total_w"] is None and p["total_rail"] is None
    assert len(p["rails"]) >= 4  # the sub-rails are there, and are not summed


def test_tegrastats_details():
    tx2 = jb.parse_tegrastats(lines("tx2.txt")[0])
    assert set(tx2["rails"]) == {"VDD_SYS_GPU", "VDD_SYS_SOC", "VDD_4V0_WIFI", "VDD_IN", "VDD_SYS_CPU", "VDD_SYS_DDR"}
    assert "RAM" not in tx2["rails"] and "SWAP" not in tx2["rails"]  # 2020/7852MB is memory, not a rail
    assert tx2["temps_c"]["BCPU"] == 42.5 and tx2["temps_c"]["Tdiode"] == 41.25
    assert jb.parse_tegrastats(lines("tx2_r28.txt")[0])["gpu_mhz"] == 140
    orin = jb.parse_tegrastats(lines("orin_agx.txt")[0])
    assert "GPU" not in orin["temps_c"] and orin["temps_c"]["tj"] == pytest.approx(44.343)  # -256C dropped
    assert orin["rails"]["VDD_GPU_SOC"] == [2340, 2340]
    assert jb.parse_tegrastats(lines("orin_nano.txt")[1])["gpu_mhz"] == 305  # GR3D_FREQ 0%@[305]
    assert jb.parse_tegrastats(lines("nano.txt")[1])["gpu_load"] == 0


# -- INA3221 sysfs ------------------------------------------------------------------------------------
def test_ina3221_jetpack4_iio_tx2(tmp_path):
    root = make_board(tmp_path, "tx2")
    r = jb.Ina3221Reader(str(root))
    assert r.rail == "VDD_IN" and r.read_watts() == pytest.approx(TX2_VDD_IN_MW / 1e3)
    f = next(root.glob("sys/bus/i2c/drivers/ina3221x/0-0041/iio:device1/in_power0_input"))
    f.write_text("4000\n")
    assert r.read_watts() == pytest.approx(4.0)  # the open file is re-read (pread at offset 0)
    r.close()
    assert probe_ina3221(root) == (True, "INA3221 VDD_IN (JetPack 4 iio)")


def test_ina3221_jetpack5_hwmon_orin(tmp_path):
    root = make_board(tmp_path, "orin_nano")
    rails = jb.find_ina3221_rails(str(root))
    assert set(rails) == {"VDD_IN", "VDD_CPU_GPU_CV", "VDD_SOC"}  # NC and sum-of-shunt skipped
    r = jb.Ina3221Reader(str(root))
    assert r.read_watts() == pytest.approx(ORIN_VDD_IN_MV * ORIN_VDD_IN_MA / 1e6)


def test_ina3221_without_total_rail_refuses_to_sum(tmp_path):
    root = make_board(tmp_path, "xavier_agx")
    with pytest.raises(OSError, match="no total-board rail"):
        jb.Ina3221Reader(str(root))
    ok, why = probe_ina3221(root)
    assert not ok and "CPU,CV,GPU,SOC,SYS5V,VDDRQ" in why


def test_ina3221_permission_error_reason(tmp_path, monkeypatch):
    root = make_board(tmp_path, "tx2")

    def denied(path, flags):
        raise PermissionError(13, "Permission denied", path)

    monkeypatch.setattr(jb.os, "open", denied)
    reader, reasons = jb.open_power(str(root), "ina3221-sysfs")
    assert reader is None and "permission denied" in reasons["ina3221-sysfs"]


# -- jtop (v3 and v4 APIs) -----------------------------------------------------------------------------
def test_jtop_v4_power_dict():
    assert jb.jtop_total_watts(v4_power({"VDD_IN": 4500, "VDD_SOC": 900})) == pytest.approx(4.5)
    summed = v4_power({"GPU": 100, "CPU": 200})  # AGX Xavier: jtop's "tot" is a sum of sub-rails
    assert "name" not in summed["tot"] and jb.jtop_total_watts(summed) is None


def test_jtop_v3_renamed_rails():
    """v3 renames rails (VDD_IN -> 'IN') and moves the first 'IN' rail into the total."""
    tx2 = v3_power({"VDD_SYS_GPU": 153, "VDD_SYS_SOC": 536, "VDD_IN": 3140, "VDD_SYS_CPU": 536})
    assert set(tx2[1]) == {"SYS GPU", "SYS SOC", "SYS CPU"}  # what a real v3 client shows
    assert jb.jtop_total_watts(tx2, board_total="VDD_IN") == pytest.approx(3.14)
    nano = v3_power({"POM_5V_IN": 877, "POM_5V_GPU": 0, "POM_5V_CPU": 200})
    assert jb.jtop_total_watts(nano, board_total="POM_5V_IN") == pytest.approx(0.877)
    # AGX Orin: no total rail, but VIN_SYS_5V0 becomes 'VIN SYS 5V0', contains "IN" and is taken as v3's total
    orin = v3_power({"VDD_GPU_SOC": 2340, "VDD_CPU_CV": 780, "VIN_SYS_5V0": 3920, "VDDQ_VDD2_1V8AO": 401})
    assert orin[0] == {"cur": 3920, "avg": 3920}
    assert jb.jtop_total_watts(orin, board_total=None) is None  # a sub-rail, never reported as board power
    xavier = v3_power({"GPU": 100, "CPU": 200, "SOC": 300})  # no "IN" rail: v3 sums
    assert jb.jtop_total_watts(xavier, board_total=None) is None


def test_jtop_v3_reader_trusts_the_total_the_board_labels_confirm(tmp_path, monkeypatch):
    root = make_board(tmp_path, "tx2")
    (root / "run").mkdir()
    (root / "run/jtop.sock").write_text("")
    power = v3_power({"VDD_SYS_GPU": 153, "VDD_IN": 5100, "VDD_SYS_CPU": 536})
    monkeypatch.setitem(sys.modules, "jtop", fake_jtop_module(power))
    reader, _ = jb.open_power(str(root), "jtop")
    assert reader.board_total == "VDD_IN" and reader.read_watts() == pytest.approx(5.1)
    reader.close()


def test_jtop_exception_falls_back_instead_of_crashing(tmp_path, monkeypatch):
    """jtop().start() raises JtopException (not OSError) when the user cannot reach jtop.service."""
    root = make_board(tmp_path / "board", "bare")  # no readable INA3221: jtop would be next
    (root / "run").mkdir()
    (root / "run/jtop.sock").write_text("")
    fake = fake_jtop_module(v4_power({"VDD_IN": 5100}), start_error=CANT_ACCESS)
    monkeypatch.setitem(sys.modules, "jtop", fake)
    bindir = install_bin(tmp_path / "bin", tegrastats_line=lines("tx2.txt")[0])
    monkeypatch.setenv("PATH", path_with(bindir))
    reader, reasons = jb.open_power(str(root))
    assert "jtop could not start: I can't access jtop.service." in reasons["jtop"]
    assert reader.source == "tegrastats"
    from ticketbench.devices.jetson import JetsonDevice

    dev = JetsonDevice(root=str(root), workdir=str(tmp_path / "w"))  # crashed with JtopException before
    assert dev.identity()["power_source"] == "tegrastats"
    dev.close()


def test_sysfs_preferred_over_jtop_and_jtop_rate_recorded(tmp_path, monkeypatch):
    """jtop refreshes at its service's interval (1 s by default): direct sysfs at 50 Hz comes first."""
    root = make_board(tmp_path, "tx2")
    (root / "run").mkdir()
    (root / "run/jtop.sock").write_text("")
    fake = fake_jtop_module(v4_power({"VDD_IN": 5100, "VDD_SOC": 900}), service_interval=1.0)
    monkeypatch.setitem(sys.modules, "jtop", fake)
    reader, _ = jb.open_power(str(root))
    assert reader.source == "ina3221-sysfs"  # readable sysfs wins over a running jtop service
    reader.close()
    reader, _ = jb.open_power(str(root), "jtop", rate_hz=50)
    assert fake.created[-1].requested_interval == pytest.approx(jb.JTOP_MIN_INTERVAL_S)  # asked for its fastest
    assert reader.read_watts() == pytest.approx(5.1)
    sampler = PowerSampler(reader, rate_hz=50)
    assert sampler.rate_hz == 1.0  # another client holds the service at 1 s: the effective rate is recorded
    reader.close()
    assert fake.created[-1].closed


def test_tegrastats_fallback_streams_total_power(tmp_path, monkeypatch):
    root = make_board(tmp_path / "board", "bare")
    bindir = install_bin(tmp_path / "bin", tegrastats_line=lines("tx2.txt")[0])
    monkeypatch.setenv("PATH", f"{bindir}:{Path(sys.executable).parent}:/usr/bin:/bin")
    reader, reasons = jb.open_power(str(root), rate_hz=50)
    assert "no INA3221" in reasons["ina3221-sysfs"]
    assert reader.source == "tegrastats" and reader.interval_ms == 20
    s = PowerSampler(reader).start()
    deadline = time.monotonic() + 20
    while len(s.t) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    s.stop()
    assert len(s.t) >= 3 and set(s.w) == {3.14}
    assert reader.proc.poll() is not None  # the tegrastats child was stopped


# -- board facts ----------------------------------------------------------------------------------------
def test_snapshot_and_facts(tmp_path):
    root = str(make_board(tmp_path, "tx2"))
    snap = jb.snapshot(root)
    assert snap["clocks_mhz"]["gpu"] == pytest.approx(1300.5)
    assert snap["clocks_mhz"]["cpu0"] == pytest.approx(2035.2)
    assert snap["temps_c"] == {"GPU-therm": 41.5, "CPU-therm": 43.0}
    assert snap["temp_limits_c"] == {"GPU-therm": 97.0, "CPU-therm": 96.5}  # passive trips, not critical
    assert jb.l4t_release(root) == "32.7.1"
    assert jb.jetpack_version(root) == "4.x"
    assert jb.board_model(root) == "NVIDIA Jetson TX2"
    assert jb.nvpmodel(root)["id"] == 0
    assert jb.jetson_clocks(root)["state"] == "off"  # GPU min 114.75 MHz < max
    gpu = Path(root) / "sys/class/devfreq/17000000.gp10b"
    (gpu / "min_freq").write_text("1300500000\n")
    cpu = Path(root) / "sys/devices/system/cpu/cpu0/cpufreq"
    (cpu / "scaling_min_freq").write_text("2035200\n")
    assert jb.jetson_clocks(root)["state"] == "on"


def test_nvpmodel_command_preferred(tmp_path, monkeypatch):
    bindir = install_bin(tmp_path / "bin")
    monkeypatch.setenv("PATH", f"{bindir}:/usr/bin:/bin")
    assert jb.nvpmodel(str(tmp_path)) == {"id": 0, "name": "MAXN", "how": "nvpmodel -q"}


def test_board_code_stays_python36_compatible():
    """jetson_board.py runs unchanged on a TX2 (JetPack 4.6, Python 3.6)."""
    src = Path(jb.__file__).read_text()
    tree = ast.parse(src, feature_version=(3, 6))
    banned_kwargs = {"capture_output", "text"}
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            assert not {k.arg for k in node.keywords} & banned_kwargs, ast.dump(node)[:80]
        if isinstance(node, ast.ImportFrom):
            assert node.module not in ("__future__", "dataclasses"), node.module
        if isinstance(node, ast.Import):
            assert not {a.name for a in node.names} & {"dataclasses", "typing"}
        if isinstance(node, (ast.FunctionDef, ast.AnnAssign)):
            assert not getattr(node, "returns", None) and not isinstance(node, ast.AnnAssign)
