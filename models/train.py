"""A short training loop extended by callbacks (mask re-application, logging), not by flags.

Training runs where the model's parameters are (`--train-device auto|cpu|cuda`: the ticket context builds
models there). Seeding: `torch.manual_seed` seeds the CPU and every CUDA device, models are initialised on
the CPU and then moved, and data order comes from a CPU generator, so a run starts from the same weights
and batches on either device. On CUDA, cuDNN is put in deterministic mode (no autotuned algorithm choice)
and cuBLAS gets a fixed workspace (CUBLAS_WORKSPACE_CONFIG=:4096:8, unless already set), so reruns on the
same GPU and software stack repeat. Not deterministic: results across GPU models, driver/CUDA/cuDNN
versions, or CPU vs CUDA (different kernels and summation orders), and ops without a deterministic CUDA
kernel (e.g. scatter-add, adaptive pooling backward; `torch.use_deterministic_algorithms` is not forced,
as it raises on them).

Each epoch's log entry carries `t_start`/`t_end` (time.monotonic() s, the device synchronized at the end),
so a caller with a power sampler can give every epoch its measured energy.
"""

from __future__ import annotations

import os
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


def resolve_train_device(name: str = "auto") -> str:
    """ "auto" → "cuda" when torch sees a CUDA device, else "cpu"; "cpu", "cuda" and "cuda:N" are checked."""
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cpu":
        return name
    if name == "cuda" or (name.startswith("cuda:") and name[5:].isdigit()):
        if not torch.cuda.is_available():
            raise ValueError(f"train device {name!r}: torch sees no CUDA device (torch {torch.__version__})")
        if name != "cuda" and int(name[5:]) >= torch.cuda.device_count():
            raise ValueError(f"train device {name!r}: torch sees {torch.cuda.device_count()} CUDA device(s)")
        return name
    raise ValueError(f"train device {name!r}: expected auto, cpu, cuda or cuda:N")


def deterministic_cuda() -> None:
    """What CUDA allows for repeatable training (see the module docstring for what stays nondeterministic)."""
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


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
    if dev.type == "cuda":
        deterministic_cuda()
    log: list[dict] = []
    for epoch in range(cfg.epochs):
        model.train()
        _sync(dev)
        t_start = time.monotonic()
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
        _sync(dev)
        train_s = time.perf_counter() - t0
        t_end = time.monotonic()
        stop = False
        for observe in end_of_epoch:
            try:
                observe(model, epoch)
            except StopTraining:
                stop = True
        acc = evaluate(model, data) if evaluate_each_epoch else None
        entry = {"epoch": epoch, "loss": total_loss / max(n, 1), "accuracy": acc, "train_s": train_s}
        log.append({**entry, "t_start": t_start, "t_end": t_end, "device": str(dev)})
        if progress:
            progress(f"epoch {epoch + 1}/{cfg.epochs} loss {total_loss / max(n, 1):.3f} acc {acc or 0:.1f}%")
        if stop:
            break
    return log
