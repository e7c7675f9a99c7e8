"""Which weights a ticket may keep, by structure: single weights, whole kernels, or grouped kernels.

Every structured ticket method (mpt, magnitude, lth) ranks *units* by a score and keeps the best ones:

- `unstructured`: a unit is one weight;
- `kernel`: a unit is a whole k×k kernel W[o, c], scored by the mean of its weights' scores (mean, not sum,
  so 1×1 shortcut kernels and 3×3 kernels compete per weight) and kept or pruned as a whole, so the
  acceleration rate counts exactly these units; Linear weights stay single units;
- `group` (lottery-regulated grouped kernels, Zhong et al., ICLR 2022): every channel group (a conv output
  and every tensor sharing its channel axis, e.g. a residual stream) splits its channels into g classes; a
  conv may keep kernel W[o, c] only when o and c share a class. Each conv is then block diagonal after a
  permutation that is the same for every conv touching the channel group, which models/decompose.py
  rewrites as a grouped conv with no Gather. The classes are chosen by score: alternating balanced
  assignment that maximizes the score mass the block diagonal keeps ("lottery-regulated": the grouping
  follows the ticket's own importance). Inside the support, single weights are selected by score.

Selection (`select_units`) is shared by sorting and thresholding: a per-layer floor of units is kept first
(so global pruning never empties a layer unless asked), then the rest of the budget goes to the best units
over all layers (global) or per layer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn

from ticketbench.models import channel_graph as cg
from ticketbench.models.decompose import DecomposeConfig, dense_convs


def unit_scores(score: torch.Tensor, structure: str) -> torch.Tensor:
    """Scores per unit: the tensor itself, or the mean over each conv kernel's taps when structure=kernel."""
    if structure == "kernel" and score.dim() == 4:
        return score.flatten(2).mean(-1)
    return score


def unit_size(shape: torch.Size | tuple[int, ...], structure: str) -> int:
    """Weights per unit (k·k for a conv kernel when structure=kernel, else 1)."""
    return math.prod(shape[2:]) if structure == "kernel" and len(shape) == 4 else 1


def expand_units(unit_mask: torch.Tensor, shape: torch.Size | tuple[int, ...]) -> torch.Tensor:
    """A unit mask back to the weight's shape (kernel masks broadcast over the taps)."""
    if unit_mask.shape == torch.Size(shape):
        return unit_mask
    return unit_mask[:, :, None, None].expand(shape).contiguous()


def select_units(
    scores: list[torch.Tensor],
    sizes: list[int],
    keep: int,
    allowed: list[torch.Tensor | None] | None = None,
    floor: list[int] | None = None,
) -> list[torch.Tensor]:
    """Bool masks over units: the per-layer floor first, then the best units until `keep` weights are kept.

    `scores` are per-layer unit scores (higher is better), `sizes` the weights per unit of each layer,
    `allowed` optional per-layer bool masks (units outside are never kept), `floor` the weights each layer
    keeps at least (rounded up to whole units). With unit sizes 1 exactly `keep` weights are kept (if
    allowed); with larger units the greedy stops before the first unit that would overflow the budget.
    """
    n = len(scores)
    allowed = allowed or [None] * n
    floor = floor or [0] * n
    counts = [s.numel() for s in scores]
    flat = torch.cat([s.detach().flatten().float() for s in scores])
    ok = torch.cat(
        [torch.ones(c, dtype=torch.bool) if a is None else a.flatten().bool() for c, a in zip(counts, allowed)]
    )
    size = torch.cat([torch.full((c,), z, dtype=torch.long) for c, z in zip(counts, sizes)])
    kept = torch.zeros_like(ok)
    used, start = 0, 0
    for i in range(n):  # the floor: each layer's best allowed units first
        sl = slice(start, start + counts[i])
        k = min(math.ceil(floor[i] / sizes[i]), int(ok[sl].sum()))
        if k > 0:
            kept[start + torch.where(ok[sl], flat[sl], -torch.inf).topk(k).indices] = True
            used += k * sizes[i]
        start += counts[i]
    cand = torch.nonzero(ok & ~kept).flatten()
    budget = keep - used
    if budget > 0 and cand.numel():
        if len(set(sizes)) == 1:  # equal units: the top budget // size by an O(n) selection, ties by position
            take = _top_indices(flat[cand], budget // sizes[0])
        else:
            order = torch.sort(flat[cand], descending=True, stable=True).indices
            take = order[torch.cumsum(size[cand][order], 0) <= budget]
        kept[cand[take]] = True
    return [m.view_as(s) for m, s in zip(kept.split(counts), scores)]


def _top_indices(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Indices of the k largest scores (among equal scores at the cut, the first positions), without a sort."""
    n = scores.numel()
    if k >= n:
        return torch.arange(n)
    if k <= 0:
        return torch.empty(0, dtype=torch.long)
    cut = -torch.kthvalue(-scores, k).values
    above = torch.nonzero(scores > cut).flatten()
    at = torch.nonzero(scores == cut).flatten()[: k - above.numel()]
    return torch.cat([above, at])


def unit_thresholds(
    scores: list[torch.Tensor],
    masks: list[torch.Tensor],
    allowed: list[torch.Tensor | None] | None = None,
    floor: list[int] | None = None,
    sizes: list[int] | None = None,
) -> list[torch.Tensor]:
    """Per-layer thresholds t such that `score > t` (within `allowed`) keeps what `masks` keeps (no ties).

    One global threshold, the best unit left out anywhere (the Efficient-MPT report's single threshold),
    except in layers held up only by their floor: those compare with their own best unit left out.
    """
    n = len(scores)
    allowed = allowed or [None] * n
    floor = floor or [0] * n
    sizes = sizes or [1] * n
    best_out = []
    for s, m, a in zip(scores, masks, allowed):
        out = ~m.bool() if a is None else (~m.bool() & a.bool())
        best_out.append(s.detach().float()[out].max() if out.any() else torch.tensor(-torch.inf))
    t_global = max(best_out, key=float) if best_out else torch.tensor(-torch.inf)
    thresholds = []
    for i in range(n):
        kept = int(masks[i].sum()) * sizes[i]
        floor_bound = floor[i] > 0 and kept <= math.ceil(floor[i] / sizes[i]) * sizes[i]
        thresholds.append(best_out[i] if floor_bound else t_global)
    return thresholds


def threshold_units(
    scores: list[torch.Tensor], thr: list[torch.Tensor], allowed: list[torch.Tensor | None] | None = None
) -> list[torch.Tensor]:
    allowed = allowed or [None] * len(scores)
    return [(s.detach() > t) if a is None else ((s.detach() > t) & a.bool()) for s, t, a in zip(scores, thr, allowed)]


# -- group structure ----------------------------------------------------------------------------------------


@dataclass
class ConvLink:
    """A dense conv seen from the channel graph: which channel groups it reads and writes."""

    weight: str  # parameter name
    g_in: int | None  # None: reads a pinned group (the image) or one we cannot permute
    g_out: int | None
    macs: int  # dense MACs per image


@dataclass
class GroupPlan:
    """Classes per channel group and the resulting block-diagonal support per conv."""

    groups: dict[int, int]  # channel group id → classes g
    labels: dict[int, torch.Tensor]  # channel group id → class of each channel
    links: list[ConvLink]
    conv_groups: dict[str, int] = field(default_factory=dict)  # weight name → blocks (1 = dense support)

    def support(self, shapes: dict[str, torch.Size]) -> dict[str, torch.Tensor]:
        """Bool [out, in] kernel support per conv weight (every kernel allowed where a conv stays dense)."""
        out = {}
        for link in self.links:
            o, i = shapes[link.weight][:2]
            g = self.conv_groups.get(link.weight, 1)
            if g <= 1:
                out[link.weight] = torch.ones(o, i, dtype=torch.bool)
                continue
            assert link.g_in is not None and link.g_out is not None  # plan_groups splits only convs between groups
            lo = coarse_labels(self.labels[link.g_out], self.groups[link.g_out], g)
            li = coarse_labels(self.labels[link.g_in], self.groups[link.g_in], g)
            out[link.weight] = lo[:, None] == li[None, :]
        return out


def conv_links(model: nn.Module, input_shape: tuple[int, ...]) -> tuple[list[ConvLink], dict[int, int], set[int]]:
    """Dense convs with their channel groups; (links, group sizes, pinned group ids)."""
    was_training = model.training
    gm = cg.trace(model.eval(), torch.zeros(1, *input_shape))
    model.train(was_training)
    graph = cg.build(gm)
    sizes = {g.gid: g.size for g in graph.groups}
    pinned = {g.gid for g in graph.groups if g.pins}
    links = []
    for node, m in dense_convs(gm):
        g_in = graph.group_of.get(node.all_input_nodes[0])
        g_out = graph.group_of.get(node)
        hw = math.prod(node.meta["tensor_meta"].shape[2:])
        macs = m.out_channels * m.in_channels * m.kernel_size[0] * m.kernel_size[1] * hw
        links.append(
            ConvLink(
                f"{node.target}.weight",
                None if g_in is None or g_in in pinned else g_in,
                None if g_out is None or g_out in pinned else g_out,
                macs,
            )
        )
    return links, sizes, pinned


def auto_groups(sizes: list[int], keep_fraction: float, align: int, min_width: int = 1) -> int:
    """The largest power of two g ≤ 1/keep_fraction such that every channel group splits into g classes
    whose width is a multiple of the device's channel alignment and at least `min_width` (1 when none does)."""
    g, best = 2, 1
    while g <= 1.0 / max(keep_fraction, 1e-9) + 1e-9:
        if all(s % g == 0 and (s // g) % align == 0 and s // g >= min_width for s in sizes):
            best = g
        g *= 2
    return best


def classes_per_group(
    sizes: dict[int, int], groups: int | str, keep_fraction: float, align: int = 8, min_width: int = 1
) -> dict[int, int]:
    """Classes g per channel group (id → g; 1 = not split).

    - an integer: that g wherever it divides the group;
    - `uniform`: one g for every group, the largest `auto_groups` allows for all of them at once;
    - `auto`: each group its own `auto_groups`. With one g the narrowest stage caps everything: on ResNet-18
      CIFAR the 64-channel stage allows g = 4 at 16-wide classes, so at 95 % the 256/512-channel stages (most
      weights, half the MACs) stayed 4 blocks and the rest of the sparsity was zero kernels inside the blocks,
      which a grouped conv cannot skip (AR 4.48 but MACs only 3.96× fewer). Per group, those stages take
      g = 16. The classes nest (powers of two), so a conv between groups of g₁ and g₂ is min(g₁, g₂) blocks.
    """
    if groups == "auto":
        return {gid: auto_groups([n], keep_fraction, align, min_width) for gid, n in sizes.items()}
    g = auto_groups(list(sizes.values()), keep_fraction, align, min_width) if groups == "uniform" else int(groups)
    return {gid: g if g > 1 and n % g == 0 else 1 for gid, n in sizes.items()}


def coarse_labels(labels: torch.Tensor, classes: int, blocks: int) -> torch.Tensor:
    """The block of each channel when its group's `classes` classes are merged into `blocks` (blocks | classes):
    class c falls in block c // (classes / blocks), so blocks of a conv between two groups nest in both."""
    return labels // (classes // blocks)


def _balanced_assign(aff: torch.Tensor, g: int) -> torch.Tensor:
    """Class per row maximizing affinity, every class holding exactly rows/g rows (greedy by affinity)."""
    n = aff.shape[0]
    cap = n // g
    labels = torch.full((n,), -1, dtype=torch.long)
    room = [cap] * g
    order = torch.argsort(aff.flatten(), descending=True, stable=True)
    for flat in order.tolist():
        r, c = divmod(flat, g)
        if labels[r] < 0 and room[c] > 0:
            labels[r] = c
            room[c] -= 1
    return labels


def plan_groups(
    links: list[ConvLink],
    sizes: dict[int, int],
    importance: dict[str, torch.Tensor],
    groups: int | str,
    keep_fraction: float,
    align: int = 8,
    previous: GroupPlan | None = None,
    iterations: int = 4,
    seed: int = 0,
    decompose_config: DecomposeConfig | None = None,
    min_width: int = 1,
) -> GroupPlan:
    """Classes per channel group from kernel importance ([out, in] per conv weight, e.g. Σ|score| per kernel).

    g per permutable channel group from `groups` (`classes_per_group`: an integer, `uniform` or `auto`); a
    residual stream is one channel group, so every conv that reads or writes it sees the same classes. A conv
    between groups of g₁ and g₂ classes keeps min(g₁, g₂) blocks. A conv whose estimated gain under the
    decomposition cost model (MACs/g plus one node's fixed cost) is below `min_gain`, or that reads the image,
    keeps a dense support.
    """
    dcfg = decompose_config or DecomposeConfig()
    used = sorted({gid for link in links for gid in (link.g_in, link.g_out) if gid is not None})
    per_group = classes_per_group({gid: sizes[gid] for gid in used}, groups, keep_fraction, align, min_width)
    conv_groups = {}
    for link in links:
        gl = 1  # a conv reading or writing no group we may split stays dense
        if link.g_in is not None and link.g_out is not None:
            gl = min(per_group.get(link.g_in, 1), per_group.get(link.g_out, 1))
        if gl > 1 and link.macs / (link.macs / gl + dcfg.node_cost_macs) < dcfg.min_gain:
            gl = 1
        conv_groups[link.weight] = gl
    gen = torch.Generator().manual_seed(seed)
    labels = {}
    for gid in used:
        if previous is not None and gid in previous.labels and previous.groups.get(gid) == per_group[gid]:
            labels[gid] = previous.labels[gid].clone()
        else:
            labels[gid] = torch.randperm(sizes[gid], generator=gen) % per_group[gid]
    active = [link for link in links if conv_groups[link.weight] > 1]
    norm = {k: v / v.sum().clamp_min(1e-12) for k, v in importance.items()}  # every conv weighs the same
    for _ in range(iterations):
        for gid in used:
            gg = per_group[gid]
            if gg <= 1:
                continue
            aff = torch.zeros(sizes[gid], gg)
            for link in active:
                imp = norm[link.weight].float()
                if link.g_out == gid:
                    other, mine = imp, link.g_in
                elif link.g_in == gid:
                    other, mine = imp.t(), link.g_out
                else:
                    continue
                if mine == gid:
                    continue
                assert mine is not None  # an active link (blocks > 1) joins two groups
                blocks = conv_groups[link.weight]  # class k of this group lies in block k // (gg / blocks)
                block_of_other = coarse_labels(labels[mine], per_group[mine], blocks)
                mass = torch.stack([other[:, block_of_other == b].sum(1) for b in range(blocks)], 1)
                aff += mass[:, coarse_labels(torch.arange(gg), gg, blocks)]
            labels[gid] = _balanced_assign(aff, gg)
    return GroupPlan(per_group, labels, links, conv_groups)


@dataclass
class UnitSpace:
    """Named tensors seen as units: per-layer unit scores, unit sizes, allowed units and floors (weights)."""

    names: list[str]
    shapes: list[torch.Size]
    scores: list[torch.Tensor]
    sizes: list[int]
    allowed: list[torch.Tensor | None]
    floors: list[int]

    def select(self, sparsity: float, scope: str = "global", rounding=round) -> list[torch.Tensor]:
        """Unit masks removing `rounding(sparsity·n)` weights over all tensors (global) or per tensor (layer)."""
        numel = [math.prod(s) for s in self.shapes]
        if scope == "layer":
            return [
                select_units([u], [z], n - int(rounding(sparsity * n)), [a], [f])[0]
                for u, z, a, f, n in zip(self.scores, self.sizes, self.allowed, self.floors, numel)
            ]
        total = sum(numel)
        return select_units(self.scores, self.sizes, total - int(rounding(sparsity * total)), self.allowed, self.floors)

    def thresholds(self, unit_masks: list[torch.Tensor], scope: str = "global") -> list[torch.Tensor]:
        if scope == "layer":
            return [
                unit_thresholds([s], [m], [a], [f], [z])[0]
                for s, m, a, f, z in zip(self.scores, unit_masks, self.allowed, self.floors, self.sizes)
            ]
        return unit_thresholds(self.scores, unit_masks, self.allowed, self.floors, self.sizes)

    def compare(self, thr: list[torch.Tensor]) -> list[torch.Tensor]:
        return threshold_units(self.scores, thr, self.allowed)

    def weight_masks(self, unit_masks: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        """Float {0,1} masks of the weights' shapes, by name."""
        return {n: expand_units(k, s).float() for n, s, k in zip(self.names, self.shapes, unit_masks)}


def unit_space(
    scores: dict[str, torch.Tensor],
    structure: str = "unstructured",
    support: dict[str, torch.Tensor] | None = None,
    previous: dict[str, torch.Tensor] | None = None,
    floor_fraction: float = 0.0,
) -> UnitSpace:
    """Units of `scores` (higher is better): single weights, or conv kernels when structure=kernel.

    `support` ([out, in] bool per conv, structure=group) and `previous` masks (never revived) restrict the
    allowed units; `floor_fraction` of every tensor's weights (at least one unit) is always kept.
    """
    unit = "kernel" if structure == "kernel" else "unstructured"
    support = support or {}
    space = UnitSpace([], [], [], [], [], [])
    for n, raw in scores.items():
        s = raw.detach().float().nan_to_num(nan=-torch.inf)  # a diverged score (α > 1, large lr) ranks last
        a = None
        if n in support:
            a = expand_units(support[n], s.shape) if s.dim() == 4 else support[n]
        if previous is not None and n in previous:
            prev = previous[n].bool()
            prev = prev.flatten(2).any(-1) if unit == "kernel" and s.dim() == 4 else prev
            a = prev if a is None else (a & prev)
        space.names.append(n)
        space.shapes.append(s.shape)
        space.scores.append(unit_scores(s, unit))
        space.sizes.append(unit_size(s.shape, unit))
        space.allowed.append(a)
        space.floors.append(max(1, math.ceil(floor_fraction * s.numel())) if floor_fraction > 0 else 0)
    return space


def structured_masks(
    scores: dict[str, torch.Tensor],
    sparsity: float,
    structure: str = "unstructured",
    scope: str = "global",
    plan: GroupPlan | None = None,
    previous: dict[str, torch.Tensor] | None = None,
    floor_fraction: float = 0.0,
    rounding=round,
) -> dict[str, torch.Tensor]:
    """Float {0,1} weight masks keeping the best units of `scores` (higher is better, by parameter name);
    `plan` restricts group-structured convs to their block-diagonal support."""
    support = plan.support({n: s.shape for n, s in scores.items()}) if plan and structure == "group" else None
    space = unit_space(scores, structure, support, previous, floor_fraction)
    return space.weight_masks(space.select(sparsity, scope, rounding))


def kernel_importance(scores: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Σ score over each conv kernel's taps ([out, in] per 4-d tensor): what grouping tries to keep."""
    return {n: s.detach().float().flatten(2).sum(-1) for n, s in scores.items() if s.dim() == 4}
