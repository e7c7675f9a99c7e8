"""Results store, comparison and report costs, measured side by side in one run on synthetic run directories.

1. Ingest: first ingest of a run vs re-ingesting it unchanged (idempotent path: one hash, no writes).
2. Compare: Mann-Whitney on latency samples vs the energy bootstrap, per finding.
3. Report: render time and size of report.html for 1 and 4 runs.

Run: `python benchmarks/bench_store_report.py`. Needs sqlalchemy and scipy. Prints the machine load (`uptime`).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from test_report import make_run_dir  # noqa: E402

from ticketbench.bench.regression import CompareConfig, compare_runs, load_ref  # noqa: E402
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
    out = {k: round(v, 4) for k, v in out.items()}
    print(json.dumps(out, indent=1))
    print("load:", subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())


if __name__ == "__main__":
    main()
