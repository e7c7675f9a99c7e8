"""The Ticket every method produces and the rest of the pipeline consumes."""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ticketbench.artifacts import write_artifacts_json
from ticketbench.models.data import DataBundle
from ticketbench.models.masks import Masks, mask_sparsity
from ticketbench.models.train import TrainConfig, evaluate, train
from ticketbench.models.zoo import create_model
from ticketbench.registry import Registry


@dataclass
class TicketConfig:
    """Everything that determines a ticket; its hash names the case."""

    model: str
    dataset: str
    method: str
    sparsity: float = 0.0  # fraction of prunable weights (or channels) REMOVED
    epochs: int = 10  # dense training / search epochs
    finetune_epochs: int = 3  # retraining with the mask fixed
    lr: float = 0.05
    batch_size: int = 64
    seed: int = 0
    options: dict[str, Any] = field(default_factory=dict)  # method-specific knobs
    data_options: dict[str, Any] = field(default_factory=dict)  # passed to the data set (e.g. subset)

    def train_config(self, epochs: int | None = None, lr: float | None = None) -> TrainConfig:
        return TrainConfig(
            epochs=self.epochs if epochs is None else epochs,
            lr=self.lr if lr is None else lr,
            batch_size=self.batch_size,
            seed=self.seed,
        )

    def key(self) -> str:
        """Short stable hash of the config (open_lth style: a result traces to what made it)."""
        blob = json.dumps(asdict(self), sort_keys=True, default=str)
        return hashlib.sha1(blob.encode()).hexdigest()[:10]


@dataclass
class Ticket:
    """A (possibly) sparse network: weights with pruned entries at zero, the masks, and where it came from."""

    model: nn.Module
    masks: Masks
    config: TicketConfig
    accuracy: float | None = None  # top-1 (%) of the PyTorch ticket on the test split
    train_log: list[dict] = field(default_factory=list)
    provenance: dict[str, Any] = field(default_factory=dict)
    artifacts: dict[str, Any] = field(default_factory=dict)  # for reports: eb mask distances, score hists

    @property
    def weight_sparsity(self) -> float:
        return mask_sparsity(self.masks) if self.masks else 0.0

    def save(self, directory: Path) -> Path:
        """Write ticket.pt (state + masks + metadata); atomic via temp file + rename."""
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / "ticket.pt"
        tmp = path.with_suffix(".pt.tmp")
        torch.save(
            {
                "config": asdict(self.config),
                "state_dict": self.model.state_dict(),
                "masks": self.masks,
                "accuracy": self.accuracy,
                "train_log": self.train_log,
                "provenance": self.provenance,
                "artifacts": self.artifacts,
                "model_kwargs": self.provenance.get("model_kwargs", {}),
            },
            tmp,
        )
        tmp.replace(path)
        write_artifacts_json(directory, self.artifacts)
        return path


def load_ticket(path: Path) -> Ticket:
    """Rebuild a Ticket from ticket.pt (file or its directory)."""
    path = Path(path)
    if path.is_dir():
        path = path / "ticket.pt"
    blob = torch.load(path, map_location="cpu", weights_only=False)
    cfg = TicketConfig(**blob["config"])
    model = create_model(cfg.model, **blob.get("model_kwargs", {}))
    model.load_state_dict(blob["state_dict"])
    return Ticket(
        model,
        blob["masks"],
        cfg,
        blob["accuracy"],
        blob["train_log"],
        blob["provenance"],
        blob.get("artifacts", {}),
    )


EnergyFn = Callable[[float, float], "float | None"]  # (t0, t1) monotonic s → measured J, None when not covered


class TicketContext:
    """Shared, cached work between cases of one run: the trained dense parent per (model, data, seed).

    `device` is where models are built and trained (`--train-device`); `energy`, when the caller has a
    power sampler on that device, gives each training epoch its measured energy (J) from `power_source`.
    models/ knows nothing of devices: bench/ passes the function in.
    """

    def __init__(
        self,
        progress: Callable[[str], None] | None = None,
        device: str = "cpu",
        energy: EnergyFn | None = None,
        power_source: str = "none",
    ) -> None:
        self._dense: dict[tuple, tuple[dict, list[dict], dict]] = {}
        self.progress = progress
        self.device, self.energy, self.power_source = device, energy, power_source

    def epoch_energy(self, log: list[dict]) -> list[dict]:
        """Add `energy_j` (J over [t_start, t_end], None when the trace misses the window) to each epoch entry."""
        if self.energy is not None:
            for entry in log:
                if "energy_j" not in entry and "t_start" in entry:
                    entry["energy_j"] = self.energy(entry["t_start"], entry["t_end"])
        return log

    def model_kwargs(self, data: DataBundle, cfg: TicketConfig | None = None) -> dict[str, Any]:
        """Factory kwargs: shape facts of the data plus `cfg.options["model_kwargs"]` (e.g. {"width": 0.25})."""
        extra = dict(cfg.options.get("model_kwargs", {})) if cfg is not None else {}
        return {"num_classes": data.num_classes, "in_channels": data.input_shape[0], **extra}

    def fresh_model(self, cfg: TicketConfig, data: DataBundle) -> nn.Module:
        torch.manual_seed(cfg.seed)
        return create_model(cfg.model, **self.model_kwargs(data, cfg)).to(self.device)  # initialised on the CPU

    def trained_dense(self, cfg: TicketConfig, data: DataBundle) -> tuple[nn.Module, list[dict], dict]:
        """A dense model trained `cfg.epochs` epochs; (model copy, train log, initial state)."""
        mkw = json.dumps(self.model_kwargs(data, cfg), sort_keys=True, default=str)
        key = (cfg.model, data.name, cfg.seed, cfg.epochs, cfg.lr, cfg.batch_size, mkw)
        if key not in self._dense:
            model = self.fresh_model(cfg, data)
            init = copy.deepcopy(model.state_dict())
            log = self.epoch_energy(train(model, data, cfg.train_config(), progress=self.progress))
            self._dense[key] = (copy.deepcopy(model.state_dict()), log, init)
        state, log, init = self._dense[key]
        model = self.fresh_model(cfg, data)
        model.load_state_dict(state)
        return model, list(log), init


def phase_energy(entries: list[dict]) -> float | None:
    """Summed measured energy (J) of these epochs; None unless every epoch was measured (never a partial sum)."""
    values = [e.get("energy_j") for e in entries]
    return float(sum(values)) if values and all(v is not None for v in values) else None


def training_energy(log: list[dict], ctx: TicketContext) -> dict[str, Any]:
    """The ticket's own training energy (J) per epoch and per phase, with where it was measured."""
    phases: dict[str, list[dict]] = {}
    for entry in log:
        phases.setdefault(entry.get("phase", "train"), []).append(entry)
    measured = ctx.energy is not None
    return {
        "train_device": ctx.device,
        "power_source": ctx.power_source if measured else "none",
        "per_epoch_j": [e.get("energy_j") for e in log],
        "phases_j": {k: phase_energy(v) for k, v in phases.items()},
        "total_j": phase_energy(log),
        "note": "" if measured else "no power sampler on the training device: energy not measured",
    }


MethodFn = Callable[[TicketConfig, DataBundle, TicketContext], Ticket]
METHODS: Registry[MethodFn] = Registry("method")
register_method = METHODS.register


def find_ticket(cfg: TicketConfig, data: DataBundle, ctx: TicketContext | None = None) -> Ticket:
    """Run the configured method and fill accuracy and provenance common to all methods."""
    if not 0.0 <= cfg.sparsity < 1.0:
        raise ValueError(f"sparsity must be in [0, 1), got {cfg.sparsity}")
    ctx = ctx or TicketContext()
    ticket = METHODS.get(cfg.method)(cfg, data, ctx)
    if ticket.accuracy is None:
        ticket.accuracy = evaluate(ticket.model, data)
    ctx.epoch_energy(ticket.train_log)
    ticket.artifacts.setdefault("training_energy", training_energy(ticket.train_log, ctx))
    ticket.provenance.setdefault("train_device", ctx.device)
    ticket.model = ticket.model.cpu()  # compaction, export and ticket.pt work on the CPU copy
    ticket.masks = {k: v.cpu() for k, v in ticket.masks.items()}
    ticket.provenance.setdefault("model_kwargs", ctx.model_kwargs(data, cfg))
    ticket.provenance.setdefault("config_key", cfg.key())
    ticket.provenance.setdefault("input_shape", list(data.input_shape))
    return ticket
