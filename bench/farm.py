"""Nightly runs over a device farm, dispatched on Dask distributed (optional extra `farm`).

Every device in the inventory is one Dask worker resource (`device-<name>` = 1), so a device runs one job at a
time while different devices run in parallel. A device with a modern Python hosts its own worker
(`host = "local"`: the job runs `python -m bench run` on that worker's machine); an old board (TX2, Python 3.6)
is driven over SSH by a controller worker that holds the board's resource (`host = "user@board"`: the job
runs `python -m bench run --host user@board` there). Without a scheduler address, one in-process worker on
this machine holds every resource.

Each job runs on its worker end to end: run → ingest into the shared store → compare with this device's last
good night (same suite) → record the night's outcome. A device that is down or a job that fails is recorded
and reported; it never stops the others. A multi-machine farm needs a shared database (`--db postgresql://…`).
"""

from __future__ import annotations

import logging
import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from ticketbench.bench.regression import (
    CompareConfig,
    RunRef,
    compare_runs,
    load_ref,
    trend_steps,
    write_comparison,
)

log = logging.getLogger("ticketbench.bench.farm")

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
HOST = re.compile(r"^(local|([A-Za-z0-9_.-]+@)?[A-Za-z0-9_.:-]+)$")


class InventoryError(Exception):
    """The inventory file is missing or malformed."""


class DeviceDown(Exception):
    """The device could not be reached or is not available: the job never started."""


@dataclass
class DeviceSpec:
    name: str  # unique in the farm; names the worker resource and the run directories
    kind: str  # device adapter for `bench run --device`: cpu | gpu | jetson
    host: str = "local"  # "local" (its own or the local worker) or "user@host" (SSH from a controller worker)
    labels: list[str] = field(default_factory=list)
    suites: list[str] = field(default_factory=lambda: ["quick"])
    run_args: list[str] = field(default_factory=list)  # extra `bench run` arguments, e.g. ["--precision", "fp16"]
    timeout_s: float = 3600.0

    @property
    def resource(self) -> str:
        return f"device-{self.name}"

    @property
    def remote(self) -> bool:
        return self.host != "local"


@dataclass
class Inventory:
    devices: list[DeviceSpec]
    out: Path = Path("runs") / "farm"
    scheduler: str | None = None  # address of a running Dask scheduler; None = an in-process cluster here
    db: str | None = None
    compare: CompareConfig = field(default_factory=CompareConfig)


def _tomllib():
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    return tomllib


def load_inventory(path: Path) -> Inventory:
    """[farm] out, scheduler, db, suite(s), thresholds; [[device]] name, kind, host, labels, suites, run_args."""
    path = Path(path)
    try:
        data = _tomllib().loads(path.read_text())
    except OSError as exc:
        raise InventoryError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    except ValueError as exc:
        raise InventoryError(f"{path}: not valid TOML ({exc})") from exc
    farm = data.get("farm", {})
    default_suites = farm.get("suites") or [farm.get("suite", "quick")]
    devices = []
    for i, d in enumerate(data.get("device", [])):
        where = f"{path}: device #{i + 1}"
        unknown = set(d) - {"name", "kind", "host", "labels", "suite", "suites", "run_args", "timeout_s"}
        if unknown:
            raise InventoryError(f"{where}: unknown keys {sorted(unknown)}")
        name, kind, host = d.get("name"), d.get("kind"), d.get("host", "local")
        if not isinstance(name, str) or not NAME.match(name):
            raise InventoryError(f"{where}: name must be letters, digits, '_', '.', '-' (got {name!r})")
        if not isinstance(kind, str) or not kind:
            raise InventoryError(f"{where} ({name}): kind is required (cpu, gpu, jetson)")
        if not isinstance(host, str) or not HOST.match(host):
            raise InventoryError(f"{where} ({name}): host must be 'local' or 'user@host' (got {host!r})")
        suites = d.get("suites") or ([d["suite"]] if "suite" in d else default_suites)
        devices.append(
            DeviceSpec(
                name,
                kind,
                host,
                [str(x) for x in d.get("labels", [])],
                [str(s) for s in suites],
                [str(a) for a in d.get("run_args", [])],
                float(d.get("timeout_s", farm.get("timeout_s", 3600.0))),
            )
        )
    if not devices:
        raise InventoryError(f"{path}: no [[device]] entries")
    names = [d.name for d in devices]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise InventoryError(f"{path}: duplicate device names {dup}")
    threshold = float(farm.get("threshold", 0.05))
    cfg = CompareConfig(
        latency_floor=threshold,
        energy_floor=float(farm.get("energy_threshold", max(0.10, 2 * threshold))),
        accuracy_floor_points=float(farm.get("accuracy_points", 1.0)),
        alpha=float(farm.get("alpha", 0.01)),
    )
    out = Path(farm.get("out", Path("runs") / "farm"))  # relative to the working directory, like --out
    return Inventory(devices, out, farm.get("scheduler") or None, farm.get("db") or None, cfg)


# -- one job, on the worker that holds the device ----------------------------------------------------
@dataclass
class Job:
    device: DeviceSpec
    suite: str
    night: str
    out_dir: Path  # this job's run directory
    db: str | None
    compare: CompareConfig


@dataclass
class Outcome:
    device: str
    suite: str
    night: str
    status: str  # ok | regressed | failed | down
    run_id: str | None = None
    run_dir: str | None = None
    baseline_run_id: str | None = None
    regressions: int = 0
    message: str = ""


RunFn = Callable[[Job], Path]


def ssh_reachable(host: str, timeout_s: int = 10, runner: Callable[..., Any] = subprocess.run) -> tuple[bool, str]:
    """(reachable, why not): a non-interactive `ssh host true` within timeout_s seconds."""
    cmd = ["ssh", "-o", "BatchMode=yes", "-o", f"ConnectTimeout={timeout_s}", host, "true"]
    try:
        res = runner(cmd, capture_output=True, text=True, timeout=timeout_s + 5)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, f"ssh {host}: {exc}"
    if res.returncode != 0:
        tail = (res.stderr or "").strip().splitlines()
        return False, f"ssh {host}: {tail[-1] if tail else f'exit {res.returncode}'}"
    return True, ""


def bench_command(job: Job) -> list[str]:
    d = job.device
    cmd = [sys.executable, "-m", "bench", "run", "--device", d.kind, "--suite", job.suite, "--out", str(job.out_dir)]
    if d.remote:
        cmd += ["--host", d.host]
    if job.db:
        cmd += ["--db", job.db]
    return [*cmd, "--quiet", *d.run_args]


def run_bench(job: Job) -> Path:
    """The real job: `python -m bench run` for this device (over SSH for remote boards). Returns the run dir."""
    if job.device.remote:
        ok, why = ssh_reachable(job.device.host)
        if not ok:
            raise DeviceDown(why)
    job.out_dir.parent.mkdir(parents=True, exist_ok=True)
    try:
        res = subprocess.run(bench_command(job), capture_output=True, text=True, timeout=job.device.timeout_s)
    except subprocess.TimeoutExpired as exc:
        raise RuntimeError(f"bench run timed out after {job.device.timeout_s:.0f} s") from exc
    tail = (res.stderr or "").strip().splitlines()
    last = tail[-1] if tail else f"exit {res.returncode}"
    if res.returncode == 2:  # bad usage: on a farm, that is a device not available here
        raise DeviceDown(last)
    if res.returncode not in (0, 1) or not (job.out_dir / "results.csv").is_file():
        raise RuntimeError(f"bench run exit {res.returncode}: {last}")
    return job.out_dir  # exit 1 = some cases failed: the run exists and its failures are in results.csv


def device_night(job: Job, run_fn: RunFn = run_bench) -> Outcome:
    """Run, ingest, compare with the device's last good night, record. Runs on the device's worker."""
    from ticketbench.bench.store import ResultsStore

    d = job.device
    out = Outcome(d.name, job.suite, job.night, "ok")
    try:
        run_dir = Path(run_fn(job))
    except DeviceDown as exc:
        out.status, out.message = "down", str(exc)
    except Exception as exc:  # a failing job is an outcome, not a crash of the night
        log.exception("farm job %s/%s failed", d.name, job.suite)
        out.status, out.message = "failed", f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
    store = ResultsStore(job.db)
    if out.status == "ok":
        res = store.ingest(run_dir, farm_device=d.name, night=job.night)
        out.run_id, out.run_dir = res.run_id, str(run_dir)
        n_failed = int(store.run(res.run_id)["n_failed"] or 0)
        out.baseline_run_id = store.last_good_run(d.name, job.suite, before_night=job.night)
        if out.baseline_run_id is None:
            out.message = "first good night: this run is the baseline"
        else:
            current = RunRef(res.run_id, pd.read_csv(run_dir / "results.csv"), run_dir)
            comp = compare_runs(load_ref(out.baseline_run_id, job.db), current, job.compare)
            write_comparison(comp, run_dir / "compare.md", run_dir / "compare.html")
            out.regressions = sum(f.verdict == "regression" for f in comp.findings)
            out.message = f"{out.regressions} regression(s) vs {out.baseline_run_id}"
        if n_failed:
            out.status, out.message = "failed", f"{n_failed} failed case row(s); " + out.message
        elif out.regressions:
            out.status = "regressed"
    store.record_night(
        job.night, d.name, job.suite, out.status, out.run_id, out.baseline_run_id, out.regressions, out.message
    )
    store.close()
    return out


# -- the night, on the controller -------------------------------------------------------------------
@dataclass
class NightReport:
    night: str
    outcomes: list[Outcome]
    summary_md: Path | None = None
    summary_html: Path | None = None

    @property
    def exit_code(self) -> int:
        """0 when every job ran clean; 1 when anything regressed, failed or was down."""
        return 0 if all(o.status == "ok" for o in self.outcomes) else 1

    def table(self) -> pd.DataFrame:
        return pd.DataFrame([o.__dict__ for o in self.outcomes], columns=list(Outcome.__dataclass_fields__))


def new_night() -> str:
    """UTC timestamp; nights sort chronologically as strings (the baseline query relies on it)."""
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")


def local_client(devices: list[DeviceSpec]):
    """One in-process worker holding every device's resource; one thread per device so devices overlap."""
    from distributed import Client, LocalCluster

    cluster = LocalCluster(
        n_workers=1,
        processes=False,
        threads_per_worker=max(1, len(devices)),
        resources={d.resource: 1 for d in devices},
        dashboard_address="127.0.0.1:0",  # the scheduler always serves HTTP; keep it local, any free port
    )
    return Client(cluster)


def offered_resources(client) -> set[str]:
    """Resource names that some worker of this cluster offers."""
    workers = client.scheduler_info().get("workers", {})
    return {name for w in workers.values() for name, n in (w.get("resources") or {}).items() if n >= 1}


def nightly(
    inv: Inventory,
    night: str | None = None,
    run_fn: RunFn = run_bench,
    client=None,
) -> NightReport:
    """Dispatch every (device, suite) job, gather outcomes, write the summary and trend report."""
    from distributed import as_completed

    from ticketbench.bench.store import ResultsStore

    night = night or new_night()
    store = ResultsStore(inv.db)
    for d in inv.devices:
        store.upsert_device(d.name, d.kind, d.host, d.labels)
    own_client = client is None
    if own_client:
        client = _connect(inv.scheduler) if inv.scheduler else local_client(inv.devices)
    outcomes: list[Outcome] = []
    try:
        offered = offered_resources(client)
        futures = {}
        for d in inv.devices:
            for suite in d.suites:
                if d.resource not in offered:
                    why = f"no worker offers resource {d.resource} (start one with --resources {d.resource}=1)"
                    store.record_night(night, d.name, suite, "down", message=why)
                    outcomes.append(Outcome(d.name, suite, night, "down", message=why))
                    continue
                job = Job(d, suite, night, inv.out / night / d.name / _slug(suite), inv.db, inv.compare)
                fut = client.submit(device_night, job, run_fn, resources={d.resource: 1}, pure=False)
                futures[fut] = job
        for fut in as_completed(list(futures)):
            job = futures[fut]
            try:
                outcomes.append(fut.result())
            except Exception as exc:  # the job's own bookkeeping failed (store unreachable, worker lost)
                msg = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
                log.error("farm job %s/%s: %s", job.device.name, job.suite, msg)
                outcomes.append(Outcome(job.device.name, job.suite, night, "failed", message=msg))
                try:
                    store.record_night(night, job.device.name, job.suite, "failed", message=msg)
                except Exception:
                    log.exception("could not record the failure of %s/%s", job.device.name, job.suite)
    finally:
        if own_client:
            cluster = client.cluster
            client.close()
            if cluster is not None:
                cluster.close()
    outcomes.sort(key=lambda o: (o.device, o.suite))
    report = NightReport(night, outcomes)
    write_night_summary(report, store, inv.out / night)
    return report


def _connect(address: str):
    from distributed import Client

    return Client(address)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(text).stem if text.endswith(".toml") else text)


def write_night_summary(report: NightReport, store, directory: Path) -> None:
    """summary.md (outcomes) and summary.html (outcomes + trend plots per device), and trend.csv."""
    from ticketbench.files import atomic_write_text
    from ticketbench.reports.nightly import night_html, night_markdown

    directory.mkdir(parents=True, exist_ok=True)
    trends = {m: store.trend(m) for m in ("latency_ms_p50", "accuracy_top1", "energy_mj_per_inference")}
    long = pd.concat([t.assign(metric=m) for m, t in trends.items()], ignore_index=True)
    atomic_write_text(directory / "trend.csv", long.to_csv(index=False))
    steps = trend_steps(long)  # level changes that held ≥ 2 nights, not single bad nights
    atomic_write_text(directory / "steps.csv", steps.to_csv(index=False))
    table, nights = report.table(), store.nights()
    report.summary_md = directory / "summary.md"
    report.summary_html = directory / "summary.html"
    atomic_write_text(report.summary_md, night_markdown(report.night, table, nights, steps))
    atomic_write_text(report.summary_html, night_html(report.night, table, nights, trends, steps))
