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
from ticketbench.models.tickets import TicketConfig, find_ticket, load_ticket
from ticketbench.models.tickets.structure import (
    ConvLink,
    auto_groups,
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
