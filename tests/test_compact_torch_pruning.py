"""Same channel mask, two tools: our compaction must match Torch-Pruning's parameter count and layer shapes.

Torch-Pruning (VainF/Torch-Pruning) is a test/benchmark-only dependency; the test is skipped without it.
Its latency comparison lives in benchmarks/bench_compaction.py (no wall-clock assertions in tests).
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from ticketbench.models.compact import compact, kill_channels
from ticketbench.models.zoo import create_model

tp = pytest.importorskip("torch_pruning")


def half_of(conv: nn.Conv2d, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randperm(conv.out_channels, generator=g)[: conv.out_channels // 2].sort().values


def torch_pruning_compact(model: nn.Module, channels: dict[str, torch.Tensor], shape) -> nn.Module:
    model = copy.deepcopy(model).eval()
    dg = tp.DependencyGraph().build_dependency(model, example_inputs=torch.zeros(1, *shape), verbose=False)
    for name, idx in channels.items():
        group = dg.get_pruning_group(model.get_submodule(name), tp.prune_conv_out_channels, idxs=idx.tolist())
        assert dg.check_pruning_group(group)
        group.prune()
    return model


def conv_shapes(model: nn.Module) -> list[tuple[int, int]]:
    return [(m.in_channels, m.out_channels) for m in model.modules() if isinstance(m, nn.Conv2d)]


@pytest.mark.parametrize(
    "name,select",
    [
        ("vgg16", lambda n, m: True),  # every conv, EB-style 50 %
        ("resnet18_cifar", lambda n, m: n.endswith("conv1") and n != "conv1"),  # block-internal channels
        ("mobilenetv1", lambda n, m: m.groups == 1 and m.kernel_size == (1, 1)),  # pointwise + their depthwise
    ],
)
def test_same_channel_mask_gives_torch_pruning_parameter_count(name, select):
    torch.manual_seed(0)
    model = create_model(name, num_classes=10, width=0.25).eval()
    shape = (3, 32, 32)
    convs = {n: m for n, m in model.named_modules() if isinstance(m, nn.Conv2d) and select(n, m)}
    channels = {n: half_of(m, i) for i, (n, m) in enumerate(convs.items())}
    theirs = torch_pruning_compact(model, channels, shape)
    ticket = kill_channels(copy.deepcopy(model), channels, torch.zeros(1, *shape))
    ours, report = compact(ticket, torch.zeros(1, *shape))
    assert report.channels_removed == sum(len(i) for i in channels.values())
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in theirs.parameters())
    assert conv_shapes(ours) == conv_shapes(theirs)
    x = torch.randn(2, *shape)
    with torch.no_grad():
        assert torch.allclose(ours(x), ticket(x), atol=1e-5)
