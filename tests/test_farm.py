"""The nightly farm on a local Dask cluster with fake devices: no training, no SSH, no hardware."""

from __future__ import annotations

import json
import threading
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pytest
from test_report import make_run_dir

from ticketbench.bench.cli import main
from ticketbench.bench.configs import CompareConfig
from ticketbench.bench.farm import (
    DeviceDown,
    DeviceSpec,
    Inventory,
    InventoryError,
    Job,
    bench_command,
    load_inventory,
    nightly,
    ssh_reachable,
)

pytest.importorskip("sqlalchemy")
distributed = pytest.importorskip("distributed")

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "farm.toml"
_lock = threading.Lock()


@dataclass
class FakeRun:
    """Stands in for `bench run`: behaviour per (device, night) ∈ ok | slow | partial | short | down | crash |
    threads2; logs job intervals. `partial` is a run that finished with one failed case, `short` one whose results
    lack a case; every run is measured with 1 thread, `threads2` with 2 (and slower)."""

    plan: dict[tuple[str, str], str] = field(default_factory=dict)
    log: Path | None = None
    sleep_s: float = 0.0

    def __call__(self, job: Job) -> Path:
        what = self.plan.get((job.device.name, job.night), "ok")
        if what == "down":
            raise DeviceDown(f"ssh {job.device.host}: No route to host")
        if what == "crash":
            raise RuntimeError("trtexec: segmentation fault")
        t0 = time.monotonic()
        time.sleep(self.sleep_s)
        seed = zlib.crc32(f"{job.device.name}/{job.night}/{job.suite}".encode())
        run_id = f"{job.device.name}-{job.night}-{job.suite}"
        failed = ("c-mag80",) if what == "partial" else ()
        scale = 1.4 if what in ("slow", "threads2") else 1.0
        make_run_dir(job.out_dir, run_id, latency_scale=scale, seed=seed, n_samples=100, failed=failed)
        df = pd.read_csv(job.out_dir / "results.csv")
        df.assign(threads=2 if what == "threads2" else 1).to_csv(job.out_dir / "results.csv", index=False)
        if what == "short":
            df = pd.read_csv(job.out_dir / "results.csv")
            df[df["case_id"] != "c-mag80"].to_csv(job.out_dir / "results.csv", index=False)
        if self.log is not None:
            with _lock, open(self.log, "a") as f:
                f.write(json.dumps([job.device.name, t0, time.monotonic()]) + "\n")
        return job.out_dir


def inventory(tmp_path: Path, names: list[str], suites: list[str] | None = None) -> Inventory:
    devices = [DeviceSpec(n, "cpu", suites=suites or ["quick"]) for n in names]
    return Inventory(devices, tmp_path / "farm", db=f"sqlite:///{tmp_path / 'farm.sqlite'}", compare=CompareConfig())


@pytest.fixture(scope="module")
def client():
    from distributed import Client, LocalCluster

    names = ["a", "b", "c", "d", "x", "y"]
    cluster = LocalCluster(
        n_workers=1,
        processes=False,
        threads_per_worker=4,
        resources={f"device-{n}": 1 for n in names},
        dashboard_address="127.0.0.1:0",  # the scheduler always serves HTTP; keep it local, any free port
    )
    with Client(cluster) as c:
        yield c
    cluster.close()


@pytest.mark.e2e
def test_three_nights_down_failed_regressed_and_last_good_baseline(tmp_path, client):
    inv = inventory(tmp_path, ["a", "b", "c", "d"])
    fake = FakeRun({("c", "n1"): "down", ("d", "n1"): "crash", ("b", "n2"): "slow"})

    n1 = nightly(inv, "n1", fake, client)
    assert {o.device: o.status for o in n1.outcomes} == {"a": "ok", "b": "ok", "c": "down", "d": "failed"}
    assert n1.exit_code == 1
    by = {o.device: o for o in n1.outcomes}
    assert "No route to host" in by["c"].message and "segmentation fault" in by["d"].message
    assert by["a"].baseline_run_id is None

    n2 = nightly(inv, "n2", fake, client)
    by = {o.device: o for o in n2.outcomes}
    assert {d: o.status for d, o in by.items()} == {"a": "ok", "b": "regressed", "c": "ok", "d": "ok"}
    # 40% slower at equal power (over the 20% time floor): every latency and energy row (5 cases × 2 batches)
    assert by["b"].regressions == 20
    assert by["a"].baseline_run_id == "a-n1-quick"
    assert (Path(by["b"].run_dir) / "compare.md").read_text().count("| regression |") == 2 * 20
    assert n2.exit_code == 1

    n3 = nightly(inv, "n3", fake, client)
    by = {o.device: o for o in n3.outcomes}
    assert all(o.status == "ok" for o in n3.outcomes) and n3.exit_code == 0
    assert by["b"].baseline_run_id == "b-n1-quick"  # its own last GOOD night, not the regressed n2
    # the earlier good nights join the baseline's latency rounds: a's n2 is the baseline, n1 its history
    assert "a-n2-quick (+ 1 earlier run(s) for latency)" in (Path(by["a"].run_dir) / "compare.md").read_text()
    assert by["c"].baseline_run_id == "c-n2-quick"

    from ticketbench.bench.store import ResultsStore

    store = ResultsStore(inv.db)
    nights = store.nights()
    assert nights.pivot(index="night", columns="farm_device", values="status").to_dict("index") == {
        "n1": {"a": "ok", "b": "ok", "c": "down", "d": "failed"},
        "n2": {"a": "ok", "b": "regressed", "c": "ok", "d": "ok"},
        "n3": {"a": "ok", "b": "ok", "c": "ok", "d": "ok"},
    }
    assert set(store.runs()["farm_device"]) == {"a", "b", "c", "d"}
    trend = pd.read_csv(inv.out / "n3" / "trend.csv")
    lat = trend[(trend["metric"] == "latency_ms_p50") & (trend["farm_device"] == "b")]
    assert sorted(lat["night"].unique()) == ["n1", "n2", "n3"]
    html = n3.summary_html.read_text()
    assert html.count('<figure class="plot">') == 3  # latency, accuracy, energy trends
    assert "ALL OK: night n3: 4 ok, 0 regressed, 0 failed, 0 down" in n3.summary_md.read_text()
    assert "regressed" in (inv.out / "n2" / "summary.md").read_text()


@pytest.mark.e2e
def test_each_device_runs_one_job_at_a_time(tmp_path, client):
    log = tmp_path / "jobs.jsonl"
    inv = inventory(tmp_path, ["x", "y"], suites=["s1", "s2", "s3"])
    report = nightly(inv, "n1", FakeRun(log=log, sleep_s=0.2), client)
    assert [o.status for o in report.outcomes] == ["ok"] * 6
    spans: dict[str, list[tuple[float, float]]] = {}
    for line in log.read_text().splitlines():
        dev, t0, t1 = json.loads(line)
        spans.setdefault(dev, []).append((t0, t1))
    for dev, s in spans.items():
        s.sort()
        assert len(s) == 3
        assert all(a[1] <= b[0] for a, b in zip(s, s[1:])), f"{dev} ran two jobs at once: {s}"


def test_a_night_that_lost_baseline_rows_fails_like_the_compare_gate(tmp_path, client):
    """`bench compare` exits 1 when CURRENT lost baseline rows; the farm's night must not call such a run good."""
    inv = inventory(tmp_path, ["a"])
    fake = FakeRun({("a", "n2"): "short"})
    assert nightly(inv, "n1", fake, client).exit_code == 0
    n2 = nightly(inv, "n2", fake, client)
    (out,) = n2.outcomes
    assert out.status == "failed" and out.regressions == 0 and n2.exit_code == 1
    assert out.message.startswith("CURRENT lost 2 of 10 baseline row(s) (first: c-mag80")
    assert out.message.endswith("(vs a-n1-quick)")
    from ticketbench.bench.store import ResultsStore

    assert ResultsStore(inv.db).last_good_run("a", "quick", before_night="n3") == "a-n1-quick"


def test_device_without_a_worker_is_down_and_a_partial_run_failed(tmp_path, client):
    inv = inventory(tmp_path, ["a", "d", "ghost"])
    report = nightly(inv, "n1", FakeRun({("d", "n1"): "partial"}), client)
    by = {o.device: o for o in report.outcomes}
    assert by["a"].status == "ok"
    assert by["ghost"].status == "down" and "device-ghost" in by["ghost"].message
    assert by["d"].status == "failed" and by["d"].message.startswith("2 failed case row(s)")
    assert by["d"].run_id == "d-n1-quick"  # its results are stored all the same
    assert report.exit_code == 1
    from ticketbench.bench.store import ResultsStore

    assert ResultsStore(inv.db).last_good_run("d", "quick") is None  # a failed night is no baseline


@pytest.mark.e2e
def test_cli_farm_nightly_with_the_real_job_reports_an_unavailable_device(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "farm.toml").write_text(
        '[farm]\nout = "runs/farm"\n[[device]]\nname = "nope"\nkind = "jetson"\nlabels = ["ci"]\n'
    )
    db = f"sqlite:///{tmp_path / 'f.sqlite'}"
    assert main(["farm", "nightly", "--inventory", "farm.toml", "--db", db, "--night", "n1"]) == 1
    summary = (tmp_path / "runs" / "farm" / "n1" / "summary.md").read_text()
    assert "| nope | quick | down |" in summary and "device 'jetson' is not available" in summary
    assert main(["farm", "nightly", "--inventory", "missing.toml"]) == 2


def test_example_inventory_and_validation(tmp_path):
    inv = load_inventory(EXAMPLE)
    assert [d.name for d in inv.devices] == ["desktop-cpu", "rtx-4090", "orin-01", "tx2-01"]
    tx2 = inv.devices[-1]
    assert tx2.remote and tx2.resource == "device-tx2-01" and tx2.timeout_s == 7200
    assert inv.devices[1].run_args == ["--precision", "fp16"]
    assert inv.devices[0].threads == 8 and inv.devices[1].threads is None
    assert inv.compare.latency_floor == 0.10 and inv.compare.time_floor == 0.20 and inv.compare.energy_floor == 0.10
    assert inv.compare.history_runs == 4 and inv.compare.gate_times is False
    bad = {
        "dup": '[[device]]\nname = "a"\nkind = "cpu"\n[[device]]\nname = "a"\nkind = "cpu"\n',
        "host": '[[device]]\nname = "a"\nkind = "cpu"\nhost = "bad host; rm -rf"\n',
        "kind": '[[device]]\nname = "a"\n',
        "keys": '[[device]]\nname = "a"\nkind = "cpu"\ncolour = "red"\n',
        "empty": "[farm]\n",
        "history": '[compare]\nhistory_runs = 2.5\n[[device]]\nname = "a"\nkind = "cpu"\n',
        "gate": '[compare]\ngate_times = "yes"\n[[device]]\nname = "a"\nkind = "cpu"\n',
        "moved": '[farm]\nthreshold = 0.1\n[[device]]\nname = "a"\nkind = "cpu"\n',
        "table": '[compar]\nalpha = 0.1\n[[device]]\nname = "a"\nkind = "cpu"\n',
        "threads": '[[device]]\nname = "a"\nkind = "cpu"\nthreads = 0\n',
        "toml": "[[device]\n",
    }
    for what, text in bad.items():
        p = tmp_path / f"{what}.toml"
        p.write_text(text)
        with pytest.raises(InventoryError):
            load_inventory(p)
    messages = {}
    for what in ("history", "moved", "table"):
        with pytest.raises(InventoryError) as err:
            load_inventory(tmp_path / f"{what}.toml")
        messages[what] = str(err.value).split(": ", 1)[1]
    assert messages == {
        "history": "[compare] history_runs must be a whole number in [0, 100], got 2.5",
        "moved": "[farm] threshold is now latency_floor in the [compare] table",
        "table": "unknown table(s) ['compar']; an inventory has [farm], [compare], [[device]]",
    }


def test_remote_device_command_and_ssh_probe():
    d = DeviceSpec("tx2", "jetson", "nvidia@tx2", run_args=["--precision", "fp16"], threads=4)
    cmd = bench_command(Job(d, "quick", "n1", Path("/o"), "sqlite:///x", CompareConfig()))
    assert cmd[1:] == [
        "-m", "bench", "run", "--device", "jetson", "--suite", "quick", "--out", "/o", "--host", "nvidia@tx2",
        "--db", "sqlite:///x", "--threads", "4", "--quiet", "--precision", "fp16",
    ]  # fmt: skip

    class Res:
        def __init__(self, rc, err=""):
            self.returncode, self.stderr = rc, err

    seen = []
    assert ssh_reachable("u@h", runner=lambda cmd, **kw: seen.append(cmd) or Res(0)) == (True, "")
    assert seen[0][-2:] == ["u@h", "true"] and "BatchMode=yes" in seen[0]
    ok, why = ssh_reachable("u@h", runner=lambda cmd, **kw: Res(255, "ssh: connect to host h port 22: timed out\n"))
    assert not ok and why.endswith("timed out")


def test_every_night_pins_the_thread_count(monkeypatch, tmp_path):
    """Left to the policy, a busy evening lowers the count and that night's rows compare with nothing: the farm
    always passes --threads, the device's own or the worker's physical cores."""
    from ticketbench.bench import farm

    monkeypatch.setattr(farm.thread_policy, "physical_cores", lambda: 6)
    job = Job(DeviceSpec("cpu0", "cpu"), "quick", "n1", tmp_path / "o", None, CompareConfig())
    cmd = bench_command(job)
    assert cmd[cmd.index("--threads") + 1] == "6"
    job.device.run_args = ["--threads", "2"]  # an explicit one in run_args wins, and is not given twice
    assert bench_command(job).count("--threads") == 1
    (tmp_path / "inv.toml").write_text('[[device]]\nname = "a"\nkind = "cpu"\nthreads = 3\n')
    assert load_inventory(tmp_path / "inv.toml").devices[0].threads == 3


@pytest.mark.e2e
def test_a_night_at_another_thread_count_starts_a_new_baseline_instead_of_regressing(tmp_path, client):
    inv = inventory(tmp_path, ["x"])
    fake = FakeRun({("x", "n2"): "threads2"})
    nightly(inv, "n1", fake, client)
    (out,) = nightly(inv, "n2", fake, client).outcomes  # 40% slower, but on 2 threads instead of 1
    assert out.status == "ok" and out.regressions == 0
    assert "different thread counts (1 vs 2 thread(s)" in out.message and "new baseline" in out.message
    (n3,) = nightly(inv, "n3", fake, client).outcomes  # back on 1 thread: the count changed again, named again
    assert n3.baseline_run_id == "x-n2-quick" and n3.status == "ok" and "new baseline" in n3.message


def test_two_suites_of_one_file_name_get_their_own_run_directories(tmp_path, client):
    """a/quick.toml and b/quick.toml shared one run directory: the second job was recorded down and job.json named
    the wrong suite."""
    from ticketbench.bench.farm import suite_dir_name

    suites = ["a/quick.toml", "b/quick.toml"]
    names = {suite_dir_name(s, suites) for s in suites}
    assert len(names) == 2 and all(n.startswith("quick-") for n in names)
    assert suite_dir_name("quick", ["quick", "s2"]) == "quick"  # no clash: the name stays as it was
    inv = inventory(tmp_path, ["x"], suites=suites)
    report = nightly(inv, "n1", FakeRun(), client)
    assert [o.status for o in report.outcomes] == ["ok", "ok"]
    jobs = sorted((inv.out / "n1" / "x").glob("*/job.json"))
    assert sorted(json.loads(j.read_text())["suite"] for j in jobs) == suites
