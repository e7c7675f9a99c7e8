import os

import pytest

from ticketbench.bench.rundir import RunDir
from ticketbench.files import atomic_write_text
from ticketbench.results import COLUMNS, empty_row


def test_atomic_write_leaves_no_temp_and_keeps_old_on_failure(tmp_path, monkeypatch):
    p = tmp_path / "f.txt"
    atomic_write_text(p, "one")
    assert p.read_text() == "one"

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        atomic_write_text(p, "two")
    assert p.read_text() == "one"
    assert [x.name for x in tmp_path.iterdir()] == ["f.txt"]


def test_results_roundtrip_and_finished_cases(tmp_path):
    rd = RunDir(tmp_path / "run").create()
    rows = [empty_row(case_id="a", status="ok"), empty_row(case_id="b", status="failed", error="x")]
    rd.write_results(rows)
    df = rd.read_results()
    assert list(df.columns) == COLUMNS
    assert rd.finished_cases() == {"a"}
    for sub in ("samples", "tickets"):
        assert (rd.root / sub).is_dir()


def test_atomic_write_respects_umask(tmp_path):
    p = tmp_path / "report.html"
    atomic_write_text(p, "x")
    old = os.umask(0)
    os.umask(old)
    assert p.stat().st_mode & 0o777 == 0o666 & ~old
