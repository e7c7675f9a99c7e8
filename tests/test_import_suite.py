"""A suite case may name a saved ticket directory (`ticket = "path"`): measured as saved, beside found tickets."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch
from torch import nn
from torch.nn.utils import prune

from ticketbench.bench.cli import main
from ticketbench.bench.suite import SuiteError, load_suite
from ticketbench.models.zoo import create_model

SUITE = """
name = "imported"
[measure]
batch_sizes = [1]
min_iterations = 5
min_seconds = 0.05
warmup_iterations = 1

[[cases]]
model = "small_cnn"
dataset = "synthetic"
method = "dense"
epochs = 0
finetune_epochs = 0
data_options = { input_shape = [1, 8, 8], num_classes = 10 }

[[cases]]
ticket = "tickets/pruned"
"""


@pytest.fixture(scope="module")
def imported(tmp_path_factory) -> Path:
    """A suite folder holding a ticket imported from a torch.nn.utils.prune checkpoint."""
    root = tmp_path_factory.mktemp("suite")
    torch.manual_seed(0)
    src = create_model("small_cnn", num_classes=10, in_channels=1)
    for m in src.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            prune.l1_unstructured(m, "weight", amount=0.8)
    torch.save(src.state_dict(), root / "pruned.pt")
    assert (
        main(
            [
                "import",
                "--model",
                "small_cnn",
                "--checkpoint",
                str(root / "pruned.pt"),
                "--out",
                str(root / "tickets" / "pruned"),
            ]
        )
        == 0
    )
    (root / "suite.toml").write_text(SUITE)
    return root


@pytest.mark.e2e
def test_ticket_case_is_measured_as_saved_beside_a_dense_reference(imported, tmp_path):
    assert (
        main(["run", "--suite", str(imported / "suite.toml"), "--device", "cpu", "--out", str(tmp_path / "run"), "-q"])
        == 0
    )
    df = pd.read_csv(tmp_path / "run" / "results.csv")
    assert (df["status"] == "ok").all()
    row = df[df["method"] == "import-torch-prune"].iloc[0]
    assert row["model"] == "small_cnn" and row["dataset"] == "synthetic"
    assert row["weight_sparsity"] == pytest.approx(0.8, abs=0.01)
    assert row["speedup"] > 0 and row["onnx_max_abs_error"] < 1e-3  # the dense case of the same model is its reference
    assert (tmp_path / "run" / "tickets" / row["case_id"] / "model.onnx").is_file()


def test_ticket_case_paths_are_relative_to_the_suite_file(imported):
    suite = load_suite(str(imported / "suite.toml"))
    assert suite.cases[1].ticket_dir == (imported / "tickets" / "pruned").resolve()
    assert suite.cases[1].ticket.data_options == {"input_shape": [1, 8, 8], "num_classes": 10}


@pytest.mark.parametrize(
    "case, needle",
    [
        ('ticket = "tickets/nope"', "no ticket.pt in"),
        ('ticket = "tickets/pruned"\nsparsity = 0.5', "a ticket case takes ['ticket', 'dataset', 'data_options']"),
    ],
)
def test_bad_ticket_case_is_a_suite_error(imported, case, needle):
    path = imported / "bad.toml"
    path.write_text(f"[[cases]]\n{case}\n")
    with pytest.raises(SuiteError, match=needle.replace("[", r"\[").replace("]", r"\]")):
        load_suite(str(path))
