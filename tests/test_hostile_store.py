"""Item 9 of issue 11: two processes ingesting the same new run: one inserts, the other is a no-op."""

from __future__ import annotations

import multiprocessing as mp

import pytest
from test_report import make_run_dir

pytest.importorskip("sqlalchemy")

from ticketbench.bench.store import ResultsStore  # noqa: E402


def test_ingest_that_loses_the_race_is_a_no_op(tmp_path):
    """Store A looks, finds nothing, and before it inserts store B ingests the same run (the race two farm
    workers or a run and a user hit). A must not raise IntegrityError: the run is there, unchanged."""
    run = make_run_dir(tmp_path / "run", "R1")
    db = f"sqlite:///{tmp_path / 'r.sqlite'}"
    a, b = ResultsStore(db), ResultsStore(db)
    real = ResultsStore._existing
    raced = []

    def look_then_lose(self, conn, run_id):
        found = real(self, conn, run_id)
        if not raced:
            raced.append(b.ingest(run).action)  # the other process wins in between
        return found

    a._existing = look_then_lose.__get__(a)
    res = a.ingest(run)
    assert raced == ["inserted"] and res.action == "unchanged"
    assert len(a.runs()) == 1 and len(a.results(["R1"])) == res.rows


def _ingest(args: tuple[str, str]) -> str:
    db, run = args
    return ResultsStore(db).ingest(run).action


@pytest.mark.e2e
def test_concurrent_processes_ingesting_one_run(tmp_path):
    run = make_run_dir(tmp_path / "run", "R1")
    db = f"sqlite:///{tmp_path / 'r.sqlite'}"
    ResultsStore(db).close()  # schema first, so the processes race on the run, not on CREATE TABLE
    with mp.get_context("spawn").Pool(3) as pool:
        actions = pool.map(_ingest, [(db, str(run))] * 3)
    assert sorted(actions).count("inserted") == 1 and set(actions) <= {"inserted", "unchanged"}
    assert len(ResultsStore(db).runs()) == 1
