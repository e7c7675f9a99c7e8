"""Small building blocks shared by the zoo's architectures."""

from __future__ import annotations

import math

import torch
from torch import nn


def scaled(channels: int, width: float) -> int:
    """Channel count under a width multiplier (never below 1), so tests can build tiny models."""
    return max(1, int(round(channels * width)))


class ChannelSelection(nn.Module):
    """Network slimming's channel-selection layer after a pre-activation BN, as a 0/1 multiplier.

    The original indexes channels with numpy (not traceable); multiplying by a {0,1} buffer has the same
    effect on the next conv, traces with torch.fx and exports to ONNX. All ones = identity.
    """

    indexes: torch.Tensor  # a buffer

    def __init__(self, num_channels: int) -> None:
        super().__init__()
        self.register_buffer("indexes", torch.ones(num_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.indexes.view(1, -1, 1, 1)


def slimming_init(model: nn.Module, bn_gamma: float = 0.5, init_linear: bool = True) -> None:
    """Initialization of the network-slimming / Early-Bird code: conv N(0, √(2/(k²·C_out))), BN γ = `bn_gamma`.

    γ = 0.5 (not 1) is what the EB code uses for VGG and PreResNet; with `init_linear` (VGG) Linear layers
    get N(0, 0.01) and bias 0, otherwise (PreResNet) they keep PyTorch's default init.
    """
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            n = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
            nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / n))
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.constant_(m.weight, bn_gamma)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear) and init_linear:
            nn.init.normal_(m.weight, 0.0, 0.01)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
