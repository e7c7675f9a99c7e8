"""Structured tickets: unit selection with a floor, kernel units, lottery-regulated grouped kernels, and export."""

from __future__ import annotations

import json
from collections import Counter

import onnx
import pytest
import torch

from ticketbench.bench.cli import main
from ticketbench.models.compact import CompactionConfig, compact
from ticketbench.models.cost import analyze
from ticketbench.models.data import load_dataset
from ticketbench.models.tickets import TicketConfig, TicketContext, find_ticket, load_ticket
from ticketbench.models.tickets.structure import (
    ConvLink,
    auto_groups,
    classes_per_group,
    coarse_labels,
    plan_groups,
    select_units,
    structured_masks,
    unit_space,
)


def test_floor_is_kept_first_then_the_best_units_overall():
    a, b = torch.tensor([5.0, 4.0, 3.0, 2.0]), torch.tensor([0.1, 0.2])
    ma, mb = select_units([a, b], [1, 1], keep=3)
    assert ma.tolist() == [True, True, True, False] and mb.tolist() == [False, False]  # b would die
    ma, mb = select_units([a, b], [1, 1], keep=3, floor=[0, 1])
    assert ma.tolist() == [True, True, False, False] and mb.tolist() == [False, True]


def test_kernel_units_are_ranked_by_mean_score_and_kept_whole():
    conv = torch.zeros(2, 1, 2, 2)
    conv[0, 0] = torch.tensor([[2.0, 1.0], [0.5, 0.5]])  # mean 1.0
    conv[1, 0] = torch.tensor([[0.1, 0.1], [0.4, 0.4]])  # mean 0.25
    lin = torch.tensor([[0.5, 0.6]])
    masks = structured_masks({"c": conv, "l": lin}, sparsity=5 / 10, structure="kernel")  # keep 5 of 10 weights
    # greedy by unit score: kernel 0 (4 weights, 1.0), then linear 0.6 (1 weight): 5 weights; 0.5 would overflow
    assert masks["c"][:, 0].flatten(1).tolist() == [[1.0] * 4, [0.0] * 4]
    assert masks["l"].tolist() == [[0.0, 1.0]]


def test_a_nan_score_ranks_last():
    space = unit_space({"a": torch.tensor([float("nan"), 0.1, 0.3, 0.2])})
    (m,) = space.select(0.5)
    assert m.tolist() == [False, False, True, True]


def test_disallowed_units_are_never_kept():
    s = torch.tensor([9.0, 1.0, 2.0])
    (m,) = select_units([s], [1], keep=2, allowed=[torch.tensor([False, True, True])])
    assert m.tolist() == [False, True, True]


@pytest.mark.parametrize("scope", ["global", "layer"])
def test_thresholds_reproduce_the_selection_with_floor_and_kernels(scope):
    g = torch.Generator().manual_seed(0)
    scores = {
        "a": torch.rand(6, 4, 3, 3, generator=g),
        "b": torch.rand(8, 6, 3, 3, generator=g) * 0.01,  # would die under global pruning without the floor
        "fc": torch.rand(3, 8, generator=g),
    }
    for structure in ("unstructured", "kernel"):
        space = unit_space(scores, structure, floor_fraction=0.05)
        sel = space.select(0.9, scope)
        again = space.compare(space.thresholds(sel, scope))
        for x, y in zip(sel, again, strict=True):
            assert torch.equal(x, y), structure
        assert all(bool(m.any()) for m in sel)


def test_auto_groups_respect_budget_and_alignment():
    assert auto_groups([64, 128], keep_fraction=0.1, align=8) == 8  # g ≤ 10
    assert auto_groups([64, 128], keep_fraction=0.05, align=8) == 8  # 16 would leave 4-wide groups of 64
    assert auto_groups([64, 128], keep_fraction=0.05, align=1) == 16
    assert auto_groups([64, 128], keep_fraction=0.3, align=8) == 2
    assert auto_groups([12], keep_fraction=0.1, align=8) == 1
    assert auto_groups([64, 512], keep_fraction=0.05, align=8, min_width=16) == 4  # 8-wide classes of 64: too narrow


def test_auto_groups_are_chosen_per_channel_group_and_uniform_for_the_whole_network():
    sizes = {0: 64, 1: 128, 2: 256, 3: 512, 4: 12}
    # 95 %: g ≤ 20, 16-wide classes at least: 64 → 4, 128 → 8, 256 → 16, 512 → 16; 12 channels cannot split
    assert classes_per_group(sizes, "auto", 0.05, align=8, min_width=16) == {0: 4, 1: 8, 2: 16, 3: 16, 4: 1}
    assert classes_per_group(sizes, "auto", 0.1, align=8, min_width=16) == {0: 4, 1: 8, 2: 8, 3: 8, 4: 1}
    # uniform: the one g every group allows (12 channels allow none, so none splits)
    assert classes_per_group(sizes, "uniform", 0.05, align=8, min_width=16) == dict.fromkeys(sizes, 1)
    del sizes[4]
    assert classes_per_group(sizes, "uniform", 0.05, align=8, min_width=16) == dict.fromkeys(sizes, 4)
    assert classes_per_group({0: 64, 1: 12}, 8, 0.05) == {0: 8, 1: 1}
    assert coarse_labels(torch.arange(8), 8, 2).tolist() == [0, 0, 0, 0, 1, 1, 1, 1]


def test_per_group_classes_nest_and_recover_a_hidden_nested_block_structure():
    # channel groups A (8 ch, 2 classes) → B (16 ch, 4 classes) → C (16 ch, 4 classes); conv A→B keeps 2 blocks
    # (B's classes merged pairwise), conv B→C 4 blocks. Importance hides exactly that structure.
    g = torch.Generator().manual_seed(3)
    a_cls = torch.randperm(8, generator=g) % 2
    b_cls = torch.randperm(16, generator=g) % 4
    c_cls = torch.randperm(16, generator=g) % 4
    truth_ab = (b_cls[:, None] // 2) == a_cls[None, :]  # [out B, in A]
    truth_bc = c_cls[:, None] == b_cls[None, :]  # [out C, in B]
    importance = {
        "ab.weight": torch.where(truth_ab, 1.0, 0.05) + 0.01 * torch.rand(16, 8, generator=g),
        "bc.weight": torch.where(truth_bc, 1.0, 0.05) + 0.01 * torch.rand(16, 16, generator=g),
    }
    links = [ConvLink("ab.weight", 0, 1, macs=10**9), ConvLink("bc.weight", 1, 2, macs=10**9)]
    # keep 1/4 and classes at least 4 wide: A (8) → 2 classes, B and C (16) → 4
    plan = plan_groups(links, {0: 8, 1: 16, 2: 16}, importance, "auto", 0.25, align=1, min_width=4)
    assert plan.groups == {0: 2, 1: 4, 2: 4} and plan.conv_groups == {"ab.weight": 2, "bc.weight": 4}
    support = plan.support({"ab.weight": torch.Size([16, 8, 3, 3]), "bc.weight": torch.Size([16, 16, 3, 3])})
    assert torch.equal(support["ab.weight"], truth_ab) and torch.equal(support["bc.weight"], truth_bc)


@pytest.mark.parametrize(("groups", "blocks"), [("uniform", {2}), ("auto", {2, 4, 8, 16})])
def test_resnet18_at_95_per_group_classes_turn_the_sparsity_into_fewer_macs(groups, blocks):
    # width 0.5: stages of 32/64/128/256 channels. One g for all is capped at 2 by the 32-channel stage (16-wide
    # classes), so most of the 95 % sparsity lands as zero kernels inside the blocks: AR above the MAC reduction
    # that compaction can deliver. Per group, each stage splits as far as its own width allows.
    opts = {"model_kwargs": {"width": 0.5}, "structure": "group", "groups": groups, "finetune": "none"}
    data = load_dataset("synthetic", n_train=8, n_test=8)
    t = find_ticket(TicketConfig("resnet18_cifar", "synthetic", "mpt", 0.95, 0, 0, options=opts), data)
    chosen = t.provenance["conv_groups"]
    assert set(chosen.values()) - {1} == blocks and chosen["conv1.weight"] == 1  # the stem reads the image
    if groups == "auto":
        assert chosen["layer1.0.conv1.weight"] == 2 and chosen["layer4.1.conv2.weight"] == 16
        assert chosen["layer2.0.conv1.weight"] == 2  # between a 2-class and a 4-class group: min
    x = torch.zeros(1, 3, 32, 32)
    compacted, report = compact(t.model, x, CompactionConfig(align=8))
    # nested classes: the first conv of a stage (fewer blocks) fixes the order, the finer convs still need no Gather
    assert not any(d["input_gather"] or d["output_gather"] for d in report.decomposed)
    ar = analyze(t.model, (3, 32, 32)).acceleration_rate
    dense_macs = analyze(TicketContext().fresh_model(t.config, data), (3, 32, 32)).macs
    mac_reduction = dense_macs / analyze(compacted, (3, 32, 32)).macs
    if groups == "auto":
        assert mac_reduction > 3.5 and ar == pytest.approx(mac_reduction, rel=0.02)
    else:
        assert mac_reduction < 2.1 and ar > 1.2 * mac_reduction


def test_grouping_recovers_a_hidden_block_diagonal_from_importance():
    g = torch.Generator().manual_seed(1)
    out_cls, in_cls = torch.randperm(8, generator=g) % 2, torch.randperm(8, generator=g) % 2
    truth = out_cls[:, None] == in_cls[None, :]
    importance = torch.where(truth, 1.0, 0.05) + 0.01 * torch.rand(8, 8, generator=g)
    links = [ConvLink("c.weight", 0, 1, macs=10**9)]
    plan = plan_groups(links, {0: 8, 1: 8}, {"c.weight": importance}, groups=2, keep_fraction=0.5, align=1)
    support = plan.support({"c.weight": torch.Size([8, 8, 3, 3])})["c.weight"]
    assert torch.equal(support, truth)
    tiny = [ConvLink("c.weight", 0, 1, macs=1000)]  # not worth a node under the decomposition cost model
    plan = plan_groups(tiny, {0: 8, 1: 8}, {"c.weight": importance}, groups=2, keep_fraction=0.5, align=1)
    assert plan.conv_groups == {"c.weight": 1}


@pytest.fixture(scope="module")
def tiny_data():
    return load_dataset("synthetic", n_train=64, n_test=32)


@pytest.mark.parametrize("method", ["magnitude", "lth", "mpt"])
def test_kernel_structure_prunes_whole_kernels(tiny_data, method):
    opts = {"model_kwargs": {"width": 0.125}, "structure": "kernel"}
    if method == "lth":
        opts["one_shot"] = True
    t = find_ticket(TicketConfig("conv4", "synthetic", method, 0.7, 1, 1, 0.05, 32, options=opts), tiny_data)
    for name, m in t.masks.items():
        if m.dim() == 4:
            per_kernel = m.flatten(2)
            assert torch.all((per_kernel.sum(-1) == 0) | (per_kernel.sum(-1) == per_kernel.shape[-1])), name
    cost = analyze(t.model, (3, 32, 32))
    convs = [lc for lc in cost.layers if lc.kind == "conv"]
    # a whole kernel's weights are zero exactly when the kernel is pruned: kernel and weight sparsity coincide
    assert sum(lc.zero_kernels * lc.kernel[0] * lc.kernel[1] for lc in convs) == sum(lc.zero_weights for lc in convs)
    assert t.provenance["structure"] == "kernel"


@pytest.mark.parametrize("method", ["mpt", "lth", "magnitude"])
def test_group_ticket_is_block_diagonal_and_decomposes(tiny_data, method):
    opts = {"model_kwargs": {"width": 0.5}, "structure": "group", "groups": 4}
    opts.update({"mpt": {"finetune": "none"}, "lth": {"rate": 0.6}, "magnitude": {}}[method])
    t = find_ticket(TicketConfig("conv4", "synthetic", method, 0.8, 1, 1, 0.1, 32, options=opts), tiny_data)
    assert t.weight_sparsity == pytest.approx(0.8, abs=1e-3)
    groups = t.provenance["conv_groups"]
    assert groups["convs.0.weight"] == 1 and all(g == 4 for k, g in groups.items() if k != "convs.0.weight")
    compacted, report = compact(t.model, torch.zeros(1, 3, 32, 32), CompactionConfig(align=1))
    kinds = {d["layer"]: (d["kind"], d["blocks"]) for d in report.decomposed}
    grouped = {k.removesuffix(".weight"): ("grouped", 4) for k, g in groups.items() if g == 4}
    assert len(grouped) == 3 and {k: v for k, v in kinds.items() if k.startswith("convs")} == grouped
    x = torch.randn(4, 3, 32, 32)
    torch.testing.assert_close(compacted(x), t.model.eval()(x), atol=1e-4, rtol=1e-4)


@pytest.mark.e2e
def test_group_ticket_exported_by_bench_export_is_exact_and_holds_grouped_convs(tmp_path, capsys):
    out = tmp_path / "g"
    args = ["ticket", "--model", "resnet18_cifar", "--method", "magnitude", "--sparsity", "0.9", "--epochs", "0"]
    args += ["--finetune-epochs", "0", "--width", "0.5", "--option", "structure=group", "--option", "groups=auto"]
    assert main([*args, "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["export", str(out)]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["max_abs_error"] < 1e-3
    ticket = load_ticket(out)
    _, report = compact(ticket.model, torch.zeros(1, 3, 32, 32), CompactionConfig(align=8))
    chosen = Counter(d["blocks"] for d in report.decomposed if d["kind"] == "grouped")
    assert chosen and sum(chosen.values()) >= 15  # every conv but the stem reads a permutable group
    graph = onnx.load(res["onnx"]).graph
    grouped = Counter(
        next(a.i for a in n.attribute if a.name == "group")
        for n in graph.node
        if n.op_type == "Conv" and any(a.name == "group" and a.i > 1 for a in n.attribute)
    )
    assert grouped == chosen
    assert not any(n.op_type == "Gather" for n in graph.node)  # one permutation per channel group: no copies
