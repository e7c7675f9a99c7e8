"""8-bit fake quantization for low-precision training (the Early-Bird low-precision search).

Weights and the activations entering every conv/linear are quantized in the forward pass, the errors
(gradients w.r.t. layer outputs) in the backward pass, and the weight gradients after backward. Values are
rounded to a symmetric per-tensor grid of 2^(bits-1)-1 levels per sign; the optimizer keeps fp32 master
weights (as SWALP and most 8-bit training schemes do). Rounding uses a straight-through estimator.
"""

from __future__ import annotations

import types
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn


def quantize(x: torch.Tensor, bits: int = 8) -> torch.Tensor:
    """Round `x` to a symmetric grid scaled by max|x| (no gradient path; see fake_quantize)."""
    levels = 2 ** (bits - 1) - 1
    scale = x.detach().abs().max() / levels
    if scale == 0:
        return x.detach().clone()
    return torch.round(x.detach() / scale).clamp_(-levels, levels) * scale


def fake_quantize(x: torch.Tensor, bits: int = 8) -> torch.Tensor:
    """Quantized value in the forward pass, identity gradient in the backward pass (STE)."""
    return x + (quantize(x, bits) - x).detach()


class _QuantizeGrad(torch.autograd.Function):
    """Identity forward; quantizes the incoming gradient (the 'error') in backward."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, bits: int) -> torch.Tensor:
        ctx.bits = bits
        return x.view_as(x)

    @staticmethod
    def backward(ctx, g: torch.Tensor):
        return quantize(g, ctx.bits), None


def _quantized_forward(bits: int) -> Callable:
    def forward(self: nn.Conv2d | nn.Linear, x: torch.Tensor) -> torch.Tensor:
        xq, wq = fake_quantize(x, bits), fake_quantize(self.weight, bits)
        if isinstance(self, nn.Conv2d):
            out = self._conv_forward(xq, wq, self.bias)
        else:
            out = F.linear(xq, wq, self.bias)
        return _QuantizeGrad.apply(out, bits)

    return forward


@contextmanager
def low_precision(model: nn.Module, bits: int = 8) -> Iterator[Callable[[nn.Module], None]]:
    """Run `model`'s conv/linear layers in `bits`-bit fake quantization inside the block.

    Yields an `after_backward` callback that quantizes the weight gradients. On exit the layers are
    restored to full precision (their weights were never changed, only how they are used).
    """
    layers = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    fwd = _quantized_forward(bits)
    for layer in layers:
        module: nn.Module = layer  # nn.Module declares `forward` an attribute an instance may set
        module.forward = types.MethodType(fwd, module)

    @torch.no_grad()
    def quantize_grads(mod: nn.Module) -> None:
        for m in layers:
            if m.weight.grad is not None:
                m.weight.grad.copy_(quantize(m.weight.grad, bits))

    try:
        yield quantize_grads
    finally:
        for m in layers:
            del m.forward
