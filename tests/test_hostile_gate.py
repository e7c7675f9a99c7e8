"""The gate, fed hostile or careless runs (issue 25, items 2, 4, 5, 6): it fails closed. What it cannot judge is
an exit 1 with the reason (unless --allow-untested), a samples_file that leaves its run directory or names a
special file is one line and exit 2, and every floor is finite and in range wherever it comes from."""

from __future__ import annotations

import json
import os
import shutil
import time

import pandas as pd
import pytest
from test_regression import _gate_main, add_rounds
from test_report import make_run_dir

from ticketbench.bench.cli import main

pytest.importorskip("scipy")


@pytest.fixture
def pair(tmp_path):
    base = add_rounds(make_run_dir(tmp_path / "b", "B", seed=1), 1)
    cur = add_rounds(make_run_dir(tmp_path / "c", "C", seed=2), 2)
    return base, cur


def _set(run, column, fn):
    df = pd.read_csv(run / "results.csv")
    df[column] = fn(df)
    df.to_csv(run / "results.csv", index=False)


def test_a_ten_fold_slowdown_without_samples_is_not_a_pass(tmp_path, capsys, pair):
    """CURRENT without samples/: latency was 'untested', accuracy 'ok', exit 0 on a 10x slowdown."""
    base, cur = pair
    _set(cur, "latency_ms_p50", lambda df: df["latency_ms_p50"] * 10)
    shutil.rmtree(cur / "samples")
    code, reason = _gate_main(tmp_path, capsys, base, cur)
    assert code == 1 and "could not be tested" in reason and "--allow-untested" in reason
    assert _gate_main(tmp_path, capsys, base, cur, "--allow-untested")[0] == 0  # accepted only when asked


def test_duplicate_row_keys_cannot_hide_a_failed_row(tmp_path, capsys, pair):
    """Failed rows followed by ok copies of the same key: the last one won, exit 0."""
    base, cur = pair
    df = pd.read_csv(cur / "results.csv")
    failed = df[df["case_id"] == "c-mag80"].assign(status="failed", error="RuntimeError: boom")
    pd.concat([failed, df]).to_csv(cur / "results.csv", index=False)
    code, reason = _gate_main(tmp_path, capsys, base, cur)
    assert code == 1 and "occur twice" in reason and "c-mag80" in reason


def test_a_failed_row_anywhere_fails_the_gate(tmp_path, capsys, pair):
    """A case that failed in both runs was not a regression, so nothing failed the gate."""
    base, cur = pair
    for run in (base, cur):
        _set(run, "status", lambda df: df["status"].where(df["case_id"] != "c-mag80", "failed"))
    code, reason = _gate_main(tmp_path, capsys, base, cur)
    assert code == 1 and "failed row(s)" in reason and "c-mag80" in reason


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="needs /dev/zero")
def test_samples_files_that_leave_the_run_or_name_a_device_end_in_one_line(tmp_path, capsys, pair):
    """/dev/zero made compare read without end (4.6 GB after 25 s); an absolute path tested another run's samples."""
    base, cur = pair
    for target in ("/dev/zero", str(base / "samples" / "c-mag80-b1-latency.csv"), "../b/samples/c-eb50-b1-latency.csv"):
        _set(cur, "samples_file", lambda df, t=target: df["samples_file"].where(df["case_id"] != "c-mag80", t))
        t0 = time.monotonic()
        code = main(["compare", str(base), str(cur), "--md", str(tmp_path / "g.md")])
        err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
        assert code == 2 and len(err) == 1 and "samples_file" in err[0], err
        assert time.monotonic() - t0 < 120
    (cur / "samples" / "c-mag80-b1-rounds.csv").unlink()
    os.mkfifo(cur / "samples" / "c-mag80-b1-rounds.csv")  # a FIFO nobody writes: open() would block
    _set(
        cur,
        "samples_file",
        lambda df: df["samples_file"].where(df["case_id"] != "c-mag80", "samples/c-mag80-b1-latency.csv"),
    )
    code = main(["compare", str(base), str(cur), "--md", str(tmp_path / "g.md")])
    assert code == 2 and "not a regular file" in capsys.readouterr().err


@pytest.mark.parametrize(
    "flag, value",
    [("--accuracy-floor-points", "nan"), ("--accuracy-floor-points", "1e9"), ("--energy-floor", "nan"),
     ("--latency-floor", "inf"), ("--alpha", "1"), ("--time-floor", "-0.1")],
)  # fmt: skip
def test_compare_floors_must_be_finite_and_in_range(tmp_path, capsys, pair, flag, value):
    """`--accuracy-points nan` or `1e9`, `--energy-threshold nan` (today's --accuracy-floor-points and
    --energy-floor) turned a regression into exit 0."""
    base, cur = pair
    code = main(["compare", str(base), str(cur), flag, value])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and flag in err[0] and "must be a finite number in" in err[0]


def test_compare_takes_the_earlier_flag_spellings_and_names_the_current_one(tmp_path, capsys, caplog, pair):
    base, cur = pair
    code = main(["compare", str(base), str(cur), "--threshold", "inf"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err == ["error: --latency-floor must be a finite number in [0, 10), got inf"]
    assert [r.getMessage() for r in caplog.records] == ["--threshold is now --latency-floor"]


@pytest.mark.parametrize(
    "compare, word",
    [({"accuracy_floor_points": "nan"}, "must be a finite number"), ({"accuracy_floor_points": float("nan")}, "finite"),
     ({"gate_times": "false"}, "true or false"), ({"history_runs": -3}, "history_runs"),
     ({"latency_floor": 1e9}, "latency_floor"), ({"bogus": 1}, "unknown setting")],
)  # fmt: skip
def test_a_farm_job_file_cannot_talk_the_gate_into_passing(tmp_path, compare, word):
    """job.json "accuracy_floor_points": "nan" made the night ok (and the next baseline); "gate_times": "false"
    read as True; history_runs -3 was accepted."""
    from ticketbench.bench.farm import read_job_file
    from ticketbench.files import InputError

    run = tmp_path / "job"
    run.mkdir()
    meta = {"device": "a", "suite": "quick", "night": "n1", "compare": compare}
    (run / "job.json").write_text(json.dumps(meta))
    with pytest.raises(InputError, match=word):
        read_job_file(run, None)
    meta["compare"] = {"accuracy_floor_points": 2.0, "gate_times": True, "history_runs": 3}
    (run / "job.json").write_text(json.dumps(meta))
    job = read_job_file(run, None)
    assert job.compare.accuracy_floor_points == 2.0 and job.compare.gate_times is True and job.compare.history_runs == 3


def test_export_and_import_never_overwrite_a_runs_files_or_their_own_input(tmp_path, capsys):
    """`bench export RUN/tickets/CASE --out RUN/results.csv` replaced the run's results with ONNX bytes (no run
    directory was passed to the output check); `bench import --checkpoint D/ticket.pt --out D` replaced its input."""
    from test_hostile_input import assert_usage_error, make_ticket, snapshot

    run = make_run_dir(tmp_path / "run", "R")
    case = make_ticket(run / "tickets" / "c-mag50")
    before = snapshot(run)
    assert_usage_error(capsys, ["export", str(case), "--out", str(run / "results.csv")], "own files")
    assert_usage_error(capsys, ["export", str(case), "--out", str(run / "run.json")], "own files")
    assert snapshot(run) == before
    home = make_ticket(tmp_path / "d")
    before = snapshot(home)
    args = ["import", "--model", "small_cnn", "--checkpoint", str(home / "ticket.pt"), "--out", str(home)]
    assert_usage_error(capsys, args, "is an input")
    assert snapshot(home) == before


@pytest.mark.skipif(not os.path.exists("/dev/null"), reason="needs /dev/null")
def test_report_and_compare_outputs_refuse_special_files(tmp_path, capsys, pair):
    """A --csv linked to /proc/self/fd/1 (here /dev/null) or a FIFO --md was replaced by a regular file."""
    from test_hostile_input import assert_usage_error

    base, cur = pair
    link, fifo = tmp_path / "out.csv", tmp_path / "out.md"
    link.symlink_to("/dev/null")
    os.mkfifo(fifo)
    assert_usage_error(capsys, ["report", str(base), "--csv", str(link)], "not a regular file")
    assert_usage_error(capsys, ["compare", str(base), str(cur), "--md", str(fifo)], "not a regular file")
    assert link.is_symlink() and not fifo.is_file()


def test_a_database_that_accepts_and_never_answers_is_an_error_not_a_hang(monkeypatch):
    """No connect timeout: a listener that accepted and never answered hung compare, run and the farm forever."""
    import socket
    import threading

    pytest.importorskip("psycopg")
    from ticketbench.bench import store

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept_and_say_nothing():
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue

    threading.Thread(target=accept_and_say_nothing, daemon=True).start()
    monkeypatch.setattr(store, "CONNECT_TIMEOUT_S", 2)
    port = server.getsockname()[1]
    t0 = time.monotonic()
    try:
        with pytest.raises(store.StoreError, match="cannot use results database"):
            store.ResultsStore(f"postgresql+psycopg://u@127.0.0.1:{port}/db")
    finally:
        stop.set()
        for s in held:
            s.close()
        server.close()
    assert time.monotonic() - t0 < 60  # ends; (2 s per address libpq tries)


def test_the_report_does_not_follow_links_out_of_the_run_directory(tmp_path, caplog):
    """A cost.json linked to a JSON file elsewhere was read and rendered into the report."""
    from ticketbench.reports.artifacts import load_ticket_artifacts

    run = make_run_dir(tmp_path / "run", "R")
    outside = tmp_path / "outside.json"
    outside.write_text(json.dumps({"ticket": {"layers": [{"name": "SECRET", "kind": "conv", "kernels": 9,
                                                           "zero_kernels": 3}]}}))  # fmt: skip
    tdir = run / "tickets" / "c-mag80"
    tdir.mkdir(parents=True, exist_ok=True)
    (tdir / "cost.json").unlink(missing_ok=True)
    (tdir / "cost.json").symlink_to(outside)
    arts = load_ticket_artifacts(run, "c-mag80")
    assert arts.layers == [] and "leads out of" in caplog.text
    inside = tdir / "real.json"
    inside.write_text(outside.read_text())
    (tdir / "cost.json").unlink()
    (tdir / "cost.json").symlink_to(inside)  # a link that stays inside the run is fine
    assert [layer["name"] for layer in load_ticket_artifacts(run, "c-mag80").layers] == ["SECRET"]


@pytest.mark.e2e
def test_a_full_disk_stops_the_run_with_one_line_and_keeps_the_finished_cases(tmp_path, capsys, monkeypatch):
    """Out of disk space: every later case failed too, five tracebacks, no results.csv, a stale model.onnx.tmp."""
    import errno
    from pathlib import Path

    from ticketbench.models import pipeline

    suite = Path(__file__).parent / "data" / "tiny_suite.toml"
    out = tmp_path / "run"
    real = pipeline.export_onnx
    calls = []

    def second_export_hits_a_full_disk(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device", str(out / "tickets" / "x" / "model.onnx"))
        return real(*args, **kwargs)

    monkeypatch.setattr(pipeline, "export_onnx", second_export_hits_a_full_disk)
    code = main(["run", "--suite", str(suite), "--out", str(out), "-q"])
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == 1 and len(calls) == 2, err
    assert len(err) == 1 and "No space left on device" in err[0] and "--resume" in err[0] and "Traceback" not in err[0]
    done = pd.read_csv(out / "results.csv")
    assert len(done) >= 1 and set(done["status"]) == {"ok"}  # the first case, kept; the second never half-written
    assert not list(out.rglob("*.tmp*"))
