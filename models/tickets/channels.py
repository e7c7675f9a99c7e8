"""Which BatchNorm channels a network can lose, derived from its graph (torch.fx), not hard-coded indices.

A BN layer is *prunable* when every path from its output reaches a conv or linear layer through
channel-wise ops only (activation, pooling, dropout, channel selection, flatten). A BN whose output
feeds a residual add (post-activation ResNets' last BN of a block, shortcut BNs, the stem BN) is not:
"residual outputs are not pruned". Pre-activation BNs (PreResNet's BN1, reading the residual stream
but feeding only conv1 through the selection layer) are prunable.

Pruning channel c of a prunable BN zeroes its γ and β (so the channel outputs exactly 0), the
producing conv's filter c when that conv feeds nothing else, and every consumer weight reading c;
channel-selection layers on the way get index 0. Then models/compact.py sees a dead channel.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field

import torch
import torch.fx as fx
from torch import nn

from ticketbench.models.masks import Masks
from ticketbench.models.zoo.layers import ChannelSelection

_PASS_MODULES = (
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.Dropout,
    nn.Dropout2d,
    nn.Identity,
    nn.MaxPool2d,
    nn.AvgPool2d,
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveMaxPool2d,
    ChannelSelection,
    nn.Flatten,
)
_PASS_FUNCTIONS = (torch.relu, nn.functional.relu, torch.flatten)
_BLOCKERS = (operator.add, operator.iadd, torch.add, torch.cat)


@dataclass
class BNGroup:
    """One prunable BN layer and the weights that read or write its channels."""

    bn: str  # BN module path
    channels: int
    producer: str | None  # conv whose filters feed only this BN (None: the BN reads a residual stream)
    consumers: list[str] = field(default_factory=list)  # conv/linear layers reading these channels
    selects: list[str] = field(default_factory=list)  # ChannelSelection layers on the way


def _passes(node: fx.Node, mods: dict[str, nn.Module]) -> bool:
    if node.op == "call_module":
        return isinstance(mods[node.target], _PASS_MODULES)
    if node.op == "call_function":
        return node.target in _PASS_FUNCTIONS
    return node.op == "call_method" and node.target in ("flatten", "relu", "relu_")


def _consumer_ok(m: nn.Module, channels: int) -> bool:
    if isinstance(m, nn.Conv2d):
        return m.groups == 1 or (m.groups == m.in_channels == channels)
    return isinstance(m, nn.Linear) and m.in_features == channels


class _Tracer(fx.Tracer):
    """Keeps ChannelSelection as one node (fx would otherwise trace through it into a multiply)."""

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return isinstance(m, ChannelSelection) or super().is_leaf_module(m, qualname)


def bn_groups(model: nn.Module) -> tuple[list[BNGroup], list[str]]:
    """(prunable BN groups in module order, names of BN layers left alone with the reason)."""
    graph = _Tracer().trace(model)
    mods = dict(model.named_modules())
    groups, skipped = [], []
    for node in graph.nodes:
        if node.op != "call_module" or not isinstance(mods[node.target], nn.BatchNorm2d):
            continue
        bn = mods[node.target]
        src = node.args[0]
        producer = None
        if isinstance(src, fx.Node) and src.op == "call_module" and isinstance(mods[src.target], nn.Conv2d):
            producer = src.target if len(src.users) == 1 else None
        group = BNGroup(node.target, bn.num_features, producer)
        frontier, reason = list(node.users), ""
        while frontier and not reason:
            nxt = frontier.pop()
            if nxt.op == "call_module" and isinstance(mods[nxt.target], (nn.Conv2d, nn.Linear)):
                if not _consumer_ok(mods[nxt.target], bn.num_features):
                    reason = f"consumer {nxt.target} does not read channels one to one"
                elif nxt.target not in group.consumers:
                    group.consumers.append(nxt.target)
            elif _passes(nxt, mods):
                if nxt.op == "call_module" and isinstance(mods[nxt.target], ChannelSelection):
                    group.selects.append(nxt.target)
                frontier.extend(nxt.users)
            elif nxt.op == "call_function" and nxt.target in _BLOCKERS:
                reason = "residual output (feeds an add/cat)"
            else:
                reason = f"feeds {nxt.op} {getattr(nxt.target, '__name__', nxt.target)}"
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
