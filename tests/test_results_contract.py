"""results.csv columns must match ../shared/DESIGN.md exactly (order and names)."""

import re
from pathlib import Path

import pytest

from ticketbench.results import COLUMNS, CONTRACT_COLUMNS, empty_row

DESIGN = Path(__file__).resolve().parents[2] / "shared" / "DESIGN.md"

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


@pytest.mark.skipif(not DESIGN.exists(), reason="shared DESIGN.md not beside the checkout")
def test_contract_matches_design_doc():
    text = DESIGN.read_text()
    block = text.split("## results.csv columns")[1].split("```")[0]
    names = re.findall(r"`([^`]+)`", block)[0]
    assert [c.strip() for c in names.replace("\n", " ").split(",")] == CONTRACT_COLUMNS


def test_empty_row_has_every_column_and_rejects_unknown():
    row = empty_row(model="m", status="ok")
    assert list(row) == COLUMNS
    assert row["model"] == "m" and row["latency_ms_p50"] is None
    with pytest.raises(KeyError):
        empty_row(not_a_column=1)
