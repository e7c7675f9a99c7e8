"""The farm for real: a Dask scheduler and two workers as separate OS processes, PostgreSQL as the shared
store, and the faults a farm meets: a worker killed mid-job, the database down during ingest, two
controllers on one night, a night interrupted and resumed. Each fault test counts the store's rows."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest
from farm_fakes import b_down_until_fixed, dies_first_time, quick_run, waits_for_release
from test_report import CASES

from ticketbench.bench import farm
from ticketbench.bench.cli import main
from ticketbench.bench.configs import CompareConfig
from ticketbench.bench.farm import DeviceSpec, Inventory, NightBusy, nightly, with_retries
from ticketbench.bench.store import ResultsStore

sa = pytest.importorskip("sqlalchemy")
pytest.importorskip("distributed")
TESTS = Path(__file__).resolve().parent
ROWS_PER_RUN = 2 * len(CASES)  # make_run_dir: every case at two batch sizes


def counts(db: str) -> dict[str, int]:
    store = ResultsStore(db)
    with store.engine.connect() as c:
        got = {t: c.execute(sa.text(f"select count(*) from {t}")).scalar_one() for t in ("runs", "results", "nights")}
    store.close()
    return got


def inventory(tmp_path: Path, names: list[str], db: str, suites: list[str] | None = None) -> Inventory:
    devices = [DeviceSpec(n, "cpu", suites=suites or ["quick"]) for n in names]
    return Inventory(devices, tmp_path / "farm", db=db, compare=CompareConfig())


# -- real processes -----------------------------------------------------------------------------------
@pytest.fixture
def dask_processes(tmp_path):
    """`dask scheduler` and two `dask worker` processes on 127.0.0.1; both workers offer devices a and k."""
    from fixtures.dask_processes import dask_processes as start

    with start(tmp_path, ["device-a=1 device-k=1"] * 2) as client:
        yield client, {pid: addr for addr, pid in client.run(os.getpid).items()}


@pytest.mark.peer
def test_a_night_through_a_real_scheduler_and_worker_processes(tmp_path, dask_processes, postgres_db):
    client, workers = dask_processes
    inv = inventory(tmp_path, ["a", "k"], postgres_db, suites=["quick", "seeds"])
    report = nightly(inv, "n1", quick_run, client)
    assert [(o.device, o.suite, o.status) for o in report.outcomes] == [
        ("a", "quick", "ok"),
        ("a", "seeds", "ok"),
        ("k", "quick", "ok"),
        ("k", "seeds", "ok"),
    ]
    calls = [json.loads(line) for line in (inv.out / "calls.log").read_text().splitlines()]
    assert {pid for *_, pid in calls} <= set(workers) and os.getpid() not in {pid for *_, pid in calls}
    assert counts(postgres_db) == {"runs": 4, "results": 4 * ROWS_PER_RUN, "nights": 4}
    assert (inv.out / "n1" / "summary.html").is_file() and not (inv.out / "n1" / ".nightly.lock").exists()


@pytest.mark.peer
def test_a_worker_killed_mid_job_is_retried_once_and_stored_once(tmp_path, dask_processes, postgres_db):
    client, workers = dask_processes
    inv = inventory(tmp_path, ["k"], postgres_db)
    done: dict = {}
    thread = threading.Thread(target=lambda: done.setdefault("report", nightly(inv, "n1", dies_first_time, client)))
    thread.start()
    pid_file = inv.out / "n1" / "k" / "quick" / "attempt-1.pid"
    deadline = time.monotonic() + 60
    while not (pid_file.exists() and pid_file.read_text()):
        assert time.monotonic() < deadline, "the first attempt never started"
        time.sleep(0.1)
    victim = int(pid_file.read_text())
    assert victim in workers
    os.kill(victim, signal.SIGKILL)
    thread.join(timeout=120)
    report = done["report"]
    assert [(o.device, o.status) for o in report.outcomes] == [("k", "ok")]
    assert counts(postgres_db) == {"runs": 1, "results": ROWS_PER_RUN, "nights": 1}
    calls = [json.loads(line) for line in (inv.out / "calls.log").read_text().splitlines()]
    assert len(calls) == 1 and calls[0][2] != victim  # finished once, by the surviving worker


# -- the database down during ingest ------------------------------------------------------------------
def test_retries_back_off_on_transient_errors_only():
    sleeps: list[float] = []
    calls = {"n": 0}

    def flaky():
        calls["n"] += 1
        if calls["n"] < 3:
            raise sa.exc.OperationalError("connect", {}, ConnectionRefusedError("server closed"))
        return "stored"

    assert with_retries(flaky, "ingest", attempts=5, first_delay_s=1.0, sleep=sleeps.append) == "stored"
    assert sleeps == [1.0, 2.0]
    with pytest.raises(ValueError):
        with_retries(lambda: (_ for _ in ()).throw(ValueError("bad data")), "ingest", sleep=sleeps.append)
    assert sleeps == [1.0, 2.0]  # a bad run is not retried


@pytest.mark.peer
def test_database_down_during_ingest_keeps_the_run_then_farm_ingest_stores_it(tmp_path, monkeypatch, capsys):
    from fixtures.postgres import create_database, postgres_server

    monkeypatch.setattr(farm, "STORE_ATTEMPTS", 2)
    monkeypatch.setattr(farm, "STORE_FIRST_DELAY_S", 0.1)
    with postgres_server() as (server, why):
        if server is None:
            pytest.skip(why)
        db = create_database(server.url, "farm")
        inv = inventory(tmp_path, ["a"], db)
        ResultsStore(db).close()  # the schema exists; then the server goes away mid-night

        def run_then_db_dies(job):
            path = quick_run(job)
            server.stop()
            return path

        report = farm.device_night(
            farm.Job(inv.devices[0], "quick", "n1", inv.out / "n1" / "a" / "quick", db, CompareConfig()),
            run_then_db_dies,
        )
        assert report.status == "failed" and "results store unreachable" in report.message
        run_dir = inv.out / "n1" / "a" / "quick"
        assert f"bench farm ingest {run_dir}" in report.message
        assert (run_dir / "results.csv").is_file() and (run_dir / "job.json").is_file()
        assert server.start().returncode == 0
        assert counts(db) == {"runs": 0, "results": 0, "nights": 0}
        assert main(["farm", "ingest", str(run_dir), "--db", db]) == 0
        assert counts(db) == {"runs": 1, "results": ROWS_PER_RUN, "nights": 1}
        assert main(["farm", "ingest", str(run_dir), "--db", db]) == 0  # again: nothing duplicated
        assert counts(db) == {"runs": 1, "results": ROWS_PER_RUN, "nights": 1}
        assert ResultsStore(db).nights()["status"].tolist() == ["ok"]


def test_farm_ingest_rejects_a_hostile_job_file(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "results.csv").write_text("run_id\n")
    (run / "job.json").write_text(json.dumps({"device": "../../etc", "suite": "quick", "night": "n1"}))
    assert main(["farm", "ingest", str(run), "--db", f"sqlite:///{tmp_path / 'x.sqlite'}"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "not a safe single path component" in err


# -- two controllers, and a night resumed --------------------------------------------------------------
def test_a_second_controller_on_the_same_night_is_refused(tmp_path):
    from distributed import Client, LocalCluster

    db = f"sqlite:///{tmp_path / 'farm.sqlite'}"
    inv = inventory(tmp_path, ["a"], db)
    with (
        LocalCluster(
            n_workers=1,
            processes=False,
            threads_per_worker=2,
            resources={"device-a": 1},
            dashboard_address="127.0.0.1:0",
        ) as cluster,
        Client(cluster) as client,
    ):
        first = threading.Thread(target=nightly, args=(inv, "n1", waits_for_release, client))
        first.start()
        deadline = time.monotonic() + 60
        while not (inv.out / "started").exists():
            assert time.monotonic() < deadline, "the first night never started its job"
            time.sleep(0.05)
        with pytest.raises(NightBusy, match="already running"):
            nightly(inv, "n1", quick_run, client, resume=True)
        (inv.out / "release").touch()
        first.join(60)
    assert counts(db) == {"runs": 1, "results": ROWS_PER_RUN, "nights": 1}
    with pytest.raises(NightBusy, match="--resume"):
        nightly(inv, "n1", quick_run, client=object())  # finished night, no --resume: refused before any work


def test_an_interrupted_night_resumes_without_rerunning_finished_jobs(tmp_path):
    from distributed import Client, LocalCluster

    db = f"sqlite:///{tmp_path / 'farm.sqlite'}"
    inv = inventory(tmp_path, ["a", "b"], db)
    with (
        LocalCluster(
            n_workers=1,
            processes=False,
            threads_per_worker=2,
            resources={"device-a": 1, "device-b": 1},
            dashboard_address="127.0.0.1:0",
        ) as cluster,
        Client(cluster) as client,
    ):
        first = nightly(inv, "n1", b_down_until_fixed, client)
        assert {o.device: o.status for o in first.outcomes} == {"a": "ok", "b": "down"}
        (inv.out / "b-fixed").touch()
        again = nightly(inv, "n1", b_down_until_fixed, client, resume=True)
    assert {o.device: o.status for o in again.outcomes} == {"a": "ok", "b": "ok"}
    calls = [json.loads(line)[0] for line in (inv.out / "calls.log").read_text().splitlines()]
    assert sorted(calls) == ["a", "b"]  # a ran once; b only on the resumed night
    assert counts(db) == {"runs": 2, "results": 2 * ROWS_PER_RUN, "nights": 2}
