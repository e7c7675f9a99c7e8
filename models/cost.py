"""Analytic cost measured from the weights themselves: params, MACs, sparsity and the acceleration rate.

AR follows the Efficient-MPT report (Eq. 4): AR = Σ N·M·D²·k² / Σ P·D²·k² over conv layers, where N·M
is the number of (input, output) kernels (N·M/groups for a grouped conv), D² the positions each kernel is
applied at (the output area H·W of a Conv2d; the output length or volume of a Conv1d/3d; the *input* area of a
transposed conv, whose every input pixel scatters one kernel), k² the kernel area (length, volume) and P the
number of kernels with at least one non-zero weight. Equivalently AR = conv MACs / conv MACs over non-zero
kernels, both reported per layer (`macs`, `macs_nonzero_kernels`).

MACs are the multiply-accumulates of one forward pass at batch 1 (per image): every convolution, every matrix
product (mm/addmm/bmm/baddbmm/addbmm, mv, dot) and attention (QKᵀ and AV). No bias, BN, pooling, activation,
softmax or interpolation, the same quantity torch.utils.flop_counter reports as FLOPs / 2 for the ops it
knows. Per-layer zero-kernel counts (`zero_kernels` of `kernels`) are what the report plots as the MPT
report's Fig. 5.

How they are counted, and why this way: a TorchDispatchMode sees every aten op of the forward pass, with real
shapes. Forward hooks on Conv/Linear modules (what this module did before) miss everything functional: a Linear
on [N, T, C] was counted once instead of T times, torchvision's MultiheadAttention and Swin call F.linear on
their weights without calling the Linear module (no hook fires), attention's matmuls belong to no layer, and a
Conv1d or ConvTranspose2d was not hooked at all. FlopCounterMode alone sees the ops but says nothing about
which weight an op used (the per-layer rows need that: sparsity, AR and the report's plots), and it silently
counts 0 for ops it has no formula for: the CPU attention kernel (`_scaled_dot_product_flash_attention_for_cpu`,
what F.scaled_dot_product_attention and nn.MultiheadAttention run on a CPU), mv, `_trilinear` (nn.Bilinear),
`mkldnn_rnn_layer` (nn.LSTM on a CPU), the MultiheadAttention fast path. So:

- a convolution, or an mm/addmm one of whose operands is a model weight (by storage: a parameter of ≥ 2 dims,
  or the weight of the nn.Linear being run, e.g. a masked copy made by a forward pre-hook), gives one
  `LayerCost` row per call, counted from that weight operand: MACs = weights × positions (positions = the
  rows of a Linear's input, T per image for [N, T, C]; the output positions of a conv; the input positions of a
  transposed conv);
- every other product (attention, activation × activation matmuls, bmm) is counted with torch's own formulas
  (`flop_registry`, plus the few above it lacks) into `macs_other`: no weight, so nothing for pruning to remove;
- an op that multiplies and accumulates but has no formula here (by name: conv, *mm, mv, dot, linear, rnn,
  lstm, gru, attention, transformer, in any namespace, e.g. quantized::linear), and a leaf module holding a
  ≥ 2-D `weight` that ran but whose weight reached no counted op, are listed in `uncounted` with the reason:
  the MACs are then a lower bound, never silently short.

MultiheadAttention's fused fast path (`_native_multi_head_attention`) is switched off during the pass
(`torch.backends.mha`, process-wide, restored after) so its projections and attention are seen as the ops above.

Parameters: `params` counts nn.Parameters as stored. Compaction's bias maps (models/compact.py folds the
contribution of a removed channel whose output is a non-zero constant into a `BiasMap` buffer after its
consumer, [C, H, W] when it depends on position) are floats the exported model holds too; they are counted
apart in `params_bias_maps`, not in `params`, so `params` stays comparable with dense models and other tools.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry, sdpa_flop_count

from ticketbench.models.channel_graph import BiasMap


@dataclass
class LayerCost:
    """One call of a conv or of a matrix product with a weight operand (a module called twice gives two rows)."""

    name: str  # the weight's module ("features.0"), or its parameter name when it is not `weight` ("…in_proj_weight")
    kind: str  # "conv" (Conv1d/2d/3d and transposed, grouped, depthwise) | "linear" (x·Wᵀ with a weight W)
    in_channels: int
    out_channels: int
    groups: int
    kernel: tuple[int, ...]  # conv: kernel size, one entry per spatial dim; linear: (1, 1)
    out_hw: tuple[int, ...]  # conv: output size, one entry per spatial dim; linear: (1, 1)
    weights: int
    zero_weights: int
    kernels: int  # conv: N·M/groups; linear: weights
    zero_kernels: int
    filters: int  # output filters (= out_channels)
    zero_filters: int
    macs: int  # dense multiply-accumulates of this call as stored (= weights · positions)
    macs_nonzero: int  # counting only non-zero weights
    macs_nonzero_kernels: int = 0  # counting only kernels with a non-zero weight (P·k²·D²): what kernel removal buys
    weight_sparsity: float = 0.0  # zero_weights / weights
    kernel_sparsity: float = 0.0  # zero_kernels / kernels
    channel_sparsity: float = 0.0  # zero_filters / filters
    # how many times each weight is applied per image: output positions of a conv (D² of AR), input positions of
    # a transposed conv, input rows of a linear (T for [1, T, C]; 1 for [1, C])
    positions: int = 1
    transposed: bool = False  # a transposed conv


@dataclass
class ModelCost:
    params: int  # nn.Parameters as stored (bias maps are buffers: `params_bias_maps`)
    params_nonzero: int
    macs: int  # Σ layers[*].macs + macs_other, per image
    macs_nonzero: int  # layer MACs over non-zero weights + macs_other
    weight_sparsity: float  # zero fraction of conv+linear weights
    channel_sparsity: float  # all-zero conv output filters / conv filters
    kernel_sparsity: float  # all-zero conv kernels / conv kernels
    acceleration_rate: float
    layers: list[LayerCost] = field(default_factory=list)
    macs_nonzero_kernels: int = 0  # Σ over layers (linear layers count non-zero weights) + macs_other
    size_mb_fp32: float = 0.0  # parameters and buffers as fp32, 10⁶ bytes (the ONNX file is a little larger)
    macs_other: int = 0  # products with no weight operand: attention (QKᵀ, AV), activation × activation matmuls
    params_bias_maps: int = 0  # floats in compaction's bias maps (BiasMap buffers): in the ONNX, not in `params`
    uncounted: list[str] = field(default_factory=list)  # "where: what and why" for MACs not counted (lower bound)

    def to_dict(self) -> dict:
        return asdict(self)


def _ratio(a: int, b: int) -> float:
    return a / b if b else 0.0


def _with_sparsity(lc: LayerCost) -> LayerCost:
    lc.weight_sparsity = _ratio(lc.zero_weights, lc.weights)
    lc.kernel_sparsity = _ratio(lc.zero_kernels, lc.kernels)
    lc.channel_sparsity = _ratio(lc.zero_filters, lc.filters)
    return lc


def _conv_cost(
    name: str, x: torch.Tensor, w: torch.Tensor, out: torch.Tensor, transposed: bool, groups: int
) -> LayerCost:
    """One aten.convolution call: w is [out, in/g, k…] ([in, out/g, k…] when transposed), x and out [N, C, …]."""
    w = w.detach()
    kern_nz = w.flatten(2).ne(0).any(-1)  # [w0, w1]: one entry per (input, output) kernel
    if transposed:
        c_in, c_out = w.shape[0], w.shape[1] * groups
        filt_nz = kern_nz.view(groups, -1, w.shape[1]).any(1).flatten()  # output o = (group, index in group)
        positions = x.shape[0] * math.prod(x.shape[2:])
    else:
        c_in, c_out = w.shape[1] * groups, w.shape[0]
        filt_nz = kern_nz.any(-1)
        positions = out.shape[0] * math.prod(out.shape[2:])
    kernel = tuple(int(k) for k in w.shape[2:])
    nz, nz_kernels = int(w.ne(0).sum()), int(kern_nz.sum())
    lc = LayerCost(
        name,
        "conv",
        int(c_in),
        int(c_out),
        groups,
        kernel,
        tuple(int(s) for s in out.shape[2:]),
        w.numel(),
        w.numel() - nz,
        kern_nz.numel(),
        kern_nz.numel() - nz_kernels,
        int(c_out),
        int(c_out) - int(filt_nz.sum()),
        w.numel() * positions,
        nz * positions,
        nz_kernels * math.prod(kernel) * positions,
        positions=positions,
        transposed=transposed,
    )
    return _with_sparsity(lc)


def _linear_cost(name: str, w: torch.Tensor, rows: int) -> LayerCost:
    """x·Wᵀ with W [out, in] applied to `rows` input rows."""
    w = w.detach()
    nz = int(w.ne(0).sum())
    rows_nz = int(w.ne(0).any(1).sum())
    out_f, in_f = int(w.shape[0]), int(w.shape[1])
    lc = LayerCost(
        name,
        "linear",
        in_f,
        out_f,
        1,
        (1, 1),
        (1, 1),
        w.numel(),
        w.numel() - nz,
        w.numel(),
        w.numel() - nz,
        out_f,
        out_f - rows_nz,
        w.numel() * rows,
        nz * rows,
        nz * rows,
        positions=rows,
    )
    return _with_sparsity(lc)


def acceleration_rate(layers: list[LayerCost]) -> float:
    """Σ N·M·D²·k² / Σ P·D²·k² over conv layers (1.0 when there are none); D² = `positions`."""
    num = den = 0
    for lc in layers:
        if lc.kind != "conv":
            continue
        per_kernel = lc.positions * math.prod(lc.kernel)
        num += lc.kernels * per_kernel
        den += (lc.kernels - lc.zero_kernels) * per_kernel
    if num == 0:
        return 1.0
    return num / den if den else float("inf")


def _sdpa_macs(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *_: Any, **__: Any) -> int:
    return sdpa_flop_count(q.shape, k.shape, v.shape) // 2  # [B, H, L, E]: QKᵀ and AV


# MAC formulas for ops torch.utils.flop_counter has none for (keyed by qualified name, as every table here, so a
# torch version without one of these ops is no error).
_EXTRA_MACS: dict[str, Callable[..., int]] = {
    "aten::_scaled_dot_product_flash_attention_for_cpu": _sdpa_macs,
    "aten::_scaled_dot_product_fused_attention_overrideable": _sdpa_macs,
    "aten::_scaled_dot_product_attention_math_for_mps": _sdpa_macs,
    "aten::mv": lambda m, v, **_: m.numel(),  # [M, K]·[K]
    "aten::addmv": lambda b, m, v, **_: m.numel(),
    "aten::dot": lambda a, b, **_: a.numel(),
    "aten::vdot": lambda a, b, **_: a.numel(),
    "aten::addbmm": lambda b, b1, b2, **_: b1.numel() * b2.shape[-1],  # Σ_b [N, K]·[K, M]
    "aten::_int_mm": lambda a, b, **_: a.numel() * b.shape[-1],
}
_CONVS = {"aten::convolution", "aten::_convolution"}  # (input, weight, bias, stride, padding, dilation, transposed,
# output_padding, groups, …): what every nn.Conv*d and F.conv* reaches
# An op whose name has one of these words multiplies and accumulates: with no formula, it is listed as uncounted.
_MAC_WORD = re.compile(r"^(conv(?!ert).*|\w*mm|mv|addmv|\w*dot|matmul|\w*linear|rnn|lstm|gru|attention|transformer)$")
_NO_MACS = {"aten::_thnn_fused_lstm_cell", "aten::_thnn_fused_gru_cell"}  # gate math on gates already counted by mm
_NORMS = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm, nn.LocalResponseNorm, nn.RMSNorm)
_LOOKUPS = (nn.Embedding, nn.EmbeddingBag)  # a weight read by index: no MACs


class _Counter(TorchDispatchMode):
    """Counts every op of one forward pass; `stack` is the module being run (kept by hooks in `analyze`)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.stack: list[tuple[str, nn.Module]] = []
        self.layers: list[LayerCost] = []
        self.macs_other = 0
        self.uncounted: dict[str, None] = {}  # ordered, no repeats
        self.counted_in: set[str] = set()  # modules inside which a counted op ran
        self.weights_used: set[int] = set()  # storages of weights that reached a counted op
        self.ran: dict[str, nn.Module] = {}
        self.weights: dict[int, str] = {}  # storage of a ≥ 2-D parameter → its row name
        for pname, p in model.named_parameters():
            if p.dim() >= 2 and p.numel():
                name = type(model).__name__ if pname == "weight" else pname.removesuffix(".weight")
                self.weights.setdefault(_storage(p), name)

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        self._count(func, args, kwargs, out)
        return out

    def _where(self) -> tuple[str, nn.Module]:
        name, m = self.stack[-1] if self.stack else ("", self.model)
        return name or type(self.model).__name__, m

    def _weight(self, t: torch.Tensor) -> str | None:
        return self.weights.get(_storage(t)) if isinstance(t, torch.Tensor) else None

    def _count(self, func: Any, args: tuple, kwargs: dict, out: Any) -> None:
        op = func._overloadpacket
        qname = func.name()
        where, module = self._where()
        if qname in _CONVS:
            x, w = args[0], args[1]
            name = self._weight(w) or where  # a weight that is no parameter: the module running
            self._row(_conv_cost(name, x, w, out, bool(args[6]), int(args[8])), w, where)
        elif qname in ("aten::mm", "aten::addmm") and (row := self._linear(args[-2], args[-1], where, module)):
            self._row(*row, where)
        elif op in flop_registry:
            self._other(flop_registry[op](*args, **kwargs, out_val=out) // 2, where)
        elif qname in _EXTRA_MACS:
            self._other(int(_EXTRA_MACS[qname](*args, **kwargs)), where)
        elif qname not in _NO_MACS and any(_MAC_WORD.match(w) for w in qname.split("::")[-1].split("_")):
            self.uncounted[f"{where} ({type(module).__name__}): {qname} has no MAC formula here"] = None

    def _linear(
        self, mat1: torch.Tensor, mat2: torch.Tensor, where: str, module: nn.Module
    ) -> tuple[LayerCost, torch.Tensor] | None:
        """x·W (W = mat2, as F.linear computes x·Wᵀ) or W·x (W = mat1) with W a model weight, else None."""
        if (name := self._weight(mat2)) is not None:
            return _linear_cost(name, mat2.t(), mat1.shape[0]), mat2
        if (name := self._weight(mat1)) is not None:
            return _linear_cost(name, mat1, mat2.shape[1]), mat1
        if isinstance(module, nn.Linear) and mat2.shape == module.weight.shape[::-1]:  # a masked or cast copy
            return _linear_cost(where, mat2.t(), mat1.shape[0]), mat2
        return None

    def _row(self, lc: LayerCost, w: torch.Tensor, where: str) -> None:
        self.layers.append(lc)
        self.weights_used.add(_storage(w))
        self.counted_in.add(where)

    def _other(self, macs: int, where: str) -> None:
        self.macs_other += macs
        self.counted_in.add(where)

    def silent_modules(self) -> list[str]:
        """Leaf modules that ran holding a ≥ 2-D `…weight` parameter that no counted op used, counted nothing
        inside and are not listed already (the parameter name: `weight_orig` of torch.nn.utils.prune too)."""
        out = []
        listed = {u.split(" (")[0] for u in self.uncounted}
        for name, m in self.ran.items():
            if name in self.counted_in or name in listed or isinstance(m, _NORMS + _LOOKUPS):
                continue
            if next(m.children(), None) is not None:
                continue
            ws = [p for n, p in m.named_parameters(recurse=False) if n.endswith("weight") and p.dim() >= 2]
            if ws and not any(_storage(w) in self.weights_used for w in ws):
                shape = "×".join(map(str, ws[0].shape))
                out.append(f"{name} ({type(m).__name__}): ran with a {shape} weight, but no op counted here used it")
        return out


def _storage(t: torch.Tensor) -> int:
    return t.untyped_storage().data_ptr()


@contextmanager
def _tracking(counter: _Counter, model: nn.Module) -> Iterator[None]:
    """Keep `counter.stack` = the modules being run, innermost last; MultiheadAttention's fast path off."""

    def enter(name: str, m: nn.Module) -> None:
        counter.stack.append((name, m))
        counter.ran.setdefault(name or type(model).__name__, m)

    def leave() -> None:  # returns None: a forward hook's return value would replace the module's output
        counter.stack.pop()

    hooks = []
    for name, m in model.named_modules():
        hooks.append(m.register_forward_pre_hook(lambda mod, i, n=name: enter(n, mod)))
        hooks.append(m.register_forward_hook(lambda mod, i, o: leave(), always_call=True))
    fastpath = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with counter:
            yield
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)
        for h in hooks:
            h.remove()


@torch.no_grad()
def analyze(model: nn.Module, input_shape: tuple[int, ...]) -> ModelCost:
    """Run one forward pass on zeros (batch 1) and count what it computed (module docstring: how and why)."""
    counter = _Counter(model)
    was_training = model.training
    model.eval()
    p = next(model.parameters(), None)
    x = torch.zeros((1, *input_shape))
    if p is not None and p.is_floating_point():
        x = x.to(device=p.device, dtype=p.dtype)  # on the model's device and dtype (GPU, fp16)
    try:
        with _tracking(counter, model):
            model(x)
    finally:
        model.train(was_training)
    layers = counter.layers
    params = sum(p.numel() for p in model.parameters())
    params_nz = sum(int(p.ne(0).sum()) for p in model.parameters())
    weights = sum(lc.weights for lc in layers)
    convs = [lc for lc in layers if lc.kind == "conv"]
    filters = sum(lc.filters for lc in convs)
    kernels = sum(lc.kernels for lc in convs)
    other = counter.macs_other
    return ModelCost(
        params=params,
        params_nonzero=params_nz,
        macs=sum(lc.macs for lc in layers) + other,
        macs_nonzero=sum(lc.macs_nonzero for lc in layers) + other,
        weight_sparsity=sum(lc.zero_weights for lc in layers) / weights if weights else 0.0,
        channel_sparsity=sum(lc.zero_filters for lc in convs) / filters if filters else 0.0,
        kernel_sparsity=sum(lc.zero_kernels for lc in convs) / kernels if kernels else 0.0,
        acceleration_rate=acceleration_rate(layers),
        layers=layers,
        macs_nonzero_kernels=sum(lc.macs_nonzero_kernels for lc in layers) + other,
        size_mb_fp32=4 * (params + sum(b.numel() for b in model.buffers() if b.is_floating_point())) / 1e6,
        macs_other=other,
        params_bias_maps=sum(m.map.numel() for m in model.modules() if isinstance(m, BiasMap)),
        uncounted=list(counter.uncounted) + counter.silent_modules(),
    )
