"""Hostile paths, second round: links planted at temp-file names, special files as outputs and inputs, paths read
from data files that lead out of their run directory. Every write goes through files.atomic_write_bytes or
files.atomic_output (a unique temp name, never a planted link); every read of a file named by a data file
through files.read_bytes (regular files only) and files.confined."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

from ticketbench.files import (
    InputError,
    OutputError,
    atomic_output,
    atomic_write_bytes,
    confined,
    read_bytes,
    read_text,
)


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    v = tmp_path / "outside" / "victim.txt"
    v.parent.mkdir()
    v.write_text("precious")
    return v


def test_atomic_output_never_follows_a_link_planted_at_a_temp_name(tmp_path, victim):
    out = tmp_path / "run" / "model.onnx"
    out.parent.mkdir()
    for name in ("model.onnx.tmp", "model.tmp", ".model.onnx.tmp"):  # the old fixed names, and a guess at ours
        (out.parent / name).symlink_to(victim)
    with atomic_output(out) as tmp:
        assert not tmp.is_symlink() and tmp.parent == out.parent
        tmp.write_bytes(b"onnx")
    assert victim.read_text() == "precious"
    assert out.read_bytes() == b"onnx" and not out.is_symlink()


def test_atomic_output_leaves_nothing_behind_when_the_writer_fails(tmp_path):
    out = tmp_path / "ticket.pt"
    out.write_bytes(b"old")
    with pytest.raises(OSError, match="No space left"), atomic_output(out) as tmp:
        tmp.write_bytes(b"half")
        raise OSError(28, "No space left on device")
    assert out.read_bytes() == b"old" and sorted(p.name for p in tmp_path.iterdir()) == ["ticket.pt"]


@pytest.mark.skipif(not Path("/dev/null").exists(), reason="needs /dev/null")
def test_outputs_never_replace_special_files(tmp_path):
    """A --csv linked to /dev/null (or /proc/self/fd/1), or a FIFO for --md, was replaced by a regular file."""
    link = tmp_path / "out.csv"
    link.symlink_to("/dev/null")
    fifo = tmp_path / "out.md"
    os.mkfifo(fifo)
    for target in (link, fifo):
        with pytest.raises(OutputError, match="not a regular file"):
            atomic_write_bytes(target, b"x")
        with pytest.raises(OutputError, match="not a regular file"):
            with atomic_output(target):
                pass
    assert link.is_symlink() and os.readlink(link) == "/dev/null"
    assert fifo.exists() and not fifo.is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.csv", "out.md"]  # no temp file left
    regular = tmp_path / "real.csv"
    regular.write_text("old")
    (tmp_path / "link.csv").symlink_to(regular)
    atomic_write_bytes(tmp_path / "link.csv", b"new")  # a link to a regular file: the link is replaced
    assert regular.read_text() == "old" and (tmp_path / "link.csv").read_bytes() == b"new"


@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="needs /dev/zero")
def test_reads_refuse_devices_and_fifos_at_once(tmp_path):
    """A samples_file naming /dev/zero made compare read without end (4.6 GB after 25 s)."""
    fifo = tmp_path / "samples.csv"
    os.mkfifo(fifo)  # nobody writes: a plain open() would block forever
    t0 = time.monotonic()
    for path in (Path("/dev/zero"), fifo):
        with pytest.raises(InputError, match="not a regular file"):
            read_bytes(path, "samples file")
    assert time.monotonic() - t0 < 30  # generous: the point is "returns", not how fast
    with pytest.raises(InputError, match="is a directory"):
        read_text(tmp_path, "results.csv")
    big = tmp_path / "big.csv"
    big.write_bytes(b"x" * 100)
    with pytest.raises(InputError, match="over the 10-byte limit"):
        read_bytes(big, "samples file", limit=10)
    assert read_bytes(big, "samples file", limit=100) == b"x" * 100


def test_paths_from_data_files_stay_in_their_run_directory(tmp_path, victim):
    run = tmp_path / "run"
    (run / "samples").mkdir(parents=True)
    (run / "samples" / "a.csv").write_text("latency_ms\n1\n")
    (run / "samples" / "escape.csv").symlink_to(victim)
    assert confined(run, "samples/a.csv", "samples_file") == (run / "samples" / "a.csv").resolve()
    for bad in (str(victim), "../outside/victim.txt", "samples/../../outside/victim.txt", "samples/escape.csv", ""):
        with pytest.raises(InputError):
            confined(run, bad, "samples_file")
    with pytest.raises(InputError):
        confined(run, 3.5, "samples_file")


def test_engine_cache_write_ignores_a_planted_temp_link(tmp_path, victim, monkeypatch):
    """cached_engine wrote `<digest>.tmp` with write_bytes, following a link planted there."""
    from test_devices_gpu import fake_tensorrt

    from ticketbench.devices import tensorrt_engine as te

    trt = fake_tensorrt("10.3.0")
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    onnx_path = tmp_path / "m.onnx"
    import torch

    from ticketbench.models.export import to_onnx_bytes

    onnx_path.write_bytes(to_onnx_bytes(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 4)), (1, 8, 8)))
    key = te.EngineKey(te.file_sha256(onnx_path), "Fake GPU", "10.3.0", "fp32", {})
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / f"{key.digest()}.tmp").symlink_to(victim)
    blob, cached = te.cached_engine(trt, onnx_path, key, cache)
    assert not cached and victim.read_text() == "precious"
    assert (cache / f"{key.digest()}.engine").read_bytes() == blob


HOLD = """
import sys, time
from pathlib import Path
from ticketbench.files import exclusive_lock
with exclusive_lock(Path(sys.argv[1]), "the run"):
    Path(sys.argv[2]).touch()
    time.sleep(float(sys.argv[3]))
"""


def _holder(lock: Path, flag: Path, seconds: float):
    import subprocess

    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(lock), str(flag), str(seconds)])
    deadline = time.monotonic() + 60
    while not flag.exists():
        assert proc.poll() is None and time.monotonic() < deadline, "the holder never took the lock"
        time.sleep(0.02)
    return proc


def test_a_held_lock_refuses_a_second_writer_and_names_the_holder(tmp_path):
    from ticketbench.files import Busy, exclusive_lock

    lock = tmp_path / ".run.lock"
    proc = _holder(lock, tmp_path / "in", 60)
    try:
        with pytest.raises(Busy, match=rf"the run is in use by pid {proc.pid} on "):
            with exclusive_lock(lock, "the run"):
                pytest.fail("entered a held lock")
    finally:
        proc.kill()
        proc.wait()
    # the holder died without cleaning up: its file is still there, and the lock is free at once (no takeover)
    assert lock.exists()
    with exclusive_lock(lock, "the run"):
        assert f'"pid": {os.getpid()}' in lock.read_text()
    assert not lock.exists()


def test_a_lock_file_just_created_and_still_empty_is_not_stale(tmp_path):
    """A pid-file lock read an empty, just-created lock as 'unreadable' and took it over."""
    import fcntl

    from ticketbench.files import Busy, exclusive_lock

    lock = tmp_path / ".nightly.lock"
    fd = os.open(lock, os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)  # another process between create and write
    try:
        with pytest.raises(Busy, match="starting up"):
            with exclusive_lock(lock, "night n1"):
                pass
    finally:
        os.close(fd)


@pytest.mark.e2e
def test_racing_writers_never_both_enter(tmp_path):
    """Eight processes start at once on one lock: the ones that enter never overlap."""
    import subprocess

    code = """
import json, os, sys, time
from pathlib import Path
from ticketbench.files import Busy, exclusive_lock
lock, log, go = Path(sys.argv[1]), Path(sys.argv[2]), float(sys.argv[3])
while time.time() < go:
    pass
try:
    with exclusive_lock(lock, "night"):
        with open(log, "a") as f:
            f.write(json.dumps(["in", os.getpid(), time.monotonic()]) + "\\n")
        time.sleep(0.2)
        with open(log, "a") as f:
            f.write(json.dumps(["out", os.getpid(), time.monotonic()]) + "\\n")
except Busy:
    pass
"""
    import json

    lock, log = tmp_path / ".lock", tmp_path / "log"
    go = time.time() + 3
    procs = [subprocess.Popen([sys.executable, "-c", code, str(lock), str(log), str(go)]) for _ in range(8)]
    for p in procs:
        assert p.wait(120) == 0
    events = [json.loads(line) for line in log.read_text().splitlines()]
    inside = 0
    for kind, _, _ in sorted(events, key=lambda e: e[2]):
        inside += 1 if kind == "in" else -1
        assert inside <= 1
    assert events and inside == 0


def test_a_link_planted_at_the_lock_path_is_refused(tmp_path, victim):
    from ticketbench.files import exclusive_lock

    (tmp_path / ".run.lock").symlink_to(victim)
    with pytest.raises(InputError, match="cannot open the lock file"):
        with exclusive_lock(tmp_path / ".run.lock", "the run"):
            pass
    assert victim.read_text() == "precious"


def test_export_import_and_quantize_never_follow_links_planted_at_their_old_temp_names(tmp_path, victim):
    """bench export/import wrote model.onnx.tmp / ticket.pt.tmp / *.tmp.onnx with write_bytes or torch.save,
    following a link planted there: the victim was overwritten and model.onnx became a link to it."""
    import numpy as np
    import torch

    from ticketbench.devices.int8_quantize import CalibrationSet, QuantizeConfig, quantize_onnx
    from ticketbench.models.export import export_onnx
    from ticketbench.models.tickets.base import Ticket, TicketConfig

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(144, 3))
    out = tmp_path / "t"
    out.mkdir()
    for name in ("model.onnx.tmp", "ticket.pt.tmp", "int8.tmp.onnx"):
        (out / name).symlink_to(victim)
    export_onnx(model, model, (1, 8, 8), out / "model.onnx")
    Ticket(model.eval(), {}, TicketConfig(model="small_cnn", dataset="digits", method="dense")).save(out)
    x = np.random.default_rng(0).standard_normal((16, 1, 8, 8), dtype=np.float32)
    quantize_onnx(out / "model.onnx", CalibrationSet(x, "", [], 0), out / "int8.onnx", QuantizeConfig())
    assert victim.read_text() == "precious"
    for name in ("model.onnx", "ticket.pt", "int8.onnx"):
        assert (out / name).is_file() and not (out / name).is_symlink()


@pytest.mark.e2e
def test_a_second_run_into_the_same_directory_is_refused_while_the_first_writes(tmp_path):
    """Two `bench run --out SAME` at once both exited 0: results.csv kept one case of two, run.json was the
    second's. Now the second ends in one line and exit 2, naming the first."""
    import subprocess

    out = tmp_path / "run"
    holder = _holder(out / ".run.lock", tmp_path / "in", 120)  # the first run, holding its directory
    try:
        suite = Path(__file__).parent / "data" / "tiny_suite.toml"
        res = subprocess.run(
            [sys.executable, "-m", "bench", "run", "--suite", str(suite), "--out", str(out), "-q"],
            capture_output=True,
            text=True,
            timeout=300,
        )
    finally:
        holder.kill()
        holder.wait()
    assert res.returncode == 2, res.stderr
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and f"pid {holder.pid}" in lines[0] and "another run is writing there" in lines[0]
    assert not (out / "results.csv").exists() and not (out / "run.json").exists()
