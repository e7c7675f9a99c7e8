"""Early-Bird tickets (You et al., ICLR 2020): draw a channel-pruned ticket early, then train only it.

Search: train the dense network with an L1 penalty on BN scaling factors (s·sign(γ) added to γ.grad after
backward, s = 1e-4). After every epoch draw the network-slimming channel mask for each tracked pruning
ratio (global |γ| threshold, strict '>' keeps), push it into a FIFO of the last 5 masks, and declare the
Early-Bird ticket when the newest mask is within ε (0.1) normalized Hamming distance of each of the 4
older ones. EB Train: stop the search at that epoch, kill the pruned channels (BN γ/β, producer filters and
consumer inputs masked to zero; models/compact.py then removes them), retrain inheriting the EB weights
(or from a new random init with `reinit`).

Options: EbOptions below (s, epsilon, fifo, ratios, reinit, low_precision, bits, search_full, retrain_lr).

Training FLOPs (artifacts["training_flops"]): 6·MACs per example per epoch (forward 2, backward ≈ 4); the
search at the dense MACs for the epochs up to the EB epoch (an 8-bit search counts the same FLOPs, as in the
paper), the retraining at the ticket's non-zero MACs; the baseline trains the dense network for all
`cfg.epochs`, prunes, and retrains the same way (the paper's progressive pruning and training).

Training energy (artifacts["training_energy_j"], J, measured with the training device's power source when the
caller gives one): the search and retrain epochs as run, against the dense network trained for all `cfg.epochs`.

`eb_epoch` is the number of search epochs completed when the EB ticket was drawn (≥ fifo), or None when
none emerged within `cfg.epochs` (the ticket is then drawn at the last epoch).
"""

from __future__ import annotations

import copy
import time
from collections import deque
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass

import torch
from torch import nn

from ticketbench.models.cost import analyze
from ticketbench.models.data import DataBundle, dataset_len
from ticketbench.models.low_precision import low_precision
from ticketbench.models.masks import apply_masks
from ticketbench.models.tickets.base import (
    Ticket,
    TicketConfig,
    TicketContext,
    method_options,
    phase_energy,
    register_method,
)
from ticketbench.models.tickets.channels import (
    BNGroup,
    apply_channel_selection,
    bn_gammas,
    bn_groups,
    channel_masks,
    weight_masks,
)
from ticketbench.models.tickets.options import MethodOptions, OptionsError, opt
from ticketbench.models.train import StopTraining, train

TRAIN_FLOPS_PER_MAC = 6  # forward 2 FLOPs per MAC, backward ≈ 2× forward


@dataclass
class EbOptions(MethodOptions):
    s: float = opt(1e-4, "L1 coefficient on BN γ during the search")
    epsilon: float = opt(0.1, "mask-distance threshold: the EB ticket emerges when every FIFO distance is ≤ ε")
    fifo: int = opt(5, "masks kept in the FIFO")
    ratios: list[float] = opt(factory=lambda: [0.3, 0.5, 0.7], help="extra pruning ratios tracked")
    reinit: bool = opt(False, "retrain from a new random init instead of the EB weights")
    low_precision: bool = opt(False, "low-precision search (the paper's 8-bit variant)")
    bits: int = opt(8, "bits of the low-precision search")
    search_full: bool = opt(False, "keep searching to the last epoch (full distance matrix; ticket still drawn at EB)")
    retrain_lr: float | None = opt(None, "retraining learning rate (default: the case's lr)")

    def check(self) -> None:
        if self.fifo < 2:
            raise OptionsError(f"fifo must be ≥ 2, got {self.fifo}")
        if any(not 0 <= r < 1 for r in self.ratios):
            raise OptionsError(f"ratios must lie in [0, 1), got {self.ratios}")
        if not 1 <= self.bits <= 32:
            raise OptionsError(f"bits must be in [1, 32], got {self.bits}")


def mask_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """Normalized Hamming distance between two flat channel masks: differing channels / all channels."""
    if a.shape != b.shape:
        raise ValueError(f"mask shapes differ: {tuple(a.shape)} vs {tuple(b.shape)}")
    return float((a != b).sum()) / a.numel() if a.numel() else 0.0


def distance_matrix(masks: list[torch.Tensor]) -> list[list[float]]:
    """Pairwise mask distances (the paper's heat map before its display normalization)."""
    return [[mask_distance(a, b) for b in masks] for a in masks]


class EarlyBirdDetector:
    """FIFO of the last `fifo` masks; the EB ticket emerges when the newest mask is within `epsilon`
    of each older mask in the queue (and the queue is full)."""

    def __init__(self, epsilon: float = 0.1, fifo: int = 5) -> None:
        self.epsilon = epsilon
        self.queue: deque[torch.Tensor] = deque(maxlen=fifo)
        self.last_distances: list[float] = []
        self.seconds = 0.0  # time spent computing distances (the EB detection overhead)

    def push(self, mask: torch.Tensor) -> bool:
        """Add this epoch's mask; True when the Early-Bird ticket has emerged."""
        t0 = time.perf_counter()
        self.queue.append(mask)
        full = len(self.queue) == self.queue.maxlen
        self.last_distances = [mask_distance(mask, old) for old in list(self.queue)[:-1]] if full else []
        self.seconds += time.perf_counter() - t0
        return full and max(self.last_distances, default=0.0) <= self.epsilon


def bn_l1_penalty(model: nn.Module, groups: list[BNGroup], s: float) -> Callable[[nn.Module], None]:
    """after_backward hook: γ.grad += s·sign(γ) on the prunable BN layers (network slimming's L1 subgradient)."""
    mods = dict(model.named_modules())
    bns = [mods[g.bn] for g in groups]

    @torch.no_grad()
    def hook(_: nn.Module) -> None:
        for bn in bns:
            if bn.weight.grad is not None:
                bn.weight.grad.add_(torch.sign(bn.weight), alpha=s)

    return hook


def _train_flops(macs: int, examples: int, epochs: int) -> float:
    return float(TRAIN_FLOPS_PER_MAC) * macs * examples * epochs


def _training_energy(cfg: TicketConfig, data: DataBundle, ctx: TicketContext, search: list, retrain: list) -> dict:
    """Measured training energy (J): EB search + retrain vs the dense baseline trained for all `cfg.epochs`
    (the shared dense parent, trained here when no case did yet). Pruning itself is a γ threshold, not metered.
    Empty when the training device has no power sampler; None for a phase whose trace missed an epoch."""
    if ctx.energy is None:
        return {"power_source": "none", "note": "no power sampler on the training device: energy not measured"}
    _, dense_log, _ = ctx.trained_dense(cfg, data)
    s, r, d = (phase_energy(ctx.epoch_energy(log)) for log in (search, retrain, dense_log))
    eb = s + r if s is not None and r is not None else None
    return {
        "power_source": ctx.power_source,
        "train_device": ctx.device,
        "search": s,
        "retrain": r,
        "eb_train": eb,
        "dense_train": d,
        "dense_epochs": len(dense_log),
        "energy_saving": 1.0 - eb / d if eb is not None and d else None,
    }


@register_method("eb", options=EbOptions)
def early_bird(cfg: TicketConfig, data: DataBundle, ctx: TicketContext) -> Ticket:
    o: EbOptions = method_options(cfg)
    model = ctx.fresh_model(cfg, data)
    groups, skipped = bn_groups(model, torch.zeros(1, *data.input_shape))
    if not groups:
        raise ValueError(f"eb: {cfg.model} has no prunable BatchNorm layers ({'; '.join(skipped) or 'none'})")
    ratios = sorted({float(cfg.sparsity), *o.ratios})
    eps, fifo = o.epsilon, o.fifo
    detectors = {r: EarlyBirdDetector(eps, fifo) for r in ratios}
    eb_epochs: dict[float, int | None] = {r: None for r in ratios}
    history: list[torch.Tensor] = []  # target-ratio mask after every search epoch
    snapshot: dict = {}  # model state at the EB epoch of the target ratio
    search_full = o.search_full

    detect_s = [0.0]  # time in the whole per-epoch check: masks for every ratio + distances (s)

    def end_of_epoch(m: nn.Module, epoch: int) -> None:
        t0 = time.perf_counter()
        gammas = [g.cpu() for g in bn_gammas(m, groups)]
        for r, det in detectors.items():
            mask = torch.cat(channel_masks(gammas, r))
            if r == cfg.sparsity:
                history.append(mask)
            if det.push(mask) and eb_epochs[r] is None:
                eb_epochs[r] = epoch + 1
        detect_s[0] += time.perf_counter() - t0
        if eb_epochs[cfg.sparsity] == epoch + 1:
            snapshot["state"] = copy.deepcopy(m.state_dict())
            if not search_full:
                raise StopTraining

    lp_bits = o.bits
    lp = low_precision(model, lp_bits) if o.low_precision else nullcontext(None)
    with lp as quantize_grads:
        after_backward = [bn_l1_penalty(model, groups, o.s)]
        if quantize_grads is not None:
            after_backward.append(quantize_grads)
        search_log = train(
            model,
            data,
            cfg.train_config(),
            after_backward=after_backward,
            end_of_epoch=[end_of_epoch],
            progress=ctx.progress,
        )
    eb_epoch = eb_epochs[cfg.sparsity]
    search_epochs = len(search_log)
    if "state" in snapshot:
        model.load_state_dict(snapshot["state"])
    final_epoch_mask = history[-1] if history else None
    keeps = channel_masks(bn_gammas(model, groups), cfg.sparsity)
    if o.reinit:
        reinit_cfg = copy.copy(cfg)
        reinit_cfg.seed = cfg.seed + 1
        model = ctx.fresh_model(reinit_cfg, data)
    masks = weight_masks(model, groups, keeps)
    apply_masks(model, masks)
    apply_channel_selection(model, groups, keeps)

    shape = data.input_shape
    macs_dense = analyze(ctx.fresh_model(cfg, data), shape).macs
    macs_ticket = analyze(model, shape).macs_nonzero
    retrain_log = []
    if cfg.finetune_epochs > 0:
        retrain_log = train(
            model,
            data,
            cfg.train_config(epochs=cfg.finetune_epochs, lr=cfg.lr if o.retrain_lr is None else o.retrain_lr),
            after_step=[lambda m: apply_masks(m, masks)],
            progress=ctx.progress,
        )
    energy = _training_energy(cfg, data, ctx, search_log, retrain_log)
    n = dataset_len(data.train)
    drawn_at = eb_epoch or cfg.epochs
    flops = {
        "search": _train_flops(macs_dense, n, drawn_at),
        "retrain": _train_flops(macs_ticket, n, cfg.finetune_epochs),
        "dense_full": _train_flops(macs_dense, n, cfg.epochs),
    }
    flops["eb_train"] = flops["search"] + flops["retrain"]
    flops["dense_then_prune"] = flops["dense_full"] + flops["retrain"]
    kept = torch.cat(keeps)
    artifacts = {
        "eb_epoch": eb_epoch,
        "eb_epochs": {str(r): e for r, e in eb_epochs.items()},
        "mask_distance_matrix": distance_matrix(history),
        "mask_distance_epochs": list(range(1, len(history) + 1)),
        "last_distances": detectors[cfg.sparsity].last_distances,
        "eb_distance_s": sum(d.seconds for d in detectors.values()),
        "eb_detect_s": detect_s[0],
        "search_train_s": sum(r["train_s"] for r in search_log),
        "channel_keep": [k.tolist() for k in keeps],
        "channel_sparsity": 1.0 - float(kept.float().mean()),
        "final_epoch_mask_distance": mask_distance(kept.cpu(), final_epoch_mask)
        if final_epoch_mask is not None
        else None,
        "training_flops": flops,
        "flops_saving": 1.0 - flops["eb_train"] / flops["dense_then_prune"] if flops["dense_then_prune"] else 0.0,
        "macs_dense": macs_dense,
        "macs_ticket": macs_ticket,
        "training_energy_j": energy,
    }
    provenance = {
        "method": "eb",
        "s": o.s,
        "epsilon": eps,
        "fifo": fifo,
        "ratios": ratios,
        "reinit": o.reinit,
        "low_precision_bits": lp_bits if o.low_precision else None,
        "search_epochs_run": search_epochs,
        "bn_groups": [g.bn for g in groups],
        "bn_not_pruned": skipped,
    }
    train_log = [{**r, "phase": "search"} for r in search_log] + [{**r, "phase": "retrain"} for r in retrain_log]
    return Ticket(model, masks, cfg, train_log=train_log, provenance=provenance, artifacts=artifacts)
