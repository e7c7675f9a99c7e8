"""Magnitude baselines: unstructured, L1-norm filter pruning, and 2:4 N:M sparsity."""

from __future__ import annotations

import pytest
import torch

from ticketbench.models.cost import analyze
from ticketbench.models.data import load_dataset
from ticketbench.models.masks import apply_masks
from ticketbench.models.tickets import TicketConfig, find_ticket
from ticketbench.models.tickets.magnitude import filter_masks, magnitude_masks, nm_masks


def test_nm_two_of_four_hand_computed():
    w = {"fc.weight": torch.tensor([[1.0, -5.0, 3.0, 2.0, 0.1, 0.2, -0.3, 0.4]])}
    masks, skipped = nm_masks(w, 2, 4)
    assert masks["fc.weight"].tolist() == [[0, 1, 1, 0, 0, 0, 1, 1]] and skipped == []
    with pytest.raises(ValueError, match="0 < n ≤ m"):
        nm_masks(w, 5, 4)


def test_nm_groups_conv_weights_along_input_channels():
    g = torch.Generator().manual_seed(0)
    w = {"conv.weight": torch.randn(6, 8, 3, 3, generator=g), "odd.weight": torch.randn(4, 3, 3, 3, generator=g)}
    masks, skipped = nm_masks(w, 2, 4)
    assert skipped == ["odd.weight"] and "odd.weight" not in masks
    m = masks["conv.weight"].permute(0, 2, 3, 1).reshape(-1, 4)  # groups of 4 input channels per (o, kh, kw)
    assert torch.all(m.sum(1) == 2)
    a = w["conv.weight"].abs().permute(0, 2, 3, 1).reshape(-1, 4)
    kept_min = torch.where(m.bool(), a, torch.inf).min(1).values
    dropped_max = torch.where(m.bool(), -torch.inf, a).max(1).values
    assert torch.all(kept_min >= dropped_max)  # the two kept are the two largest


def test_filter_pruning_zeroes_whole_smallest_l1_filters():
    w = torch.zeros(4, 2, 1, 1)
    w[:, 0, 0, 0] = torch.tensor([4.0, -1.0, 3.0, 0.5])
    w[:, 1, 0, 0] = torch.tensor([0.0, 0.2, -1.0, 1.0])  # L1 norms: 4, 1.2, 4, 1.5
    masks = filter_masks({"c.weight": w, "fc.weight": torch.ones(3, 4)}, 0.5)
    assert "fc.weight" not in masks
    assert masks["c.weight"][:, :, 0, 0].tolist() == [[1, 1], [0, 0], [1, 1], [0, 0]]
    single = filter_masks({"c.weight": torch.ones(1, 2, 3, 3)}, 0.9)
    assert single["c.weight"].all()  # never the last filter


def test_unstructured_counts_are_exact():
    w = {"a": torch.arange(10.0).view(2, 5), "b": -torch.arange(6.0)}
    m = magnitude_masks(w, 0.25)
    assert int(sum((x == 0).sum() for x in m.values())) == 4
    with pytest.raises(ValueError, match="scope"):
        magnitude_masks(w, 0.5, "rows")


def test_global_and_layer_scopes_remove_the_smallest_magnitudes():
    w = {"a": torch.tensor([[0.1, -4.0], [3.0, 0.2]]), "b": torch.tensor([-0.3, 5.0, 6.0, -7.0])}
    # global, 3 of 8 removed: |0.1|, |0.2|, |−0.3|, wherever they sit
    g = magnitude_masks(w, 3 / 8, "global")
    assert g["a"].tolist() == [[0, 1], [1, 0]] and g["b"].tolist() == [0, 1, 1, 1]
    # layer-wise, half of each layer: a loses |0.1| and |0.2|, b loses |−0.3| and |5|
    la = magnitude_masks(w, 0.5, "layer")
    assert la["a"].tolist() == [[0, 1], [1, 0]] and la["b"].tolist() == [0, 0, 1, 1]


def test_apply_masks_follows_the_parameter_dtype_and_names_a_bad_key():
    lin = torch.nn.Linear(2, 2).double()
    with torch.no_grad():
        lin.weight.fill_(3.0)
    apply_masks(lin, {"weight": torch.tensor([[True, False], [False, True]])})  # bool mask, float64 weight
    assert lin.weight.dtype == torch.float64 and lin.weight.tolist() == [[3.0, 0.0], [0.0, 3.0]]
    with pytest.raises(KeyError, match="classifier.weight. names no parameter"):
        apply_masks(lin, {"classifier.weight": torch.ones(2, 2)})


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def _ticket(digits, scope, sparsity=0.5):
    opts = {"scope": scope, "model_kwargs": {"width": 4}}
    return find_ticket(
        TicketConfig("small_cnn", "digits", "magnitude", sparsity, 1, 1, 0.05, 128, options=opts), digits
    )


def test_filter_ticket_keeps_whole_filters_dead_after_finetuning(digits):
    t = _ticket(digits, "filter")
    cost = analyze(t.model, (1, 8, 8))
    convs = [lc for lc in cost.layers if lc.kind == "conv"]
    assert all(lc.zero_filters == lc.filters // 2 for lc in convs)
    assert all(not k.startswith("classifier") for k in t.masks)


def test_nm_ticket_keeps_the_pattern_after_finetuning(digits):
    t = _ticket(digits, "nm")
    assert t.provenance["pattern"] == "2:4" and t.provenance["dense_layers"] == ["features.0.weight"]
    params = dict(t.model.named_parameters())
    for name in t.masks:
        w = params[name].detach()
        groups = (w.permute(0, 2, 3, 1) if w.dim() == 4 else w).reshape(-1, 4)
        assert torch.all((groups != 0).sum(1) <= 2), name
