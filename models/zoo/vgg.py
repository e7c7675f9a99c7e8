"""CIFAR VGG-11/13/16/19 with BatchNorm, as in network slimming and the Early-Bird code.

conv3x3(bias=False)-BN-ReLU stacks with 2x2 max pools, a 2x2 average pool (1x1 at 32 px input) and one
Linear classifier. BN γ starts at 0.5 (the EB/slimming init) unless `bn_gamma_init` says otherwise.
"""

from __future__ import annotations

from torch import nn

from ticketbench.models.zoo.base import register_model
from ticketbench.models.zoo.layers import scaled, slimming_init

VGG_CFG: dict[int, list[int | str]] = {
    11: [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512],
    13: [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512],
    16: [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512],
    19: [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512],
}


class VGG(nn.Module):
    def __init__(
        self,
        depth: int = 16,
        num_classes: int = 10,
        in_channels: int = 3,
        width: float = 1.0,
        bn_gamma_init: float = 0.5,
        cfg: list[int | str] | None = None,
    ) -> None:
        super().__init__()
        cfg = cfg or [v if v == "M" else scaled(int(v), width) for v in VGG_CFG[depth]]
        layers: list[nn.Module] = []
        c = in_channels
        for v in cfg:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [
                    nn.Conv2d(c, int(v), 3, padding=1, bias=False),
                    nn.BatchNorm2d(int(v)),
                    nn.ReLU(inplace=True),
                ]
                c = int(v)
        self.feature = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)  # = AvgPool2d(2) of the reference at 32 px input
        self.classifier = nn.Linear(c, num_classes)
        slimming_init(self, bn_gamma_init)

    def forward(self, x):
        x = self.pool(self.feature(x))
        return self.classifier(x.flatten(1))


def _factory(depth: int):
    def make(num_classes: int = 10, in_channels: int = 3, width: float = 1.0, bn_gamma_init: float = 0.5) -> nn.Module:
        return VGG(depth, num_classes, in_channels, width, bn_gamma_init)

    make.__doc__ = f"CIFAR VGG-{depth} with BN (network slimming / EB)."
    return make


for _d in VGG_CFG:
    register_model(f"vgg{_d}", input_size=32)(_factory(_d))
