"""torchvision ResNet-18/50 for ImageNet-shaped (224 px) input, built with weights=None (nothing downloaded).

`in_channels` other than 3 replaces the stem conv; `width` scales every stage (torchvision's own classes
hard-code 64..512, so a width below 1 builds the same topology from torchvision's blocks at fewer channels).
"""

from __future__ import annotations

from typing import Any

from torch import nn

from ticketbench.models.zoo.base import register_model
from ticketbench.models.zoo.layers import scaled

try:
    from torchvision.models import resnet as tv
except ImportError as exc:  # a bare CUDA machine may lack torchvision: only these two models need it
    tv = None
    _MISSING = f"resnet18/resnet50 need torchvision, which is not installed ({exc})"


def _torchvision() -> None:
    if tv is None:
        raise ImportError(_MISSING)


# The base is chosen at import time; torchvision is untyped here (mypy: ignore_missing_imports), so Any either way.
_ResNet: Any = tv.ResNet if tv is not None else nn.Module


class _ScaledResNet(_ResNet):
    """torchvision's ResNet with every stage's width multiplied by `width` (1.0 = torchvision exactly)."""

    def __init__(self, block, layers, num_classes: int, width: float) -> None:
        super().__init__(block, layers, num_classes=num_classes)
        if width == 1.0:
            return
        self.inplanes = scaled(64, width)
        self.conv1 = nn.Conv2d(3, self.inplanes, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(self.inplanes)
        self.layer1 = self._make_layer(block, scaled(64, width), layers[0])
        self.layer2 = self._make_layer(block, scaled(128, width), layers[1], stride=2)
        self.layer3 = self._make_layer(block, scaled(256, width), layers[2], stride=2)
        self.layer4 = self._make_layer(block, scaled(512, width), layers[3], stride=2)
        self.fc = nn.Linear(scaled(512, width) * block.expansion, num_classes)
        for m in self.modules():  # torchvision's init for the rebuilt layers
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")


def _build(block, layers, num_classes: int, in_channels: int, width: float) -> nn.Module:
    model = _ScaledResNet(block, layers, num_classes, width)
    if in_channels != 3:
        c = model.conv1.out_channels
        model.conv1 = nn.Conv2d(in_channels, c, 7, stride=2, padding=3, bias=False)
        nn.init.kaiming_normal_(model.conv1.weight, mode="fan_out", nonlinearity="relu")
    return model


@register_model("resnet18", input_size=224)
def resnet18(num_classes: int = 1000, in_channels: int = 3, width: float = 1.0) -> nn.Module:
    _torchvision()
    return _build(tv.BasicBlock, [2, 2, 2, 2], num_classes, in_channels, width)


@register_model("resnet50", input_size=224)
def resnet50(num_classes: int = 1000, in_channels: int = 3, width: float = 1.0) -> nn.Module:
    _torchvision()
    return _build(tv.Bottleneck, [3, 4, 6, 3], num_classes, in_channels, width)
