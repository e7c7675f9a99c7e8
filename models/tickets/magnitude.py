"""Magnitude pruning baseline: prune the trained dense network by |w|, then fine-tune with the mask fixed.

Options (MagnitudeOptions): `scope` global | layer | filter (L1-norm filter pruning, Li et al. ICLR 2017) |
nm (N:M semi-structured, default 2:4 as Ampere sparse tensor cores run it; `sparsity` is then 1 − N/M);
`structure` unstructured | kernel | group (with global or layer scope: kernels ranked by mean |w|, or
block-diagonal grouped kernels chosen by Σ|w| per kernel, see models/tickets/structure.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from ticketbench.models.data import DataBundle
from ticketbench.models.masks import Masks, apply_masks, prunable_weights
from ticketbench.models.tickets.base import Ticket, TicketConfig, TicketContext, method_options, register_method
from ticketbench.models.tickets.options import OptionsError, StructureOptions, opt
from ticketbench.models.tickets.structure import conv_links, kernel_importance, plan_groups, structured_masks
from ticketbench.models.train import train

SCOPES = ("global", "layer", "filter", "nm")


@dataclass
class MagnitudeOptions(StructureOptions):
    scope: Literal["global", "layer", "filter", "nm"] = opt(
        "global",
        "global: one threshold over all layers; layer: same fraction per layer; filter: L1-norm filter pruning; "
        "nm: N:M semi-structured sparsity",
    )
    include_linear: bool = opt(True, "prune Linear weights too (filter pruning prunes conv filters only)")
    n: int = opt(2, "scope=nm: weights kept per group")
    m: int = opt(4, "scope=nm: group size along the input dimension")

    def check(self) -> None:
        super().check()
        if self.structure != "unstructured" and self.scope not in ("global", "layer"):
            raise OptionsError(f"structure={self.structure} needs scope global or layer, got {self.scope}")
        if not 0 < self.n <= self.m:
            raise OptionsError(f"N:M sparsity needs 0 < n ≤ m, got {self.n}:{self.m}")


def filter_masks(weights: dict[str, torch.Tensor], sparsity: float) -> Masks:
    """Per conv layer, zero whole output filters: the round(sparsity·filters) smallest by L1 norm.

    Non-conv tensors are left dense; every layer keeps at least one filter.
    """
    masks = {}
    for name, w in weights.items():
        if w.dim() != 4:
            continue
        norms = w.detach().abs().flatten(1).sum(1)
        n_prune = min(int(round(sparsity * len(norms))), len(norms) - 1)
        keep = torch.ones(len(norms), dtype=w.dtype, device=w.device)
        keep[torch.argsort(norms)[:n_prune]] = 0.0
        masks[name] = keep.view(-1, 1, 1, 1).expand_as(w).clone()
    return masks


def nm_masks(weights: dict[str, torch.Tensor], n: int = 2, m: int = 4) -> tuple[Masks, list[str]]:
    """N:M masks: in each group of `m` consecutive input-dimension weights keep the `n` largest |w|.

    Conv weights are grouped along input channels at each (output, kh, kw) position (the layout NVIDIA's
    ASP uses); Linear along in_features. Layers whose input dimension is not a multiple of `m` stay dense
    and are returned by name.
    """
    if not 0 < n <= m:
        raise ValueError(f"N:M sparsity needs 0 < n ≤ m, got {n}:{m}")
    masks, skipped = {}, []
    for name, w in weights.items():
        wt = w.detach().permute(0, 2, 3, 1) if w.dim() == 4 else w.detach()  # input dim last
        if wt.shape[-1] % m:
            skipped.append(name)
            continue
        groups = wt.abs().reshape(-1, m)
        keep = torch.zeros_like(groups)
        keep.scatter_(1, torch.topk(groups, n, dim=1).indices, 1.0)
        keep = keep.view_as(wt)
        masks[name] = (keep.permute(0, 3, 1, 2) if w.dim() == 4 else keep).contiguous()
    return masks, skipped


def magnitude_masks(weights: dict[str, torch.Tensor], sparsity: float, scope: str = "global") -> Masks:
    """Keep the largest-|w| entries so that exactly round(sparsity·n) entries are removed.

    Ties at the threshold are broken by position (topk), so the removed count is exact.
    """
    if scope == "filter":
        return filter_masks(weights, sparsity)
    if scope == "nm":
        return nm_masks(weights)[0]
    if scope not in ("global", "layer"):
        raise ValueError(f"scope must be one of {SCOPES}, got {scope!r}")
    if scope == "layer":
        return {n: magnitude_masks({n: w}, sparsity)[n] for n, w in weights.items()}
    return global_top_masks({n: w.detach().abs() for n, w in weights.items()}, sparsity)


def global_top_masks(scores: dict[str, torch.Tensor], sparsity: float) -> Masks:
    """Keep the highest scores over all tensors together so that exactly round(sparsity·n) are removed."""
    flat = torch.cat([s.flatten() for s in scores.values()])
    n_keep = flat.numel() - int(round(sparsity * flat.numel()))
    keep = torch.zeros_like(flat, dtype=torch.bool)
    keep[torch.topk(flat, n_keep, sorted=False).indices] = True
    masks, i = {}, 0
    for name, s in scores.items():
        masks[name] = keep[i : i + s.numel()].view_as(s).float()
        i += s.numel()
    return masks


def structured_magnitude_masks(
    model: nn.Module, weights: dict[str, torch.Tensor], sparsity: float, o: StructureOptions, scope: str, shape
) -> tuple[Masks, dict]:
    """Kernel- or group-structured magnitude masks (|w| as the score); returns (masks, provenance extras)."""
    scores = {n: w.detach().abs() for n, w in weights.items()}
    plan = None
    if o.structure == "group":
        links, sizes, _ = conv_links(model, shape)
        plan = plan_groups(
            links, sizes, kernel_importance(scores), o.groups, 1.0 - sparsity, o.align, min_width=o.min_group_width
        )
    masks = structured_masks(scores, sparsity, o.structure, scope, plan)
    return masks, ({"conv_groups": plan.conv_groups} if plan else {})


@register_method("magnitude", options=MagnitudeOptions)
def magnitude(cfg: TicketConfig, data: DataBundle, ctx: TicketContext) -> Ticket:
    o: MagnitudeOptions = method_options(cfg)
    model, log, _ = ctx.trained_dense(cfg, data)
    weights = prunable_weights(model, include_linear=o.include_linear and o.scope != "filter")
    extra = {}
    if o.scope == "nm":
        masks, skipped = nm_masks(weights, o.n, o.m)
        extra = {"pattern": f"{o.n}:{o.m}", "dense_layers": skipped}
    elif o.structure != "unstructured":
        masks, extra = structured_magnitude_masks(model, weights, cfg.sparsity, o, o.scope, data.input_shape)
    else:
        masks = magnitude_masks(weights, cfg.sparsity, o.scope)
    apply_masks(model, masks)
    ft_log = []
    if cfg.finetune_epochs > 0:
        ft_log = train(
            model,
            data,
            cfg.train_config(epochs=cfg.finetune_epochs, lr=cfg.lr * 0.1),
            after_step=[lambda m: apply_masks(m, masks)],
            progress=ctx.progress,
        )
    return Ticket(
        model,
        masks,
        cfg,
        train_log=[{**r, "phase": "dense"} for r in log] + [{**r, "phase": "finetune"} for r in ft_log],
        provenance={"method": "magnitude", "scope": o.scope, "structure": o.structure, **extra},
    )
