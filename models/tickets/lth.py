"""Lottery tickets (Frankle & Carbin, ICLR 2019): iterative magnitude pruning with rewinding.

Train the dense network; then, each round, remove `rate` (20%) of the REMAINING prunable weights by
global |w|, rewind the survivors (and every other parameter and BN statistic) to their values at
initialization (or at training step k, Frankle et al. 2020), and train again with the mask re-applied
after every optimizer step. The last round's trained network is the ticket. The last round prunes only
what is left to reach the target, so the ticket has exactly the requested sparsity.

options:
  rate: fraction of remaining weights pruned per round (default 0.2)
  one_shot: prune straight to the target in one round (default False)
  rewind_step: 0 = rewind to init (default), k > 0 = rewind to the weights after k optimizer steps
  include_linear: prune Linear weights too (default True)
  final_epochs: epochs for the last (ticket) training (default cfg.epochs)
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn

from ticketbench.models.data import DataBundle
from ticketbench.models.masks import Masks, apply_masks, mask_sparsity, prunable_weights
from ticketbench.models.tickets.base import Ticket, TicketConfig, TicketContext, register_method
from ticketbench.models.tickets.magnitude import global_top_masks
from ticketbench.models.train import train


def round_sparsities(target: float, rate: float = 0.2, one_shot: bool = False) -> list[float]:
    """Cumulative sparsity after each round: 1 − (1 − rate)^r, the last one clipped to the target."""
    if target <= 0:
        return []
    if one_shot:
        return [target]
    if not 0 < rate < 1:
        raise ValueError(f"rate must be in (0, 1), got {rate}")
    rounds = math.ceil(math.log(1 - target) / math.log(1 - rate) - 1e-9)
    return [min(1 - (1 - rate) ** r, target) for r in range(1, rounds + 1)]


def prune_remaining(weights: dict[str, torch.Tensor], masks: Masks, sparsity: float) -> Masks:
    """Global magnitude pruning that never revives a pruned weight: keep the largest |w| among survivors so
    that exactly round(sparsity·n) of all n prunable weights are removed."""
    return global_top_masks(
        {n: torch.where(masks[n].bool(), w.detach().abs(), -1.0) for n, w in weights.items()}, sparsity
    )


class StepSnapshot:
    """after_step callback that keeps a copy of the full state right after optimizer step `k`."""

    def __init__(self, k: int) -> None:
        self.k, self.steps, self.state = k, 0, None

    def __call__(self, model: nn.Module) -> None:
        self.steps += 1
        if self.steps == self.k:
            self.state = copy.deepcopy(model.state_dict())


@torch.no_grad()
def rewind_(model: nn.Module, state: dict, masks: Masks) -> None:
    """Load `state` (all parameters and buffers) and zero the pruned weights."""
    model.load_state_dict(state)
    apply_masks(model, masks)


@register_method("lth")
def lottery_ticket(cfg: TicketConfig, data: DataBundle, ctx: TicketContext) -> Ticket:
    opts = cfg.options
    rate, k = float(opts.get("rate", 0.2)), int(opts.get("rewind_step", 0))
    if k > 0:
        model = ctx.fresh_model(cfg, data)
        snap = StepSnapshot(k)
        dense_log = train(model, data, cfg.train_config(), after_step=[snap], progress=ctx.progress)
        if snap.state is None:
            raise ValueError(f"lth: rewind_step {k} is beyond the {snap.steps} steps of dense training")
        rewind_state = snap.state
    else:
        model, dense_log, rewind_state = ctx.trained_dense(cfg, data)
    include_linear = bool(opts.get("include_linear", True))
    masks: Masks = {n: torch.ones_like(w) for n, w in prunable_weights(model, include_linear).items()}
    schedule = round_sparsities(cfg.sparsity, rate, bool(opts.get("one_shot", False)))
    log = [{**r, "phase": "dense", "round": 0} for r in dense_log]
    rounds = []
    final_epochs = int(opts.get("final_epochs", cfg.epochs))
    for r, s in enumerate(schedule, start=1):
        masks = prune_remaining(prunable_weights(model, include_linear), masks, s)
        rewind_(model, rewind_state, masks)
        epochs = final_epochs if r == len(schedule) else cfg.epochs
        round_masks = masks
        rlog = train(
            model,
            data,
            cfg.train_config(epochs=epochs),
            after_step=[lambda m, mk=round_masks: apply_masks(m, mk)],
            progress=ctx.progress,
        )
        log += [{**x, "phase": "round", "round": r} for x in rlog]
        acc = rlog[-1]["accuracy"] if rlog else None
        rounds.append({"round": r, "target": s, "mask_sparsity": mask_sparsity(masks), "accuracy": acc})
    provenance = {
        "method": "lth",
        "rate": rate,
        "one_shot": bool(opts.get("one_shot", False)),
        "rewind_step": k,
        "rounds": len(schedule),
        "include_linear": include_linear,
    }
    return Ticket(model, masks, cfg, train_log=log, provenance=provenance, artifacts={"rounds": rounds})
