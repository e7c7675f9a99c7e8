"""Analytic cost from the weights: hand-computed AR and sparsities, MACs cross-checked with torch's counter."""

from __future__ import annotations

import pytest
import torch
from test_compact import ARCHS, INPUT, randomize
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from ticketbench.models.compact import compact
from ticketbench.models.cost import acceleration_rate, analyze


def _two_layer() -> nn.Sequential:
    """conv(2→3, 3x3) on 5x5 → D=3, then conv(3→2, 1x1) → D=3; hand-placed zeros."""
    c1, c2 = nn.Conv2d(2, 3, 3), nn.Conv2d(3, 2, 1)
    with torch.no_grad():
        c1.weight.fill_(1.0)
        c1.weight[0, 1] = 0  # kernel (out 0, in 1) all zero
        c1.weight[2, 0] = 0  # kernel (out 2, in 0) all zero
        c1.weight[1, 1, 0, 0] = 0  # one zero weight inside a kernel: the kernel still counts
        c2.weight.fill_(1.0)
        c2.weight[1, 2] = 0
    return nn.Sequential(c1, nn.ReLU(), c2).eval()


def test_hand_computed_acceleration_rate_of_one_layer():
    cost = analyze(_two_layer(), (2, 5, 5))
    c1 = cost.layers[0]
    assert (c1.kernels, c1.zero_kernels, c1.out_hw, c1.kernel) == (6, 2, (3, 3), (3, 3))
    # AR = N·M·D²·k² / (P·D²·k²) = 6·9·9 / (4·9·9) = 1.5
    assert acceleration_rate([c1]) == pytest.approx(1.5)
    assert c1.macs == 6 * 9 * 9 and c1.macs_nonzero_kernels == 4 * 9 * 9
    assert c1.zero_weights == 2 * 9 + 1 and c1.weight_sparsity == pytest.approx(19 / 54)
    assert c1.kernel_sparsity == pytest.approx(2 / 6) and c1.zero_filters == 0


def test_hand_computed_acceleration_rate_over_layers():
    cost = analyze(_two_layer(), (2, 5, 5))
    # (6·9·9 + 6·9·1) / (4·9·9 + 5·9·1) = 540 / 369
    assert cost.acceleration_rate == pytest.approx(540 / 369)
    assert cost.kernel_sparsity == pytest.approx(3 / 12)
    assert cost.macs == 6 * 9 * 9 + 6 * 9 and cost.macs_nonzero_kernels == 4 * 81 + 5 * 9
    assert cost.params == 6 * 9 + 3 + 6 + 2 and cost.size_mb_fp32 == pytest.approx(4 * 65 / 1e6)


def test_analyze_runs_a_float64_model_with_the_same_counts():
    cost = analyze(_two_layer().double(), (2, 5, 5))  # the probe input follows the model's dtype (and device)
    assert cost.acceleration_rate == pytest.approx(540 / 369) and cost.layers[0].out_hw == (3, 3)


def test_channel_sparsity_and_linear_layers():
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.Flatten(), nn.Linear(4 * 16, 3)).eval()
    with torch.no_grad():
        model[0].weight[1:3] = 0
        model[2].weight[0] = 0
    cost = analyze(model, (1, 4, 4))
    conv, lin = cost.layers
    assert conv.zero_filters == 2 and cost.channel_sparsity == pytest.approx(0.5)
    assert lin.kind == "linear" and lin.macs == 64 * 3 and lin.macs_nonzero == 64 * 2 and lin.zero_filters == 1
    assert cost.acceleration_rate == pytest.approx(4 / 2)  # linear layers are not part of AR


def test_dense_model_has_unit_acceleration_rate():
    cost = analyze(ARCHS["resnet"](), INPUT)
    assert cost.acceleration_rate == 1.0 and cost.kernel_sparsity == 0.0 and cost.macs == cost.macs_nonzero_kernels


def _flops(model: nn.Module, shape) -> int:
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model.eval()(torch.zeros(1, *shape))
    return counter.get_total_flops()


@pytest.mark.parametrize("arch", sorted(ARCHS))
def test_macs_of_compacted_models_match_torch_flop_counter(arch):
    model = randomize(ARCHS[arch](), 0)
    compacted, _ = compact(model, torch.zeros(1, *INPUT))
    for m in (model, compacted):
        assert 2 * analyze(m, INPUT).macs == _flops(m, INPUT)  # FlopCounterMode counts 2 FLOPs per MAC


def test_macs_of_a_decomposed_model_match_torch_flop_counter():
    from test_compact_decompose import block_mask

    model = ARCHS["vgg"]().eval()
    block_mask(model.features[4], torch.arange(16) % 4, torch.arange(8) % 4)
    compacted, report = compact(model, torch.zeros(1, *INPUT))
    assert report.decomposed
    cost = analyze(compacted, INPUT)
    assert 2 * cost.macs == _flops(compacted, INPUT) < _flops(model, INPUT)
