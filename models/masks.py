"""Weight masks: which parameters are prunable, and keeping pruned weights at exactly zero."""

from __future__ import annotations

import torch
from torch import nn

Masks = dict[str, torch.Tensor]  # parameter name ("features.0.weight") → {0,1} tensor of its shape


def prunable_weights(model: nn.Module, include_linear: bool = True) -> dict[str, torch.Tensor]:
    """Conv (and optionally Linear) weights (their Parameters), by parameter name. BN and biases are never pruned."""
    kinds: tuple[type[nn.Conv2d] | type[nn.Linear], ...] = (nn.Conv2d, nn.Linear) if include_linear else (nn.Conv2d,)
    return {f"{name}.weight": m.weight for name, m in model.named_modules() if isinstance(m, kinds)}


@torch.no_grad()
def apply_masks(model: nn.Module, masks: Masks) -> None:
    """Zero the pruned weights in place (called after every optimizer step while training a ticket)."""
    params = dict(model.named_parameters())
    for name, mask in masks.items():
        if name not in params:
            raise KeyError(f"mask {name!r} names no parameter of {type(model).__name__}")
        p = params[name]
        p.mul_(mask.to(device=p.device, dtype=p.dtype))  # masks may live on the CPU (load_ticket)


def mask_sparsity(masks: Masks) -> float:
    """Fraction of masked-out entries over all masked tensors."""
    total = sum(m.numel() for m in masks.values())
    kept = sum(int(m.sum()) for m in masks.values())
    return 1.0 - kept / total if total else 0.0
