"""Kernel-level removal: rewrite a conv whose kernel connectivity splits into independent blocks.

A conv's (output, input) kernel connectivity is a bipartite graph: output o is joined to input c when kernel
W[o, c] has a non-zero weight. Its connected components are blocks that share nothing, so after permuting
inputs and outputs by component the weight is block diagonal and the conv is, exactly, either

- a *grouped* conv, when the blocks pack into g groups of equal size (I/g inputs, O/g outputs each), or
- a *split* conv: one small conv per block on its own input channels, outputs concatenated.

Permutations are free when they can be pushed into the channel group around the conv (every member of the
group is re-indexed at once, see channel_graph.reindex); otherwise a Gather is inserted. A rewrite is chosen
only when the analytic cost, MACs plus copies and extra nodes in MAC-equivalents, beats the dense conv by
`min_gain`. Random unstructured masks almost never split (their bipartite graph is connected); masks with
group structure (lottery-regulated grouped convs, block-diagonal tickets) do.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
import torch.fx as fx
from torch import nn

from ticketbench.models import channel_graph as cg


@dataclass
class DecomposeConfig:
    min_gain: float = 1.25  # dense cost / decomposed cost required, overheads included
    move_cost_macs: float = 4.0  # one fp32 element copied by a Gather/Slice/Concat, in MAC-equivalents
    node_cost_macs: float = 20_000.0  # fixed cost of one extra graph node (dispatch), in MAC-equivalents
    max_branches: int = 32  # split convs with more blocks than this are not worth their dispatch


@dataclass
class Decomposition:
    """What one conv became; MACs per image."""

    layer: str
    kind: str  # "grouped" | "split"
    blocks: int
    macs_dense: int
    macs_after: int
    input_gather: bool
    output_gather: bool
    estimated_gain: float  # dense cost / decomposed cost, overheads included


class GroupedConv2d(nn.Module):
    """Optional input Gather → grouped conv → optional output Gather; exact for a block-diagonal weight."""

    in_index: torch.Tensor | None  # buffers
    out_index: torch.Tensor | None

    def __init__(self, conv: nn.Conv2d, in_index: torch.Tensor | None, out_index: torch.Tensor | None) -> None:
        super().__init__()
        self.conv = conv
        self.register_buffer("in_index", in_index)
        self.register_buffer("out_index", out_index)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.in_index is not None:
            x = x.index_select(1, self.in_index)
        y = self.conv(x)
        if self.out_index is not None:
            y = y.index_select(1, self.out_index)
        return y


class SplitConv2d(nn.Module):
    """One conv per block on its own input channels (a Slice when contiguous, else a Gather); outputs concatenated."""

    out_index: torch.Tensor | None  # a buffer

    def __init__(
        self,
        convs: list[nn.Conv2d],
        inputs: list[tuple[int, int] | torch.Tensor],
        out_index: torch.Tensor | None,
    ) -> None:
        super().__init__()
        self.convs = nn.ModuleList(convs)
        self.slices = [s if isinstance(s, tuple) else None for s in inputs]
        for b, s in enumerate(inputs):
            self.register_buffer(f"in_index_{b}", None if isinstance(s, tuple) else s)
        self.register_buffer("out_index", out_index)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parts = []
        for b, conv in enumerate(self.convs):
            s = self.slices[b]
            xb = x.narrow(1, s[0], s[1]) if s is not None else x.index_select(1, getattr(self, f"in_index_{b}"))
            parts.append(conv(xb))
        y = torch.cat(parts, 1)
        if self.out_index is not None:
            y = y.index_select(1, self.out_index)
        return y


@dataclass
class _Plan:
    node: fx.Node
    kind: str
    bins: list[tuple[torch.Tensor, torch.Tensor]]  # (outputs, inputs) per block, in pre-permutation labels
    g_in: int | None
    g_out: int | None
    claim_in: bool
    claim_out: bool
    report: Decomposition


def components(nonzero: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Connected components (outputs, inputs) of the bipartite kernel graph; isolated rows/columns left out."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    n_out, n_in = nonzero.shape
    o, i = (t.numpy() for t in torch.nonzero(nonzero, as_tuple=True))
    adj = coo_matrix((np.ones(len(o), dtype=np.int8), (o, i + n_out)), shape=(n_out + n_in,) * 2)
    _, labels = connected_components(adj, directed=False)
    labels = torch.from_numpy(labels)
    rows, cols = nonzero.any(1), nonzero.any(0)
    out = []
    for lab in torch.unique(torch.cat([labels[:n_out][rows], labels[n_out:][cols]])):
        outs = torch.nonzero(rows & (labels[:n_out] == lab)).flatten()
        ins = torch.nonzero(cols & (labels[n_out:] == lab)).flatten()
        out.append((outs, ins))
    return sorted(out, key=lambda b: int(b[1].min()))


def pack(items: list[tuple[torch.Tensor, torch.Tensor]], groups: int, n_out: int, n_in: int):
    """Pack blocks into `groups` bins of exactly n_out/groups outputs and n_in/groups inputs (greedy), or None."""
    cap_o, cap_i = n_out // groups, n_in // groups
    bins: list[tuple[list[torch.Tensor], list[torch.Tensor], list[int]]] = [([], [], [0, 0]) for _ in range(groups)]
    for o, i in sorted(items, key=lambda b: len(b[1]) * n_out + len(b[0]) * n_in, reverse=True):
        fits = [b for b in bins if b[2][0] + len(o) <= cap_o and b[2][1] + len(i) <= cap_i]
        if not fits:
            return None
        b = min(fits, key=lambda b: (b[2][1] + b[2][0], b[2][1]))
        b[0].append(o)
        b[1].append(i)
        b[2][0] += len(o)
        b[2][1] += len(i)
    packed = [(torch.cat(b[0]).sort().values, torch.cat(b[1]).sort().values) for b in bins]
    return sorted(packed, key=lambda b: int(torch.cat([b[1], b[0] + n_in]).min()))


def _positions(gid: int | None, size: int, claimed: dict[int, torch.Tensor]) -> torch.Tensor:
    """Where each channel will sit once claimed permutations are applied."""
    return _inverse(claimed[gid]) if gid in claimed else torch.arange(size)


def _is_arange(t: torch.Tensor) -> bool:
    return torch.equal(t, torch.arange(int(t[0]) if t.numel() else 0, (int(t[0]) if t.numel() else 0) + t.numel()))


def _plan(node, conv, graph, claimed, cfg) -> _Plan | None:
    nz = conv.weight.detach().flatten(2).ne(0).any(-1)
    n_out, n_in = nz.shape
    comps = components(nz)
    if len(comps) < 2:
        return None
    out_hw = math.prod(node.meta["tensor_meta"].shape[2:])
    x = node.all_input_nodes[0]
    in_hw = math.prod(x.meta["tensor_meta"].shape[2:])
    per_kernel = conv.kernel_size[0] * conv.kernel_size[1] * out_hw
    dense = n_out * n_in * per_kernel
    g_in, g_out = graph.group_of.get(x), graph.group_of.get(node)
    free_in = g_in is not None and not graph.groups[g_in].pins and g_in not in claimed
    free_out = g_out is not None and not graph.groups[g_out].pins and g_out not in claimed and g_out != g_in
    pos_in, pos_out = _positions(g_in, n_in, claimed), _positions(g_out, n_out, claimed)
    mv, nd = cfg.move_cost_macs, cfg.node_cost_macs
    empty_rows = torch.nonzero(~nz.any(1)).flatten()
    unread = torch.nonzero(~nz.any(0)).flatten()
    candidates = []
    items = comps + [(r.view(1), torch.empty(0, dtype=torch.long)) for r in empty_rows]
    items += [(torch.empty(0, dtype=torch.long), c.view(1)) for c in unread]
    for g in sorted((d for d in range(2, len(comps) + 1) if n_out % d == 0 and n_in % d == 0), reverse=True):
        bins = pack(items, g, n_out, n_in)
        if bins is not None:
            candidates.append(("grouped", bins, n_out * (n_in // g) * per_kernel))
            break
    if len(comps) <= cfg.max_branches:
        bins = [(o.clone(), i) for o, i in comps]
        if len(empty_rows):  # zero filters still produce their bias: give them to the cheapest block
            k = min(range(len(bins)), key=lambda b: len(bins[b][1]))
            bins[k] = (torch.cat([bins[k][0], empty_rows]).sort().values, bins[k][1])
        candidates.append(("split", bins, sum(len(o) * len(i) for o, i in bins) * per_kernel))
    options = []
    for kind, bins, macs in candidates:
        # blocks in the order an earlier claim already put them, so that its permutation serves this conv too
        if not free_in:
            bins = sorted(bins, key=lambda b: int(pos_in[b[1]].min()) if len(b[1]) else n_in)
        elif not free_out:
            bins = sorted(bins, key=lambda b: int(pos_out[b[0]].min()) if len(b[0]) else n_out)
        in_cat = torch.cat([pos_in[i].sort().values for _, i in bins])
        gather_out = not free_out and not _is_arange(torch.cat([pos_out[o].sort().values for o, _ in bins]))
        cost = macs + gather_out * (n_out * out_hw * mv + nd)
        if kind == "grouped":
            gather_in = not free_in and not _is_arange(in_cat)
            cost += gather_in * (n_in * in_hw * mv + nd)
        else:
            gather_in = not free_in and not all(_is_arange(pos_in[i].sort().values) for _, i in bins)
            cost += len(in_cat) * in_hw * mv + n_out * out_hw * mv + nd * 2 * len(bins)
        options.append((cost, kind, bins, macs, gather_in, gather_out))
    if not options:
        return None
    cost, kind, bins, macs, gather_in, gather_out = min(options, key=lambda t: t[0])
    gain = dense / cost
    if gain < cfg.min_gain:
        return None
    rep = Decomposition(str(node.target), kind, len(bins), dense, macs, gather_in, gather_out, round(gain, 3))
    return _Plan(node, kind, bins, g_in, g_out, free_in, free_out, rep)


def _order(bins, part: int, size: int, key: torch.Tensor | None = None) -> torch.Tensor:
    """Permutation putting each block's channels together, block after block; unlisted channels last.

    Inside a block, channels follow `key` (their blocks under the group's other convs, `_nesting_keys`), so a
    finer conv that reads or writes the group later finds its own blocks contiguous: no Gather."""
    if key is not None:
        bins = [tuple(c[torch.argsort(key[c] * size + c)] if i == part else c for i, c in enumerate(b)) for b in bins]
    listed = torch.cat([b[part] for b in bins])
    rest = torch.ones(size, dtype=torch.bool)
    rest[listed] = False
    return torch.cat([listed, torch.nonzero(rest).flatten()])


def dense_convs(gm: fx.GraphModule) -> Iterator[tuple[fx.Node, nn.Conv2d]]:
    """The (node, module) of every ungrouped Conv2d call in a traced graph, in graph order: what can be split."""
    for node in gm.graph.nodes:
        if node.op != "call_module":
            continue
        conv = gm.get_submodule(node.target)
        if isinstance(conv, nn.Conv2d) and conv.groups == 1:
            yield node, conv


def _nesting_keys(gm: fx.GraphModule, graph) -> dict[int, torch.Tensor]:
    """Per channel group, a rank per channel that orders it by its block under every splittable conv touching
    the group, coarsest partition first (lexicographic). The first conv to touch a group fixes its permutation;
    when that conv has fewer blocks than a later one (a group-structured ticket with per-group class counts:
    a stage's first conv between 4- and 8-class groups), channels ordered by index inside its blocks leave the
    later conv's blocks scattered, which costs a Gather. Ordered by these keys, nested blocks stay contiguous."""
    parts: dict[int, list[torch.Tensor]] = {}
    for node, conv in dense_convs(gm):
        nz = conv.weight.detach().flatten(2).ne(0).any(-1)
        comps = components(nz)
        if len(comps) < 2:
            continue
        for side, gid in ((0, graph.group_of.get(node)), (1, graph.group_of.get(node.all_input_nodes[0]))):
            if gid is None or graph.groups[gid].size != nz.shape[side]:
                continue
            label = torch.full((nz.shape[side],), len(comps), dtype=torch.long)  # channels in no block: last
            for k, comp in enumerate(comps):
                label[comp[side]] = k
            parts.setdefault(gid, []).append(label)
    keys = {}
    for gid, labels in parts.items():
        key = torch.zeros_like(labels[0])
        for label in sorted(labels, key=lambda lab: int(lab.unique().numel())):  # coarsest first
            key = torch.unique(key * (int(label.max()) + 1) + label, return_inverse=True)[1]  # ranks stay < n
        keys[gid] = key
    return keys


def _inverse(perm: torch.Tensor) -> torch.Tensor:
    inv = torch.empty_like(perm)
    inv[perm] = torch.arange(perm.numel())
    return inv


def _pair(v: tuple[int, ...]) -> tuple[int, int]:
    """A Conv2d's kernel_size, stride, padding or dilation: torch types them tuple[int, ...]; they hold two."""
    h, w = v
    return h, w


def _like(conv: nn.Conv2d, c_in: int, c_out: int, groups: int, weight: torch.Tensor, bias) -> nn.Conv2d:
    new = nn.Conv2d(
        c_in,
        c_out,
        _pair(conv.kernel_size),
        _pair(conv.stride),
        conv.padding if isinstance(conv.padding, str) else _pair(conv.padding),
        _pair(conv.dilation),
        groups,
        bias is not None,
        conv.padding_mode,
    )
    new.weight = nn.Parameter(weight.clone())
    if bias is not None:
        new.bias = nn.Parameter(bias.clone())
    return new


def _arange_or(index: torch.Tensor) -> torch.Tensor | None:
    return None if torch.equal(index, torch.arange(index.numel())) else index


def _build(plan: _Plan, conv: nn.Conv2d, pos_in: torch.Tensor, pos_out: torch.Tensor) -> GroupedConv2d | SplitConv2d:
    w, b = conv.weight.detach(), conv.bias.detach() if conv.bias is not None else None
    bins = [(pos_out[o].sort().values, pos_in[i].sort().values) for o, i in plan.bins]
    order_out = torch.cat([o for o, _ in bins])
    out_index = _arange_or(_inverse(order_out))
    if plan.kind == "grouped":
        in_order = torch.cat([i for _, i in bins])
        weight = torch.cat([w[o][:, i] for o, i in bins])
        bias = b[order_out] if b is not None else None
        g = len(bins)
        new = _like(conv, conv.in_channels, conv.out_channels, g, weight, bias)
        return GroupedConv2d(new, _arange_or(in_order), out_index)
    convs, inputs = [], []
    for o, i in bins:
        contiguous = bool(torch.equal(i, torch.arange(int(i[0]), int(i[0]) + len(i))))
        inputs.append((int(i[0]), len(i)) if contiguous else i)
        convs.append(_like(conv, len(i), len(o), 1, w[o][:, i], b[o] if b is not None else None))
    return SplitConv2d(convs, inputs, out_index)


@torch.no_grad()
def decompose(gm: fx.GraphModule, config: DecomposeConfig | None = None) -> list[Decomposition]:
    """Rewrite, in place, every dense conv of a traced GraphModule whose blocks pay; returns what was done."""
    cfg = config or DecomposeConfig()
    graph = cg.build(gm)
    plans: list[_Plan] = []
    claimed: dict[int, torch.Tensor] = {}
    keys = _nesting_keys(gm, graph)
    for node, conv in dense_convs(gm):
        plan = _plan(node, conv, graph, claimed, cfg)
        if plan is None:
            continue
        if plan.claim_in:
            assert plan.g_in is not None  # a claimed group is a free one: it exists
            claimed[plan.g_in] = _order(plan.bins, 1, conv.in_channels, keys.get(plan.g_in))
        if plan.claim_out:
            assert plan.g_out is not None
            claimed[plan.g_out] = _order(plan.bins, 0, conv.out_channels, keys.get(plan.g_out))
        plans.append(plan)
    if not plans:
        return []
    cg.reindex(graph, claimed)
    for plan in plans:
        dense = gm.get_submodule(cg.module_path(plan.node))
        assert isinstance(dense, nn.Conv2d)  # plans are made for dense convs only; reindex edits them in place
        pos_in = _inverse(claimed[plan.g_in]) if plan.g_in in claimed else torch.arange(dense.in_channels)
        pos_out = _inverse(claimed[plan.g_out]) if plan.g_out in claimed else torch.arange(dense.out_channels)
        new = _build(plan, dense, pos_in, pos_out)
        if isinstance(new, GroupedConv2d):
            plan.report.input_gather = new.in_index is not None
        else:
            plan.report.input_gather = any(s is None for s in new.slices)
        plan.report.output_gather = new.out_index is not None
        gm.add_submodule(cg.module_path(plan.node), new)
    gm.recompile()
    return [p.report for p in plans]


@torch.no_grad()
def block_structured(model: nn.Module, example_input: torch.Tensor, classes: int, seed: int = 0) -> nn.Module:
    """Synthetic kernel ticket, in place: each channel group's channels fall into `classes` random classes,
    and a dense conv keeps kernel (o, c) only when o and c share a class (block diagonal after permutation).

    Classes are drawn per channel group, so a residual stream is split the same way for every conv that
    reads or writes it. Convs reading a pinned group (the image) stay dense. For tests and benchmarks of
    kernel-level removal; not a ticket method.
    """
    g = torch.Generator().manual_seed(seed)
    graph = cg.build(cg.trace(model, example_input))
    label = {gr.gid: torch.randperm(gr.size, generator=g) % classes for gr in graph.groups}
    for node in graph.gm.graph.nodes:
        conv = graph.module_of(node, nn.Conv2d)
        if conv is None:
            continue
        x = node.all_input_nodes[0]
        g_in = graph.group_of.get(x)
        if conv.groups != 1 or g_in is None or graph.groups[g_in].pins:
            continue
        keep = label[graph.group_of[node]][:, None] == label[g_in][None, :]
        conv.weight.mul_(keep[:, :, None, None].float())
    return model.eval()
