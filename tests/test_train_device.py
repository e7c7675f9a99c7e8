"""--train-device: models built and trained where asked, each epoch's energy from the training device's
power source, EB search + retrain against the measured dense baseline; CPU here, CUDA only in name."""

from __future__ import annotations

import json

import pytest
import torch

from ticketbench.bench.cli import main
from ticketbench.bench.runner import backend_note
from ticketbench.models.data import load_dataset
from ticketbench.models.tickets import TicketConfig, TicketContext, find_ticket
from ticketbench.models.train import resolve_train_device

WATTS = 10.0  # the fake power source: a constant 10 W, so each epoch's energy is 10 W × its duration


@pytest.fixture(scope="module")
def tiny_data():
    return load_dataset("synthetic", n_train=64, n_test=32)


def eb_cfg() -> TicketConfig:
    o = {"model_kwargs": {"width": 0.125}, "epsilon": 1.0}
    return TicketConfig("vgg11", "synthetic", "eb", 0.5, epochs=6, finetune_epochs=1, batch_size=32, options=o)


def test_auto_is_cuda_only_where_torch_sees_it_and_bad_names_are_refused():
    assert resolve_train_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_train_device("cpu") == "cpu"
    with pytest.raises(ValueError, match="expected auto, cpu, cuda"):
        resolve_train_device("gpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="torch sees no CUDA device"):
            resolve_train_device("cuda")


def test_every_epoch_gets_its_measured_energy_and_eb_is_compared_with_the_measured_dense_baseline(tiny_data):
    ctx = TicketContext(device="cpu", energy=lambda t0, t1: WATTS * (t1 - t0), power_source="fake")
    t = find_ticket(eb_cfg(), tiny_data, ctx)
    for entry in t.train_log:
        assert entry["energy_j"] == pytest.approx(WATTS * (entry["t_end"] - entry["t_start"]))
        assert entry["device"] == "cpu"
    e = t.artifacts["training_energy_j"]
    search = [r["energy_j"] for r in t.train_log if r["phase"] == "search"]
    assert e["power_source"] == "fake" and e["search"] == pytest.approx(sum(search))
    assert e["eb_train"] == pytest.approx(e["search"] + e["retrain"])
    assert e["dense_train"] > 0 and e["dense_epochs"] == 6
    assert e["energy_saving"] == pytest.approx(1 - e["eb_train"] / e["dense_train"])
    total = t.artifacts["training_energy"]
    assert total["total_j"] == pytest.approx(sum(r["energy_j"] for r in t.train_log)) and total["train_device"] == "cpu"
    assert t.provenance["train_device"] == "cpu"
    assert all(p.device.type == "cpu" for p in t.model.parameters())


def test_an_epoch_the_trace_missed_empties_its_phase_instead_of_a_partial_sum(tiny_data):
    calls = []

    def energy(t0: float, t1: float) -> float | None:
        calls.append(t0)
        return None if len(calls) == 2 else WATTS * (t1 - t0)  # call 2: the dense baseline's second epoch

    t = find_ticket(eb_cfg(), tiny_data, TicketContext(energy=energy, power_source="fake"))
    e = t.artifacts["training_energy_j"]
    assert e["dense_train"] is None and e["energy_saving"] is None and e["eb_train"] > 0


def test_without_a_power_source_energy_is_empty_with_the_reason(tiny_data):
    t = find_ticket(eb_cfg(), tiny_data)
    assert t.artifacts["training_energy_j"] == {
        "power_source": "none",
        "note": "no power sampler on the training device: energy not measured",
    }
    assert t.artifacts["training_energy"]["power_source"] == "none" and "energy_j" not in t.train_log[0]


def test_ticket_cli_train_device(capsys, tmp_path):
    if not torch.cuda.is_available():
        assert (
            main(["ticket", "--model", "small_cnn", "--method", "dense", "--sparsity", "0", "--train-device", "cuda"])
            == 2
        )
        assert "torch sees no CUDA device" in capsys.readouterr().err
    argv = ["ticket", "--model", "small_cnn", "--method", "dense", "--sparsity", "0", "--dataset", "digits"]
    assert main([*argv, "--epochs", "1", "--train-device", "cpu", "--out", str(tmp_path / "t")]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["train_device"] == "cpu"
    artifacts = json.loads((tmp_path / "t" / "artifacts.json").read_text())
    if out["power_source"] == "none":  # no readable RAPL here: empty, with the reason
        assert out["training_energy_j"] is None and artifacts["training_energy"]["note"].startswith("no power source")
    else:  # pragma: no cover - readable RAPL
        assert out["training_energy_j"] > 0


def test_backend_note_lists_the_skipped_backends_and_why():
    ident = {
        "backend": "torch-cuda",
        "backends": {"tensorrt": "not installed", "torch-cuda": "", "onnxruntime-cuda": "x"},
    }
    assert backend_note(ident) == "skipped tensorrt: not installed; onnxruntime-cuda: x"
    assert backend_note({"backend": "onnxruntime-cpu"}) is None
