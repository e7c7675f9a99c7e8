"""CIFAR pre-activation ResNet (bottleneck, depth 9n+2) of network slimming / Early-Bird.

Each block: BN1 → channel selection → ReLU → conv1x1 → BN2 → ReLU → conv3x3 → BN3 → ReLU → conv1x1,
plus the identity (or a 1x1 conv downsample). BN1 normalizes the residual stream, so pruning its channels
only zeroes them through the selection layer: the residual stream itself is never pruned.
"""

from __future__ import annotations

from torch import nn

from ticketbench.models.zoo.base import register_model
from ticketbench.models.zoo.layers import ChannelSelection, scaled, slimming_init


class PreActBottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(inplanes)
        self.select = ChannelSelection(inplanes)
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, 1, bias=False)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x):
        out = self.conv1(self.relu(self.select(self.bn1(x))))
        out = self.conv2(self.relu(self.bn2(out)))
        out = self.conv3(self.relu(self.bn3(out)))
        residual = self.downsample(x) if self.downsample is not None else x
        return out + residual


class PreResNet(nn.Module):
    def __init__(
        self,
        depth: int = 56,
        num_classes: int = 10,
        in_channels: int = 3,
        width: float = 1.0,
        bn_gamma_init: float = 0.5,
    ) -> None:
        super().__init__()
        if (depth - 2) % 9:
            raise ValueError(f"PreResNet depth must be 9n+2, got {depth}")
        n = (depth - 2) // 9
        planes = [scaled(p, width) for p in (16, 32, 64)]
        self.inplanes = planes[0]
        self.conv1 = nn.Conv2d(in_channels, planes[0], 3, padding=1, bias=False)
        self.layer1 = self._make_layer(planes[0], n, 1)
        self.layer2 = self._make_layer(planes[1], n, 2)
        self.layer3 = self._make_layer(planes[2], n, 2)
        self.bn = nn.BatchNorm2d(self.inplanes)
        self.select = ChannelSelection(self.inplanes)
        self.relu = nn.ReLU(inplace=True)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(self.inplanes, num_classes)
        slimming_init(self, bn_gamma_init, init_linear=False)

    def _make_layer(self, planes: int, blocks: int, stride: int) -> nn.Sequential:
        out = planes * PreActBottleneck.expansion
        downsample = None
        if stride != 1 or self.inplanes != out:
            downsample = nn.Sequential(nn.Conv2d(self.inplanes, out, 1, stride=stride, bias=False))
        layers = [PreActBottleneck(self.inplanes, planes, stride, downsample)]
        self.inplanes = out
        layers += [PreActBottleneck(out, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x):
        x = self.layer3(self.layer2(self.layer1(self.conv1(x))))
        x = self.relu(self.select(self.bn(x)))
        return self.fc(self.avgpool(x).flatten(1))


def _factory(depth: int):
    def make(num_classes: int = 10, in_channels: int = 3, width: float = 1.0, bn_gamma_init: float = 0.5) -> nn.Module:
        return PreResNet(depth, num_classes, in_channels, width, bn_gamma_init)

    make.__doc__ = f"CIFAR PreResNet-{depth} (bottleneck, channel selection after BN1)."
    return make


for _d in (20, 56, 101):
    register_model(f"preresnet{_d}", input_size=32)(_factory(_d))
