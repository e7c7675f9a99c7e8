"""Stand-ins for `bench run` that Dask worker *processes* can import (tests/ is on their PYTHONPATH)."""

from __future__ import annotations

import json
import os
import time
import zlib
from pathlib import Path

from test_report import make_run_dir

from ticketbench.bench.farm import Job


def quick_run(job: Job) -> Path:
    """A finished run directory, deterministic per (device, night, suite); logs which process ran it."""
    seed = zlib.crc32(f"{job.device.name}/{job.night}/{job.suite}".encode())
    run_id = f"{job.device.name}-{job.night}-{job.suite}"
    make_run_dir(job.out_dir, run_id, seed=seed, n_samples=60)
    with open(job.out_dir.parents[2] / "calls.log", "a") as f:  # the farm folder (out/night/device/suite)
        f.write(json.dumps([job.device.name, job.suite, os.getpid()]) + "\n")
    return job.out_dir


def dies_first_time(job: Job) -> Path:
    """The first attempt announces its worker's pid in `attempt-1.pid` and hangs (the test kills that worker);
    a second attempt (on another worker) finishes normally."""
    first = job.out_dir / "attempt-1.pid"
    if not first.exists():
        job.out_dir.mkdir(parents=True, exist_ok=True)
        first.write_text(str(os.getpid()))
        time.sleep(120)
    return quick_run(job)


def waits_for_release(job: Job) -> Path:
    """Announces itself (`started` in the farm folder) and holds its device until `release` appears there."""
    farm_dir = job.out_dir.parents[2]
    farm_dir.mkdir(parents=True, exist_ok=True)
    (farm_dir / "started").touch()
    deadline = time.monotonic() + 60
    while not (farm_dir / "release").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    return quick_run(job)


def b_down_until_fixed(job: Job) -> Path:
    """Device b is unreachable until a `b-fixed` file appears in the farm folder."""
    from ticketbench.bench.farm import DeviceDown

    if job.device.name == "b" and not (job.out_dir.parents[2] / "b-fixed").exists():
        raise DeviceDown("ssh b: Connection timed out")
    return quick_run(job)


def widen_to_cases(run_dir: Path, n_cases: int = 20) -> Path:
    """Repeat a run's cases under new ids until it holds n_cases (each at its batch sizes): a bigger suite."""
    import pandas as pd

    df = pd.read_csv(run_dir / "results.csv")
    cases = df["case_id"].unique()
    big = pd.concat([df.assign(case_id=df["case_id"] + f"-r{i}") for i in range(-(-n_cases // len(cases)))])
    keep = sorted(big["case_id"].unique())[:n_cases]
    big[big["case_id"].isin(keep)].to_csv(run_dir / "results.csv", index=False)
    return run_dir


def twenty_cases(job: Job) -> Path:
    """A finished run of a 20-case suite."""
    return widen_to_cases(quick_run(job), 20)
