"""The Ticket every method produces and the rest of the pipeline consumes."""

from __future__ import annotations

import copy
import hashlib
import json
import pickle
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, is_dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ticketbench.artifacts import write_artifacts_json
from ticketbench.files import atomic_output
from ticketbench.models.data import DataBundle
from ticketbench.models.masks import Masks, mask_sparsity
from ticketbench.models.tickets.options import MethodOptions, OptionsError, parse_options
from ticketbench.models.train import TrainConfig, evaluate, train
from ticketbench.models.zoo import create_model, model_kwargs_problem
from ticketbench.registry import Registry
from ticketbench.settings import setting


@dataclass
class TicketConfig:
    """Everything that determines a ticket; its hash names the case."""

    model: str
    dataset: str
    method: str
    # numbers carry their ranges (ticketbench.settings): a suite's cases and a saved ticket's config are checked
    # against these, one declaration
    sparsity: float = setting(0.0, 0, 1, hi_open=True, help="fraction of prunable weights (or channels) REMOVED")
    epochs: int = setting(10, 0, 100_000, help="dense training / search epochs")
    finetune_epochs: int = setting(3, 0, 100_000, help="retraining with the mask fixed")
    lr: float = setting(0.05, 0, None, lo_open=True, help="learning rate")
    batch_size: int = setting(64, 1, 1_000_000, help="training batch size")
    seed: int = setting(0, 0, 2**63, hi_open=True, help="seed of initialization, data order and search")
    options: dict[str, Any] = setting(factory=dict, help="method-specific knobs, typed by the method's options")
    data_options: dict[str, Any] = setting(factory=dict, help="passed to the data set (e.g. subset)")

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
        """Write ticket.pt (state + masks + metadata); atomic via temp file + rename.

        Only tensors and plain values (dict, list, tuple, str, int, float, bool, None) go in, so `load_ticket`
        reads it back with `torch.load(weights_only=True)`: no object of ours is ever pickled."""
        path = directory / "ticket.pt"
        with atomic_output(path) as tmp:  # a unique temp name: a link planted at a fixed one is never followed
            torch.save(
                _plain(
                    {
                        "format": TICKET_FORMAT,
                        "config": asdict(self.config),
                        "state_dict": dict(self.model.state_dict()),
                        "masks": dict(self.masks),
                        "accuracy": self.accuracy,
                        "train_log": self.train_log,
                        "provenance": self.provenance,
                        "artifacts": self.artifacts,
                        "model_kwargs": self.provenance.get("model_kwargs", {}),
                    }
                ),
                tmp,
            )
        write_artifacts_json(directory, self.artifacts)
        return path


TICKET_FORMAT = 2  # 2: tensors and plain values only (weights_only loadable); 1 (no "format" key): pickled objects


class TicketError(ValueError):
    """A ticket.pt that cannot be loaded (not a ticket, truncated, wrong keys or types); one line says why."""


def _plain(value: Any) -> Any:
    """Tensors and plain values, as `torch.load(weights_only=True)` accepts them: numpy → tensors or Python
    scalars, dataclasses → dicts, anything else → its str (metadata only; weights are always tensors)."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if isinstance(value, dict):
        return {k if type(k) in (str, int, float, bool) else str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value] if isinstance(value, list) else tuple(_plain(v) for v in value)
    if value is None or type(value) in (str, int, float, bool):
        return value
    for plain in (bool, int, float, str):  # subclasses (np.float64 is a float) pickle as their own class
        if isinstance(value, plain):
            return plain(value)
    if hasattr(value, "__array__") and hasattr(value, "shape"):  # numpy array or scalar
        return torch.as_tensor(np.asarray(value)) if np.ndim(value) else np.asarray(value).item()
    if is_dataclass(value) and not isinstance(value, type):
        return _plain(asdict(value))
    return str(value)


_REQUIRED = {"config": dict, "state_dict": dict, "masks": dict}


def load_ticket(path: Path, trust: bool = False) -> Ticket:
    """Rebuild a Ticket from ticket.pt (file or its directory).

    Tickets travel between people and machines, so loading one never executes code: the file is read with
    `torch.load(weights_only=True)`, which unpickles only tensors and plain containers (no allow-list is
    needed: `Ticket.save` writes nothing else). Tickets written before that (format 1) may hold numpy arrays
    or other objects and fail to load that way; `trust=True` (`bench export --trust`) reads such a file with
    full unpickling, which can run any code the file carries: only for files you made yourself.
    Anything that is not a well-formed ticket raises TicketError with one line saying why.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "ticket.pt"
    try:
        with warnings.catch_warnings():  # torch warns about odd pickle protocols: the error below says it in one line
            warnings.simplefilter("ignore")
            blob = torch.load(path, map_location="cpu", weights_only=not trust)
    except pickle.UnpicklingError as exc:
        refused = [ln.strip() for ln in str(exc).splitlines() if "GLOBAL" in ln]  # an object that is not plain
        if not refused:
            raise TicketError(f"{path}: not a ticket file (a pickle torch cannot read as plain values)") from exc
        why = refused[0][:160]
        raise TicketError(
            f"{path}: holds objects other than tensors and plain values, refused ({why}); if it is an old "
            "ticket you made yourself, `bench export --trust` loads it with full unpickling"
        ) from exc
    except Exception as exc:  # truncated, empty or random bytes: torch raises RuntimeError, EOFError, ...
        raise TicketError(f"{path}: not a ticket file ({type(exc).__name__}: {_line(exc)})") from exc
    if not isinstance(blob, dict):
        raise TicketError(f"{path}: not a ticket (holds a {type(blob).__name__}, expected a dict)")
    for key, typ in _REQUIRED.items():
        if not isinstance(blob.get(key), typ):
            raise TicketError(f"{path}: not a ticket ({key!r} missing or not a {typ.__name__})")
    try:
        cfg = TicketConfig(**blob["config"])
        model = create_model(cfg.model, **(blob.get("model_kwargs") or {}))
        model.load_state_dict(blob["state_dict"])
    except Exception as exc:  # unknown model, config keys or weights that do not fit the model
        raise TicketError(f"{path}: does not rebuild a model ({type(exc).__name__}: {_line(exc)})") from exc
    masks = blob["masks"]
    if not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in masks.items()):
        raise TicketError(f"{path}: masks must map parameter names to tensors")
    meta = {k: blob.get(k) for k in ("train_log", "provenance", "artifacts")}
    return Ticket(
        model,
        masks,
        cfg,
        blob.get("accuracy") if isinstance(blob.get("accuracy"), int | float) else None,
        meta["train_log"] if isinstance(meta["train_log"], list) else [],
        meta["provenance"] if isinstance(meta["provenance"], dict) else {},
        meta["artifacts"] if isinstance(meta["artifacts"], dict) else {},
    )


def _line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__


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
        """Factory kwargs: shape facts of the data plus the `model_kwargs` option (e.g. {"width": 0.25})."""
        extra = dict(method_options(cfg).model_kwargs) if cfg is not None else {}
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
    measured = [v for v in values if v is not None]
    return float(sum(measured)) if values and len(measured) == len(values) else None


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
METHOD_OPTIONS: dict[str, type[MethodOptions]] = {}  # method name → its typed options dataclass


def register_method(name: str, options: type[MethodOptions] = MethodOptions) -> Callable[[MethodFn], MethodFn]:
    """Register a ticket method and the dataclass its `cfg.options` must parse into."""
    METHOD_OPTIONS[name] = options
    return METHODS.register(name)


def method_options(cfg: TicketConfig) -> Any:
    """`cfg.options` parsed into the method's options dataclass; OptionsError (a ValueError) lists the valid ones."""
    if cfg.method not in METHOD_OPTIONS:
        raise OptionsError(f"unknown method {cfg.method!r} (known: {', '.join(METHODS.names())})")
    options = parse_options(cfg.method, METHOD_OPTIONS[cfg.method], cfg.options)
    problem = model_kwargs_problem(cfg.model, options.model_kwargs)  # width -1: refused here, not after training
    if problem:
        raise OptionsError(f"{cfg.method}: option model_kwargs: {problem}")
    return options


def find_ticket(cfg: TicketConfig, data: DataBundle, ctx: TicketContext | None = None) -> Ticket:
    """Run the configured method and fill accuracy and provenance common to all methods."""
    if not 0.0 <= cfg.sparsity < 1.0:
        raise ValueError(f"sparsity must be in [0, 1), got {cfg.sparsity}")
    method_options(cfg)  # typos and ill-typed options fail before any training
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
