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

import hashlib
import json
import logging
import math
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from ticketbench import threads as thread_policy
from ticketbench.bench.configs import CompareConfig
from ticketbench.bench.regression import compare_runs, gate, write_comparison
from ticketbench.bench.runref import RunRef, load_ref
from ticketbench.bench.trend import trend_steps
from ticketbench.devices import DEVICES
from ticketbench.devices.transport import HostError, ssh_argv, validate_host
from ticketbench.files import (
    Busy,
    InputError,
    exclusive_lock,
    one_line,
    parse_toml,
    read_json_object,
    read_text,
    safe_component,
)
from ticketbench.settings import SettingError, from_mapping

log = logging.getLogger("ticketbench.bench.farm")

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}\Z")
FARM_KEYS = {"out", "scheduler", "db", "suite", "suites", "timeout_s"}
# The gate's settings moved from [farm] to [compare], under CompareConfig's names (those of `bench compare`'s flags).
MOVED_TO_COMPARE = {"threshold": "latency_floor", "time_threshold": "time_floor", "energy_threshold": "energy_floor",
                    "accuracy_points": "accuracy_floor_points", "alpha": "alpha", "history_nights": "history_runs",
                    "gate_times": "gate_times"}  # fmt: skip


class InventoryError(Exception):
    """The inventory file is missing or malformed."""


class DeviceDown(Exception):
    """The device could not be reached or is not available: the job never started."""


class NightBusy(Exception):
    """Another controller is running the same night, or the night exists and --resume was not given."""


@dataclass
class DeviceSpec:
    name: str  # unique in the farm; names the worker resource and the run directories
    kind: str  # device adapter for `bench run --device`: cpu | gpu | jetson
    host: str = "local"  # "local" (its own or the local worker) or "user@host" (SSH from a controller worker)
    labels: list[str] = field(default_factory=list)
    suites: list[str] = field(default_factory=lambda: ["quick"])
    run_args: list[str] = field(default_factory=list)  # extra `bench run` arguments, e.g. ["--precision", "fp16"]
    timeout_s: float = 3600.0
    # `bench run --threads`: every night of a device runs at one count, so nights stay comparable (rows of other
    # counts are never compared). None = the physical cores of the worker running the job, read when it runs.
    threads: int | None = None

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


def _number(value: Any, where: str, low: float = 0.0, strict: bool = False) -> float:
    """A finite number ≥ low (> low when strict), else InventoryError (TOML gives ints, floats, or text)."""
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < low or (strict and value == low):
        raise InventoryError(f"{where} must be a number {'>' if strict else '≥'} {low:g} (got {value!r})"[:300])
    return float(value)


def _strings(value: Any, where: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(x, str) for x in value):
        raise InventoryError(f"{where} must be a list of strings (got {value!r})"[:300])
    return list(value)


def _text(value: Any, where: str) -> str | None:
    if value is not None and not isinstance(value, str):
        raise InventoryError(f"{where} must be a string (got {value!r})"[:300])
    return value or None


def load_inventory(path: Path) -> Inventory:
    """[farm] out, scheduler, db, suite(s), thresholds; [[device]] name, kind, host, labels, suites, run_args.

    Every value is checked for type and range: a malformed inventory is one InventoryError, never another
    exception. Hosts go through devices.transport.validate_host, the same check ssh and scp get."""
    path = Path(path)
    try:
        data = parse_toml(read_text(path, "inventory"), str(path))
    except InputError as exc:  # unreadable, invalid, or nested without bound (a RecursionError in tomllib)
        raise InventoryError(str(exc)) from exc
    return parse_inventory(data, path)


def parse_inventory(data: dict[str, Any], path: Path | str = "inventory") -> Inventory:
    """A parsed inventory document → Inventory; anything malformed → InventoryError (see load_inventory)."""
    if not isinstance(data, dict):
        raise InventoryError(f"{path}: an inventory is a TOML document")
    tables = sorted(set(data) - {"farm", "compare", "device"})
    if tables:
        raise InventoryError(f"{path}: unknown table(s) {tables}; an inventory has [farm], [compare], [[device]]")
    farm = data.get("farm", {})
    if not isinstance(farm, dict):
        raise InventoryError(f"{path}: [farm] must be a table")
    moved = sorted(set(farm) & set(MOVED_TO_COMPARE))
    if moved:
        old = moved[0]
        raise InventoryError(f"{path}: [farm] {old} is now {MOVED_TO_COMPARE[old]} in the [compare] table")
    unknown = set(farm) - FARM_KEYS
    if unknown:
        raise InventoryError(f"{path}: [farm]: unknown keys {sorted(unknown)}")
    default_suites = _strings(farm["suites"], f"{path}: [farm] suites") if farm.get("suites") else None
    default_suites = default_suites or [_text(farm.get("suite", "quick"), f"{path}: [farm] suite") or "quick"]
    default_timeout = _number(farm.get("timeout_s", 3600.0), f"{path}: [farm] timeout_s", strict=True)
    entries = data.get("device", [])
    if not isinstance(entries, list) or not all(isinstance(d, dict) for d in entries):
        raise InventoryError(f"{path}: devices must be [[device]] tables")
    devices = []
    for i, d in enumerate(entries):
        where = f"{path}: device #{i + 1}"
        unknown = set(d) - {"name", "kind", "host", "labels", "suite", "suites", "run_args", "timeout_s", "threads"}
        if unknown:
            raise InventoryError(f"{where}: unknown keys {sorted(unknown)}")
        name, kind, host = d.get("name"), d.get("kind"), d.get("host", "local")
        if not isinstance(name, str) or not NAME.match(name):
            raise InventoryError(f"{where}: name must be letters, digits, '_', '.', '-' (got {name!r})"[:300])
        where = f"{where} ({name})"
        if not isinstance(kind, str) or kind not in DEVICES:  # else every night records a typo as a device "down"
            raise InventoryError(f"{where}: kind {repr(kind)[:60]} unknown (known: {', '.join(DEVICES.names())})")
        if host != "local":
            try:
                validate_host(host)
            except HostError as exc:
                raise InventoryError(f"{where}: {exc} (expected 'local' or [user@]host[:port])") from exc
        if "suites" in d:
            suites = _strings(d["suites"], f"{where}: suites")
        elif "suite" in d:
            suites = [_text(d["suite"], f"{where}: suite") or ""]
        else:
            suites = default_suites
        if not suites or not all(suites):
            raise InventoryError(f"{where}: suites must name at least one suite")
        threads = d.get("threads")
        bad_threads = not isinstance(threads, int) or isinstance(threads, bool) or not 1 <= threads <= 1024
        if threads is not None and bad_threads:  # the worker's `bench run --threads` refuses more than 1024
            raise InventoryError(f"{where}: threads must be a whole number in [1, 1024] (got {threads!r})"[:300])
        devices.append(
            DeviceSpec(
                name,
                kind,
                host,
                _strings(d.get("labels", []), f"{where}: labels"),
                suites,
                _strings(d.get("run_args", []), f"{where}: run_args"),
                _number(d.get("timeout_s", default_timeout), f"{where}: timeout_s", strict=True),
                threads,
            )
        )
    if not devices:
        raise InventoryError(f"{path}: no [[device]] entries")
    names = [d.name for d in devices]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise InventoryError(f"{path}: duplicate device names {dup}")
    try:  # the gate's settings, as `bench compare` takes them (ticketbench.settings: types and ranges)
        cfg = from_mapping(CompareConfig, data.get("compare", {}), f"{path}: [compare]")
    except SettingError as exc:
        raise InventoryError(str(exc)) from None
    out = Path(_text(farm.get("out"), f"{path}: [farm] out") or Path("runs") / "farm")  # relative to the cwd
    scheduler = _text(farm.get("scheduler"), f"{path}: [farm] scheduler")
    return Inventory(devices, out, scheduler, _text(farm.get("db"), f"{path}: [farm] db"), cfg)


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
    """(reachable, why not): a non-interactive `ssh -- host true` within timeout_s seconds. A host that is not
    `[user@]host[:port]` is unreachable by definition: it never reaches a subprocess."""
    try:
        cmd = ssh_argv(host, ["-o", "BatchMode=yes", "-o", f"ConnectTimeout={timeout_s}"], "true")
    except HostError as exc:
        return False, str(exc)
    try:
        res = runner(cmd, capture_output=True, text=True, timeout=timeout_s + 5)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, f"ssh {host}: {exc}"
    if res.returncode != 0:
        tail = (res.stderr or "").strip().splitlines()
        return False, f"ssh {host}: {tail[-1] if tail else f'exit {res.returncode}'}"
    return True, ""


def bench_command(job: Job) -> list[str]:
    """`bench run` for this job; an existing run directory (a job retried after its worker died, or a resumed
    night) is continued with --resume, so its finished cases are neither run nor stored twice. The thread count
    is always pinned (the device's `threads`, else this worker's physical cores; `--threads` in run_args wins):
    left to the policy, a busy evening would lower it and make that night's rows incomparable with the others."""
    d = job.device
    cmd = [sys.executable, "-m", "bench", "run", "--device", d.kind, "--suite", job.suite, "--out", str(job.out_dir)]
    if (job.out_dir / "run.json").is_file():
        cmd.append("--resume")
    if d.remote:
        cmd += ["--host", d.host]
    if job.db:
        cmd += ["--db", job.db]
    if "--threads" not in d.run_args:
        cmd += ["--threads", str(d.threads or thread_policy.physical_cores())]
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


STORE_ATTEMPTS = 5  # with backoff 1, 2, 4, 8 s: a database restart of ~15 s is survived
STORE_FIRST_DELAY_S = 1.0


def is_transient(exc: BaseException | None) -> bool:
    """A database error worth retrying: the server is unreachable, restarting, or the file is locked."""
    try:
        from sqlalchemy import exc as sa_exc
    except ImportError:
        return False
    while exc is not None:
        if isinstance(exc, sa_exc.OperationalError | sa_exc.InterfaceError):
            return True
        if isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated:
            return True
        exc = exc.__cause__
    return False


def with_retries(
    fn: Callable[[], Any],
    what: str,
    attempts: int | None = None,
    first_delay_s: float | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> Any:
    """Call fn; on a transient database error wait (doubling from first_delay_s) and try again."""
    attempts = attempts or STORE_ATTEMPTS
    delay = STORE_FIRST_DELAY_S if first_delay_s is None else first_delay_s
    for attempt in range(1, attempts + 1):
        try:
            return fn()
        except Exception as exc:
            if attempt == attempts or not is_transient(exc):
                raise
            log.warning(
                "%s: %s; retry %d/%d in %.0f s", what, one_line(exc, with_type=True), attempt, attempts - 1, delay
            )
            sleep(delay)
            delay *= 2


def write_job_file(job: Job) -> None:
    """job.json beside the run: what `bench farm ingest RUN_DIR` needs to finish the job later."""
    from ticketbench.files import atomic_write_text

    meta = {"device": job.device.name, "suite": job.suite, "night": job.night, "compare": asdict(job.compare)}
    atomic_write_text(job.out_dir / "job.json", json.dumps(meta, indent=1) + "\n")


def read_job_file(run_dir: Path, db: str | None) -> Job:
    """The job a run directory belongs to (job.json, untrusted: names checked as path components)."""
    path = Path(run_dir) / "job.json"
    meta = read_json_object(path, "farm job file")
    name = safe_component(meta.get("device"), f"{path}: device")
    night = safe_component(meta.get("night"), f"{path}: night")
    suite = meta.get("suite")
    if not isinstance(suite, str) or not suite:
        raise InputError(f"{path}: suite must be a non-empty string")
    # strict: "false" is not False, "nan" is not a floor, history_runs -3 is refused (ticketbench.settings)
    compare = from_mapping(CompareConfig, meta.get("compare", {}), f"{path}: compare")
    return Job(DeviceSpec(name, "cpu"), suite, night, Path(run_dir), db, compare)


def device_night(job: Job, run_fn: RunFn = run_bench) -> Outcome:
    """Run, then finish the job (ingest, compare, record). Runs on the device's worker."""
    d = job.device
    out = Outcome(d.name, job.suite, job.night, "ok")
    job.out_dir.mkdir(parents=True, exist_ok=True)
    write_job_file(job)
    try:
        run_dir = Path(run_fn(job))
    except DeviceDown as exc:
        out.status, out.message = "down", str(exc)
        run_dir = None
    except Exception as exc:  # a failing job is an outcome, not a crash of the night
        log.exception("farm job %s/%s failed", d.name, job.suite)
        out.status, out.message = "failed", one_line(exc, with_type=True)
        run_dir = None
    return finish_job(job, run_dir, out)


def finish_job(job: Job, run_dir: Path | None, out: Outcome) -> Outcome:
    """Ingest the run, compare it with the device's last good night, record the outcome; every database step
    retried through a short outage. If the store stays unreachable the run directory is kept and the
    outcome says how to ingest it later (`bench farm ingest RUN_DIR`)."""
    if run_dir is not None:
        try:
            with_retries(lambda: _ingest_and_compare(job, run_dir, out), f"ingest of {run_dir}")
        except Exception as exc:
            out.status = "failed"
            out.message = (
                f"results store unreachable ({one_line(exc, with_type=True)}); the run is kept: "
                f"python -m bench farm ingest {run_dir}" + (f" --db {job.db}" if job.db else "")
            )
    try:
        with_retries(lambda: _record(job, out), f"recording {job.device.name}/{job.suite}")
    except Exception as exc:
        log.error(
            "could not record %s/%s of night %s: %s",
            job.device.name,
            job.suite,
            job.night,
            one_line(exc, with_type=True),
        )
    return out


def _ingest_and_compare(job: Job, run_dir: Path, out: Outcome) -> None:
    """Idempotent (ingest of an existing run is a no-op; comparison files are rewritten): safe to retry."""
    from ticketbench.bench.store import ResultsStore

    d = job.device
    store = ResultsStore(job.db)
    try:
        res = store.ingest(run_dir, farm_device=d.name, night=job.night)
        out.run_id, out.run_dir = res.run_id, str(run_dir)
        n_failed = int(store.run(res.run_id)["n_failed"] or 0)
        good = store.last_good_runs(d.name, job.suite, job.night, 1 + job.compare.history_runs)
        out.baseline_run_id = good[0] if good else None
        out.status, out.regressions, coverage = "ok", 0, ""
        if out.baseline_run_id is None:
            out.message = "first good night: this run is the baseline"
        else:
            current = RunRef(res.run_id, pd.read_csv(run_dir / "results.csv"), run_dir)
            baseline = load_ref(out.baseline_run_id, store=store)
            comp = compare_runs(baseline, current, job.compare, [load_ref(r, store=store) for r in good[1:]])
            write_comparison(comp, run_dir / "compare.md", run_dir / "compare.html")
            out.regressions = sum(f.verdict == "regression" for f in comp.findings)
            out.message = f"{out.regressions} regression(s) vs {out.baseline_run_id}"
            code, reason = gate(comp, baseline, current)  # the rules `bench compare` exits on, lost rows included
            if code == 2:  # another thread count (inventory `threads` changed): a new configuration, not a fault
                out.message = f"{reason}; this night starts a new baseline"
            elif code and not comp.regressions:
                coverage = f"{reason} (vs {out.baseline_run_id})"
        if n_failed:
            out.status, out.message = "failed", f"{n_failed} failed case row(s); " + out.message
        elif coverage:  # the run lost baseline rows, or shares none with it: no night to call good
            out.status, out.message = "failed", coverage
        elif out.regressions:
            out.status = "regressed"
    finally:
        store.close()


def _record(job: Job, out: Outcome) -> None:
    from ticketbench.bench.store import ResultsStore

    store = ResultsStore(job.db)
    try:
        store.record_night(
            job.night, out.device, job.suite, out.status, out.run_id, out.baseline_run_id, out.regressions, out.message
        )
    finally:
        store.close()


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
    import dask
    from distributed import Client, LocalCluster

    with dask.config.set({"distributed.scheduler.allowed-failures": ALLOWED_FAILURES}):
        cluster = LocalCluster(
            n_workers=1,
            processes=False,
            threads_per_worker=max(1, len(devices)),
            resources={d.resource: 1 for d in devices},
            dashboard_address="127.0.0.1:0",  # the scheduler always serves HTTP; keep it local, any free port
        )
    return Client(cluster)


# A job whose worker dies is moved to the next worker offering the device's resource once; a second death
# fails it (Dask's KilledWorker). A scheduler started by hand needs the same setting:
# DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES=1 dask scheduler ...
ALLOWED_FAILURES = 1


def offered_resources(client) -> set[str]:
    """Resource names that some worker of this cluster offers."""
    workers = client.scheduler_info().get("workers", {})
    return {name for w in workers.values() for name, n in (w.get("resources") or {}).items() if n >= 1}


@contextmanager
def night_lock(directory: Path, night: str) -> Iterator[None]:
    """One controller per night: a kernel lock on `.nightly.lock` in the night's folder (files.exclusive_lock:
    freed when its holder dies, never taken over, so two controllers cannot both enter)."""
    with ExitStack() as held:
        try:
            held.enter_context(exclusive_lock(directory / ".nightly.lock", f"night {night}"))
        except Busy as exc:
            raise NightBusy(
                f"night {night} is already running ({exc.holder}): wait for it to finish, or choose another --night"
            ) from None
        yield


DONE = ("ok", "regressed")  # a resumed night skips the jobs that already ended this way


def nightly(
    inv: Inventory,
    night: str | None = None,
    run_fn: RunFn = run_bench,
    client=None,
    resume: bool = False,
) -> NightReport:
    """Dispatch every (device, suite) job, gather outcomes, write the summary and trend report.

    A night is named; running a name again needs `resume` (finished jobs are kept, the others continue their
    run directories). Two controllers never run the same night at once (night_lock)."""
    from distributed import as_completed

    from ticketbench.bench.store import ResultsStore

    night = safe_component(night or new_night(), "night")  # becomes a folder under inv.out: never ../x
    night_dir = inv.out / night
    existed = night_dir.exists()
    with night_lock(night_dir, night):
        if existed and not resume:
            raise NightBusy(f"night {night} exists in {inv.out}: pass --resume to continue it, or choose another")
        store = ResultsStore(inv.db)
        for d in inv.devices:
            store.upsert_device(d.name, d.kind, d.host, d.labels)
        recorded = store.nights()
        finished = (
            {(r.farm_device, r.suite): r for r in recorded.itertuples() if r.night == night and r.status in DONE}
            if resume and not recorded.empty
            else {}
        )
        own_client = client is None
        if own_client:
            client = _connect(inv.scheduler) if inv.scheduler else local_client(inv.devices)
        outcomes: list[Outcome] = []
        try:
            offered = offered_resources(client)
            futures = {}
            for d in inv.devices:
                for suite in d.suites:
                    if (d.name, suite) in finished:
                        r = finished[(d.name, suite)]
                        outcomes.append(
                            Outcome(
                                d.name,
                                suite,
                                night,
                                r.status,
                                r.run_id,
                                None,
                                r.baseline_run_id,
                                int(r.regressions or 0),
                                f"(kept from the interrupted night) {r.message or ''}",
                            )
                        )
                        continue
                    if d.resource not in offered:
                        why = f"no worker offers resource {d.resource} (start one with --resources {d.resource}=1)"
                        store.record_night(night, d.name, suite, "down", message=why)
                        outcomes.append(Outcome(d.name, suite, night, "down", message=why))
                        continue
                    out_dir = night_dir / d.name / suite_dir_name(suite, d.suites)
                    job = Job(d, suite, night, out_dir, inv.db, inv.compare)
                    fut = client.submit(device_night, job, run_fn, resources={d.resource: 1}, pure=False)
                    futures[fut] = job
            for fut in as_completed(list(futures)):
                job = futures[fut]
                try:
                    outcomes.append(fut.result())
                except Exception as exc:  # the worker died twice (KilledWorker), or the job's bookkeeping failed
                    msg = one_line(exc, with_type=True)
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
        write_night_summary(report, store, night_dir)
        store.close()
    return report


def _connect(address: str):
    from distributed import Client

    return Client(address)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(text).stem if text.endswith(".toml") else text)


def suite_dir_name(suite: str, all_suites: list[str]) -> str:
    """The run directory name of one of a device's suites: its file stem, plus a digest of the whole spec when
    another of the device's suites has the same stem (a/quick.toml and b/quick.toml shared one run directory:
    the second job found the first's run and job.json named the wrong suite)."""
    slug = _slug(suite)
    if sum(_slug(s) == slug for s in all_suites) > 1:
        slug += "-" + hashlib.sha256(suite.encode()).hexdigest()[:8]
    return slug


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
