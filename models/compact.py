"""Physically remove dead channels (and, optionally, dead kernels) so a ticket's sparsity becomes real speed.

The model is traced with torch.fx into a channel dependency graph (models/channel_graph.py): groups of
tensors that share one channel axis through BN, activations, residual adds, depthwise convs, channel
selections, flattens and concatenations. A channel of a group is removed from every member at once, and only
when no sink needs it: every conv/linear reading it either has zero weights for it (in the outputs it keeps)
or can absorb it as an input-independent value, and no concatenation passes it on to a reader that needs it.

An input-independent channel (a zero filter gives its bias; BN with γ = 0 gives β; activations, pools and
convs of such channels give fixed values) is folded into the consumer: its contribution `W ⊛ value` is computed
once from the value recorded at trace time. When the contribution is the same at every position it goes into
the consumer's bias (`bias[o] += κ · Σ W[o, c]` for a constant κ); when it is not (a constant seen through
zero padding is κ inside and 0 at the borders) it becomes a bias *map* [C_out, H, W] added after the consumer
(after its BatchNorm, scaled, when one follows). A map is exact only at the input size it was computed at:
with `CompactionConfig.input_size_known=False` non-uniform contributions are not folded and those channels are
kept and reported (`kept_nonexact`), as before bias maps existed.

A residual branch whose output is entirely input-independent (every channel dead or constant, e.g. a block
whose inner conv lost every filter) is removed whole before channel compaction: the add becomes
`stream + value`, a BiasMap holding the branch's exact output. Removing output channels of a consumer can make
its inputs unused, so decisions are iterated to a fixpoint. No layer is ever left with zero channels.

Units: `filters_removed` and `filters_kept_for_alignment` count output filters of dense convs and linears
(depthwise channels not counted), the same unit as `channels_removed`/`channels_kept_for_alignment` in
results.csv. Group counts (`GroupCompaction`) are channels of one channel axis.

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

_ADDS = {"add", "iadd", "add_", "sub", "isub", "sub_"}  # ops a constant operand can be folded out of (by name)


@dataclass
class CompactionConfig:
    align: int = 1  # keep each group's channel count a multiple of this (dead channels kept), capped at the original
    decompose: bool = True  # kernel-level decomposition into grouped/split convs where the cost model says it pays
    decomposition: DecomposeConfig = field(default_factory=DecomposeConfig)  # its cost model
    # The example input's H×W is the one deployed (recorded in the ticket's provenance): position-dependent
    # constants may be folded into bias maps. False when the size was guessed: such channels are kept.
    input_size_known: bool = True


@dataclass
class LayerCompaction:
    """One conv/linear whose output channels (or depthwise channels) belong to a compacted group."""

    name: str
    channels_before: int
    channels_after: int
    kept_nonexact: int = 0  # dead channels kept: a position-dependent constant and no input size to fold it at
    note: str = ""
    kind: str = "conv"  # "conv" | "linear" | "depthwise"
    group: int = -1
    kept_aligned: int = 0  # dead filters of this layer kept to align the group's count
    zero_filters: int = 0  # filters left computing an input-independent value (all zero once BN is folded); see note


@dataclass
class GroupCompaction:
    """One channel group: all tensors tied to the same channel axis (e.g. a ResNet stage's residual stream)."""

    gid: int
    layers: list[str]  # convs/linears/BNs/selections that own its channels
    channels_before: int
    channels_after: int
    folded: int = 0  # removed input-independent channels whose contribution was folded into consumers
    kept_nonexact: int = 0  # position-dependent constant channels kept: input size unknown (no bias map)
    kept_nonempty: int = 0  # removable channels kept so that no layer has zero channels
    kept_pinned: int = 0  # dead channels in a group that may not change (model input/output, unknown op)
    kept_aligned: int = 0  # removable channels kept to round the count up to CompactionConfig.align
    pins: list[str] = field(default_factory=list)
    folded_map: int = 0  # of `folded`: channels whose contribution depends on position, folded into a bias map


@dataclass
class CompactionReport:
    layers: list[LayerCompaction] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # what limited compaction, with the reason
    groups: list[GroupCompaction] = field(default_factory=list)
    decomposed: list[dict] = field(default_factory=list)  # kernel-level rewrites (see models/decompose.py)
    branches_removed: list[dict] = field(default_factory=list)  # input-independent residual branches folded away

    @property
    def filters_removed(self) -> int:
        """Output filters physically removed from dense convs and linears (depthwise channels not counted)."""
        return sum(lc.channels_before - lc.channels_after for lc in self.layers if lc.kind != "depthwise") + sum(
            b["filters"] for b in self.branches_removed
        )

    channels_removed = filters_removed  # results.csv's name for the same count (filters)

    @property
    def filters_kept_for_alignment(self) -> int:
        """Dead output filters of dense convs and linears kept so that widths are multiples of `align`."""
        return sum(lc.kept_aligned for lc in self.layers if lc.kind != "depthwise")

    @property
    def kept_nonexact(self) -> int:
        return sum(g.kept_nonexact for g in self.groups)

    @property
    def folded_map(self) -> int:
        return sum(g.folded_map for g in self.groups)

    def to_dict(self) -> dict:
        return {
            "channels_removed": self.filters_removed,
            "filters_removed": self.filters_removed,
            "filters_kept_for_alignment": self.filters_kept_for_alignment,
            "kept_nonexact": self.kept_nonexact,
            "folded_into_bias_maps": self.folded_map,
            "branches_removed": self.branches_removed,
            "layers": [vars(lc) for lc in self.layers],
            "groups": [vars(g) for g in self.groups],
            "decomposed": self.decomposed,
            "skipped": self.skipped,
        }


def _cat_inputs(graph: cg.ChannelGraph) -> dict[int, list[cg.CatEdge]]:
    """Cat output group id → the concatenation edges that fill it."""
    out: dict[int, list[cg.CatEdge]] = {}
    for g in graph.groups:
        for e in g.sinks:
            if isinstance(e, cg.CatEdge):
                out.setdefault(graph.out_group[e.consumer], []).append(e)
    return out


def _foldable(graph: cg.ChannelGraph, e: cg.MixEdge, mode: str) -> torch.Tensor:
    """[C] bool: channels the consumer of `e` can absorb. mode "maps": any input-independent channel (bias maps
    allowed); "uniform": constants a consumer sees as constants (no zero padding, or the constant is 0); "loose":
    any independent channel (what could be folded if the input size were known)."""
    if mode in ("maps", "loose"):
        return graph.indep[e.member]
    const, value = graph.const[e.member], graph.value[e.member]
    return const & (e.folds_any_constant | value.eq(0).all(1))


def _need(
    graph: cg.ChannelGraph,
    g: cg.Group,
    keep: dict[int, torch.Tensor],
    mode: str,
    cat_in: dict[int, list[cg.CatEdge]] | None = None,
) -> torch.Tensor:
    """Channels of `g` some sink still reads (given what is kept downstream) and cannot absorb, plus, for a
    concatenation's output group, the channels its inputs keep (a cat passes on every channel it is given)."""
    need = torch.zeros(g.size, dtype=torch.bool)
    for e in g.sinks:
        kept_out = keep[graph.out_group[e.consumer]]
        if isinstance(e, cg.CatEdge):
            need |= kept_out[e.offset : e.offset + e.size]
        elif isinstance(e, cg.SelectEdge):
            need[e.index[kept_out & e.scale.ne(0)]] = True
        else:
            need |= e.nonzero[kept_out].any(0) & ~_foldable(graph, e, mode)
    for e in (cat_in or {}).get(g.gid, []):
        need[e.offset : e.offset + e.size] |= keep[graph.group_of[e.member]]
    return need


def _prefer(graph: cg.ChannelGraph, g: cg.Group, candidates: torch.Tensor) -> int:
    """The channel kept when all are removable: one that is constant at its sources needs nothing upstream."""
    ok = candidates.clone()
    for n in g.sources:
        ok &= graph.const[n]
    pick = ok if ok.any() else candidates
    return int(torch.nonzero(pick)[0])


def solve(
    graph: cg.ChannelGraph, forced: dict[int, torch.Tensor] | None = None, mode: str = "maps"
) -> dict[int, torch.Tensor]:
    """Greatest fixpoint of 'keep what a sink needs (or what is forced)': keep sets only shrink, so this
    terminates. Forced channels count as needed, so whatever they read upstream is kept too. A cat's input keeps
    what the cat's readers need; the cat then passes on whatever its inputs kept (`_close_cats`)."""
    keep = {g.gid: torch.ones(g.size, dtype=torch.bool) for g in graph.groups}
    changed = True
    while changed:
        changed = False
        for g in graph.groups:
            if g.pins:
                continue
            need = _need(graph, g, keep, mode)
            if forced is not None:
                need |= forced[g.gid]
            new = keep[g.gid] & need
            if not new.any():
                new[_prefer(graph, g, keep[g.gid])] = True
            if not torch.equal(new, keep[g.gid]):
                keep[g.gid], changed = new, True
    _close_cats(graph, keep)
    return keep


def _close_cats(graph: cg.ChannelGraph, keep: dict[int, torch.Tensor]) -> None:
    """A cat passes on every channel its inputs keep: add to each cat group what its inputs kept for other readers
    (or to stay non-empty). Only adds channels whose values exist upstream, so nothing else changes; repeated for
    cats of cats until stable (keep sets only grow)."""
    cat_in = _cat_inputs(graph)
    changed = True
    while changed:
        changed = False
        for gid, edges in cat_in.items():
            new = keep[gid].clone()
            for e in edges:
                new[e.offset : e.offset + e.size] |= keep[graph.group_of[e.member]]
            if not torch.equal(new, keep[gid]):
                keep[gid], changed = new, True


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


def solve_aligned(
    graph: cg.ChannelGraph, align: int, mode: str = "maps"
) -> tuple[dict[int, torch.Tensor], dict[int, int]]:
    """Keep sets whose counts are multiples of `align`, plus how many channels each group kept for that.

    Padding a group may keep more upstream channels, which may need padding in turn: iterate until stable
    (the forced sets only grow, so this terminates).
    """
    exact = solve(graph, mode=mode)
    keep = exact
    if align > 1:
        while True:
            forced = _aligned(graph, keep, align)
            if all(torch.equal(forced[gid], keep[gid]) for gid in keep):
                break
            keep = solve(graph, forced, mode)
    extra = {gid: int(keep[gid].sum()) - int(exact[gid].sum()) for gid in keep}
    return keep, extra


def _contribution(graph: cg.ChannelGraph, e: cg.MixEdge, chans: torch.Tensor) -> torch.Tensor:
    """What channels `chans` (input-independent) add to the consumer's output: [O] for a linear, [O, Ho, Wo]
    for a conv, computed from the value recorded at trace time (exact: it does not depend on the input)."""
    m = graph.layer(e.consumer)
    act = graph.act(e.member)
    if act is None:
        raise RuntimeError(f"{e.member.name}: no recorded value (trace with channel_graph.trace)")
    idx = torch.nonzero(chans).flatten()
    if isinstance(m, nn.Linear):
        feats = cg.expand(idx, graph.mult[e.member])
        return (act.flatten(1)[:, feats].to(m.weight.dtype) @ m.weight[:, feats].T)[0]
    x = act[:, idx].to(m.weight.dtype)
    return m._conv_forward(x, m.weight[:, idx], None)[0]


@torch.no_grad()
def _fold(
    graph: cg.ChannelGraph, g: cg.Group, removed: torch.Tensor, mode: str, maps: dict[fx.Node, torch.Tensor]
) -> tuple[int, int]:
    """Fold the removed input-independent channels into each consumer: the position-independent part into its
    bias, the rest into `maps` (consumer → [O, Ho, Wo], added after reindexing). Returns (folded, of which
    through a map)."""
    folded = torch.zeros(g.size, dtype=torch.bool)
    by_map = torch.zeros(g.size, dtype=torch.bool)
    for e in g.sinks:
        if not isinstance(e, cg.MixEdge):
            continue
        chans = removed & _foldable(graph, e, mode) & e.nonzero.any(0)
        if not chans.any():
            continue
        contrib = _contribution(graph, e, chans)
        if not contrib.ne(0).any():
            continue
        m = graph.layer(e.consumer)
        if m.bias is None:
            m.bias = nn.Parameter(torch.zeros(m.weight.shape[0], dtype=m.weight.dtype))
        if contrib.dim() == 1:
            m.bias.data += contrib
        else:
            flat = contrib.reshape(contrib.shape[0], -1)
            uni = cg.uniform(contrib)
            m.bias.data += torch.where(uni, flat[:, 0], torch.zeros_like(flat[:, 0]))
            if not uni.all():
                rest = torch.where(uni.view(-1, 1, 1), torch.zeros_like(contrib), contrib)
                maps[e.consumer] = maps[e.consumer] + rest if e.consumer in maps else rest
                # channels that are not a constant the consumer sees as one needed the map
                by_map |= chans & ~_foldable(graph, e, "uniform")
        folded |= chans
    return int(folded.sum()), int(by_map.sum())


@torch.no_grad()
def _insert_bias_maps(
    graph: cg.ChannelGraph, maps: dict[fx.Node, torch.Tensor], index: dict[int, torch.Tensor]
) -> None:
    """Add each consumer's bias map after it, or after the BatchNorm that follows it (scaled by the BN's γ/σ),
    so the exporter can still fold that BN into the conv."""
    gm = graph.gm
    for node, value in maps.items():
        gid = graph.out_group[node]
        if gid in index:
            value = value.index_select(0, index[gid])
        anchor = node
        users = list(node.users)
        bn = graph.module_of(users[0], nn.BatchNorm2d) if len(users) == 1 else None
        # a BN that normalizes by batch statistics (no running ones) is not affine in its input: the map stays before it
        if bn is not None and bn.running_var is not None:
            scale = torch.rsqrt(bn.running_var + bn.eps)
            if bn.affine:
                scale = scale * bn.weight.detach()
            value, anchor = value * scale.view(-1, 1, 1), users[0]
        name = f"{anchor.target}_bias_map"
        gm.add_submodule(name, cg.BiasMap(value))
        with gm.graph.inserting_after(anchor):
            new = gm.graph.call_module(name, (anchor,))

        def not_the_map(u: fx.Node, new: fx.Node = new) -> bool:
            return u is not new

        anchor.replace_all_uses_with(new, delete_user_cb=not_the_map)
    gm.graph.lint()
    gm.recompile()


def _layer_kind(m: nn.Module) -> str:
    if isinstance(m, nn.Linear):
        return "linear"
    return "depthwise" if isinstance(m, nn.Conv2d) and m.groups > 1 else "conv"


def _report_group(
    graph: cg.ChannelGraph,
    g: cg.Group,
    keep: dict[int, torch.Tensor],
    mode: str,
    folded: tuple[int, int] = (0, 0),
    aligned: int = 0,
    cat_in: dict[int, list[cg.CatEdge]] | None = None,
) -> GroupCompaction:
    kept = keep[g.gid]
    cat_in = _cat_inputs(graph) if cat_in is None else cat_in
    strict = _need(graph, g, keep, mode, cat_in)
    loose = _need(graph, g, keep, "loose", cat_in)
    nonexact = int((kept & strict & ~loose).sum())
    if g.pins:
        dead = int((~loose).sum()) if g.sinks else 0
        return GroupCompaction(g.gid, _owners(g), g.size, g.size, kept_pinned=dead, pins=list(g.pins))
    nonempty = int((kept & ~strict).sum()) - aligned
    return GroupCompaction(
        g.gid,
        _owners(g),
        g.size,
        int(kept.sum()),
        folded[0],
        nonexact,
        max(nonempty, 0),
        kept_aligned=aligned,
        folded_map=folded[1],
    )


def _owners(g: cg.Group) -> list[str]:
    return [str(n.target) for n in (*g.sources, *g.internal) if n.op == "call_module"]


def _trace(model: nn.Module, example_input: torch.Tensor, report: CompactionReport) -> fx.GraphModule | None:
    try:
        return cg.trace(model, example_input)
    except Exception as exc:  # untraceable models are exported as they are
        report.skipped.append(f"<model>: not traceable by torch.fx ({type(exc).__name__}: {exc})"[:300])
        return None


def _exclusive_modules(gm: fx.GraphModule, root: fx.Node) -> list[str]:
    """Modules called only on the way to `root` (what disappears with it)."""
    users = {n: set(n.users) for n in gm.graph.nodes}
    dead, todo = {root}, list(root.all_input_nodes)
    while todo:
        n = todo.pop()
        if n in dead or n.op == "placeholder" or not users[n] <= dead:
            continue
        dead.add(n)
        todo.extend(n.all_input_nodes)
    return [str(n.target) for n in gm.graph.nodes if n in dead and n.op == "call_module"]


@torch.no_grad()
def fold_constant_branches(graph: cg.ChannelGraph, report: CompactionReport, input_size_known: bool) -> bool:
    """Replace `live + branch` by `live + value` (a BiasMap) where `branch` is input-independent in every channel,
    then drop the branch's nodes and modules. Returns True when the graph changed (it must be traced again).

    Why: a residual branch whose every output channel is dead or constant computes one fixed tensor; keeping it
    costs its convs and leaves all-zero filters in the export. A value that varies with position needs the
    input size (`input_size_known`); a per-channel constant does not.
    """
    gm = graph.gm
    changed = False
    for node in list(gm.graph.nodes):
        name = node.target if node.op == "call_method" else getattr(node.target, "__name__", "")
        if graph.kind.get(node) != "binary" or name not in _ADDS:
            continue
        a, b = node.args[0], node.args[1]
        if not (isinstance(a, fx.Node) and isinstance(b, fx.Node)) or a not in graph.indep or b not in graph.indep:
            continue
        ia, ib = bool(graph.indep[a].all()), bool(graph.indep[b].all())
        if ia == ib or (ia and name.startswith(("sub", "isub"))):
            continue  # nothing to fold, or `constant − live` (not a plain offset)
        live, dead = (a, b) if ib else (b, a)
        act = graph.act(dead)
        if act is None:
            raise RuntimeError(f"{dead.name}: no recorded value (trace with channel_graph.trace)")
        value = act[0]
        if name.startswith(("sub", "isub")):
            value = -value
        per_channel = bool(cg.uniform(value).all()) if value.dim() > 1 else True
        if value.dim() > 1 and per_channel:
            value = value.reshape(value.shape[0], -1)[:, :1].reshape(value.shape[0], *[1] * (value.dim() - 1))
        elif not per_channel and not input_size_known:
            report.skipped.append(
                f"{node.name}: branch is input-independent but varies with position; input size unknown"
            )
            continue
        modules = _exclusive_modules(gm, dead)
        filters = sum(
            m.out_channels if isinstance(m, nn.Conv2d) else m.out_features
            for m in (gm.get_submodule(t) for t in modules)
            if isinstance(m, (nn.Conv2d, nn.Linear)) and (not isinstance(m, nn.Conv2d) or m.groups == 1)
        )
        target = f"{node.name}_constant"
        gm.add_submodule(target, cg.BiasMap(value))
        with gm.graph.inserting_after(node):
            new = gm.graph.call_module(target, (live,))
        node.replace_all_uses_with(new)
        gm.graph.erase_node(node)
        graph.indep[new], graph.kind[new] = graph.indep[live], "internal"  # live + value: as independent as live
        report.branches_removed.append(
            {"add": node.name, "modules": modules, "filters": filters, "value": "per channel" if per_channel else "map"}
        )
        changed = True
    if changed:
        gm.graph.eliminate_dead_code()
        gm.delete_all_unused_submodules()
        gm.graph.lint()
        gm.recompile()
    return changed


def _reported_layers(graph: cg.ChannelGraph, g: cg.Group) -> list[fx.Node]:
    return [
        n
        for n in (*g.sources, *g.internal)
        if n.op == "call_module" and n not in graph.selections and isinstance(graph.module(n), (nn.Conv2d, nn.Linear))
    ]


def _layer_zero_filters(
    graph: cg.ChannelGraph,
    g: cg.Group,
    keep: dict[int, torch.Tensor],
    mode: str,
    layers: list[LayerCompaction],
    cat_in: dict[int, list[cg.CatEdge]],
) -> None:
    """Count, per layer, the kept filters whose output is input-independent (an all-zero filter once the exporter
    folds the following BN), and say why each is still there: a channel another writer of the group keeps alive
    (residual add), or the group-level reasons already in the note."""
    need = _need(graph, g, keep, mode, cat_in)
    for n, lc in zip(_reported_layers(graph, g), layers, strict=True):
        users = list(n.users)
        after = users[0] if len(users) == 1 and graph.is_module(users[0], nn.BatchNorm2d, nn.BatchNorm1d) else n
        dead = keep[g.gid] & graph.indep.get(after, torch.zeros(g.size, dtype=torch.bool))
        lc.zero_filters = int(dead.sum())
        shared = int((dead & need).sum()) if not g.pins else 0
        if g.pins and lc.zero_filters and not lc.note:
            lc.note = f"{lc.zero_filters} all-zero filter(s) kept: {'; '.join(g.pins)}"
        if shared:
            reason = (
                f"{shared} all-zero filter(s) kept: the channel still carries input-dependent values elsewhere in its"
                " group (another writer of a residual add, or an SE scale multiplying it)"
            )
            lc.note = "; ".join(filter(None, [lc.note, reason]))


def _report_unreadable_convs(graph: cg.ChannelGraph, report: CompactionReport) -> None:
    """Convs the graph could not place in a group (e.g. a depthwise conv after a channel shuffle) stay as they
    are; list them with their input-independent filters and the reason, so no all-zero filter goes unexplained."""
    done = {lc.name for lc in report.layers}
    for n in graph.gm.graph.nodes:
        m = graph.module_of(n, nn.Conv2d)
        if m is None or n.target in done:
            continue
        users = list(n.users)
        bn = graph.module_of(users[0], nn.BatchNorm2d) if len(users) == 1 else None
        dead = m.weight.detach().flatten(1).eq(0).all(1)  # what the exporter shows: zero filters, BN γ = 0 included
        if bn is not None and bn.affine:
            dead |= bn.weight.detach().eq(0)
        gid = graph.group_of.get(n, -1)
        why = "; ".join(graph.groups[gid].pins) if gid >= 0 else "its input has no channel axis the graph tracks"
        report.layers.append(
            LayerCompaction(
                str(n.target),
                m.out_channels,
                m.out_channels,
                note=f"not compacted: {why}",
                kind=_layer_kind(m),
                group=gid,
                zero_filters=int(dead.sum()),
            )
        )


@torch.no_grad()
def compact_channels(
    gm: fx.GraphModule, example_input: torch.Tensor, report: CompactionReport, config: CompactionConfig
) -> fx.GraphModule:
    """Remove every channel that is exactly removable from a traced GraphModule (in place, or a re-traced copy
    when a constant branch was folded away first); with `align` > 1, keep just enough dead channels that every
    group's count is a multiple of `align`."""
    graph = cg.build(gm)
    if fold_constant_branches(graph, report, config.input_size_known):
        gm = cg.trace(gm, example_input)
        graph = cg.build(gm)
    mode = "maps" if config.input_size_known else "uniform"
    keep, aligned = solve_aligned(graph, config.align, mode)
    index: dict[int, torch.Tensor] = {}
    maps: dict[fx.Node, torch.Tensor] = {}
    cat_in = _cat_inputs(graph)
    for g in graph.groups:
        folded = (0, 0)
        if not g.pins and not keep[g.gid].all():
            folded = _fold(graph, g, ~keep[g.gid], mode, maps)
            index[g.gid] = torch.nonzero(keep[g.gid]).flatten()
        gr = _report_group(graph, g, keep, mode, folded, aligned.get(g.gid, 0), cat_in)
        report.groups.append(gr)
        layers = []
        for n in _reported_layers(graph, g):
            note = []
            if gr.kept_nonexact:
                note.append(
                    f"{gr.kept_nonexact} dead channel(s) kept: constant meets zero padding and the input size is"
                    " unknown (no bias map)"
                )
            if gr.kept_nonempty:
                note.append("one removable channel kept so the layer is not empty")
            if gr.kept_pinned:
                note.append(f"{gr.kept_pinned} dead channel(s) kept: {'; '.join(g.pins)}")
            if gr.kept_aligned:
                note.append(f"{gr.kept_aligned} removable channel(s) kept to align the count to a multiple")
            kind = _layer_kind(graph.module(n))
            layers.append(
                LayerCompaction(
                    str(n.target),
                    g.size,
                    gr.channels_after,
                    gr.kept_nonexact,
                    "; ".join(note),
                    kind,
                    g.gid,
                    gr.kept_aligned,
                )
            )
        if gr.kept_pinned:
            report.skipped.extend(f"group {g.gid} ({', '.join(gr.layers) or 'no layers'}): {p}" for p in g.pins)
        _layer_zero_filters(graph, g, keep, mode, layers, cat_in)
        report.layers.extend(layers)
    _report_unreadable_convs(graph, report)
    cg.reindex(graph, index)
    if maps:
        _insert_bias_maps(graph, maps, index)
    return gm


@torch.no_grad()
def compact(
    model: nn.Module, example_input: torch.Tensor, config: CompactionConfig | None = None
) -> tuple[nn.Module, CompactionReport]:
    """Return a compacted copy (eval mode) computing the same function, and what was removed.

    The input model is untouched. The result is a torch.fx GraphModule whose submodules keep the original
    names, so per-layer costs line up with the masked model's. Compaction never raises on a model it does not
    understand: a failure leaves the model as it was, with the reason in `report.skipped`.
    """
    config = config or CompactionConfig()
    original = model
    model = copy.deepcopy(model).eval()
    report = CompactionReport()
    gm = _trace(model, example_input, report)
    if gm is None:
        return model, report
    try:
        gm = compact_channels(gm, example_input, report, config)
    except Exception as exc:  # a safety net: an unforeseen graph must not stop an export
        report.layers, report.groups, report.branches_removed = [], [], []
        report.skipped.append(
            f"<model>: channel compaction failed, model left as it was ({type(exc).__name__}: {exc})"[:300]
        )
        gm = _trace(copy.deepcopy(original).eval(), example_input, report)
        if gm is None:
            return copy.deepcopy(original).eval(), report
    if config.decompose:
        gm2 = _trace(copy.deepcopy(gm), example_input, report)  # a copy: a failed rewrite leaves `gm` whole
        if gm2 is not None:
            try:
                report.decomposed = [vars(d) for d in decompose(gm2, config.decomposition)]
                gm = gm2
            except Exception as exc:
                report.skipped.append(
                    f"<model>: kernel decomposition failed, skipped ({type(exc).__name__}: {exc})"[:300]
                )
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
        conv = graph.layer(node)
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
                    graph.layer(e.consumer).weight[:, cg.expand(idx, graph.mult[e.member])] = 0
    return model
