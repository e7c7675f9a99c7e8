"""Every zoo architecture, several random masks: compaction + ONNX export is exact, and no dead filter is left.

Masks: unstructured with trained-looking BN statistics, Early-Bird-style channel pruning (γ = β = 0 on a
random half of each BN's channels), and masks that empty whole layers. A filter is *dead* in the exported
graph when its ONNX Conv weight (BatchNorm folded in by the exporter) is all zero. A dead filter may stay only
when the compaction report lists it with the reason (another writer of the same residual channel keeps the
channel alive, last channel of a layer, pinned group).
"""

from __future__ import annotations

import inspect

import onnx
import pytest
import torch
from test_compact import randomize
from torch import nn

from ticketbench.models import channel_graph as cg
from ticketbench.models.compact import CompactionConfig, compact
from ticketbench.models.decompose import DecomposeConfig, block_structured
from ticketbench.models.export import export_onnx, zero_filters
from ticketbench.models.zoo import MODELS, create_model, input_size, model_names

WIDTH = {"resnet50": 0.0625, "preresnet101": 0.25}  # float width multipliers; default 0.125


def build(name: str) -> tuple[nn.Module, tuple[int, int, int]]:
    params = inspect.signature(MODELS.get(name)).parameters
    kw = {}
    if "width" in params:
        kw["width"] = 4 if isinstance(params["width"].default, int) else WIDTH.get(name, 0.125)
    size = min(input_size(name) or 32, 64)
    return create_model(name, num_classes=10, in_channels=3, **kw), (3, size, size)


@torch.no_grad()
def channel_prune(model: nn.Module, seed: int, fraction: float = 0.5) -> nn.Module:
    """EB-style ticket: a random `fraction` of every BN2d's channels gets γ = β = 0 (their output is exactly 0).

    Networks without BN lose the filter and bias of a random `fraction` of every conv's channels instead.
    """
    g = torch.Generator().manual_seed(seed)
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    for m in bns or [m for m in model.modules() if isinstance(m, nn.Conv2d)]:
        c = m.weight.shape[0]
        dead = torch.rand(c, generator=g) < fraction
        m.weight[dead] = 0
        if m.bias is not None:
            m.bias[dead] = 0
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(c, generator=g) * 0.1)
    return model.eval()


@torch.no_grad()
def dead_writer_channels(compacted: nn.Module, shape) -> tuple[int, int]:
    """(all-zero conv filters after BN folding, channels whose every conv writer is all zero) in PyTorch."""
    gm = cg.trace(compacted, torch.zeros(1, *shape))
    graph = cg.build(gm)
    total = unexplained = 0
    for g in graph.groups:
        writers = [n for n in g.sources if isinstance(graph.module(n), nn.Conv2d)]
        if not writers:
            continue
        dead_all = torch.ones(g.size, dtype=torch.bool)
        for n in writers:
            dead = graph.module(n).weight.flatten(1).eq(0).all(1)
            users = list(n.users)
            if len(users) == 1 and users[0].op == "call_module":
                bn = graph.module(users[0])
                if isinstance(bn, nn.BatchNorm2d) and bn.affine:
                    dead |= bn.weight.eq(0)
            total += int(dead.sum())
            dead_all &= dead
        if len(writers) == len(g.sources):
            unexplained += int(dead_all.sum())
    return total, unexplained


CASES = [("unstructured", 0, 0), ("channels", 1, 0), ("empty", 2, 2)]
# The default tier compacts one model of each family (and resnet18 beside resnet18_cifar: its own stem); the
# deeper variants (conv6/8, vgg13-19, preresnet56/101 and resnet50, seconds per case) are in the e2e tier.
FAST = {"small_cnn", "conv4", "vgg11", "resnet18", "resnet18_cifar", "preresnet20", "mobilenetv1"}
ZOO = [n if n in FAST else pytest.param(n, marks=pytest.mark.e2e) for n in model_names()]


@pytest.mark.parametrize("kind,seed,empty", CASES)
@pytest.mark.parametrize("name", ZOO)
def test_zoo_compacted_onnx_is_exact_and_has_no_dead_filter(name, kind, seed, empty, tmp_path):
    torch.manual_seed(seed)
    model, shape = build(name)
    if kind == "channels":
        model = channel_prune(model, seed)
    else:
        model = randomize(model, seed, empty=empty)
    compacted, report = compact(model, torch.zeros(1, *shape), CompactionConfig(decompose=False))
    result = export_onnx(compacted, model, shape, tmp_path / "m.onnx", tolerance=1e-4)  # raises above tolerance
    assert result.max_abs_error <= 1e-4 * max(1.0, result.reference_max_abs)
    n_before = sum(p.numel() for p in model.parameters())
    assert sum(p.numel() for p in compacted.parameters()) < n_before
    in_onnx = sum(zero_filters(onnx.load(str(result.path))).values())
    in_torch, _ = dead_writer_channels(compacted, shape)
    assert in_onnx == in_torch  # the exporter folded every BN into its conv: the two counts agree
    listed = [lc for lc in report.layers if lc.kind != "linear" and lc.zero_filters]
    assert in_onnx <= sum(lc.zero_filters for lc in listed)  # every all-zero filter left is listed…
    assert all(lc.note for lc in listed)  # …with its reason
    assert report.kept_nonexact == 0  # the input size is known: position-dependent constants fold into bias maps
    again, report2 = compact(compacted, torch.zeros(1, *shape), CompactionConfig(decompose=False))
    assert report2.channels_removed == 0  # compaction is a fixpoint: nothing removable is left


@pytest.mark.parametrize("name", ZOO)
def test_zoo_block_structured_ticket_decomposes_exactly(name, tmp_path):
    torch.manual_seed(0)
    model, shape = build(name)
    model = randomize(model, 0, density=1.0, filters=0, columns=0, zero_gamma=0)
    model = block_structured(model, torch.zeros(1, *shape), 2)
    free = DecomposeConfig(min_gain=1.0, move_cost_macs=0, node_cost_macs=0)  # rewrite whatever saves MACs
    compacted, report = compact(model, torch.zeros(1, *shape), CompactionConfig(decomposition=free))
    assert report.decomposed  # every zoo model has a conv between two free channel groups
    result = export_onnx(compacted, model, shape, tmp_path / "m.onnx", tolerance=1e-4)
    assert result.max_abs_error <= 1e-4 * max(1.0, result.reference_max_abs)


@pytest.mark.parametrize("name", ZOO)
def test_zoo_aligned_compaction_is_exact_and_aligned(name, tmp_path):
    """align=8 keeps a few dead channels so every group's width is a multiple of 8 (or unchanged): still exact,
    and kept channels never read an input channel that was removed (the export would then differ)."""
    torch.manual_seed(3)
    model, shape = build(name)
    model = channel_prune(model, 3, fraction=0.45)
    compacted, report = compact(model, torch.zeros(1, *shape), CompactionConfig(align=8, decompose=False))
    result = export_onnx(compacted, model, shape, tmp_path / "m.onnx", tolerance=1e-4)
    assert result.max_abs_error <= 1e-4 * max(1.0, result.reference_max_abs)
    for g in report.groups:
        assert g.channels_after % 8 == 0 or g.channels_after == g.channels_before, g
    _, plain = compact(model, torch.zeros(1, *shape), CompactionConfig(decompose=False))
    assert report.channels_removed <= plain.channels_removed
    assert sum(g.kept_aligned for g in report.groups) == sum(g.channels_after for g in report.groups) - sum(
        g.channels_after for g in plain.groups
    )
