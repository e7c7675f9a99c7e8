"""Kernel-level removal: block-structured kernel connectivity becomes grouped or split convs, exactly."""

from __future__ import annotations

import pytest
import torch
from test_compact import INPUT, TinyResNet, TinyVGG, check_exact, randomize
from torch import nn

from ticketbench.models.compact import CompactionConfig
from ticketbench.models.cost import analyze
from ticketbench.models.decompose import DecomposeConfig, GroupedConv2d, SplitConv2d, components, pack


@torch.no_grad()
def block_mask(conv: nn.Conv2d, classes_out: torch.Tensor, classes_in: torch.Tensor) -> None:
    """Keep kernel (o, c) only when output o and input c are in the same class."""
    conv.weight.mul_((classes_out[:, None] == classes_in[None, :]).float()[:, :, None, None])


def test_components_of_a_hand_made_connectivity():
    nz = torch.tensor(
        [
            [1, 0, 0, 1],  # out 0 reads in 0, 3
            [0, 1, 0, 0],  # out 1 reads in 1
            [0, 0, 0, 1],  # out 2 reads in 3
            [0, 0, 0, 0],  # out 3 reads nothing (zero filter): in no component
        ],
        dtype=torch.bool,
    )
    comps = components(nz)  # in 2 is unread: in no component
    assert [(o.tolist(), i.tolist()) for o, i in comps] == [([0, 2], [0, 3]), ([1], [1])]
    items = comps + [
        (torch.tensor([3]), torch.empty(0, dtype=torch.long)),
        (torch.empty(0, dtype=torch.long), torch.tensor([2])),
    ]
    bins = pack(items, 2, 4, 4)  # two groups of 2 outputs × 2 inputs
    assert bins is not None and sorted(len(o) for o, _ in bins) == [2, 2] and sorted(len(i) for _, i in bins) == [2, 2]
    assert pack(items, 4, 4, 4) is None  # the 2x2 block cannot fit a 1x1 group


def test_permuted_block_diagonal_conv_becomes_grouped_and_pays():
    g = torch.Generator().manual_seed(0)
    model = TinyVGG(w=8).eval()
    conv = model.features[4]  # 8 → 16 channels, 3x3 on 8x8
    block_mask(conv, torch.randperm(16, generator=g) % 4, torch.randperm(8, generator=g) % 4)
    compacted, report = check_exact(model, CompactionConfig())
    (d,) = [d for d in report.decomposed if d["layer"] == "features.4"]
    assert d["kind"] == "grouped" and d["blocks"] == 4
    assert d["macs_after"] * 4 == d["macs_dense"] == 16 * 8 * 9 * 8 * 8
    assert not d["input_gather"] and not d["output_gather"]  # permutations pushed into the neighbours
    new = compacted.get_submodule("features.4")
    assert isinstance(new, GroupedConv2d) and new.conv.groups == 4
    assert analyze(compacted, INPUT).macs == analyze(model, INPUT).macs - 3 * d["macs_after"]


def test_unequal_blocks_become_a_split_conv():
    model = TinyVGG(w=32).eval()
    conv = model.features[4]  # 32 → 64 channels, 3x3 on 8x8
    block_mask(conv, torch.tensor([0] * 48 + [1] * 16), torch.tensor([0] * 24 + [1] * 8))
    compacted, report = check_exact(model, CompactionConfig(decomposition=DecomposeConfig(min_gain=1.2)))
    (d,) = [d for d in report.decomposed if d["layer"] == "features.4"]
    assert d["kind"] == "split" and d["blocks"] == 2 and d["macs_after"] == (48 * 24 + 16 * 8) * 9 * 64
    assert isinstance(compacted.get_submodule("features.4"), SplitConv2d)


def test_random_sparsity_is_not_decomposed():
    model = randomize(TinyVGG(w=8), 0, density=0.3)
    _, report = check_exact(model, CompactionConfig())
    assert report.decomposed == []


def test_cost_model_guards_the_rewrite():
    model = TinyVGG(w=8).eval()
    block_mask(model.features[4], torch.arange(16) % 2, torch.arange(8) % 2)  # gain at most 2
    _, report = check_exact(model, CompactionConfig(decomposition=DecomposeConfig(min_gain=2.5)))
    assert report.decomposed == []
    _, report = check_exact(model, CompactionConfig(decomposition=DecomposeConfig(min_gain=1.5)))
    assert [d["layer"] for d in report.decomposed] == ["features.4"]


@pytest.mark.parametrize("seed", [0, 1])
def test_residual_network_with_group_structure_decomposes_without_gathers(seed, tmp_path):
    from ticketbench.models.export import export_onnx

    model = randomize(TinyResNet(w=8), seed, density=1.0, filters=0, columns=0, zero_gamma=0)
    for m in model.modules():  # every stream/inner channel c belongs to class c % 4, consistently
        if isinstance(m, nn.Conv2d) and m.in_channels > 3:
            block_mask(m, torch.arange(m.out_channels) % 4, torch.arange(m.in_channels) % 4)
    compacted, report = check_exact(model, CompactionConfig())
    assert len(report.decomposed) >= 6
    assert all(not d["input_gather"] and not d["output_gather"] for d in report.decomposed)
    result = export_onnx(compacted, model, INPUT, tmp_path / "m.onnx", tolerance=1e-4)
    assert result.max_abs_error <= 1e-4 * max(1.0, result.reference_max_abs)
