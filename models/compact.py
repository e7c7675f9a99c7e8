"""Physically remove dead channels (and, optionally, dead kernels) so a ticket's sparsity becomes real speed.

The model is traced with torch.fx into a channel dependency graph (models/channel_graph.py): groups of
tensors that share one channel axis through BN, activations, residual adds, depthwise convs, channel
selections and flattens. A channel of a group is removed from every member at once, and only when no sink
needs it: every conv/linear reading it either has zero weights for it (in the outputs it keeps) or can
absorb it as a constant. A constant channel (a zero filter gives its bias; BN and activations map it to
another constant) is folded into the consumer's bias, `bias[o] += κ · Σ W[o, c]`. That is exact for linears
and unpadded convs; a zero-padded conv sees κ inside and 0 at the borders, so a non-zero constant meeting
it is kept and the report says so. Removing output channels of a consumer can make its inputs unused, so
decisions are iterated to a fixpoint. No layer is ever left with zero channels.

After channel compaction, convs whose kernel connectivity splits into independent blocks are optionally
rewritten as grouped or split convolutions (models/decompose.py) when the analytic cost says it pays.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import torch
import torch.fx as fx
from torch import nn

from ticketbench.models import channel_graph as cg
from ticketbench.models.decompose import DecomposeConfig, decompose


@dataclass
class CompactionConfig:
    align: int = 1  # keep each group's channel count a multiple of this (dead channels kept), capped at the original
    decompose: bool = True  # kernel-level decomposition into grouped/split convs where the cost model says it pays
    decomposition: DecomposeConfig = field(default_factory=DecomposeConfig)  # its cost model


@dataclass
class LayerCompaction:
    """One conv/linear whose output channels (or depthwise channels) belong to a compacted group."""

    name: str
    channels_before: int
    channels_after: int
    kept_nonexact: int = 0  # dead channels kept: a non-zero constant would meet zero padding
    note: str = ""
    kind: str = "conv"  # "conv" | "linear" | "depthwise"
    group: int = -1


@dataclass
class GroupCompaction:
    """One channel group: all tensors tied to the same channel axis (e.g. a ResNet stage's residual stream)."""

    gid: int
    layers: list[str]  # convs/linears/BNs/selections that own its channels
    channels_before: int
    channels_after: int
    folded: int = 0  # removed constant channels whose value was folded into consumer biases
    kept_nonexact: int = 0  # constant channels kept because a zero-padded conv reads them
    kept_nonempty: int = 0  # removable channels kept so that no layer has zero channels
    kept_pinned: int = 0  # dead channels in a group that may not change (model input/output, unknown op)
    kept_aligned: int = 0  # removable channels kept to round the count up to CompactionConfig.align
    pins: list[str] = field(default_factory=list)


@dataclass
class CompactionReport:
    layers: list[LayerCompaction] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # what limited compaction, with the reason
    groups: list[GroupCompaction] = field(default_factory=list)
    decomposed: list[dict] = field(default_factory=list)  # kernel-level rewrites (see models/decompose.py)

    @property
    def channels_removed(self) -> int:
        """Output filters physically removed from convs and linears (depthwise channels not counted)."""
        return sum(lc.channels_before - lc.channels_after for lc in self.layers if lc.kind != "depthwise")

    @property
    def kept_nonexact(self) -> int:
        return sum(g.kept_nonexact for g in self.groups)

    def to_dict(self) -> dict:
        return {
            "channels_removed": self.channels_removed,
            "kept_nonexact": self.kept_nonexact,
            "layers": [vars(lc) for lc in self.layers],
            "groups": [vars(g) for g in self.groups],
            "decomposed": self.decomposed,
            "skipped": self.skipped,
        }


def _need(graph: cg.ChannelGraph, g: cg.Group, keep: dict[int, torch.Tensor], padded_exact: bool) -> torch.Tensor:
    """Channels of `g` some sink still reads (given what is kept downstream) and cannot absorb as a constant.

    With padded_exact=False every constant counts as foldable: the answer ignoring border effects.
    """
    need = torch.zeros(g.size, dtype=torch.bool)
    for e in g.sinks:
        kept_out = keep[graph.out_group[e.consumer]]
        if isinstance(e, cg.SelectEdge):
            need[e.index[kept_out & e.scale.ne(0)]] = True
            continue
        reads = e.nonzero[kept_out].any(0)
        if padded_exact:
            const, value = graph.const[e.member], graph.value[e.member]
            foldable = const & (e.folds_any_constant | value.eq(0).all(1))
        else:
            foldable = graph.const_loose[e.member]
        need |= reads & ~foldable
    return need


def _prefer(graph: cg.ChannelGraph, g: cg.Group, candidates: torch.Tensor) -> int:
    """The channel kept when all are removable: one that is constant at its sources needs nothing upstream."""
    ok = candidates.clone()
    for n in g.sources:
        ok &= graph.const[n]
    pick = ok if ok.any() else candidates
    return int(torch.nonzero(pick)[0])


def solve(graph: cg.ChannelGraph, forced: dict[int, torch.Tensor] | None = None) -> dict[int, torch.Tensor]:
    """Greatest fixpoint of 'keep what a sink needs (or what is forced)': keep sets only shrink, so this
    terminates. Forced channels count as needed, so whatever they read upstream is kept too."""
    keep = {g.gid: torch.ones(g.size, dtype=torch.bool) for g in graph.groups}
    changed = True
    while changed:
        changed = False
        for g in graph.groups:
            if g.pins:
                continue
            need = _need(graph, g, keep, padded_exact=True)
            if forced is not None:
                need |= forced[g.gid]
            new = keep[g.gid] & need
            if not new.any():
                new[_prefer(graph, g, keep[g.gid])] = True
            if not torch.equal(new, keep[g.gid]):
                keep[g.gid], changed = new, True
    return keep


def _aligned(graph: cg.ChannelGraph, keep: dict[int, torch.Tensor], align: int) -> dict[int, torch.Tensor]:
    """`keep` with each unpinned group's count rounded up to a multiple of `align` (at most its size).

    Why: runtimes run channel counts that are multiples of 8 (ORT's NCHWc blocks, tensor cores) faster; a few
    kept dead channels can beat fewer odd ones. Channels constant at their sources are re-added first: they
    read nothing upstream.
    """
    out = {}
    for g in graph.groups:
        k = keep[g.gid].clone()
        n = int(k.sum())
        extra = min(g.size, -(-n // align) * align) - n
        if extra > 0 and not g.pins:
            const_src = torch.ones(g.size, dtype=torch.bool)
            for src in g.sources:
                const_src &= graph.const[src]
            removed = torch.nonzero(~k).flatten()
            order = sorted(removed.tolist(), key=lambda c: (not bool(const_src[c]), c))
            k[order[:extra]] = True
        out[g.gid] = k
    return out


def solve_aligned(graph: cg.ChannelGraph, align: int) -> tuple[dict[int, torch.Tensor], dict[int, int]]:
    """Keep sets whose counts are multiples of `align`, plus how many channels each group kept for that.

    Padding a group may keep more upstream channels, which may need padding in turn: iterate until stable
    (the forced sets only grow, so this terminates).
    """
    exact = solve(graph)
    keep = exact
    if align > 1:
        while True:
            forced = _aligned(graph, keep, align)
            if all(torch.equal(forced[gid], keep[gid]) for gid in keep):
                break
            keep = solve(graph, forced)
    extra = {gid: int(keep[gid].sum()) - int(exact[gid].sum()) for gid in keep}
    return keep, extra


@torch.no_grad()
def _fold(graph: cg.ChannelGraph, g: cg.Group, removed: torch.Tensor) -> int:
    """Add the removed constant channels' contribution to each consumer's bias; returns channels folded."""
    folded = torch.zeros(g.size, dtype=torch.bool)
    for e in g.sinks:
        if not isinstance(e, cg.MixEdge):
            continue
        value = graph.value[e.member]
        chans = removed & graph.const[e.member] & value.ne(0).any(1)
        if not chans.any():
            continue
        contrib = (e.weight_sum[:, chans, :] * value[chans].unsqueeze(0)).sum((1, 2))
        if not contrib.ne(0).any():
            continue
        m = graph.module(e.consumer)
        if m.bias is None:
            m.bias = nn.Parameter(torch.zeros(m.weight.shape[0]))
        m.bias.data += contrib
        folded |= chans & e.nonzero.any(0)
    return int(folded.sum())


def _layer_kind(m: nn.Module) -> str:
    if isinstance(m, nn.Linear):
        return "linear"
    return "depthwise" if isinstance(m, nn.Conv2d) and m.groups > 1 else "conv"


def _report_group(graph: cg.ChannelGraph, g: cg.Group, keep: dict[int, torch.Tensor], folded: int, aligned: int = 0):
    kept = keep[g.gid]
    strict = _need(graph, g, keep, padded_exact=True)
    loose = _need(graph, g, keep, padded_exact=False)
    nonexact = int((kept & strict & ~loose).sum())
    if g.pins:
        dead = int((~loose).sum()) if g.sinks else 0
        return GroupCompaction(g.gid, _owners(g), g.size, g.size, kept_pinned=dead, pins=list(g.pins))
    nonempty = int((kept & ~strict).sum()) - aligned
    return GroupCompaction(
        g.gid, _owners(g), g.size, int(kept.sum()), folded, nonexact, max(nonempty, 0), kept_aligned=aligned
    )


def _owners(g: cg.Group) -> list[str]:
    return [str(n.target) for n in (*g.sources, *g.internal)]


def _trace(model: nn.Module, example_input: torch.Tensor, report: CompactionReport) -> fx.GraphModule | None:
    try:
        return cg.trace(model, example_input)
    except Exception as exc:  # untraceable models are exported as they are
        report.skipped.append(f"<model>: not traceable by torch.fx ({type(exc).__name__}: {exc})"[:300])
        return None


@torch.no_grad()
def compact_channels(gm: fx.GraphModule, report: CompactionReport, align: int = 1) -> None:
    """Remove every channel that is exactly removable, in place on a traced GraphModule; with `align` > 1,
    keep just enough dead channels that every group's count is a multiple of `align`."""
    graph = cg.build(gm)
    keep, aligned = solve_aligned(graph, align)
    index = {}
    for g in graph.groups:
        folded = 0
        if not g.pins and not keep[g.gid].all():
            folded = _fold(graph, g, ~keep[g.gid])
            index[g.gid] = torch.nonzero(keep[g.gid]).flatten()
        gr = _report_group(graph, g, keep, folded, aligned.get(g.gid, 0))
        report.groups.append(gr)
        for n in (*g.sources, *g.internal):
            if n in graph.selections or not isinstance(graph.module(n), (nn.Conv2d, nn.Linear)):
                continue
            note = []
            if gr.kept_nonexact:
                note.append(f"{gr.kept_nonexact} dead channel(s) kept: constant output meets zero padding")
            if gr.kept_nonempty:
                note.append("one removable channel kept so the layer is not empty")
            if gr.kept_pinned:
                note.append(f"{gr.kept_pinned} dead channel(s) kept: {'; '.join(g.pins)}")
            if gr.kept_aligned:
                note.append(f"{gr.kept_aligned} removable channel(s) kept to align the count to a multiple")
            kind = _layer_kind(graph.module(n))
            report.layers.append(
                LayerCompaction(
                    str(n.target), g.size, gr.channels_after, gr.kept_nonexact, "; ".join(note), kind, g.gid
                )
            )
        if gr.kept_pinned:
            report.skipped.extend(f"group {g.gid} ({', '.join(gr.layers) or 'no layers'}): {p}" for p in g.pins)
    cg.reindex(graph, index)


@torch.no_grad()
def compact(
    model: nn.Module, example_input: torch.Tensor, config: CompactionConfig | None = None
) -> tuple[nn.Module, CompactionReport]:
    """Return a compacted copy (eval mode) computing the same function, and what was removed.

    The input model is untouched. The result is a torch.fx GraphModule whose submodules keep the original
    names, so per-layer costs line up with the masked model's.
    """
    config = config or CompactionConfig()
    model = copy.deepcopy(model).eval()
    report = CompactionReport()
    gm = _trace(model, example_input, report)
    if gm is None:
        return model, report
    compact_channels(gm, report, config.align)
    if config.decompose:
        gm2 = _trace(gm, example_input, report)
        if gm2 is not None:
            report.decomposed = [vars(d) for d in decompose(gm2, config.decomposition)]
            gm = gm2
    return gm.eval(), report


@torch.no_grad()
def kill_channels(model: nn.Module, channels: dict[str, torch.Tensor], example_input: torch.Tensor) -> nn.Module:
    """Make conv output channels exactly dead in place, as an Early-Bird channel ticket has them.

    `channels` maps a conv's module path to the channel indices to kill: their filter and bias become zero,
    so do γ and β of a BatchNorm directly after the conv (the channel then outputs exactly 0), and, when the
    conv is the channel's only writer, so do the weights of every conv/linear reading it (as EB masks them).
    Used to build channel tickets from a plain channel mask in tests and benchmarks.
    """
    graph = cg.build(cg.trace(model, example_input))
    for node in graph.gm.graph.nodes:
        if node.op != "call_module" or node.target not in channels:
            continue
        idx = channels[node.target]
        conv = graph.module(node)
        conv.weight[idx] = 0
        if conv.bias is not None:
            conv.bias[idx] = 0
        users = list(node.users)
        if len(users) == 1 and users[0].op == "call_module":
            bn = graph.module(users[0])
            if isinstance(bn, nn.BatchNorm2d) and bn.affine:
                bn.weight[idx] = 0
                bn.bias[idx] = 0
        g = graph.groups[graph.group_of[node]]
        if g.sources == [node] and not g.pins:
            for e in g.sinks:
                if isinstance(e, cg.MixEdge):
                    graph.module(e.consumer).weight[:, cg.expand(idx, graph.mult[e.member])] = 0
    return model
