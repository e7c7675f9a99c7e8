"""Multi-Prize Tickets (Diffenderfer & Kailkhura, ICLR 2021) with the Efficient-MPT improvements.

The weights W stay at their random init (kaiming normal, fan scaled by the kept fraction); every conv and
linear weight gets a trainable score s. The forward pass uses the binary weight α·sign(W)·M, where the mask M
keeps the top |S| entries and α = ‖M⊙W‖₁/‖M‖₁ per layer (biprop's GetQuantnet_binary); the gradient reaches
the scores straight through the mask, multiplied by |W| as in the reference code.

Naming: the paper's and biprop's `prune_rate` is the fraction KEPT (GetSubnet keeps the top k). Our API's
`sparsity` is the fraction REMOVED, so prune_rate = 1 − sparsity.

Efficient-MPT report (seed 000):
- power-propagation: S = s·|s|^(α−1), dS/ds = α·|s|^(α−1); α = 1 is exactly the plain method;
- thresholding instead of sorting: masks compare |S| with a threshold refreshed by one sort every
  `refresh_steps` steps (0: once per epoch) instead of sorting every step; the final mask is always drawn
  by an exact sort, so the ticket has exactly the requested sparsity;
- fine-tuning with the mask fixed (first, last or all layers): the latent W is trained through a
  straight-through sign, and the layer still computes with α·sign(W)·M.

options:
  scope: "global" (default) | "layer"         mode: "sort" (default) | "threshold"
  power: power-propagation α (default 1.0; None = no reparameterization)
  refresh_steps: threshold refresh period in steps (0 = each epoch)
  weight_decay: on the scores (default 1e-4, biprop's configs)   momentum: 0.9
  finetune: "last" (default) | "first" | "all" | "none"; finetune_lr: 1e-3 (the report's best)
  train_bn: train BN affine parameters during the search (default False: frozen at init)

The saved ticket is the zoo's own plain model with α·sign(W)·M baked into each weight, so compaction and
ONNX export see ordinary Conv2d/Linear layers.
"""

from __future__ import annotations

import math
import types
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from ticketbench.models.data import DataBundle
from ticketbench.models.masks import Masks
from ticketbench.models.tickets.base import Ticket, TicketConfig, TicketContext, register_method
from ticketbench.models.train import train


class PowerProp(torch.autograd.Function):
    """S = s·|s|^(α−1) with the report's gradient dL/ds = dL/dS · α·|s|^(α−1) (finite at s = 0)."""

    @staticmethod
    def forward(ctx, s: torch.Tensor, alpha: float) -> torch.Tensor:
        ctx.save_for_backward(s)
        ctx.alpha = alpha
        return s * s.abs().pow(alpha - 1)

    @staticmethod
    def backward(ctx, g: torch.Tensor):
        (s,) = ctx.saved_tensors
        return g * ctx.alpha * s.abs().pow(ctx.alpha - 1), None


class BinaryGain(torch.autograd.Function):
    """α·M with α = ‖M⊙W‖₁/‖M‖₁; backward sends g·|W| to the (absolute) scores, as biprop does."""

    @staticmethod
    def forward(ctx, abs_scores: torch.Tensor, weight: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        abs_w = weight.detach().abs()
        kept = mask.sum()
        alpha = (abs_w * mask).sum() / kept if kept > 0 else kept
        ctx.save_for_backward(abs_w)
        return alpha * mask

    @staticmethod
    def backward(ctx, g: torch.Tensor):
        (abs_w,) = ctx.saved_tensors
        return g * abs_w, None, None


def gain(weight: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-layer α = ‖M⊙W‖₁ / ‖M‖₁ (0 for an empty mask)."""
    kept = mask.sum()
    return (weight.abs() * mask).sum() / kept if kept > 0 else kept


def sign_ste(w: torch.Tensor) -> torch.Tensor:
    """sign(w) forward, identity gradient (for fine-tuning the latent weights)."""
    return w + (torch.sign(w) - w).detach()


def topk_masks(scores: list[torch.Tensor], sparsity: float, scope: str = "global") -> list[torch.Tensor]:
    """Keep the largest |S|: sort and mark the top (1 − sparsity) fraction, as biprop's GetSubnet does."""
    if scope == "layer":
        return [topk_masks([s], sparsity)[0] for s in scores]
    flat = torch.cat([s.detach().abs().flatten() for s in scores])
    n_prune = int(sparsity * flat.numel())
    idx = flat.sort().indices
    out = torch.ones_like(flat)
    out[idx[:n_prune]] = 0.0
    return [m.view_as(s) for m, s in zip(out.split([s.numel() for s in scores]), scores, strict=True)]


def thresholds(scores: list[torch.Tensor], sparsity: float, scope: str = "global") -> list[torch.Tensor]:
    """Per-layer thresholds t such that |S| > t keeps the same entries as the sort (when no ties)."""
    if scope == "layer":
        return [thresholds([s], sparsity)[0] for s in scores]
    flat = torch.cat([s.detach().abs().flatten() for s in scores])
    n_prune = int(sparsity * flat.numel())
    t = flat.sort().values[n_prune - 1] if n_prune > 0 else flat.new_tensor(-1.0)
    return [t] * len(scores)


def threshold_masks(scores: list[torch.Tensor], thr: list[torch.Tensor]) -> list[torch.Tensor]:
    return [(s.detach().abs() > t).float() for s, t in zip(scores, thr, strict=True)]


@dataclass
class _Layer:
    name: str
    module: nn.Module
    scores: nn.Parameter
    mask: torch.Tensor | None = None


@dataclass
class Supermask:
    """The MPT state attached to a model: scores per layer and how masks are drawn."""

    layers: list[_Layer]
    sparsity: float
    scope: str = "global"
    mode: str = "sort"
    power: float | None = 1.0
    fixed: bool = False  # mask frozen (fine-tuning)
    thr: list[torch.Tensor] = field(default_factory=list)
    hooks: list = field(default_factory=list)
    current: list[torch.Tensor] | None = None  # this forward pass's S per layer (with autograd history)

    def effective_scores(self) -> list[torch.Tensor]:
        """S per layer (power-propagated when `power` is set)."""
        if self.power is None:
            return [layer.scores for layer in self.layers]
        return [PowerProp.apply(layer.scores, self.power) for layer in self.layers]

    @torch.no_grad()
    def refresh_threshold(self) -> None:
        """One sort: the threshold(s) that the next steps compare |S| with."""
        self.thr = thresholds([S.detach() for S in self.effective_scores()], self.sparsity, self.scope)

    @torch.no_grad()
    def draw_masks(self, exact: bool = False) -> None:
        """Masks for the next forward pass: sort every time, or compare with the cached threshold."""
        if self.fixed:
            return
        scores = [s.detach() for s in self.effective_scores()]
        if self.mode == "sort" or exact:
            masks = topk_masks(scores, self.sparsity, self.scope)
        else:
            if not self.thr:
                self.refresh_threshold()
            masks = threshold_masks(scores, self.thr)
        for layer, m in zip(self.layers, masks, strict=True):
            layer.mask = m

    def weight(self, layer: _Layer, S: torch.Tensor | None) -> torch.Tensor:
        w = layer.module.weight
        if self.fixed:
            return gain(w, layer.mask) * sign_ste(w) * layer.mask
        return torch.sign(w.detach()) * BinaryGain.apply(S.abs(), w, layer.mask)


def _forward_with(sm: Supermask, i: int):
    def forward(self: nn.Module, x: torch.Tensor) -> torch.Tensor:
        layer = sm.layers[i]
        S = None if sm.fixed else sm.current[i]
        w = sm.weight(layer, S)
        if isinstance(self, nn.Conv2d):
            return self._conv_forward(x, w, self.bias)
        return F.linear(x, w, self.bias)

    return forward


def attach(model: nn.Module, sparsity: float, scope: str = "global", mode: str = "sort", power=1.0) -> Supermask:
    """Freeze the model's weights, give each conv/linear a score tensor, and route forwards through masks."""
    for p in model.parameters():
        p.requires_grad_(False)
    layers = []
    for name, m in model.named_modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            scores = nn.Parameter(torch.empty_like(m.weight))
            nn.init.kaiming_uniform_(scores, a=math.sqrt(5))
            layers.append(_Layer(name, m, scores))
    sm = Supermask(layers, sparsity, scope, mode, power)

    def pre_hook(_mod, _inp):  # one mask draw per forward pass, shared by every layer (global top-k)
        sm.current = None if sm.fixed else sm.effective_scores()
        sm.draw_masks()

    sm.hooks.append(model.register_forward_pre_hook(pre_hook))
    for i, layer in enumerate(layers):
        layer.module.forward = types.MethodType(_forward_with(sm, i), layer.module)
    return sm


@torch.no_grad()
def bake(model: nn.Module, sm: Supermask) -> Masks:
    """Write α·sign(W)·M into each weight, detach the score machinery; returns the masks by parameter name."""
    masks: Masks = {}
    for layer in sm.layers:
        m = layer.module
        m.weight.copy_(gain(m.weight, layer.mask) * torch.sign(m.weight) * layer.mask)
        del m.forward
        masks[f"{layer.name}.weight"] = layer.mask.clone()
    for h in sm.hooks:
        h.remove()
    for p in model.parameters():
        p.requires_grad_(True)
    return masks


def mpt_init_(model: nn.Module, kept: float) -> None:
    """Kaiming normal, std = √2 / √(fan_in · kept), so the sparse layer keeps the dense output variance.

    hidden-networks/biprop `scale_fan` writes fan·(1 − prune_rate) while their GetSubnet treats prune_rate
    as the fraction kept; we scale by the kept fraction, the evident intent (identical at 50%).
    """
    gain_relu = nn.init.calculate_gain("relu")
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            fan = nn.init._calculate_correct_fan(m.weight, "fan_in") * max(kept, 1e-8)
            with torch.no_grad():
                m.weight.normal_(0.0, gain_relu / math.sqrt(fan))


def score_histograms(sm: Supermask, bins: int = 50) -> dict[str, dict]:
    """Per-layer histogram of the (power-propagated) scores S, for the report's score-distribution plot."""
    out = {}
    with torch.no_grad():
        for layer, S in zip(sm.layers, sm.effective_scores(), strict=True):
            s = S.detach().flatten().float()
            lo, hi = float(s.min()), float(s.max())
            counts = torch.histc(s, bins=bins, min=lo, max=hi if hi > lo else lo + 1e-12)
            edges = torch.linspace(lo, hi if hi > lo else lo + 1e-12, bins + 1)
            out[layer.name] = {"edges": edges.tolist(), "counts": counts.long().tolist()}
    return out


def _finetune_layers(sm: Supermask, which: str) -> list[_Layer]:
    return {"first": sm.layers[:1], "last": sm.layers[-1:], "all": sm.layers, "none": []}[which]


@register_method("mpt")
def multi_prize(cfg: TicketConfig, data: DataBundle, ctx: TicketContext) -> Ticket:
    opts = cfg.options
    scope, mode = opts.get("scope", "global"), opts.get("mode", "sort")
    if scope not in ("global", "layer") or mode not in ("sort", "threshold"):
        raise ValueError(f"mpt: scope must be global|layer and mode sort|threshold, got {scope!r}, {mode!r}")
    power = opts.get("power", 1.0)
    power = None if power is None else float(power)
    model = ctx.fresh_model(cfg, data)
    mpt_init_(model, 1.0 - cfg.sparsity)
    sm = attach(model, cfg.sparsity, scope, mode, power)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d) and opts.get("train_bn", False):
            m.weight.requires_grad_(True)
            m.bias.requires_grad_(True)
    params = [layer.scores for layer in sm.layers] + [p for p in model.parameters() if p.requires_grad]
    tcfg = cfg.train_config()
    opt = torch.optim.SGD(
        params,
        lr=tcfg.lr,
        momentum=float(opts.get("momentum", 0.9)),
        weight_decay=float(opts.get("weight_decay", 1e-4)),
    )
    refresh_steps = int(opts.get("refresh_steps", 0))
    step = {"n": 0}

    def after_step(_m: nn.Module) -> None:
        step["n"] += 1
        if mode == "threshold" and refresh_steps and step["n"] % refresh_steps == 0:
            sm.refresh_threshold()

    kept_log: list[float] = []  # kept fraction of the last training step's masks, per epoch (threshold drift)

    def end_of_epoch(_m: nn.Module, _e: int) -> None:
        kept_log.append(sum(float(layer.mask.sum()) for layer in sm.layers) / sum(la.mask.numel() for la in sm.layers))
        if mode == "threshold" and not refresh_steps:
            sm.refresh_threshold()

    search_log = train(
        model, data, tcfg, after_step=[after_step], end_of_epoch=[end_of_epoch], optimizer=opt, progress=ctx.progress
    )
    sm.draw_masks(exact=True)
    sm.fixed = True
    hists = score_histograms(sm)
    which = opts.get("finetune", "last") if cfg.finetune_epochs > 0 else "none"
    ft_log = []
    if which != "none":
        for p in model.parameters():
            p.requires_grad_(False)
        tuned = [layer.module.weight for layer in _finetune_layers(sm, which)]
        for w in tuned:
            w.requires_grad_(True)
        ft_cfg = cfg.train_config(epochs=cfg.finetune_epochs, lr=float(opts.get("finetune_lr", 1e-3)))
        ft_log = train(model, data, ft_cfg, progress=ctx.progress)
    gains = {layer.name: float(gain(layer.module.weight.detach(), layer.mask)) for layer in sm.layers}
    masks = bake(model, sm)
    provenance = {
        "method": "mpt",
        "scope": scope,
        "mode": mode,
        "power": power,
        "prune_rate_kept": 1.0 - cfg.sparsity,
        "finetune": which,
        "refresh_steps": refresh_steps,
    }
    artifacts = {"score_histograms": hists, "gains": gains, "kept_fraction_per_epoch": kept_log}
    train_log = [{**r, "phase": "search"} for r in search_log] + [{**r, "phase": "finetune"} for r in ft_log]
    return Ticket(model, masks, cfg, train_log=train_log, provenance=provenance, artifacts=artifacts)
