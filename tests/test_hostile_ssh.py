"""Item 2 of issue 11: a host string never becomes an ssh/scp option.

A fake `ssh`/`scp` on PATH records its argv and would create a marker file if ever started with a hostile
host; the hostile probes must be refused before any subprocess, and good hosts reach ssh after `--`.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from test_hostile_input import assert_usage_error, one_error_line, run_cli

from ticketbench.bench.farm import InventoryError, load_inventory, ssh_reachable
from ticketbench.devices.transport import HostError, SshTransport, scp_argv, ssh_argv, validate_host

HOSTILE = ["-E.pwned", "-oProxyCommand=touch MARKER", "-F/dev/null", "u@h;touch MARKER", "u@h h", "$(touch MARKER)",
           "u@h`id`", "u@h\n", "u@-h", "h:0", "h:99999", "", "u@", "@h", "h:", "u@h|x", "u@h&", "'u@h'"]  # fmt: skip


@pytest.fixture
def fake_ssh(tmp_path, monkeypatch):
    """`ssh` and `scp` on PATH that append their argv (JSON) to calls.jsonl and exit 0."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "calls.jsonl"
    for name in ("ssh", "scp"):
        script = bin_dir / name
        script.write_text(
            f"#!/usr/bin/env python3\nimport json, sys\nopen({str(log)!r}, 'a').write(json.dumps(sys.argv) + '\\n')\n"
        )
        script.chmod(script.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.chdir(tmp_path)  # a relative MARKER lands here
    return log


def calls(log: Path) -> list[list[str]]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


@pytest.mark.parametrize("host", HOSTILE)
def test_validate_host_rejects(host):
    with pytest.raises(HostError):
        validate_host(host)


@pytest.mark.parametrize("host", ["tx2", "nvidia@tx2", "nvidia@tx2.lab.example:2222", "u@127.0.0.1", "u@[::1]:22"])
def test_validate_host_accepts(host):
    assert validate_host(host) == host


def test_double_dash_precedes_the_destination():
    assert ssh_argv("u@h:2222", ["-o", "BatchMode=yes"], "true") == [
        "ssh", "-o", "BatchMode=yes", "-p", "2222", "--", "u@h", "true"
    ]  # fmt: skip
    assert scp_argv("u@h", ["-o", "X=y"], ["-a.onnx"], "d") == ["scp", "-q", "-o", "X=y", "--", "-a.onnx", "u@h:d/"]


@pytest.mark.parametrize("host", ["-E.pwned", "-oProxyCommand=touch MARKER"])
def test_transport_refuses_before_any_subprocess(fake_ssh, tmp_path, host):
    with pytest.raises(HostError, match="starts with '-'"):
        SshTransport(host)
    ok, why = ssh_reachable(host)
    assert not ok and "starts with '-'" in why
    assert calls(fake_ssh) == [] and not (tmp_path / "MARKER").exists() and not (tmp_path / ".pwned").exists()


def test_transport_commands_and_copies_put_double_dash_before_the_host(fake_ssh, tmp_path):
    t = SshTransport("nvidia@board:2200", ssh_options=["-o", "StrictHostKeyChecking=no"])
    t.run(["echo", "-x"])
    (tmp_path / "m.onnx").write_bytes(b"x")
    t.put([tmp_path / "m.onnx"], "work")
    t.close()
    for argv in calls(fake_ssh):
        i = argv.index("--")
        assert all(a != "nvidia@board" for a in argv[:i]), argv
        assert any(a.startswith("nvidia@board") for a in argv[i + 1 :]), argv
    ssh_run = calls(fake_ssh)[0]
    assert ssh_run[ssh_run.index("--") + 1 :] == ["nvidia@board", "echo -x"]
    assert "-p" in ssh_run and ssh_run[ssh_run.index("-p") + 1] == "2200"


@pytest.mark.parametrize(
    "cmd", [["run", "--device", "jetson"], ["measure", "m.onnx", "--device", "jetson"], ["devices"]]
)
def test_cli_host_option_injection_is_refused(fake_ssh, tmp_path, capsys, cmd):
    (tmp_path / "m.onnx").write_bytes(b"")
    assert_usage_error(capsys, [*cmd, "--host", "-oProxyCommand=touch MARKER"], "--host")
    assert calls(fake_ssh) == [] and not (tmp_path / "MARKER").exists()


@pytest.mark.e2e
def test_inventory_host_injection_never_reaches_ssh(fake_ssh, tmp_path):
    inv = tmp_path / "farm.toml"
    inv.write_text(f'[farm]\nout = "{tmp_path / "farm"}"\n[[device]]\nname = "b"\nkind = "jetson"\nhost = "-E.pwned"\n')
    with pytest.raises(InventoryError, match="starts with '-'"):
        load_inventory(inv)
    res = run_cli("farm", "nightly", "--inventory", str(inv), cwd=tmp_path, env={"PATH": os.environ["PATH"]})
    assert res.returncode == 2
    one_error_line(res.stderr, "starts with '-'")
    assert calls(fake_ssh) == []
    assert not (tmp_path / ".pwned").exists() and not (tmp_path / "farm").exists()
