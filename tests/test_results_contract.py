"""results.csv columns must match the contract (the list kept in docs/results.md with units) exactly."""

import re
from pathlib import Path

import pytest

from ticketbench.results import COLUMNS, CONTRACT_COLUMNS, EXTRA_COLUMNS, empty_row

DOCS = Path(__file__).resolve().parents[1] / "docs" / "results.md"

DESIGN_COLUMNS = """run_id, case_id, model, dataset, method, target_sparsity, weight_sparsity, channel_sparsity,
kernel_sparsity, params_dense, params, size_mb_dense, size_mb, macs_dense, macs, acceleration_rate,
device, device_name, backend, precision, batch_size, latency_ms_p50, latency_ms_p90, latency_ms_p99,
latency_ms_mean, latency_ms_std, throughput_ips, speedup, realization, power_w_mean, energy_mj_per_inference,
energy_j_per_eval_epoch, train_s_per_epoch, energy_j_per_train_epoch, power_source, accuracy_top1,
eb_epoch, status, error"""


def test_contract_columns_in_order():
    expected = [c.strip() for c in DESIGN_COLUMNS.replace("\n", " ").split(",")]
    assert CONTRACT_COLUMNS == expected
    assert COLUMNS[: len(expected)] == expected
    assert len(set(COLUMNS)) == len(COLUMNS)


def documented_columns(section: str) -> list[str]:
    """Column names, in order, from one table of docs/results.md (the repository's own contract)."""
    text = DOCS.read_text().split(f"## {section}")[1].split("\n## ")[0]
    return re.findall(r"^\| `([a-z0-9_]+)` \|", text, flags=re.M)


def test_docs_results_md_documents_every_column_in_order():
    assert documented_columns("Contract columns") == CONTRACT_COLUMNS
    assert documented_columns("Added columns") == EXTRA_COLUMNS


def test_every_documented_column_has_a_meaning():
    rows = [r for r in DOCS.read_text().splitlines() if r.startswith("| `")]
    assert rows and all(r.rstrip("| ").split("|")[-1].strip() for r in rows)


def test_empty_row_has_every_column_and_rejects_unknown():
    row = empty_row(model="m", status="ok")
    assert list(row) == COLUMNS
    assert row["model"] == "m" and row["latency_ms_p50"] is None
    with pytest.raises(KeyError):
        empty_row(not_a_column=1)
