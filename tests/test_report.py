"""report.html and the combined CSV over synthetic run directories (no training).

`make_run_dir` builds a run directory as the runner writes it (run.json, results.csv, latency and power samples,
tickets/<case>/cost.json and artifacts.json); test_store, test_regression, test_farm and test_browser use it too.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ticketbench.artifacts import to_jsonable, write_artifacts_json
from ticketbench.bench.cli import main
from ticketbench.reports.artifacts import load_ticket_artifacts
from ticketbench.reports.html import load_report_inputs, render_html, write_report
from ticketbench.results import COLUMNS, empty_row

# case_id, method, target sparsity, AR, latency at batch 1 (ms), accuracy (%)
CASES = [
    ("c-dense", "dense", 0.0, 1.0, 2.0, 97.0),
    ("c-mag50", "magnitude", 0.5, 1.6, 1.6, 96.5),
    ("c-mag80", "magnitude", 0.8, 3.5, 1.1, 94.0),
    ("c-eb50", "eb", 0.5, 2.0, 1.3, 95.5),
    ("c-mpt50", "mpt", 0.5, 1.9, 1.4, 93.0),
]
BATCHES = (1, 8)
FIGURES = [
    "Accuracy vs sparsity",
    "Latency and speedup vs sparsity",
    "Energy per inference and per training epoch",
    "Early-Bird mask distance",
    "Zero kernels per layer",
    "MPT score distributions",
]
EB_EPOCH = 3


def make_run_dir(
    root: Path,
    run_id: str = "R1",
    *,
    device: str = "cpu",
    latency_scale: float = 1.0,
    power_scale: float = 1.0,
    accuracy_shift: float = 0.0,
    noise: float = 0.03,
    n_samples: int = 200,
    seed: int = 0,
    failed: tuple[str, ...] = (),
    artifacts: bool = True,
    start_time: str = "2026-01-01T00:00:00+00:00",
) -> Path:
    """A run directory with lognormal latency samples (σ = noise) whose medians are the CASES latencies × scale."""
    rng = np.random.default_rng(seed)
    root = Path(root)
    (root / "samples").mkdir(parents=True, exist_ok=True)
    rows, dense_p50 = [], {}
    for case, method, sp, ar, lat1, acc in CASES:
        base = dict(run_id=run_id, case_id=case, model="small_cnn", dataset="digits", method=method)
        base.update(target_sparsity=sp, device=device, device_name=f"Fake {device}", backend="ort-cpu")
        base.update(precision="fp32", acceleration_rate=ar, weight_sparsity=sp, power_source="rapl")
        for bs in BATCHES:
            if case in failed:
                rows.append(empty_row(**base, batch_size=bs, status="failed", error="RuntimeError: boom"))
                continue
            ms = rng.lognormal(np.log(lat1 * bs**0.7 * latency_scale), noise, n_samples)
            watts = rng.normal(5.0 * power_scale, 0.05, 50)
            sfile = f"samples/{case}-b{bs}-latency.csv"
            (root / sfile).write_text("latency_ms\n" + "\n".join(f"{v:.6f}" for v in ms) + "\n")
            (root / f"samples/{case}-b{bs}-power.csv").write_text(
                "t_s,watts\n" + "\n".join(f"{i * 0.02:.3f},{w:.4f}" for i, w in enumerate(watts)) + "\n"
            )
            p50 = float(np.percentile(ms, 50))
            if method == "dense":
                dense_p50[bs] = p50
            speedup = dense_p50[bs] / p50 if bs in dense_p50 else None
            rows.append(
                empty_row(
                    **base,
                    batch_size=bs,
                    latency_ms_p50=p50,
                    latency_ms_p90=float(np.percentile(ms, 90)),
                    latency_ms_p99=float(np.percentile(ms, 99)),
                    latency_ms_mean=float(ms.mean()),
                    latency_ms_std=float(ms.std()),
                    throughput_ips=bs * 1e3 / float(ms.mean()),
                    speedup=speedup,
                    realization=speedup / ar if speedup else None,
                    power_w_mean=float(watts.mean()),
                    energy_mj_per_inference=float(watts.mean() * ms.mean() / bs),  # W · ms = mJ
                    energy_j_per_train_epoch=12.0 * (1 - sp / 2) * power_scale,
                    train_s_per_epoch=2.4 * (1 - sp / 2),
                    accuracy_top1=acc + accuracy_shift,
                    eb_epoch=EB_EPOCH if method == "eb" else None,
                    latency_samples=n_samples,
                    samples_file=sfile,
                    status="ok",
                )
            )
        if artifacts:
            _write_ticket_files(root / "tickets" / case, method, sp)
    pd.DataFrame(rows, columns=COLUMNS).to_csv(root / "results.csv", index=False)
    meta = {
        "run_id": run_id,
        "start_time": start_time,
        "end_time": start_time,
        "git_sha": "0" * 40,
        "host": {"hostname": "testhost"},
        "versions": {"python": "3.11", "onnxruntime": "1.x"},
        "suite": {"name": "quick"},
        "device": {"device": device, "device_name": f"Fake {device}", "backend": "ort-cpu"},
        "power_source": "rapl",
        "power_note": "",
    }
    (root / "run.json").write_text(json.dumps(meta))
    return root


def _write_ticket_files(tdir: Path, method: str, sp: float) -> None:
    tdir.mkdir(parents=True, exist_ok=True)
    layers = [
        {"name": "conv1", "kind": "conv", "kernels": 16, "zero_kernels": int(16 * sp / 2)},
        {"name": "conv2", "kind": "conv", "kernels": 512, "zero_kernels": int(512 * sp)},
        {"name": "fc", "kind": "linear", "kernels": 1280, "zero_kernels": 0},
    ]
    (tdir / "cost.json").write_text(json.dumps({"ticket": {"layers": layers}}))
    art: dict = {}
    if method == "eb":
        n = 8
        art["mask_distance_matrix"] = [[abs(i - j) / n for j in range(n)] for i in range(n)]
        art["mask_distance_epochs"] = list(range(1, n + 1))  # as models/tickets/eb.py stores them: 1-based
        art["eb_epoch"] = EB_EPOCH
    if method == "mpt":
        art["score_histograms"] = {
            "conv1": {"counts": [1, 4, 9, 4, 1], "edges": [-1.0, -0.6, -0.2, 0.2, 0.6, 1.0]},
            "conv2": {"counts": [2, 6, 2], "edges": [-0.5, 0.0, 0.5, 1.0]},
        }
    if art:
        (tdir / "artifacts.json").write_text(json.dumps(art))


# -- tests --------------------------------------------------------------------------------------------
@pytest.mark.e2e
def test_report_over_two_devices_has_every_plot_table_and_metadata(tmp_path):
    a = make_run_dir(tmp_path / "a", "RA", device="cpu")
    b = make_run_dir(tmp_path / "b", "RB", device="jetson", latency_scale=3.0, seed=1)
    html = write_report([a, b], tmp_path / "r.html").read_text()
    titles = re.findall(r'<figure class="plot" data-title="([^"]+)">\s*<svg', html)
    assert titles == FIGURES
    assert "Not shown" not in html
    body = html.split('<table id="results">')[1].split("</table>")[0]
    assert body.count("<tr>") == 1 + 2 * len(CASES) * len(BATCHES)  # header + rows of both runs
    assert "Run RA" in html and "Run RB" in html and "Fake jetson" in html
    assert f"EB epoch {EB_EPOCH}" in html  # the heat map marks the EB epoch (matplotlib keeps text as comments)


@pytest.mark.e2e
def test_report_is_self_contained(tmp_path):
    html = write_report([make_run_dir(tmp_path / "a")], tmp_path / "r.html").read_text()
    assert not re.search(r"<(link|iframe|object|embed)\b", html)
    assert not re.search(r"""(src|href)\s*=\s*["'](?!#|data:)""", html)  # only in-page anchors and data: URIs
    assert "@import" not in html and "url(http" not in html
    for url in re.findall(r"https?://[^\s\"'<>]+", html):
        assert url.startswith("http://www.w3.org/"), url  # XML namespace names only, never fetched


@pytest.mark.e2e
def test_report_renders_the_table_and_does_not_recompute(tmp_path):
    d = make_run_dir(tmp_path / "a")
    df = pd.read_csv(d / "results.csv")
    df.loc[df["case_id"] == "c-mag80", "speedup"] = 123.456  # inconsistent with the latencies, on purpose
    df.to_csv(d / "results.csv", index=False)
    inputs = load_report_inputs([d])
    html = render_html(inputs.df, inputs.metas, artifacts=inputs.artifacts)
    assert "<td>123.5</td>" in html


def test_report_says_why_a_figure_is_missing(tmp_path):
    d = make_run_dir(tmp_path / "a", artifacts=False, failed=("c-mpt50",))
    html = write_report([d], tmp_path / "r.html").read_text()
    assert "Not shown: no EB mask distances stored" in html
    assert "Not shown: no MPT score histograms stored" in html
    assert 'class="s-failed"' in html


@pytest.mark.e2e
def test_report_is_byte_reproducible(tmp_path):
    d = make_run_dir(tmp_path / "a")
    one = write_report([d], tmp_path / "1.html").read_bytes()
    two = write_report([d], tmp_path / "2.html").read_bytes()
    assert one == two


@pytest.mark.e2e
def test_cli_report_writes_html_and_combined_csv(tmp_path, capsys):
    a, b = make_run_dir(tmp_path / "a", "RA"), make_run_dir(tmp_path / "b", "RB", device="gpu")
    rc = main(["report", str(a), str(b), "--html", str(tmp_path / "o.html"), "--csv", str(tmp_path / "o.csv")])
    assert rc == 0
    csv = pd.read_csv(tmp_path / "o.csv")
    assert list(csv.columns[: len(COLUMNS)]) == COLUMNS
    assert sorted(csv["run_id"].unique()) == ["RA", "RB"]
    assert len(csv) == 2 * len(CASES) * len(BATCHES)
    assert (tmp_path / "o.html").read_text().count('<figure class="plot"') == 6
    assert main(["report", str(tmp_path / "nope")]) == 2


@pytest.mark.e2e
def test_results_csv_is_left_as_written(tmp_path):
    d = make_run_dir(tmp_path / "a")
    before = (d / "results.csv").read_bytes()
    main(["report", str(d)])
    assert (d / "results.csv").read_bytes() == before
    assert (d / "report.html").is_file()


# -- artifacts ------------------------------------------------------------------------------------------
def test_to_jsonable_converts_tensors_and_bins_huge_arrays():
    torch = pytest.importorskip("torch")
    out = to_jsonable({"m": torch.tensor([[0.0, 0.5], [0.5, 0.0]]), 1: (np.float32(2.5), float("nan"))})
    assert out == {"m": [[0.0, 0.5], [0.5, 0.0]], "1": [2.5, None]}
    big = to_jsonable(np.arange(200_001, dtype=float))
    assert sum(big["counts"]) == 200_001 and len(big["edges"]) == len(big["counts"]) + 1


def test_artifacts_json_roundtrip_and_layer_parsing(tmp_path):
    tdir = tmp_path / "tickets" / "c1"
    write_artifacts_json(tdir, {"mask_distance_matrix": np.eye(3), "mask_distance_epochs": [1, 2, 3], "eb_epoch": 2})
    (tdir / "cost.json").write_text(
        json.dumps(
            {
                "ticket": {
                    "layers": [
                        {"name": "a", "kind": "conv", "kernels": 9, "zero_kernels": 4},
                        {"name": "fc", "kind": "linear", "kernels": 10, "zero_kernels": 3},
                    ]
                }
            }
        )
    )
    art = load_ticket_artifacts(tmp_path, "c1")
    assert art.eb_mask_distances == {"": [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]}
    assert art.eb_epoch == 2 and art.mask_epochs == [1, 2, 3]
    assert art.layers == [{"name": "a", "kernels": 9, "zero_kernels": 4}]  # conv layers only


@pytest.mark.e2e
def test_reports_import_neither_torch_nor_bench():
    """reports/ renders tables and JSON only: it must load on a machine without torch (README, Layout)."""
    code = (
        "import sys, ticketbench.reports.html, ticketbench.reports.compare, ticketbench.reports.nightly; "
        "bad = [m for m in sys.modules if m == 'torch' or m.startswith(('ticketbench.bench', 'ticketbench.models'))]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_malformed_artifacts_are_tolerated(tmp_path):
    tdir = tmp_path / "tickets" / "c1"
    tdir.mkdir(parents=True)
    (tdir / "artifacts.json").write_text("{not json")
    (tdir / "cost.json").write_text(json.dumps({"ticket": {"layers": [{"name": "x"}]}}))
    art = load_ticket_artifacts(tmp_path, "c1")
    assert (art.layers, art.eb_mask_distances, art.eb_epoch, art.score_hist) == ([], {}, None, {})


# -- the summary first: one table per device and precision, and a banner naming the disturbed rows ------------------
def _paired_run(root: Path) -> Path:
    """make_run_dir with what the runner now writes: paired speedups and their range, the MAC reduction, threads,
    and one row (c-eb50 b1) measured while another process took a core."""
    d = make_run_dir(root)
    df = pd.read_csv(d / "results.csv")
    ticket = df["method"] != "dense"
    df["threads"] = 2
    df["macs_dense"], df["macs"] = 1000, (1000 / df["acceleration_rate"] * 2).clip(upper=1000)
    df["mac_reduction"] = df["macs_dense"] / df["macs"]
    df["size_mb_dense"], df["size_mb"] = 9.0, 9.0 / df["mac_reduction"]
    df["speedup_basis"] = np.where(ticket, "paired", "reference")
    df.loc[ticket, "speedup_lo"], df.loc[ticket, "speedup_hi"] = df["speedup"] * 0.9, df["speedup"] * 1.1
    df["realization"] = df["speedup"] / df["mac_reduction"]
    df["disturbed"], df["disturbance_note"] = False, None
    hit = (df["case_id"] == "c-eb50") & (df["batch_size"] == 1)
    df.loc[hit, "disturbed"] = True
    df.loc[hit, "disturbance_note"] = "other processes used 1.10 of 2 cores beside 2 thread(s)"
    df.to_csv(d / "results.csv", index=False)
    return d


@pytest.mark.e2e
def test_report_opens_with_the_summary_and_a_banner_naming_the_disturbed_rows(tmp_path):
    html = write_report([_paired_run(tmp_path / "a")], tmp_path / "r.html").read_text()
    banner, summary, first_figure = (html.index(x) for x in ('class="banner"', 'id="summary"', 'id="fig-1"'))
    assert banner < summary < first_figure
    assert "1 of 10 row(s) were measured on a disturbed machine" in html
    assert "<li>c-eb50 b1: other processes used 1.10 of 2 cores beside 2 thread(s)</li>" in html
    assert "<h3>cpu (Fake cpu), ort-cpu, fp32, 2 thread(s)</h3>" in html
    assert html.count('<tr class="disturbed">') == 1
    clean = write_report([make_run_dir(tmp_path / "b")], tmp_path / "c.html").read_text()
    assert 'class="banner"' not in clean and 'id="summary"' in clean


def test_summary_rows_carry_the_speedup_range_reductions_and_accuracy_change(tmp_path):
    from ticketbench.reports.summary import summary_tables

    d = _paired_run(tmp_path / "a")
    df = pd.read_csv(d / "results.csv")
    ((title, table),) = summary_tables(df)
    assert list(table.columns) == ["case", "batch", "speedup", "speedup range", "size ×", "MAC reduction ×",
                                   "realization", "accuracy Δ vs dense", "energy mJ/inference", "threads",
                                   "disturbed"]  # fmt: skip
    eb = table[(table["case"] == "c-eb50") & (table["batch"] == 1)].iloc[0]
    row = df[(df["case_id"] == "c-eb50") & (df["batch_size"] == 1)].iloc[0]
    assert eb["speedup"] == row["speedup"] and eb["speedup range"] == f"{row.speedup_lo:.3g}–{row.speedup_hi:.3g}"
    assert eb["accuracy Δ vs dense"] == pytest.approx(95.5 - 97.0) and eb["disturbed"] == "yes"
    assert eb["size ×"] == pytest.approx(row["mac_reduction"]) and eb["realization"] == row["realization"]
    dense = table[table["case"] == "c-dense"].iloc[0]
    assert dense["speedup range"] == "dense reference" and dense["accuracy Δ vs dense"] == 0.0
    unpaired = df.assign(speedup_basis=np.where(df["method"] == "dense", "reference", "unpaired"))
    assert set(summary_tables(unpaired)[0][1].query("case != 'c-dense'")["speedup range"]) == {
        "unpaired (dense timed apart)"
    }


def test_the_cli_prints_the_same_summary_and_one_warning_line(tmp_path, capsys, caplog):
    from ticketbench.bench.commands.run import _print_summary

    df = pd.read_csv(_paired_run(tmp_path / "a") / "results.csv")
    rows = df.astype(object).where(df.notna(), None).to_dict("records")
    with caplog.at_level("WARNING", logger="ticketbench.bench"):
        _print_summary(rows)
    out = capsys.readouterr().out
    assert "cpu (Fake cpu), ort-cpu, fp32, 2 thread(s)" in out and "MAC reduction ×" in out and "realization" in out
    (warning,) = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warning.startswith("1 row(s) measured on a disturbed machine, less trustworthy: c-eb50 b1 (")


@pytest.mark.e2e
def test_the_speed_plot_puts_the_mac_reduction_beside_the_speedup(tmp_path, monkeypatch):
    from ticketbench.reports import plots

    df = pd.read_csv(_paired_run(tmp_path / "a") / "results.csv")
    drawn = []
    real_plot = plots.plt.Axes.plot
    monkeypatch.setattr(plots.plt.Axes, "plot", lambda ax, x, y, *a, **k: drawn.append((y.name, k.get("ls"))) or
                        real_plot(ax, x, y, *a, **k))  # fmt: skip
    assert plots.speed_vs_sparsity(df)
    assert ("mac_reduction", "--") in drawn and ("acceleration_rate", "--") not in drawn
