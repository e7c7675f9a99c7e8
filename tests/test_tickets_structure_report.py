"""The realized-vs-analytic plot draws one series per `structure` (read from the results' structure column)."""

from __future__ import annotations

import pandas as pd

from ticketbench.reports import plots
from ticketbench.results import empty_row


def _rows(with_structure: bool) -> pd.DataFrame:
    rows = [empty_row(method="dense", target_sparsity=0.0, speedup=1.0, acceleration_rate=1.0)]
    for structure, speed in (("unstructured", 1.0), ("kernel", 1.1), ("group", 3.5)):
        for s in (0.7, 0.9):
            rows.append(
                empty_row(method="mpt", structure=structure, target_sparsity=s, speedup=speed, acceleration_rate=4.0)
            )
    df = pd.DataFrame(rows)
    for c, v in (("model", "resnet18_cifar"), ("dataset", "synthetic"), ("device", "cpu"), ("batch_size", 1)):
        df[c] = v
    df["status"], df["latency_ms_p50"], df["accuracy_top1"] = "ok", 1.0 / df["speedup"], 50.0
    return df if with_structure else df.drop(columns=["structure"])


def test_one_speedup_series_per_structure_each_starting_at_dense():
    series = dict(plots._series(_rows(True), "speedup"))
    assert set(series) == {"mpt unstructured", "mpt kernel", "mpt group"}
    for label, g in series.items():
        assert g["target_sparsity"].tolist() == [0.0, 0.7, 0.9], label  # the dense row starts every curve
    assert series["mpt group"]["speedup"].tolist() == [1.0, 3.5, 3.5]
    assert plots.speed_vs_sparsity(_rows(True)).count("mpt group") >= 1


def test_results_without_the_structure_column_still_plot_one_series_per_method():
    assert [label for label, _ in plots._series(_rows(False), "speedup")] == ["mpt"]
    assert plots.accuracy_vs_sparsity(_rows(True)) is not None
