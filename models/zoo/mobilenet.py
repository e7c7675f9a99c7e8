"""MobileNetV1 for CIFAR: 3x3 stem at stride 1, 13 depthwise-separable blocks (strides 2 at 128/256/512/1024)."""

from __future__ import annotations

from torch import nn

from ticketbench.models.zoo.base import register_model
from ticketbench.models.zoo.layers import scaled

# (output channels, stride) of each depthwise-separable block.
_CFG = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2)] + [(512, 1)] * 5 + [(1024, 2), (1024, 1)]


class DepthwiseSeparable(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cin, 3, stride=stride, padding=1, groups=cin, bias=False)
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv2 = nn.Conv2d(cin, cout, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        return self.relu(self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x))))))


class MobileNetV1(nn.Module):
    def __init__(self, num_classes: int = 10, in_channels: int = 3, width: float = 1.0) -> None:
        super().__init__()
        c = scaled(32, width)
        self.conv1 = nn.Conv2d(in_channels, c, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        self.relu = nn.ReLU(inplace=True)
        blocks = []
        for cout, stride in _CFG:
            blocks.append(DepthwiseSeparable(c, scaled(cout, width), stride))
            c = scaled(cout, width)
        self.layers = nn.Sequential(*blocks)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c, num_classes)

    def forward(self, x):
        x = self.layers(self.relu(self.bn1(self.conv1(x))))
        return self.fc(self.avgpool(x).flatten(1))


@register_model("mobilenetv1", input_size=32)
def mobilenetv1(num_classes: int = 10, in_channels: int = 3, width: float = 1.0) -> nn.Module:
    return MobileNetV1(num_classes, in_channels, width)
