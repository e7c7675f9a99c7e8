"""Results store, comparison and report costs, measured side by side in one run on synthetic run directories.

1. Ingest: first ingest of a run vs re-ingesting it unchanged (idempotent path: one hash, no writes).
2. Compare: Mann-Whitney on latency samples vs the energy bootstrap, per finding.
3. Report: render time and size of report.html for 1 and 4 runs.
4. Ingest throughput (rows/s) into PostgreSQL vs SQLite: the same 8 runs of 20 cases each, side by side.
5. Farm load: 8 fake devices × a 20-case suite through a real `dask scheduler` and two `dask worker` processes
   into PostgreSQL: wall time, rows written vs rows expected.

Run: `python benchmarks/bench_store_report.py`. Needs sqlalchemy, scipy and dask; parts 4-5 need Debian's
PostgreSQL server binaries (skipped with the reason otherwise). Prints the machine load (`uptime`).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from farm_fakes import twenty_cases, widen_to_cases  # noqa: E402
from fixtures.dask_processes import dask_processes  # noqa: E402
from fixtures.postgres import create_database, postgres_server  # noqa: E402
from test_report import make_run_dir  # noqa: E402

from ticketbench.bench.configs import CompareConfig  # noqa: E402
from ticketbench.bench.farm import DeviceSpec, Inventory, nightly  # noqa: E402
from ticketbench.bench.regression import compare_runs  # noqa: E402
from ticketbench.bench.runref import load_ref  # noqa: E402
from ticketbench.bench.store import ResultsStore  # noqa: E402
from ticketbench.reports.html import write_report  # noqa: E402


def timed(fn, repeat: int = 3) -> float:
    """Best of `repeat` wall-clock seconds."""
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        runs = [make_run_dir(tmp / f"r{i}", f"R{i}", seed=i, latency_scale=1 + 0.05 * i) for i in range(4)]
        store = ResultsStore(tmp / "b.sqlite")
        t0 = time.perf_counter()
        store.ingest(runs[0])
        out["ingest_first_s"] = time.perf_counter() - t0
        out["ingest_again_s"] = timed(lambda: store.ingest(runs[0]), 5)
        out["ingest_again_over_first"] = out["ingest_again_s"] / out["ingest_first_s"]

        base, cur = load_ref(str(runs[0])), load_ref(str(runs[2]))
        n = len(compare_runs(base, cur).findings)
        out["compare_findings"] = n
        out["compare_s_per_finding"] = timed(lambda: compare_runs(base, cur)) / n
        no_energy = cur.df.assign(energy_mj_per_inference=None)
        cur_lat = type(cur)(cur.label, no_energy, cur.root)
        t_lat = timed(lambda: compare_runs(base, cur_lat, CompareConfig()))
        out["compare_with_energy_over_latency_only"] = timed(lambda: compare_runs(base, cur)) / t_lat

        out["report_1_run_s"] = timed(lambda: write_report(runs[:1], tmp / "1.html"), 2)
        out["report_4_runs_s"] = timed(lambda: write_report(runs, tmp / "4.html"), 2)
        out["report_1_run_kb"] = (tmp / "1.html").stat().st_size / 1e3
        out["report_4_runs_kb"] = (tmp / "4.html").stat().st_size / 1e3
        with postgres_server() as (server, why):
            if server is None:
                out["postgres"] = f"skipped: {why}"
            else:
                out.update(ingest_throughput(tmp, create_database(server.url, "bench_ingest")))
                out.update(farm_load(tmp, create_database(server.url, "bench_farm")))
    out = {k: round(v, 4) if isinstance(v, float) else v for k, v in out.items()}
    print(json.dumps(out, indent=1))
    print("load:", subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())


def ingest_throughput(tmp: Path, pg_url: str) -> dict[str, float]:
    """Rows/s of first ingests, the same 8 runs into each backend, interleaved backend by backend per run."""
    runs = [widen_to_cases(make_run_dir(tmp / f"tp{i}", f"TP{i}", seed=i, n_samples=60), 20) for i in range(8)]
    rows = sum(len(pd.read_csv(r / "results.csv")) for r in runs)
    stores = {"sqlite": ResultsStore(tmp / "tp.sqlite"), "postgresql": ResultsStore(pg_url)}
    spent = dict.fromkeys(stores, 0.0)
    for run in runs:
        for name, store in stores.items():
            t0 = time.perf_counter()
            store.ingest(run)
            spent[name] += time.perf_counter() - t0
    for store in stores.values():
        store.close()
    out = {f"ingest_rows_per_s_{k}": rows / v for k, v in spent.items()}
    out["ingest_postgresql_over_sqlite_throughput"] = (
        out["ingest_rows_per_s_postgresql"] / out["ingest_rows_per_s_sqlite"]
    )
    return out


def farm_load(tmp: Path, pg_url: str) -> dict[str, float]:
    """8 fake devices through a real scheduler and two worker processes (4 devices each) into PostgreSQL."""
    names = [f"dev{i}" for i in range(8)]
    halves = [" ".join(f"device-{n}=1" for n in half) for half in (names[:4], names[4:])]
    with dask_processes(tmp, halves, nthreads=4, nanny=True) as client:
        inv = Inventory([DeviceSpec(n, "cpu") for n in names], tmp / "farm", db=pg_url)
        t0 = time.perf_counter()
        report = nightly(inv, "load", twenty_cases, client)
        wall = time.perf_counter() - t0
    store = ResultsStore(pg_url)
    written = len(store.results())
    store.close()
    return {
        "farm_8_devices_wall_s": wall,
        "farm_jobs_ok": sum(o.status == "ok" for o in report.outcomes),
        "farm_rows_written": written,
        "farm_rows_expected": 8 * 20 * 2,
    }


if __name__ == "__main__":
    main()
