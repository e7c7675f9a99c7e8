"""Which BatchNorm channels a network can lose, read off the one channel-dependency graph (models/channel_graph.py)
that compaction also uses: one place that knows how each op treats channels.

A BN layer is *prunable* when every path from its output reaches a conv or linear layer through ops that map
channel c to channel c without parameters (activation, pooling, dropout, flatten, channel selection). A BN whose
output feeds a residual add or a concatenation (post-activation ResNets' last BN of a block, shortcut BNs, the
stem BN) is not: "residual outputs are not pruned". Pre-activation BNs (PreResNet's BN1, reading the residual
stream but feeding only conv1 through the selection layer) are prunable.

Pruning channel c of a prunable BN zeroes its γ and β (so the channel outputs exactly 0), the
producing conv's filter c when that conv feeds nothing else, and every consumer weight reading c;
channel-selection layers on the way get index 0. Then models/compact.py sees a dead channel.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import torch
import torch.fx as fx
from torch import nn

from ticketbench.models import channel_graph as cg
from ticketbench.models.masks import Masks


@dataclass
class BNGroup:
    """One prunable BN layer and the weights that read or write its channels."""

    bn: str  # BN module path
    channels: int
    producer: str | None  # conv whose filters feed only this BN (None: the BN reads a residual stream)
    consumers: list[str] = field(default_factory=list)  # conv/linear layers reading these channels
    selects: list[str] = field(default_factory=list)  # ChannelSelection layers on the way


def _example_input(model: nn.Module) -> torch.Tensor:
    """A CIFAR-sized input with the first conv's channel count (callers with data pass their own)."""
    first = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
    return torch.zeros(1, first.in_channels if first is not None else 3, 32, 32)


def _stop_reason(graph: cg.ChannelGraph, node: fx.Node, channels: int, group: BNGroup) -> str | None:
    """None when the walk goes on through `node` (or ends at a consumer, recorded in `group`), else why the BN
    is not prunable, from how the channel graph read the node."""
    kind = graph.kind.get(node)
    what = node.target if node.op == "call_module" else getattr(node.target, "__name__", node.target)
    if node.op == "call_module" and isinstance(graph.module(node), (nn.Conv2d, nn.Linear)):
        m = graph.module(node)
        mult_in = graph.mult.get(node.all_input_nodes[0]) if node.all_input_nodes else None
        one_to_one = kind == "source" and (isinstance(m, nn.Conv2d) or mult_in == 1)
        depthwise = kind == "internal" and isinstance(m, nn.Conv2d) and m.groups == m.in_channels == channels
        if not (one_to_one or depthwise):
            return f"consumer {node.target} does not read channels one to one"
        if node.target not in group.consumers:
            group.consumers.append(cg.module_path(node))
        return None
    if kind == "select":
        group.selects.append(cg.module_path(node))
        return None
    if kind == "follow":
        return None
    if kind in ("binary", "cat"):
        return "residual output (feeds an add/cat)"
    return f"feeds {node.op} {what}"


def bn_groups(model: nn.Module, example_input: torch.Tensor | None = None) -> tuple[list[BNGroup], list[str]]:
    """(prunable BN groups in module order, names of BN layers left alone with the reason).

    The model is traced on a copy in eval mode (its BN statistics are not touched); `example_input` defaults to
    a 32x32 image with the first conv's channels.
    """
    x = _example_input(model) if example_input is None else example_input
    graph = cg.build(cg.trace(copy.deepcopy(model).eval(), x))
    groups, skipped = [], []
    for node in graph.gm.graph.nodes:
        bn = graph.module_of(node, nn.BatchNorm2d)
        if bn is None:
            continue
        src = node.args[0]
        producer = None
        if isinstance(src, fx.Node) and graph.is_module(src, nn.Conv2d):
            producer = cg.module_path(src) if len(src.users) == 1 else None
        group = BNGroup(cg.module_path(node), bn.num_features, producer)
        frontier, reason = list(node.users), None
        while frontier and not reason:
            nxt = frontier.pop()
            before = len(group.consumers)
            reason = _stop_reason(graph, nxt, bn.num_features, group)
            if reason is None and len(group.consumers) == before and graph.kind.get(nxt) in ("follow", "select"):
                frontier.extend(nxt.users)
        if reason or not group.consumers:
            skipped.append(f"{node.target}: {reason or 'no consumer'}")
        else:
            groups.append(group)
    return groups, skipped


def bn_gammas(model: nn.Module, groups: list[BNGroup]) -> list[torch.Tensor]:
    mods = dict(model.named_modules())
    return [mods[g.bn].weight.detach() for g in groups]


def channel_masks(gammas: list[torch.Tensor], ratio: float) -> list[torch.Tensor]:
    """Network-slimming channel masks: one global threshold over all |γ|, strict '>' keeps.

    As in the EB/slimming code the threshold is the sorted |γ| at index ⌊ratio·N⌋ (N channels in all), so
    a channel whose |γ| equals the threshold is pruned. `ratio` = 0 keeps everything. A layer that would
    lose every channel keeps its largest-|γ| channel (a network cannot pass signal through 0 channels).
    """
    if ratio <= 0:
        return [torch.ones_like(g, dtype=torch.bool) for g in gammas]
    flat = torch.cat([g.abs().flatten() for g in gammas])
    thr = torch.sort(flat).values[min(int(flat.numel() * ratio), flat.numel() - 1)]
    masks = []
    for g in gammas:
        keep = g.abs() > thr
        if not keep.any():
            keep[g.abs().argmax()] = True
        masks.append(keep)
    return masks


def weight_masks(model: nn.Module, groups: list[BNGroup], keeps: list[torch.Tensor]) -> Masks:
    """Parameter masks that kill the pruned channels: BN γ/β, producer filters, consumer inputs."""
    mods = dict(model.named_modules())
    masks: Masks = {}

    def put(name: str, mask: torch.Tensor) -> None:
        masks[name] = masks[name] * mask if name in masks else mask

    for g, keep in zip(groups, keeps, strict=True):
        k = keep.float()
        put(f"{g.bn}.weight", k.clone())
        put(f"{g.bn}.bias", k.clone())
        if g.producer is not None:
            w = mods[g.producer].weight
            put(f"{g.producer}.weight", k.view(-1, *[1] * (w.dim() - 1)).expand_as(w).clone())
        for c in g.consumers:
            m = mods[c]
            shape: tuple[int, ...]
            if isinstance(m, nn.Conv2d) and m.groups > 1:  # depthwise: filter c reads only channel c
                shape = (-1, 1, 1, 1)
            else:
                shape = (1, -1, 1, 1) if isinstance(m, nn.Conv2d) else (1, -1)
            put(f"{c}.weight", k.view(shape).expand_as(m.weight).clone())
    return masks


@torch.no_grad()
def apply_channel_selection(model: nn.Module, groups: list[BNGroup], keeps: list[torch.Tensor]) -> None:
    """Set the selection layers' indexes to the kept channels (network slimming's bookkeeping)."""
    mods = dict(model.named_modules())
    for g, keep in zip(groups, keeps, strict=True):
        for s in g.selects:
            mods[s].indexes.copy_(keep.float())
