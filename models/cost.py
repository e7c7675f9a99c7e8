"""Analytic cost measured from the weights themselves: params, MACs, sparsity and the acceleration rate.

AR follows the Efficient-MPT report (Eq. 4): AR = Σ N·M·D²·k² / Σ P·D²·k² over conv layers, where N·M
is the number of (input, output) kernels (N·M/groups for a grouped conv), D² the output feature-map area
(H·W), k² the kernel area and P the number of kernels with at least one non-zero weight. Equivalently
AR = conv MACs / conv MACs over non-zero kernels, both reported per layer (`macs`, `macs_nonzero_kernels`).

MACs count multiply-accumulates of conv and linear weights per image (no bias, BN or activation), the same
quantity torch.utils.flop_counter reports as FLOPs / 2. Per-layer zero-kernel counts (`zero_kernels` of
`kernels`) are what the report plots as the MPT report's Fig. 5.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
from torch import nn


@dataclass
class LayerCost:
    name: str
    kind: str  # "conv" | "linear"
    in_channels: int
    out_channels: int
    groups: int
    kernel: tuple[int, int]
    out_hw: tuple[int, int]
    weights: int
    zero_weights: int
    kernels: int  # out · in/groups
    zero_kernels: int
    filters: int  # output filters (= out_channels)
    zero_filters: int
    macs: int  # dense multiply-accumulates of this layer as stored
    macs_nonzero: int  # counting only non-zero weights
    macs_nonzero_kernels: int = 0  # counting only kernels with a non-zero weight (P·k²·D²): what kernel removal buys
    weight_sparsity: float = 0.0  # zero_weights / weights
    kernel_sparsity: float = 0.0  # zero_kernels / kernels
    channel_sparsity: float = 0.0  # zero_filters / filters


@dataclass
class ModelCost:
    params: int  # all parameters as stored (what the runtime holds)
    params_nonzero: int
    macs: int
    macs_nonzero: int
    weight_sparsity: float  # zero fraction of conv+linear weights
    channel_sparsity: float  # all-zero conv output filters / conv filters
    kernel_sparsity: float  # all-zero conv kernels / conv kernels
    acceleration_rate: float
    layers: list[LayerCost] = field(default_factory=list)
    macs_nonzero_kernels: int = 0  # Σ over layers (linear layers count non-zero weights)
    size_mb_fp32: float = 0.0  # parameters and buffers as fp32, 10⁶ bytes (the ONNX file is a little larger)

    def to_dict(self) -> dict:
        return asdict(self)


def _ratio(a: int, b: int) -> float:
    return a / b if b else 0.0


def _with_sparsity(lc: LayerCost) -> LayerCost:
    lc.weight_sparsity = _ratio(lc.zero_weights, lc.weights)
    lc.kernel_sparsity = _ratio(lc.zero_kernels, lc.kernels)
    lc.channel_sparsity = _ratio(lc.zero_filters, lc.filters)
    return lc


def _conv_cost(name: str, m: nn.Conv2d, out: torch.Tensor) -> LayerCost:
    w = m.weight.detach()
    oh, ow = int(out.shape[-2]), int(out.shape[-1])
    kh, kw = m.kernel_size
    kern_nz = w.flatten(2).ne(0).any(-1)  # [out, in/groups]
    filt_nz = kern_nz.any(-1)
    nz = int(w.ne(0).sum())
    lc = LayerCost(
        name,
        "conv",
        m.in_channels,
        m.out_channels,
        m.groups,
        (kh, kw),
        (oh, ow),
        w.numel(),
        w.numel() - nz,
        kern_nz.numel(),
        kern_nz.numel() - int(kern_nz.sum()),
        m.out_channels,
        m.out_channels - int(filt_nz.sum()),
        w.numel() * oh * ow,
        nz * oh * ow,
        int(kern_nz.sum()) * kh * kw * oh * ow,
    )
    return _with_sparsity(lc)


def _linear_cost(name: str, m: nn.Linear) -> LayerCost:
    w = m.weight.detach()
    nz = int(w.ne(0).sum())
    rows_nz = int(w.ne(0).any(1).sum())
    lc = LayerCost(
        name,
        "linear",
        m.in_features,
        m.out_features,
        1,
        (1, 1),
        (1, 1),
        w.numel(),
        w.numel() - nz,
        w.numel(),
        w.numel() - nz,
        m.out_features,
        m.out_features - rows_nz,
        w.numel(),
        nz,
        nz,
    )
    return _with_sparsity(lc)


def acceleration_rate(layers: list[LayerCost]) -> float:
    """Σ N·M·D²·k² / Σ P·D²·k² over conv layers (1.0 when there are none)."""
    num = den = 0
    for lc in layers:
        if lc.kind != "conv":
            continue
        per_kernel = lc.out_hw[0] * lc.out_hw[1] * lc.kernel[0] * lc.kernel[1]
        num += lc.kernels * per_kernel
        den += (lc.kernels - lc.zero_kernels) * per_kernel
    if num == 0:
        return 1.0
    return num / den if den else float("inf")


@torch.no_grad()
def analyze(model: nn.Module, input_shape: tuple[int, ...]) -> ModelCost:
    """Run one forward pass on zeros (batch 1) to learn feature-map sizes, then count everything."""
    layers: list[LayerCost] = []
    hooks = []
    for name, m in model.named_modules():
        if isinstance(m, nn.Conv2d):
            hooks.append(m.register_forward_hook(lambda mod, i, o, n=name: layers.append(_conv_cost(n, mod, o))))
        elif isinstance(m, nn.Linear):
            hooks.append(m.register_forward_hook(lambda mod, i, o, n=name: layers.append(_linear_cost(n, mod))))
    was_training = model.training
    model.eval()
    p = next(model.parameters(), None)
    like = {"device": p.device, "dtype": p.dtype} if p is not None and p.is_floating_point() else {}
    try:
        model(torch.zeros(1, *input_shape, **like))  # on the model's device and dtype (GPU, fp16)
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    params = sum(p.numel() for p in model.parameters())
    params_nz = sum(int(p.ne(0).sum()) for p in model.parameters())
    weights = sum(lc.weights for lc in layers)
    convs = [lc for lc in layers if lc.kind == "conv"]
    filters = sum(lc.filters for lc in convs)
    kernels = sum(lc.kernels for lc in convs)
    return ModelCost(
        params=params,
        params_nonzero=params_nz,
        macs=sum(lc.macs for lc in layers),
        macs_nonzero=sum(lc.macs_nonzero for lc in layers),
        weight_sparsity=sum(lc.zero_weights for lc in layers) / weights if weights else 0.0,
        channel_sparsity=sum(lc.zero_filters for lc in convs) / filters if filters else 0.0,
        kernel_sparsity=sum(lc.zero_kernels for lc in convs) / kernels if kernels else 0.0,
        acceleration_rate=acceleration_rate(layers),
        layers=layers,
        macs_nonzero_kernels=sum(lc.macs_nonzero_kernels for lc in layers),
        size_mb_fp32=4 * (params + sum(b.numel() for b in model.buffers() if b.is_floating_point())) / 1e6,
    )
