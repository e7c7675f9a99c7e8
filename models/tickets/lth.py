"""Lottery tickets (Frankle & Carbin, ICLR 2019): iterative magnitude pruning with rewinding.

Train the dense network; then, each round, remove `rate` (20%) of the REMAINING prunable weights by
global |w|, rewind the survivors (and every other parameter and BN statistic) to their values at
initialization (or at training step k, Frankle et al. 2020), and train again with the mask re-applied
after every optimizer step. The last round's trained network is the ticket. The last round prunes only
what is left to reach the target, so the ticket has exactly the requested sparsity.

Options: LthOptions below. With `structure` kernel or group every round ranks whole kernels (mean |w|) or
keeps only the block-diagonal grouped support (re-planned each round from Σ|w| per surviving kernel, never
reviving a pruned weight), see models/tickets/structure.py.
"""

from __future__ import annotations

import copy
import functools
import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ticketbench.models.data import DataBundle
from ticketbench.models.masks import Masks, apply_masks, mask_sparsity, prunable_weights
from ticketbench.models.tickets.base import Ticket, TicketConfig, TicketContext, method_options, register_method
from ticketbench.models.tickets.magnitude import global_top_masks
from ticketbench.models.tickets.options import OptionsError, StructureOptions, opt
from ticketbench.models.tickets.structure import conv_links, kernel_importance, plan_groups, structured_masks
from ticketbench.models.train import train


@dataclass
class LthOptions(StructureOptions):
    rate: float = opt(0.2, "fraction of the remaining weights pruned per round")
    one_shot: bool = opt(False, "prune straight to the target in one round")
    rewind_step: int = opt(0, "0: rewind to init; k > 0: rewind to the weights after k optimizer steps")
    include_linear: bool = opt(True, "prune Linear weights too")
    final_epochs: int | None = opt(None, "epochs of the last (ticket) training (default: the case's epochs)")

    def check(self) -> None:
        super().check()
        if not 0 < self.rate < 1:
            raise OptionsError(f"rate must be in (0, 1), got {self.rate}")
        if self.rewind_step < 0 or (self.final_epochs is not None and self.final_epochs < 0):
            raise OptionsError("rewind_step and final_epochs must be ≥ 0")


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
        self.k, self.steps = k, 0
        self.state: dict[str, Any] | None = None  # the model's state_dict after step k

    def __call__(self, model: nn.Module) -> None:
        self.steps += 1
        if self.steps == self.k:
            self.state = copy.deepcopy(model.state_dict())


@torch.no_grad()
def rewind_(model: nn.Module, state: dict, masks: Masks) -> None:
    """Load `state` (all parameters and buffers) and zero the pruned weights."""
    model.load_state_dict(state)
    apply_masks(model, masks)


@register_method("lth", options=LthOptions)
def lottery_ticket(cfg: TicketConfig, data: DataBundle, ctx: TicketContext) -> Ticket:
    o: LthOptions = method_options(cfg)
    rate, k = o.rate, o.rewind_step
    if k > 0:
        model = ctx.fresh_model(cfg, data)
        snap = StepSnapshot(k)
        dense_log = train(model, data, cfg.train_config(), after_step=[snap], progress=ctx.progress)
        if snap.state is None:
            raise ValueError(f"lth: rewind_step {k} is beyond the {snap.steps} steps of dense training")
        rewind_state = snap.state
    else:
        model, dense_log, rewind_state = ctx.trained_dense(cfg, data)
    include_linear = o.include_linear
    masks: Masks = {n: torch.ones_like(w) for n, w in prunable_weights(model, include_linear).items()}
    schedule = round_sparsities(cfg.sparsity, rate, o.one_shot)
    log = [{**r, "phase": "dense", "round": 0} for r in dense_log]
    rounds = []
    final_epochs = cfg.epochs if o.final_epochs is None else o.final_epochs
    links = conv_links(model, data.input_shape)[:2] if o.structure == "group" else None
    plan = None
    for r, s in enumerate(schedule, start=1):
        weights = prunable_weights(model, include_linear)
        if o.structure == "unstructured":
            masks = prune_remaining(weights, masks, s)
        else:
            scores = {n: w.detach().abs() * masks[n] for n, w in weights.items()}
            if links is not None:
                plan = plan_groups(
                    *links, kernel_importance(scores), o.groups, 1.0 - s, o.align, plan, min_width=o.min_group_width
                )
            masks = structured_masks(scores, s, o.structure, "global", plan, previous=masks)
        rewind_(model, rewind_state, masks)
        epochs = final_epochs if r == len(schedule) else cfg.epochs
        round_masks = masks
        rlog = train(
            model,
            data,
            cfg.train_config(epochs=epochs),
            after_step=[functools.partial(apply_masks, masks=round_masks)],
            progress=ctx.progress,
        )
        log += [{**x, "phase": "round", "round": r} for x in rlog]
        acc = rlog[-1]["accuracy"] if rlog else None
        rounds.append({"round": r, "target": s, "mask_sparsity": mask_sparsity(masks), "accuracy": acc})
    provenance = {
        "method": "lth",
        "rate": rate,
        "one_shot": o.one_shot,
        "structure": o.structure,
        **({"conv_groups": plan.conv_groups} if plan else {}),
        "rewind_step": k,
        "rounds": len(schedule),
        "include_linear": include_linear,
    }
    return Ticket(model, masks, cfg, train_log=log, provenance=provenance, artifacts={"rounds": rounds})
