"""The results database: schema version, idempotent ingest, round trip of every column, farm bookkeeping."""

from __future__ import annotations

import logging

import pandas as pd
import pytest
from test_report import CASES, make_run_dir

from ticketbench.bench.store import SCHEMA_VERSION, ResultsStore, StoreError, db_url, ingest_after_run
from ticketbench.results import COLUMNS

sa = pytest.importorskip("sqlalchemy")


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.peer)])
def store(request, tmp_path):
    """Every store test runs on the embedded SQLite file and on a real PostgreSQL server (fresh database)."""
    if request.param == "sqlite":
        s = ResultsStore(tmp_path / "db" / "t.sqlite")
    else:
        s = ResultsStore(request.getfixturevalue("postgres_db"))
    yield s
    s.close()


def _counts(store: ResultsStore) -> tuple[int, int]:
    with store.engine.connect() as c:
        return (
            c.execute(sa.text("select count(*) from runs")).scalar_one(),
            c.execute(sa.text("select count(*) from results")).scalar_one(),
        )


def test_db_url_forms(tmp_path, monkeypatch):
    monkeypatch.delenv("TICKETBENCH_DB", raising=False)
    assert db_url("postgresql://u@h/db") == "postgresql://u@h/db"
    assert db_url(tmp_path / "x.sqlite") == f"sqlite:///{tmp_path / 'x.sqlite'}"
    assert db_url(None).endswith("runs/ticketbench.sqlite")
    monkeypatch.setenv("TICKETBENCH_DB", "sqlite:///elsewhere.sqlite")
    assert db_url(None) == "sqlite:///elsewhere.sqlite"


def test_schema_is_versioned_and_a_newer_schema_is_refused(tmp_path):
    path = tmp_path / "v.sqlite"
    s = ResultsStore(path)
    assert s.schema_version() == SCHEMA_VERSION
    ResultsStore(path)  # reopening does not add a second version row
    with s.engine.begin() as c:
        assert c.execute(sa.text("select count(*) from schema_version")).scalar_one() == 1
        c.execute(sa.text("update schema_version set version = :v"), {"v": SCHEMA_VERSION + 1})
    with pytest.raises(StoreError, match="schema version"):
        ResultsStore(path)


def test_ingest_is_idempotent(store, tmp_path):
    d = make_run_dir(tmp_path / "r", "R1")
    first = store.ingest(d)
    assert (first.action, first.rows) == ("inserted", 2 * len(CASES))
    snapshot = store.results()
    runs = store.runs()
    again = store.ingest(d)
    assert again.action == "unchanged"
    assert _counts(store) == (1, 2 * len(CASES))
    pd.testing.assert_frame_equal(store.results(), snapshot)
    pd.testing.assert_frame_equal(store.runs(), runs)  # not even ingested_at moves


def test_changed_run_replaces_its_rows(store, tmp_path):
    d = make_run_dir(tmp_path / "r", "R1")
    store.ingest(d)
    df = pd.read_csv(d / "results.csv")
    df = df[df["case_id"] != "c-mpt50"]  # e.g. a run resumed with a different suite
    df.to_csv(d / "results.csv", index=False)
    assert store.ingest(d).action == "updated"
    assert _counts(store) == (1, 2 * (len(CASES) - 1))


def test_every_column_round_trips_and_samples_stay_referenced(store, tmp_path):
    d = make_run_dir(tmp_path / "r", "R1", failed=("c-mag80",))
    csv = pd.read_csv(d / "results.csv")
    csv["my_new_column"] = "x"  # columns added to results.csv later survive via extra_json
    csv.to_csv(d / "results.csv", index=False)
    store.ingest(d)
    got = store.results(["R1"])
    assert list(got.columns) == COLUMNS + ["my_new_column"]
    pd.testing.assert_frame_equal(got, csv, check_dtype=False)
    typed = pd.read_sql_table("results", store.engine)  # counts are stored as integers, not text
    for col in ("params", "params_bias_maps", "threads"):
        assert store.t_results.c[col].type.python_type is int, col
    assert len(typed) == len(csv)
    run = store.run("R1")
    assert run["run_dir"] == str(d.resolve()) and run["n_failed"] == 2 and run["meta"]["suite"]["name"] == "quick"
    rel = got.loc[got["samples_file"].notna(), "samples_file"].iloc[0]
    assert (d / rel).is_file()  # raw samples are not copied into the DB, the row points at them


def test_unknown_run_and_non_run_dir(store, tmp_path):
    with pytest.raises(StoreError, match="not in"):
        store.run("nope")
    with pytest.raises(StoreError, match="not a run directory"):
        store.ingest(tmp_path)


def test_farm_bookkeeping_last_good_and_trend(store, tmp_path):
    for night, run_id, status in (("n1", "A1", "ok"), ("n2", "A2", "regressed"), ("n3", "A3", "ok")):
        store.ingest(make_run_dir(tmp_path / run_id, run_id, seed=len(run_id)), farm_device="dev", night=night)
        store.record_night(night, "dev", "quick", status, run_id=run_id)
    store.record_night("n4", "dev", "quick", "down", message="ssh: no route")
    assert store.last_good_run("dev", "quick") == "A3"
    assert store.last_good_run("dev", "quick", before_night="n3") == "A1"  # skips the regressed night
    assert store.last_good_run("other", "quick") is None
    assert store.last_good_runs("dev", "quick", n=5) == ["A3", "A1"]  # newest first, good nights only
    assert store.last_good_runs("dev", "quick", before_night="n3", n=5) == ["A1"]
    store.record_night("n3", "dev", "quick", "failed", run_id="A3")  # re-recording replaces
    assert store.last_good_run("dev", "quick") == "A1"
    assert list(store.nights("dev")["status"]) == ["ok", "regressed", "failed", "down"]
    t = store.trend("latency_ms_p50")
    assert sorted(t["night"].unique()) == ["n1", "n2", "n3"]
    assert len(t) == 3 * 2 * len(CASES)
    with pytest.raises(ValueError):
        store.record_night("n5", "dev", "quick", "weird")
    store.upsert_device("dev", "cpu", "local", ["x86", "ci"])
    store.upsert_device("dev", "cpu", "local", ["x86"])
    assert store.devices()["labels_json"].tolist() == ['["x86"]']


def test_ingest_after_run_never_raises(tmp_path, caplog):
    d = make_run_dir(tmp_path / "r", "R1")
    db = tmp_path / "a.sqlite"
    assert ingest_after_run(d, str(db)).action == "inserted"
    with caplog.at_level(logging.WARNING, logger="ticketbench.bench.store"):
        assert ingest_after_run(tmp_path / "missing", str(db)) is None
    assert "could not ingest" in caplog.text


def test_a_column_newer_than_the_database_is_kept_in_extra_json(tmp_path):
    path = tmp_path / "old.sqlite"
    with ResultsStore(path).engine.begin() as c:  # a database made before `power_note` existed
        c.execute(sa.text("alter table results drop column power_note"))
    d = make_run_dir(tmp_path / "r", "R1")
    csv = pd.read_csv(d / "results.csv")
    csv["power_note"] = "RAPL not readable"
    csv.to_csv(d / "results.csv", index=False)
    store = ResultsStore(path)
    store.ingest(d)
    got = store.results(["R1"])
    assert list(got.columns) == COLUMNS
    assert set(got["power_note"]) == {"RAPL not readable"}


def test_run_without_sqlalchemy_logs_why_and_goes_on(tmp_path, caplog, monkeypatch):
    from ticketbench.bench import store

    monkeypatch.setattr(store, "sqlalchemy_available", lambda: False)
    with caplog.at_level(logging.INFO, logger="ticketbench.bench.store"):
        assert ingest_after_run(make_run_dir(tmp_path / "r"), str(tmp_path / "a.sqlite")) is None
    assert "SQLAlchemy is not installed" in caplog.text
    assert not (tmp_path / "a.sqlite").exists()
