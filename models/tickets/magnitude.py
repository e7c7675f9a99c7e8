"""Magnitude pruning baseline: prune the trained dense network by |w|, then fine-tune with the mask fixed.

options:
  scope: "global" (one threshold over all prunable layers, default) or "layer" (same fraction per layer)
  include_linear: prune Linear weights too (default True)
"""

from __future__ import annotations

import torch

from models.data import DataBundle
from models.masks import Masks, apply_masks, prunable_weights
from models.tickets.base import Ticket, TicketConfig, TicketContext, register_method
from models.train import train


def magnitude_masks(weights: dict[str, torch.Tensor], sparsity: float, scope: str = "global") -> Masks:
    """Keep the largest-|w| entries so that exactly round(sparsity·n) entries are removed.

    Ties at the threshold are broken by position (topk), so the removed count is exact.
    """
    if scope not in ("global", "layer"):
        raise ValueError(f"scope must be 'global' or 'layer', got {scope!r}")
    if scope == "layer":
        return {n: magnitude_masks({n: w}, sparsity)[n] for n, w in weights.items()}
    flat = torch.cat([w.detach().abs().flatten() for w in weights.values()])
    n_keep = flat.numel() - int(round(sparsity * flat.numel()))
    keep = torch.zeros_like(flat, dtype=torch.bool)
    keep[torch.topk(flat, n_keep, sorted=False).indices] = True
    masks, i = {}, 0
    for name, w in weights.items():
        masks[name] = keep[i : i + w.numel()].view_as(w).float()
        i += w.numel()
    return masks


@register_method("magnitude")
def magnitude(cfg: TicketConfig, data: DataBundle, ctx: TicketContext) -> Ticket:
    model, log, _ = ctx.trained_dense(cfg, data)
    opts = cfg.options
    weights = prunable_weights(model, include_linear=opts.get("include_linear", True))
    masks = magnitude_masks(weights, cfg.sparsity, opts.get("scope", "global"))
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
        provenance={"method": "magnitude", "scope": opts.get("scope", "global")},
    )
