"""Remote Jetson mode over a real OpenSSH server on 127.0.0.1 (started here, unprivileged port).

The "board" is this machine seen through sshd: a fake sysfs tree (TICKETBENCH_JETSON_ROOT), and fake
trtexec/tegrastats/nvpmodel first on the session's PATH (sshd's SetEnv). Skipped when sshd is absent.
"""

from __future__ import annotations

import os
import shlex
import socket
import subprocess
import time

import numpy as np
import pytest
from fixtures.jetson.boards import TX2_VDD_IN_MW, install_bin, make_board, path_with, which_sshd

from ticketbench.devices.jetson import JetsonDevice
from ticketbench.devices.measure import LatencyConfig, energy_window, measure_latency, run_eval_epoch
from ticketbench.devices.power import PowerSampler
from ticketbench.devices.transport import LocalTransport

TX2_LINE = (
    "RAM 2020/7852MB (lfb 1164x4MB) CPU [9%@345,21%@345,25%@345,3%@345,1%@345,1%@345] EMC_FREQ 0% GR3D_FREQ 0% "
    "PLL@42.5C MCPU@42.5C PMIC@100C Tboard@40C GPU@41C BCPU@42.5C thermal@41.9C Tdiode@41.25C VDD_SYS_GPU 153/158 "
    "VDD_SYS_SOC 536/547 VDD_4V0_WIFI 633/527 VDD_IN 3140/3208 VDD_SYS_CPU 536/590 VDD_SYS_DDR 557/601"
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def sshd(tmp_path_factory):
    exe = which_sshd()
    if exe is None:
        pytest.skip("sshd not installed (apt-get install -y openssh-server)")
    d = tmp_path_factory.mktemp("sshd")
    for key in ("host_key", "client_key"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(d / key)], check=True)
    (d / "authorized_keys").write_text((d / "client_key.pub").read_text())
    os.chmod(d / "authorized_keys", 0o600)
    bindir = install_bin(d / "bin", tegrastats_line=TX2_LINE)
    port = _free_port()
    (d / "sshd_config").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {d / 'host_key'}\nPidFile {d / 'sshd.pid'}\n"
        f"AuthorizedKeysFile {d / 'authorized_keys'}\nStrictModes no\nUsePAM no\nPasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\n"
        f"SetEnv PATH={path_with(bindir)}\nSubsystem sftp internal-sftp\nLogLevel ERROR\n"
    )
    if os.geteuid() == 0:
        os.makedirs("/run/sshd", exist_ok=True)  # privilege separation directory sshd requires as root
    proc = subprocess.Popen([exe, "-D", "-e", "-f", str(d / "sshd_config")], stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.skip(f"sshd did not start: {proc.stderr.read()[-300:]}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.1)
    user = subprocess.run(["id", "-un"], capture_output=True, text=True).stdout.strip()
    opts = ["-p", str(port), "-i", str(d / "client_key"), "-o", "StrictHostKeyChecking=no"]
    opts += ["-o", f"UserKnownHostsFile={d / 'known_hosts'}", "-o", "LogLevel=ERROR"]
    yield {"host": f"{user}@127.0.0.1", "opts": opts, "dir": d}
    proc.terminate()
    proc.wait(timeout=10)


@pytest.mark.peer
def test_remote_latency_eval_and_power(sshd, tmp_path, onnx_model):
    root = make_board(tmp_path / "board", "tx2")
    dev = JetsonDevice(host=sshd["host"], ssh_options=sshd["opts"], workdir=str(tmp_path / "w"), root=str(root))
    ident = dev.identity()
    assert ident["host"] == sshd["host"] and ident["device_name"] == "NVIDIA Jetson TX2"
    assert ident["power_source"] == "ina3221-sysfs" and ident["board_python"]
    assert dev.torch_device is None  # no training epochs on a remote board
    reader, _ = dev.power_reader()
    sampler = PowerSampler(reader).start()
    session = dev.load(onnx_model, "fp32")
    assert any((tmp_path / "w").glob("*/model.onnx"))  # copied over scp
    lat = measure_latency(session, np.zeros((2, 1, 8, 8), np.float32), LatencyConfig(0, 0.01, 15, 0.05))
    assert len(lat.samples_ms) >= 15
    win = energy_window(sampler, "latency", lat.t0, lat.t1)
    assert win.covered and win.power_w_mean == pytest.approx(TX2_VDD_IN_MW / 1e3)
    x = np.random.default_rng(2).standard_normal((6, 1, 8, 8), dtype=np.float32)
    import onnxruntime as ort

    ref = ort.InferenceSession(str(onnx_model), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    ev = run_eval_epoch(session, [(x, ref.argmax(1))])
    assert ev.accuracy_top1 == 100.0 and len(ev.segments) == 1
    sampler.stop()
    dev.close()


@pytest.mark.peer
def test_remote_tegrastats_fallback(sshd, tmp_path, onnx_model):
    root = make_board(tmp_path / "board", "bare")  # no readable INA3221: tegrastats on the board
    dev = JetsonDevice(host=sshd["host"], ssh_options=sshd["opts"], workdir=str(tmp_path / "w"), root=str(root))
    assert dev.identity()["power_source"] == "tegrastats"
    reader, _ = dev.power_reader()
    sampler = PowerSampler(reader).start()
    session = dev.load(onnx_model, "fp32")
    lat = measure_latency(session, np.zeros((1, 1, 8, 8), np.float32), LatencyConfig(0, 0.01, 5, 0.05))
    win = energy_window(sampler, "latency", lat.t0, lat.t1)
    assert win.power_w_mean == pytest.approx(3.14)  # VDD_IN 3140 mW from the streamed TX2 line
    sampler.stop()
    dev.close()


def test_unreachable_host_is_reported(tmp_path):
    opts = ["-p", str(_free_port()), "-o", "ConnectTimeout=3"]
    avail = JetsonDevice.probe(host="nobody@127.0.0.1", ssh_options=opts)
    assert not avail.ok and "cannot reach nobody@127.0.0.1" in avail.reason


@pytest.mark.peer
def test_cli_run_on_remote_jetson(sshd, tmp_path, monkeypatch):
    from ticketbench.bench.cli import main

    root = make_board(tmp_path / "board", "tx2")
    suite = tmp_path / "tiny.toml"
    suite.write_text(
        'name = "tiny"\n[defaults]\nmodel = "small_cnn"\ndataset = "digits"\nepochs = 1\nfinetune_epochs = 0\n'
        "batch_size = 64\nseed = 0\n[measure]\nbatch_sizes = [1]\nmin_iterations = 5\nmin_seconds = 0.05\n"
        '[[cases]]\nmethod = "dense"\n'
    )
    monkeypatch.setenv("TICKETBENCH_SSH_OPTS", shlex.join(sshd["opts"]))
    monkeypatch.setenv("TICKETBENCH_JETSON_ROOT", str(root))
    monkeypatch.setenv("TICKETBENCH_JETSON_WORKDIR", str(tmp_path / "w"))
    out = tmp_path / "run"
    argv = ["run", "--device", "jetson", "--host", sshd["host"], "--suite", str(suite), "--out", str(out), "-q"]
    assert main(argv) == 0
    import pandas as pd

    row = pd.read_csv(out / "results.csv").iloc[0]
    assert row["device"] == "jetson" and row["device_name"] == "NVIDIA Jetson TX2"
    assert row["backend"] == "tensorrt-trtexec" and row["power_source"] == "ina3221-sysfs"
    assert row["power_w_mean"] == pytest.approx(3.14)
    assert row["energy_mj_per_inference"] > 0 and row["energy_j_per_eval_epoch"] > 0
    assert np.isnan(row["train_s_per_epoch"])  # torch does not run on a remote board
    assert row["throttled"] in (False, "False")
    assert row["accuracy_top1"] == pytest.approx(row["accuracy_top1_torch"], abs=1.0)
    trace = next((out / "samples").glob("*-power.csv")).read_text().splitlines()
    assert trace[0] == "t_s,watts" and len(trace) > 1 and trace[1].endswith(",3.1400")  # raw board trace saved


class LoopbackTransport(LocalTransport):
    """Remote mode without sshd: jetson_board.py's source goes to a `python3 -` child on this machine and one
    JSON object comes back, exactly as over SSH; only the ssh/scp hop is missing."""

    remote = True

    def __init__(self, host, ssh_options=None, workdir=None) -> None:
        super().__init__(workdir)
        self.where = host


@pytest.mark.e2e
def test_remote_protocol_without_sshd(tmp_path, monkeypatch, onnx_model):
    """The board side as a separate process: declared reader kinds, idle window and pushed samples."""
    from ticketbench.devices import jetson
    from ticketbench.devices.measure import measure_idle

    root = make_board(tmp_path / "board", "tx2")
    monkeypatch.setenv("PATH", path_with(install_bin(tmp_path / "bin", tegrastats_line=TX2_LINE)))
    monkeypatch.setattr(jetson, "SshTransport", LoopbackTransport)
    dev = JetsonDevice(host="board", workdir=str(tmp_path / "w"), root=str(root))
    assert dev.identity()["power_source"] == "ina3221-sysfs" and dev.backend == "trtexec"
    reader, _ = dev.power_reader()
    assert reader.kind == "push"
    sampler = PowerSampler(reader).start()
    idle = measure_idle(sampler, 0.1)  # sampled on the board, in the board's own run
    assert idle.watts == pytest.approx(TX2_VDD_IN_MW / 1e3)
    session = dev.load(onnx_model, "fp32", batch_size=2)  # prepare: the batch-2 engine is built now
    assert session.self_timed and list((tmp_path / "w").rglob("fp32-b2-2-2-*.engine"))
    lat = measure_latency(session, np.zeros((2, 1, 8, 8), np.float32), LatencyConfig(0, 0.01, 5, 0.05))
    win = energy_window(sampler, "latency", lat.t0, lat.t1)
    assert win.covered and win.power_w_mean == pytest.approx(TX2_VDD_IN_MW / 1e3) and win.rate_hz > 0
    sampler.stop()
    dev.close()
