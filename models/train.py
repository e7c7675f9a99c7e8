"""A short training loop extended by callbacks (mask re-application, logging), not by flags."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from ticketbench.models.data import DataBundle

Callback = Callable[[nn.Module], None]


class StopTraining(Exception):
    """Raised by an `end_of_epoch` callback to end training after this epoch (e.g. an Early-Bird ticket)."""


@dataclass
class TrainConfig:
    epochs: int = 10
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    batch_size: int = 64
    seed: int = 0


def _device_of(model: nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def evaluate(model: nn.Module, data: DataBundle, batch_size: int = 256) -> float:
    """Top-1 accuracy (%) on the test split."""
    model.eval()
    dev = _device_of(model)
    correct = total = 0
    with torch.no_grad():
        for x, y in data.loader("test", batch_size):
            x, y = x.to(dev), y.to(dev)
            correct += int((model(x).argmax(1) == y).sum())
            total += len(y)
    return 100.0 * correct / max(total, 1)


def train(
    model: nn.Module,
    data: DataBundle,
    cfg: TrainConfig,
    after_step: Sequence[Callback] = (),
    after_backward: Sequence[Callback] = (),
    end_of_epoch: Sequence[Callable[[nn.Module, int], None]] = (),
    optimizer: torch.optim.Optimizer | None = None,
    progress: Callable[[str], None] | None = None,
    evaluate_each_epoch: bool = True,
) -> list[dict]:
    """SGD with cosine LR; returns a per-epoch log (loss, accuracy, seconds).

    `after_backward` hooks edit gradients (e.g. the EB L1 penalty on BN γ); `after_step` hooks edit
    weights (e.g. re-applying masks); `end_of_epoch(model, epoch)` observes (e.g. EB detection) and may
    raise StopTraining to end after that epoch.
    """
    torch.manual_seed(cfg.seed)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = optimizer or torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(cfg.epochs, 1))
    loss_fn = nn.CrossEntropyLoss()
    dev = _device_of(model)
    log: list[dict] = []
    for epoch in range(cfg.epochs):
        model.train()
        t0 = time.perf_counter()
        total_loss = n = 0
        for x, y in data.loader("train", cfg.batch_size, seed=cfg.seed + epoch):
            x, y = x.to(dev), y.to(dev)
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(x), y)
            loss.backward()
            for cb in after_backward:
                cb(model)
            opt.step()
            for cb in after_step:
                cb(model)
            total_loss += loss.item() * len(y)
            n += len(y)
        sched.step()
        train_s = time.perf_counter() - t0
        stop = False
        for cb in end_of_epoch:
            try:
                cb(model, epoch)
            except StopTraining:
                stop = True
        acc = evaluate(model, data) if evaluate_each_epoch else None
        log.append({"epoch": epoch, "loss": total_loss / max(n, 1), "accuracy": acc, "train_s": train_s})
        if progress:
            progress(f"epoch {epoch + 1}/{cfg.epochs} loss {total_loss / max(n, 1):.3f} acc {acc or 0:.1f}%")
        if stop:
            break
    return log
