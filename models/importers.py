"""Bring your own ticket: read pruned checkpoints written by other tools and turn them into Tickets.

One small reader per format, behind `READERS`; each returns the checkpoint's tensors named as the model's
state_dict plus the masks the format states explicitly, and says in words how the masks were derived:

- `state_dict`: a plain state_dict; masks are its zeros. Tensors smaller than the model's (a module
  physically pruned by Torch-Pruning, EB, ...) fill the leading slice of the dense tensor, the rest is pruned.
- `torch-prune`: `torch.nn.utils.prune`: `<name>_orig` × `<name>_mask`; the masks are the `_mask` buffers.
- `eb`: Early-Bird `vggprune.py`/`resprune.py`: `{'cfg', 'state_dict'}` of the physically pruned network; each
  BN layer's kept channel count must equal its `cfg` entry, and the first `cfg[i]` channels are kept (after a
  PreResNet channel selection, which resprune.py keeps whole, the layer reads the selected channels).
- `open_lth`: `model_ep*_it*.pth` with `mask.pth` beside it (or `--mask`): weights × mask.
- `mpt`: biprop/MPT: `<name>.scores` beside each weight and the checkpoint's `prune_rate` (fraction KEPT):
  per layer the top-k |scores| are kept and the weight becomes α·sign(W)·M, α = ‖M⊙W‖₁ / int(k·n)
  (biprop's GetQuantnet_binary).

Checkpoints load with `torch.load(weights_only=True)`: a file holding pickled code is refused, never run.
Channels outside an embedded slice get BN γ = β = 0, mean 0, var 1, so they output exact zeros, and the
compactor removes them; the imported ticket computes exactly what the source network computed. The leading slice
is exact for conv/BN chains, residual adds, depthwise convs and flatten → linear (channel-major); grouped convs
are refused, and a network that concatenates pruned channel groups is not detected (check its export).
"""

from __future__ import annotations

import hashlib
import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import fx, nn

from ticketbench.models.masks import Masks, mask_sparsity, prunable_weights
from ticketbench.models.tickets.base import Ticket, TicketConfig
from ticketbench.models.zoo import allow_model_code, create_model, input_size, model_names
from ticketbench.models.zoo.layers import ChannelSelection
from ticketbench.registry import Registry

FORMATS_HELP = (
    "a state_dict (name → tensor), torch.nn.utils.prune (<name>_orig + <name>_mask), Early-Bird {'cfg', "
    "'state_dict'}, open_lth model_ep*_it*.pth + mask.pth, or biprop/MPT {'state_dict' with <name>.scores, "
    "'prune_rate'}"
)
OPEN_LTH_MODEL = re.compile(r"model_ep\d+_it\d+\.pth$")
WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "net")  # common {key: state_dict} checkpoint wrappers


class CheckpointError(ValueError):
    """A checkpoint that cannot be imported; the one-line message names what was expected."""


@dataclass
class Source:
    """What a reader found: tensors named as the model's state_dict, the format's explicit masks, and how."""

    state: dict[str, torch.Tensor]
    masks: dict[str, torch.Tensor] = field(default_factory=dict)  # explicit masks, shaped as `state`'s tensors
    derived: str = ""  # how the masks were derived, in words (goes into the ticket's provenance)
    facts: dict[str, Any] = field(default_factory=dict)  # format facts worth keeping (cfg, prune_rate, ...)


Reader = Callable[[Any, Any], Source]  # (checkpoint object, mask object or None) → Source
READERS: Registry[Reader] = Registry("checkpoint format")


# -- loading and recognizing ---------------------------------------------------------------------
def load_checkpoint(path: Path) -> Any:
    """torch.load with weights_only=True: tensors and plain containers only; pickled code is refused unrun."""
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # UnpicklingError for code, RuntimeError/EOFError for non-checkpoints
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(exc))
        why = f"it pickles {found.group(1)}" if found else f"{type(exc).__name__}: {_first_line(exc)}"
        raise CheckpointError(
            f"{path}: refused, not tensors only (loaded with weights_only=True; save model.state_dict(), not the "
            f"module or other objects): {why}"
        ) from None


def _first_line(exc: Exception) -> str:
    """The first line of an exception's message without terminal colour codes, at most 200 characters."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).strip()
    return text.splitlines()[0][:200] if text else ""


def _is_tensor_map(obj: Any) -> bool:
    return isinstance(obj, Mapping) and bool(obj) and all(isinstance(v, torch.Tensor) for v in obj.values())


def state_dict_of(obj: Any) -> dict[str, torch.Tensor] | None:
    """The name → tensor map in a checkpoint (bare, or under a usual wrapper key), without DataParallel's
    `module.` prefix; None when there is none."""
    if not _is_tensor_map(obj):
        inner = next((obj[k] for k in WRAPPER_KEYS if isinstance(obj, Mapping) and k in obj), None)
        if not _is_tensor_map(inner):
            return None
        obj = inner
    sd = {str(k): v for k, v in obj.items()}
    if all(k.startswith("module.") for k in sd):
        sd = {k[len("module.") :]: v for k, v in sd.items()}
    return sd


def detect(obj: Any, path: Path, mask_path: Path | None) -> str:
    """The format of a loaded checkpoint, from what it holds (and open_lth's file naming)."""
    if isinstance(obj, Mapping) and "cfg" in obj and "state_dict" in obj:
        return "eb"
    sd = state_dict_of(obj)
    if sd is None:
        raise CheckpointError(f"{path}: unknown checkpoint format (expected {FORMATS_HELP})")
    if any(k.endswith("_orig") and k[: -len("_orig")] + "_mask" in sd for k in sd):
        return "torch-prune"
    if any(k.endswith(".scores") for k in sd):
        return "mpt"
    if mask_path is not None or (OPEN_LTH_MODEL.search(path.name) and (path.parent / "mask.pth").is_file()):
        return "open_lth"
    return "state_dict"


def _binary(name: str, mask: torch.Tensor, what: str) -> torch.Tensor:
    if not torch.all((mask == 0) | (mask == 1)):
        raise CheckpointError(f"{what} {name!r} is not a 0/1 mask")
    return mask.float()


def _need_state(obj: Any, fmt: str) -> dict[str, torch.Tensor]:
    sd = state_dict_of(obj)
    if sd is None:
        raise CheckpointError(f"format {fmt}: expected a state_dict (name → tensor) in the checkpoint")
    return sd


# -- readers ---------------------------------------------------------------------------------------
@READERS.register("state_dict")
def read_state_dict(obj: Any, mask: Any = None) -> Source:
    """A plain state_dict: its zeros are the masks."""
    return Source(_need_state(obj, "state_dict"), derived="zeros of the weights")


@READERS.register("torch-prune")
def read_torch_prune(obj: Any, mask: Any = None) -> Source:
    """torch.nn.utils.prune: the effective tensor is <name>_orig × <name>_mask; the mask is <name>_mask."""
    sd = _need_state(obj, "torch-prune")
    state, masks = {}, {}
    for k, v in sd.items():
        if k.endswith("_mask") and k[: -len("_mask")] + "_orig" in sd:
            continue
        if k.endswith("_orig"):
            base = k[: -len("_orig")]
            if base + "_mask" not in sd:
                raise CheckpointError(f"format torch-prune: {k} has no {base}_mask beside it")
            m = sd[base + "_mask"]
            if m.shape != v.shape:
                raise CheckpointError(f"format torch-prune: {base}_mask {tuple(m.shape)} ≠ {k} {tuple(v.shape)}")
            masks[base] = _binary(base + "_mask", m, "torch-prune buffer")
            state[base] = v * masks[base]
        else:
            state[k] = v
    if not masks:
        raise CheckpointError("format torch-prune: expected <name>_orig + <name>_mask pairs (torch.nn.utils.prune)")
    return Source(state, masks, "weight_mask buffers of torch.nn.utils.prune (<name>_orig × <name>_mask)")


@READERS.register("eb")
def read_eb(obj: Any, mask: Any = None) -> Source:
    """Early-Bird: the physically pruned state_dict; `cfg` must list each BN layer's kept channel count in order."""
    if not (isinstance(obj, Mapping) and "cfg" in obj and "state_dict" in obj):
        raise CheckpointError("format eb: expected {'cfg': [...], 'state_dict': {...}} (vggprune.py / resprune.py)")
    sd = _need_state(obj["state_dict"], "eb")
    cfg = obj["cfg"]
    if not isinstance(cfg, list | tuple) or not all(isinstance(v, str) or _is_count(v) for v in cfg):
        raise CheckpointError(
            f"format eb: cfg must be a list of channel counts (whole numbers) and 'M' markers, got {repr(cfg)[:60]}"
        )
    cfg = list(cfg)
    counts = [int(v) for v in cfg if not isinstance(v, str)]
    bn = _eb_channel_counts(sd)
    if counts != bn:
        raise CheckpointError(f"format eb: cfg channel counts {counts} ≠ the state_dict's BN channels {bn}")
    return Source(sd, {}, "EB cfg channel counts: the first cfg[i] channels of each layer kept", {"cfg": cfg})


def _eb_channel_counts(sd: dict[str, torch.Tensor]) -> list[int]:
    """Kept channels per BN in state order. resprune.py keeps a block's first BN whole and zeroes the pruned
    channels in the `select.indexes` beside it, so that BN counts the selected channels."""
    counts, parents = [], set()
    for k in sd:
        if not k.endswith(".running_mean"):
            continue
        bn = k[: -len(".running_mean")]
        parent = bn.rpartition(".")[0]
        select = f"{parent}.select.indexes" if parent else "select.indexes"
        var = sd.get(f"{bn}.running_var")
        if var is None or var.dim() != 1:
            why = "no running_var" if var is None else f"a {var.dim()}-d running_var"
            raise CheckpointError(f"format eb: BN {bn} has {why} beside its running_mean (expected one per channel)")
        n = var.shape[0]
        first = parent not in parents
        parents.add(parent)
        counts.append(int(sd[select].sum()) if first and select in sd and sd[select].numel() == n else n)
    return counts


def _is_count(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def _open_lth_masks(mask: Any, sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """mask.pth (name → 0/1 int tensor), else PrunedModel's `mask_<name with ___>` buffers in the checkpoint."""
    if mask is not None:
        if not _is_tensor_map(mask):
            raise CheckpointError("format open_lth: mask.pth must map parameter names to 0/1 tensors")
        return {str(k): _binary(str(k), v, "open_lth mask") for k, v in mask.items()}
    buffers = {k[len("mask_") :].replace("___", "."): v for k, v in sd.items() if k.startswith("mask_")}
    if not buffers:
        raise CheckpointError("format open_lth: no mask.pth beside the checkpoint (pass --mask MASK)")
    return {k: _binary(k, v, "open_lth mask") for k, v in buffers.items()}


@READERS.register("open_lth")
def read_open_lth(obj: Any, mask: Any = None) -> Source:
    """open_lth: the level's model_ep*_it*.pth × its mask.pth (weights under a mask may have drifted in training)."""
    sd = _need_state(obj, "open_lth")
    masks = _open_lth_masks(mask, sd)
    sd = {k: v for k, v in sd.items() if not k.startswith("mask_")}
    if sd and all(k.startswith("model.") for k in sd):  # a PrunedModel's own state_dict
        sd = {k[len("model.") :]: v for k, v in sd.items()}
    for k, m in masks.items():
        if k not in sd or sd[k].shape != m.shape:
            got = tuple(sd[k].shape) if k in sd else "absent"
            raise CheckpointError(
                f"format open_lth: mask {k} {tuple(m.shape)} does not match the model's tensor ({got})"
            )
        sd[k] = sd[k] * m
    return Source(sd, masks, "open_lth mask.pth (weights × mask)")


def biprop_subnet(scores: torch.Tensor, k: float) -> torch.Tensor:
    """biprop's GetSubnet on |scores|: sort ascending, zero the first int((1 − k)·n), keep the rest."""
    flat = scores.abs().flatten()
    out = torch.ones_like(flat)
    out[flat.sort().indices[: int((1 - k) * flat.numel())]] = 0.0
    return out.view_as(scores)


@READERS.register("mpt")
def read_mpt(obj: Any, mask: Any = None) -> Source:
    """biprop/MPT: per SubnetConv layer, M = top-k |scores| (k = prune_rate, the fraction kept) and the layer
    computes α·sign(W)·M; layers without scores are dense."""
    sd = _need_state(obj, "mpt")
    rate = obj.get("prune_rate") if isinstance(obj, Mapping) else None
    if not isinstance(rate, (int, float)) or isinstance(rate, bool) or not 0 < rate <= 1:
        raise CheckpointError(
            "format mpt: expected the checkpoint's 'prune_rate' (fraction kept, in (0, 1]) beside 'state_dict'"
        )
    conv_type = obj.get("conv_type", "SubnetConv")
    if conv_type != "SubnetConv":
        raise CheckpointError(
            f"format mpt: conv_type {conv_type!r} not supported (expected SubnetConv: layer-wise top-k)"
        )
    state, masks = {}, {}
    for k, v in sd.items():
        if k.endswith(".scores"):
            continue
        s = sd.get(k[: -len("weight")] + "scores") if k.endswith(".weight") else None
        if s is None:
            state[k] = v
            continue
        if s.shape != v.shape:
            raise CheckpointError(f"format mpt: scores {tuple(s.shape)} ≠ weight {k} {tuple(v.shape)}")
        m = biprop_subnet(s, float(rate))
        alpha = (v.abs() * m).sum() / max(int(rate * v.numel()), 1)
        state[k], masks[k] = alpha * torch.sign(v) * m, m
    orphans = [k for k in sd if k.endswith(".scores") and k[: -len("scores")] + "weight" not in sd]
    if orphans or not masks:
        raise CheckpointError(f"format mpt: expected <layer>.scores beside <layer>.weight (orphans: {orphans[:3]})")
    return Source(
        state,
        masks,
        f"MPT top-k |scores| per layer, prune_rate {rate} kept (biprop GetQuantnet_binary: α·sign(W)·M)",
        {"prune_rate": float(rate), "conv_type": conv_type},
    )


# -- building the ticket ---------------------------------------------------------------------------
def _place(small: torch.Size, inputs: torch.Tensor | None = None) -> tuple:
    """Where a physically pruned tensor sits in the dense one: the leading slice, or with `inputs` (a layer that
    reads a channel-selection layer) its input dimension at the selected channels."""
    if inputs is None:
        return tuple(slice(0, n) for n in small)
    if len(small) < 2 or inputs.numel() != small[1]:
        raise CheckpointError(f"a layer after a channel selection has {small[1]} inputs, {inputs.numel()} selected")
    return (slice(0, small[0]), inputs, *(slice(0, n) for n in small[2:]))


class _SelectionTracer(fx.Tracer):
    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return isinstance(m, ChannelSelection) or super().is_leaf_module(m, qualname)


def selection_inputs(model: nn.Module, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Weights of the conv/linear layers reading a channel-selection layer (network slimming's PreResNet) → the
    selected channels: EB's resprune.py keeps only those inputs, in order."""
    sels = {n for n, m in model.named_modules() if isinstance(m, ChannelSelection) and f"{n}.indexes" in state}
    if not sels:
        return {}
    mods = dict(model.named_modules())
    out = {}
    for node in _SelectionTracer().trace(model).nodes:
        if node.op != "call_module" or node.target not in sels:
            continue
        keep, todo = state[f"{node.target}.indexes"].nonzero().flatten(), list(node.users)
        while todo:  # through activations, pooling and flatten to the consuming layers (a residual add ends it)
            u = todo.pop()
            m = mods.get(u.target) if u.op == "call_module" else None
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                out[f"{u.target}.weight"] = keep
            elif not (u.op == "call_function" and u.target in (operator.add, torch.add)):
                todo.extend(u.users)
    return out


def embed(
    model: nn.Module, state: dict[str, torch.Tensor], inputs: dict[str, torch.Tensor] | None = None
) -> tuple[dict[str, torch.Tensor], list[str]]:
    """The model's state_dict filled from `state`; a smaller tensor fills its place (`_place`: a physically pruned
    layer), everything outside it is pruned: zero, and BN channels that output exactly zero. Also returns the
    names of the embedded (smaller) tensors."""
    inputs = inputs or {}
    target = model.state_dict()
    missing = [k for k in target if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in target]
    if missing or unexpected:
        raise CheckpointError(
            f"checkpoint does not fit the model: missing {missing[:4]}{'…' if len(missing) > 4 else ''}, "
            f"unexpected {unexpected[:4]}{'…' if len(unexpected) > 4 else ''}"
        )
    out: dict[str, torch.Tensor] = {}
    embedded: list[str] = []
    for k, t in target.items():
        if k not in state:
            out[k] = t
            continue
        v = state[k].to(t.dtype)
        if v.shape == t.shape:
            out[k] = v.clone()
            continue
        if v.dim() != t.dim() or any(a > b for a, b in zip(v.shape, t.shape, strict=True)):
            raise CheckpointError(f"{k}: checkpoint shape {tuple(v.shape)} does not fit the model's {tuple(t.shape)}")
        full = torch.ones_like(t) if k.endswith("running_var") else torch.zeros_like(t)
        full[_place(v.shape, inputs.get(k))] = v
        out[k], embedded = full, [*embedded, k]
    return out, embedded


def _derive_masks(
    model: nn.Module, src: Source, fmt: str, embedded: list[str], inputs: dict[str, torch.Tensor]
) -> Masks:
    """A mask per conv/linear weight: the format's explicit mask (placed like its tensor), the place of a
    physically pruned tensor, and for a plain state_dict the zeros."""
    masks: Masks = {}
    for name, w in prunable_weights(model).items():
        m = torch.ones_like(w, dtype=torch.float32)
        place = _place(src.state[name].shape, inputs.get(name) if name in embedded else None)
        if name in embedded:
            m = torch.zeros_like(m)
            m[place] = 1.0
        if name in src.masks:
            m[place] *= src.masks[name]
        elif fmt == "state_dict":
            m = m * (w.detach() != 0).float()
        masks[name] = m
    return masks


def _zoo_kwargs(name: str, state: dict[str, torch.Tensor], channels: int | None) -> dict[str, int]:
    """num_classes from the checkpoint's last conv/linear weight, in_channels from its first conv (or the input)."""
    probe = create_model(name)
    layers = [f"{n}.weight" for n, m in probe.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    head, first = layers[-1] if layers else None, layers[0] if layers else None
    kw = {}
    for key in (head, first):  # shapes are read from these two: a 0-d or 1-d "weight" is no layer's
        if key in state and state[key].dim() < 2:
            raise CheckpointError(f"{key}: shape {tuple(state[key].shape)}, expected a layer weight (out, in, ...)")
    if head in state:
        kw["num_classes"] = int(state[head].shape[0])
    if channels is not None:
        kw["in_channels"] = channels
    elif first in state and state[first].dim() == 4:
        kw["in_channels"] = int(state[first].shape[1])
    return kw


def _input_shape(name: str, kwargs: dict, given: tuple[int, int, int] | None) -> tuple[int, int, int]:
    if given is not None:
        return given
    side = input_size(name) if ":" not in name else None
    if side is None:
        raise CheckpointError(f"model {name!r} has no known input size: pass --input-shape C,H,W")
    return (int(kwargs.get("in_channels", 3)), side, side)


def import_checkpoint(
    model: str,
    checkpoint: Path,
    fmt: str = "auto",
    mask: Path | None = None,
    input_shape: tuple[int, int, int] | None = None,
) -> Ticket:
    """A Ticket from another tool's checkpoint; its provenance says where it came from and how masks were derived.

    `model` is a zoo name or `package.module:factory` (the user's own code, imported because they named it)."""
    checkpoint = Path(checkpoint)
    if fmt != "auto" and fmt not in READERS:
        raise CheckpointError(f"unknown --format {fmt!r} (expected auto, {', '.join(READERS.names())})")
    user_code = ":" in model
    if user_code:
        allow_model_code(model)
    elif model not in model_names():
        raise CheckpointError(f"unknown model {model!r} (known: {', '.join(model_names())}, or package.module:factory)")
    obj = load_checkpoint(checkpoint)
    if mask is None and (fmt == "open_lth" or (fmt == "auto" and OPEN_LTH_MODEL.search(checkpoint.name))):
        mask = checkpoint.parent / "mask.pth" if (checkpoint.parent / "mask.pth").is_file() else None
    fmt = detect(obj, checkpoint, mask) if fmt == "auto" else fmt
    if mask is not None and fmt != "open_lth":
        raise CheckpointError(f"--mask is for open_lth checkpoints, not format {fmt} (its masks are in the checkpoint)")
    mask_obj = load_checkpoint(Path(mask)) if mask is not None else None
    src = READERS.get(fmt)(obj, mask_obj)

    kwargs = {} if user_code else _zoo_kwargs(model, src.state, input_shape[0] if input_shape else None)
    try:
        net = create_model(model, **kwargs)
    except (ValueError, TypeError) as exc:
        raise CheckpointError(str(exc)) from None
    inputs = selection_inputs(net, src.state)
    state, embedded = embed(net, src.state, inputs)
    for name, m in net.named_modules():  # a leading slice is exact for chains, adds, depthwise and flatten → linear
        if isinstance(m, nn.Conv2d) and 1 < m.groups < m.in_channels and f"{name}.weight" in embedded:
            raise CheckpointError(
                f"{name}: a physically pruned grouped conv (groups={m.groups}) cannot be placed exactly"
            )
    net.load_state_dict(state)
    net.eval()
    masks = _derive_masks(net, src, fmt, embedded, inputs)
    shape = _input_shape(model, kwargs, input_shape)
    sparsity = mask_sparsity(masks)
    cfg = TicketConfig(
        model,
        "synthetic",
        f"import-{fmt}",
        round(sparsity, 4),
        epochs=0,
        finetune_epochs=0,
        options={"format": fmt, "checkpoint": checkpoint.name},
    )
    derived = src.derived + (
        f"; {len(embedded)} physically pruned tensors kept in their leading slice" if embedded else ""
    )
    provenance = {
        "imported_from": {
            "format": fmt,
            "checkpoint": str(checkpoint),
            "sha256": hashlib.sha256(checkpoint.read_bytes()).hexdigest(),
            "mask_file": str(mask) if mask_obj is not None else None,
            "masks_derived": derived,
            "embedded": embedded,
            **src.facts,
        },
        "model_kwargs": kwargs,
        "input_shape": list(shape),
        "config_key": cfg.key(),
    }
    if user_code:
        provenance["model_code"] = model
    return Ticket(net, masks, cfg, None, [], provenance, {})
