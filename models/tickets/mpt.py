"""Multi-Prize Tickets (Diffenderfer & Kailkhura, ICLR 2021) with the Efficient-MPT improvements.

The weights W stay at their random init (kaiming normal, fan scaled by the kept fraction); every conv and
linear weight gets a trainable score s. The forward pass uses the binary weight α·sign(W)·M, where the mask M
keeps the top |S| entries and α = ‖M⊙W‖₁/‖M‖₁ per layer (biprop's GetQuantnet_binary); the gradient reaches
the scores straight through the mask, multiplied by |W| as in the reference code.

Naming: the paper's and biprop's `prune_rate` is the fraction KEPT (GetSubnet keeps the top k). Our API's
`sparsity` is the fraction REMOVED, so prune_rate = 1 − sparsity.

Efficient-MPT report (seed 000):
- power-propagation: S = s·|s|^(α−1), dS/ds = α·|s|^(α−1); α = 1 is exactly the plain method. α changes
  how fast a shared learning rate moves the scores where the mask is decided (`score_lr_scale`); by default
  (`power_lr = boundary`) each layer's score lr is rescaled so that speed matches α = 1 (issue 27);
- thresholding instead of sorting: masks compare |S| with a threshold refreshed by one sort every
  `refresh_steps` steps (0: once per epoch) instead of sorting every step; the final mask is always drawn
  by an exact sort, so the ticket has exactly the requested sparsity;
- fine-tuning with the mask fixed (first, last or all layers): the latent W is trained through a
  straight-through sign, and the layer still computes with α·sign(W)·M.

Fidelity at high sparsity (issue 9):
- biprop's prune-rate ramp (`ramp_epochs`, its --prune_rate_epoch, default 10): with global pruning the kept
  fraction starts at 0.5 and decays cubically to the target, so large layers are not wiped out before their
  scores have learned anything; squeezed into short searches so the last epoch runs at the target;
- a per-layer floor (`min_kept_per_layer`, a fraction of each layer, at least one weight) kept before the
  global top-k, so no layer ends empty (a dead layer makes the network constant and inflates the AR);
- power-propagation scores initialized through Ψ⁻¹ (see `init_scores_`), so α > 1 starts from the α = 1
  scores and mask instead of from near-zero scores with vanishing gradients;
- fine-tuning reports, per tuned layer, how many kept weights flipped sign and how α moved (artifacts
  "finetune"): with α·sign(W) only sign flips (and α ratios between layers) can change the network;
- `mask_change_fraction`: the share of the final mask that the initial scores' mask at the same sparsity did
  not hold, so a stalled search shows as ≈ 0 beside its accuracy.
- `structure` kernel | group ranks whole kernels or keeps a block-diagonal grouped support
  (models/tickets/structure.py); under group the classes are planned once from Σ|S| per kernel at score init.

Options: MptOptions below (`bench ticket --method mpt --option KEY=VALUE`).

The saved ticket is the zoo's own plain model with α·sign(W)·M baked into each weight, so compaction and
ONNX export see ordinary Conv2d/Linear layers.
"""

from __future__ import annotations

import math
import types
from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from ticketbench.models.data import DataBundle
from ticketbench.models.masks import Masks
from ticketbench.models.tickets.base import Ticket, TicketConfig, TicketContext, method_options, register_method
from ticketbench.models.tickets.options import OptionsError, StructureOptions, opt
from ticketbench.models.tickets.structure import GroupPlan, conv_links, kernel_importance, plan_groups, unit_space
from ticketbench.models.train import train


class PowerProp(torch.autograd.Function):
    """S = s·|s|^(α−1) with the report's gradient dL/ds = dL/dS · α·|s|^(α−1) (finite at s = 0)."""

    @staticmethod
    def forward(ctx, s: torch.Tensor, alpha: float) -> torch.Tensor:
        ctx.save_for_backward(s)
        ctx.alpha = alpha
        if alpha == 1.0:  # identity (no pow over millions of scores per step)
            return s.clone()
        return s * s.abs().pow(alpha - 1)

    @staticmethod
    def backward(ctx, g: torch.Tensor):
        (s,) = ctx.saved_tensors
        if ctx.alpha == 1.0:
            return g, None
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


def topk_masks(
    scores: list[torch.Tensor], sparsity: float, scope: str = "global", floor_fraction: float = 0.0
) -> list[torch.Tensor]:
    """Keep the largest |S|: ⌊sparsity·n⌋ entries removed, as biprop's GetSubnet sorts (plus the layer floor)."""
    space = unit_space({str(i): s.abs() for i, s in enumerate(scores)}, floor_fraction=floor_fraction)
    return [m.float() for m in space.select(sparsity, scope, int)]


def thresholds(
    scores: list[torch.Tensor], sparsity: float, scope: str = "global", floor_fraction: float = 0.0
) -> list[torch.Tensor]:
    """Per-layer thresholds t such that |S| > t keeps the same entries as the sort (when no ties)."""
    space = unit_space({str(i): s.abs() for i, s in enumerate(scores)}, floor_fraction=floor_fraction)
    return space.thresholds(space.select(sparsity, scope, int), scope)


def threshold_masks(scores: list[torch.Tensor], thr: list[torch.Tensor]) -> list[torch.Tensor]:
    return [(s.detach().abs() > t).float() for s, t in zip(scores, thr, strict=True)]


def ramp_kept(epoch: int, target_kept: float, ramp_epochs: int) -> float:
    """biprop's prune-rate ramp: kept = target + (0.5 − target)·(1 − epoch/E)³ for epoch < E, then the target.

    Only when the target keeps at most half the weights (biprop ramps only then); epoch counts from 0.
    """
    if ramp_epochs <= 0 or epoch >= ramp_epochs or target_kept > 0.5:
        return target_kept
    return target_kept + (0.5 - target_kept) * (1.0 - epoch / ramp_epochs) ** 3


def score_lr_scale(alpha: float | None, tau: float) -> float:
    """Score learning-rate factor under which α moves a score at the mask boundary (|S| = τ) as fast as α = 1.

    S = Ψ(s) = s·|s|^(α−1), so dS/ds = α·|s|^(α−1). An SGD step on s with learning rate η and gradient
    g = ∂L/∂S is Δs = −η·α·|s|^(α−1)·g, which moves S by ΔS ≈ (dS/ds)·Δs = −η·α²·|s|^(2(α−1))·g
    = −η·α²·|S|^(2(α−1)/α)·g (|s| = |S|^(1/α)). At α = 1 that is −η·g. Where the mask is decided, |S| = τ,
    the two match when η_α = η / (α²·τ^(2(α−1)/α)): this factor. At the digits/conv scale τ is 0.008–0.04,
    so α = 2 at a shared η moves boundary scores only 4τ = 3–15 % as fast and the search stalls.
    Scores far above the boundary still move faster than at α = 1 (∝ |S|^(2(α−1)/α)): the Powerprop
    "rich get richer" dynamics are kept; only the boundary speed is matched. For α > 2 that growth is
    superlinear in s (Δs ∝ |s|^(α−1)) and the largest scores overflow in finite time, at this factor or at a
    shared lr (α = 3 on digits, docs/mpt_claims.md). 1 for α = 1 or None, and for a τ that is not a positive
    number (no weight is pruned: there is no boundary to match).
    """
    if alpha is None or alpha == 1.0 or not math.isfinite(tau) or tau <= 0:
        return 1.0
    return 1.0 / (alpha**2 * tau ** (2.0 * (alpha - 1.0) / alpha))


def score_weight_decay(weight_decay: float, alpha: float | None, scale: float) -> float:
    """Weight decay on s that shrinks S by the same fraction per step as `weight_decay` at α = 1 and scale 1.

    Decay alone: Δs = −η_α·λ_α·s, so ΔS ≈ α·|s|^(α−1)·Δs = −α·η_α·λ_α·S (a fraction α·η_α·λ_α of S per step);
    at α = 1 the fraction is η·λ. Equal when λ_α = λ / (α·scale), scale = η_α/η.
    """
    return weight_decay / ((alpha or 1.0) * scale)


def mask_change(initial: list[torch.Tensor], final: list[torch.Tensor]) -> float:
    """Fraction of the final mask's kept weights that the initial mask (same sparsity) did not keep.

    0: the search kept exactly what the initial scores chose (a stalled search); 1: an entirely new support.
    Both masks must be drawn at the same sparsity: the ramp's wider early masks would count as change.
    """
    new = sum(int((f.bool() & ~i.bool()).sum()) for i, f in zip(initial, final, strict=True))
    return new / max(sum(int(f.bool().sum()) for f in final), 1)


@dataclass
class _Layer:
    name: str
    module: nn.Conv2d | nn.Linear
    scores: nn.Parameter
    mask: torch.Tensor | None = None

    def drawn_mask(self) -> torch.Tensor:
        """The mask drawn last (draw_masks runs before every forward pass and before the masks are read)."""
        assert self.mask is not None, f"{self.name}: no mask drawn yet"
        return self.mask


@dataclass
class Supermask:
    """The MPT state attached to a model: scores per layer and how masks are drawn."""

    layers: list[_Layer]
    sparsity: float  # the sparsity masks are drawn at now (ramped towards the target during the search)
    scope: str = "global"
    mode: str = "sort"
    power: float | None = 1.0
    structure: str = "unstructured"
    floor_fraction: float = 0.0  # of every layer's weights, always kept (min_kept_per_layer)
    support: dict[str, torch.Tensor] = field(default_factory=dict)  # structure=group: [out, in] per conv
    fixed: bool = False  # mask frozen (fine-tuning)
    thr: list[torch.Tensor] = field(default_factory=list)
    hooks: list = field(default_factory=list)
    current: list[torch.Tensor] | None = None  # this forward pass's S per layer (with autograd history)

    def effective_scores(self) -> list[torch.Tensor]:
        """S per layer (power-propagated when `power` is set)."""
        if self.power is None:
            return [layer.scores for layer in self.layers]
        return [PowerProp.apply(layer.scores, self.power) for layer in self.layers]

    def _space(self, scores: list[torch.Tensor]):
        named = {layer.name: S.abs() for layer, S in zip(self.layers, scores, strict=True)}
        return unit_space(named, self.structure, self.support, floor_fraction=self.floor_fraction)

    @torch.no_grad()
    def refresh_threshold(self) -> None:
        """One sort: the threshold(s) that the next steps compare |S| (or kernel means) with."""
        space = self._space([S.detach() for S in self.effective_scores()])
        self.thr = space.thresholds(space.select(self.sparsity, self.scope, int), self.scope)

    @torch.no_grad()
    def draw_masks(self, exact: bool = False) -> None:
        """Masks for the next forward pass: sort every time, or compare with the cached threshold."""
        if self.fixed:
            return
        space = self._space([s.detach() for s in self.effective_scores()])
        if self.mode == "sort" or exact:
            units = space.select(self.sparsity, self.scope, int)
        else:
            if not self.thr:
                self.refresh_threshold()
            units = space.compare(self.thr)
        masks = space.weight_masks(units)
        for layer in self.layers:
            layer.mask = masks[layer.name]

    def weight(self, layer: _Layer, S: torch.Tensor | None) -> torch.Tensor:
        w, mask = layer.module.weight, layer.drawn_mask()
        if self.fixed:
            return gain(w, mask) * sign_ste(w) * mask
        assert S is not None  # searching: S is this pass's scores
        return torch.sign(w.detach()) * BinaryGain.apply(S.abs(), w, mask)

    @torch.no_grad()
    def boundary(self, sparsity: float) -> list[float]:
        """Per layer, the |S| (kernel mean |S| for structure=kernel) of the best unit the masks at `sparsity`
        leave out: the score a unit must beat to enter the mask (global scope: one value, except in layers held
        up by their floor)."""
        space = self._space([S.detach() for S in self.effective_scores()])
        return [float(t) for t in space.thresholds(space.select(sparsity, self.scope, int), self.scope)]

    def kept_fraction(self) -> float:
        masks = [la.drawn_mask() for la in self.layers]
        return sum(float(m.sum()) for m in masks) / sum(m.numel() for m in masks)

    def dead_layers(self) -> list[str]:
        """Layers whose mask keeps no weight (the layer collapse the ramp and the floor prevent)."""
        return [la.name for la in self.layers if la.mask is not None and not bool(la.mask.any())]


def _forward_with(sm: Supermask, i: int):
    def forward(self: nn.Conv2d | nn.Linear, x: torch.Tensor) -> torch.Tensor:
        layer = sm.layers[i]
        S = None
        if not sm.fixed:
            assert sm.current is not None  # the model's forward pre-hook set this pass's scores
            S = sm.current[i]
        w = sm.weight(layer, S)
        if isinstance(self, nn.Conv2d):
            return self._conv_forward(x, w, self.bias)
        return F.linear(x, w, self.bias)

    return forward


def init_scores_(scores: torch.Tensor, power: float | None) -> None:
    """biprop/hidden-networks score init (kaiming uniform, a = √5), mapped through Ψ⁻¹ for power-propagation.

    With S = Ψ(s) = s·|s|^(α−1), we draw S₀ exactly as for α = 1 and set s = sign(S₀)·|S₀|^(1/α) (the
    Powerprop paper's choice: the reparameterized parameter starts with the distribution of the standard
    one). So every α starts from the same S, hence the same initial mask, and α only changes the dynamics.
    Drawing s itself from the α = 1 init (as before) made S = s|s|^(α−1) tiny (≈ |s|^α) and its gradient
    α|s|^(α−1) small too: the scores barely moved and the mask stayed at its random draw.
    """
    nn.init.kaiming_uniform_(scores, a=math.sqrt(5))
    if power is not None and power != 1.0:
        with torch.no_grad():
            scores.copy_(torch.sign(scores) * scores.abs().pow(1.0 / power))


def attach(
    model: nn.Module,
    sparsity: float,
    scope: str = "global",
    mode: str = "sort",
    power: float | None = 1.0,
    structure: str = "unstructured",
    floor_fraction: float = 0.0,
) -> Supermask:
    """Freeze the model's weights, give each conv/linear a score tensor, and route forwards through masks."""
    for p in model.parameters():
        p.requires_grad_(False)
    layers = []
    for name, m in model.named_modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            scores = nn.Parameter(torch.empty_like(m.weight))
            init_scores_(scores, power)
            layers.append(_Layer(name, m, scores))
    sm = Supermask(layers, sparsity, scope, mode, power, structure, floor_fraction)

    def pre_hook(_mod, _inp):  # one mask draw per forward pass, shared by every layer (global top-k)
        sm.current = None if sm.fixed else sm.effective_scores()
        sm.draw_masks()

    sm.hooks.append(model.register_forward_pre_hook(pre_hook))
    for i, layer in enumerate(layers):
        module: nn.Module = layer.module  # nn.Module declares `forward` an attribute an instance may set
        module.forward = types.MethodType(_forward_with(sm, i), module)
    return sm


@torch.no_grad()
def bake(model: nn.Module, sm: Supermask) -> Masks:
    """Write α·sign(W)·M into each weight, detach the score machinery; returns the masks by parameter name."""
    masks: Masks = {}
    for layer in sm.layers:
        m, mask = layer.module, layer.drawn_mask()
        m.weight.copy_(gain(m.weight, mask) * torch.sign(m.weight) * mask)
        del m.forward
        masks[f"{layer.name}.weight"] = mask.clone()
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
            s = s[torch.isfinite(s)]  # a diverged search leaves non-finite scores: histogram what is left
            if s.numel() == 0:
                continue
            lo, hi = float(s.min()), float(s.max())
            counts = torch.histc(s, bins=bins, min=lo, max=hi if hi > lo else lo + 1e-12)
            edges = torch.linspace(lo, hi if hi > lo else lo + 1e-12, bins + 1)
            out[layer.name] = {"edges": edges.tolist(), "counts": counts.long().tolist()}
    return out


def _finetune_layers(sm: Supermask, which: str) -> list[_Layer]:
    return {"first": sm.layers[:1], "last": sm.layers[-1:], "all": sm.layers, "none": []}[which]


@dataclass
class MptOptions(StructureOptions):
    scope: Literal["global", "layer"] = opt("global", "global: one top-k over all layers; layer: per layer")
    mode: Literal["sort", "threshold"] = opt("sort", "sort every step (biprop) or compare with a cached threshold")
    power: float | None = opt(1.0, "power-propagation α (S = s·|s|^(α−1)); null: no reparameterization")
    refresh_steps: int = opt(0, "mode=threshold: refresh the threshold every N steps (0: once per epoch)")
    ramp_epochs: int = opt(
        10, "biprop's --prune_rate_epoch: kept fraction ramps 0.5 → target over these epochs (0: off)"
    )
    min_kept_per_layer: float = opt(
        0.01, "fraction of every layer's weights always kept (at least one), so no layer dies; 0: allow empty layers"
    )
    power_lr: Literal["boundary", "shared"] = opt(
        "boundary",
        "α ≠ 1: score learning rate. boundary: per layer lr·1/(α²·τ^(2(α−1)/α)) and weight decay /(α·that factor), "
        "τ = the layer's |S| at the mask boundary at init, so scores at the boundary move as fast as at α = 1 "
        "(score_lr_scale); shared: the search lr for every α (the report's setting; α = 2 then moves boundary "
        "scores 3-15 % as fast and the search stalls). Measured unstable for α = 3 under either: a step moves s by "
        "∝ |s|^(α−1), which for α > 2 sends the largest scores to infinity in finite time (artifacts "
        "nonfinite_scores; docs/mpt_claims.md)",
    )
    weight_decay: float = opt(1e-4, "weight decay on the scores (biprop's configs)")
    momentum: float = opt(0.9, "SGD momentum on the scores")
    finetune: Literal["last", "first", "all", "none"] = opt("last", "layers whose latent weights are fine-tuned")
    finetune_lr: float = opt(1e-3, "fine-tuning learning rate (the report's best: 1e-3, cosine)")
    train_bn: bool = opt(False, "train BN affine parameters during the search (default: frozen at init)")

    def check(self) -> None:
        super().check()
        if self.power is not None and self.power <= 0:
            raise OptionsError(f"power must be > 0, got {self.power}")
        if not 0 <= self.min_kept_per_layer < 1:
            raise OptionsError(f"min_kept_per_layer must be in [0, 1), got {self.min_kept_per_layer}")
        if self.ramp_epochs < 0 or self.refresh_steps < 0:
            raise OptionsError("ramp_epochs and refresh_steps must be ≥ 0")


def ramp_length(ramp_epochs: int, epochs: int) -> int:
    """The ramp is squeezed into short searches so that at least the last search epoch runs at the target."""
    return min(ramp_epochs, max(epochs - 1, 0))


@register_method("mpt", options=MptOptions)
def multi_prize(cfg: TicketConfig, data: DataBundle, ctx: TicketContext) -> Ticket:
    o: MptOptions = method_options(cfg)
    model = ctx.fresh_model(cfg, data)
    target_kept = 1.0 - cfg.sparsity
    mpt_init_(model, target_kept)
    links = conv_links(model, data.input_shape)[:2] if o.structure == "group" else None
    floor = min(o.min_kept_per_layer, target_kept)
    ramp = ramp_length(o.ramp_epochs, cfg.epochs)
    schedule = [1.0 - ramp_kept(e, target_kept, ramp) for e in range(max(cfg.epochs, 1))]
    sm = attach(model, schedule[0], o.scope, o.mode, o.power, o.structure, floor)
    plan: list[GroupPlan | None] = [None]

    def replan() -> None:
        """structure=group: classes from Σ|S| per kernel, planned once at score init. Re-planning every epoch
        moved the support away from the scores trained inside it (digits, small_cnn, 70 %: 36 % vs 94 %)."""
        if links is None:
            return
        with torch.no_grad():
            scores = {
                f"{la.name}.weight": S.detach().abs() for la, S in zip(sm.layers, sm.effective_scores(), strict=True)
            }
        plan[0] = planned = plan_groups(
            *links,
            kernel_importance(scores),
            o.groups,
            target_kept,
            o.align,
            previous=plan[0],
            seed=cfg.seed,
            min_width=o.min_group_width,
        )
        support = planned.support({f"{la.name}.weight": la.module.weight.shape for la in sm.layers})
        sm.support = {name.removesuffix(".weight"): v for name, v in support.items()}  # keyed like sm.layers

    replan()
    sm.sparsity = cfg.sparsity  # the initial scores' own mask at the target: what the search must move away from
    sm.draw_masks(exact=True)
    initial = [la.drawn_mask().clone() for la in sm.layers]
    taus = sm.boundary(cfg.sparsity)
    sm.sparsity = schedule[0]
    sm.draw_masks(exact=True)
    dead_at_init = sm.dead_layers()
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d) and o.train_bn:
            m.weight.requires_grad_(True)
            m.bias.requires_grad_(True)
    tcfg = cfg.train_config()
    scales = [score_lr_scale(o.power, t) if o.power_lr == "boundary" else 1.0 for t in taus]
    if all(x == 1.0 for x in scales):  # one group: α = 1 stays bit-identical to the plain method
        groups: list[dict] = [{"params": [la.scores for la in sm.layers]}]
    else:
        groups = [
            {"params": [la.scores], "lr": tcfg.lr * x, "weight_decay": score_weight_decay(o.weight_decay, o.power, x)}
            for la, x in zip(sm.layers, scales, strict=True)
        ]
    bn = [p for p in model.parameters() if p.requires_grad]
    groups += [{"params": bn}] if bn else []
    opt_ = torch.optim.SGD(groups, lr=tcfg.lr, momentum=o.momentum, weight_decay=o.weight_decay)
    step = {"n": 0}

    def after_step(_m: nn.Module) -> None:
        step["n"] += 1
        if o.mode == "threshold" and o.refresh_steps and step["n"] % o.refresh_steps == 0:
            sm.refresh_threshold()

    kept_log: list[float] = []  # kept fraction of the last training step's masks, per epoch (threshold drift)
    dead_log: list[list[str]] = []

    def end_of_epoch(_m: nn.Module, e: int) -> None:
        kept_log.append(sm.kept_fraction())
        dead_log.append(sm.dead_layers())
        sm.sparsity = schedule[min(e + 1, len(schedule) - 1)]
        if o.mode == "threshold" and (not o.refresh_steps or sm.sparsity != schedule[e]):
            sm.refresh_threshold()

    if o.mode == "threshold":
        sm.refresh_threshold()
    search_log = train(
        model, data, tcfg, after_step=[after_step], end_of_epoch=[end_of_epoch], optimizer=opt_, progress=ctx.progress
    )
    sm.sparsity = cfg.sparsity
    sm.draw_masks(exact=True)
    sm.fixed = True
    hists = score_histograms(sm)
    which = o.finetune if cfg.finetune_epochs > 0 else "none"
    tuned_layers = _finetune_layers(sm, which)
    before = {
        la.name: (torch.sign(la.module.weight.detach()).clone(), float(gain(la.module.weight, la.drawn_mask())))
        for la in tuned_layers
    }
    ft_log = []
    if tuned_layers:
        for p in model.parameters():
            p.requires_grad_(False)
        for la in tuned_layers:
            la.module.weight.requires_grad_(True)
        ft_cfg = cfg.train_config(epochs=cfg.finetune_epochs, lr=o.finetune_lr)
        ft_log = train(model, data, ft_cfg, progress=ctx.progress)
    finetune_report = {}
    for la in tuned_layers:
        sign0, alpha0 = before[la.name]
        kept = la.drawn_mask().bool()
        flips = int((torch.sign(la.module.weight.detach()) != sign0)[kept].sum())
        alpha1 = float(gain(la.module.weight.detach(), la.drawn_mask()))
        finetune_report[la.name] = {
            "sign_flips": flips,
            "kept": int(kept.sum()),
            "alpha_before": alpha0,
            "alpha_after": alpha1,
            "alpha_change": alpha1 - alpha0,
        }
    gains = {layer.name: float(gain(layer.module.weight.detach(), layer.drawn_mask())) for layer in sm.layers}
    final = [la.drawn_mask().clone() for la in sm.layers]
    dead = sm.dead_layers()
    masks = bake(model, sm)
    provenance = {
        "method": "mpt",
        "scope": o.scope,
        "mode": o.mode,
        "power": o.power,
        "power_lr": o.power_lr,
        "prune_rate_kept": target_kept,
        "finetune": which,
        "refresh_steps": o.refresh_steps,
        "structure": o.structure,
        "ramp_epochs": ramp,
        "min_kept_per_layer": floor,
        **({"conv_groups": plan[0].conv_groups} if plan[0] else {}),
    }
    artifacts = {
        "score_histograms": hists,
        "gains": gains,
        "kept_fraction_per_epoch": kept_log,
        "ramp_kept_per_epoch": [1.0 - x for x in schedule[: cfg.epochs]],
        "dead_layers": dead,
        "dead_layers_at_init": dead_at_init,
        "dead_layers_per_epoch": dead_log,
        "mask_change_fraction": mask_change(initial, final),
        "boundary_abs_score_at_init": dict(zip([la.name for la in sm.layers], taus, strict=True)),
        "score_lr_scale": dict(zip([la.name for la in sm.layers], scales, strict=True)),
        "nonfinite_scores": sum(int((~torch.isfinite(la.scores.detach())).sum()) for la in sm.layers),
        "finetune": finetune_report,
    }
    train_log = [{**r, "phase": "search"} for r in search_log] + [{**r, "phase": "finetune"} for r in ft_log]
    return Ticket(model, masks, cfg, train_log=train_log, provenance=provenance, artifacts=artifacts)
