"""A small CNN for 8x8 scikit-learn digits: the embedded default that runs in seconds on a CPU."""

from __future__ import annotations

from torch import nn

from ticketbench.models.zoo.base import register_model


def _conv_bn(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


class SmallCNN(nn.Module):
    """conv-bn-relu ×2, maxpool, conv-bn-relu ×2, global average pool, linear."""

    def __init__(self, num_classes: int = 10, in_channels: int = 1, width: int = 32) -> None:
        super().__init__()
        w = width
        self.features = nn.Sequential(
            *_conv_bn(in_channels, w),
            *_conv_bn(w, w),
            nn.MaxPool2d(2),
            *_conv_bn(w, 2 * w),
            *_conv_bn(2 * w, 2 * w),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.classifier = nn.Linear(2 * w, num_classes)

    def forward(self, x):
        return self.classifier(self.features(x))


@register_model("small_cnn", input_size=8)
def small_cnn(num_classes: int = 10, in_channels: int = 1, width: int = 32) -> nn.Module:
    return SmallCNN(num_classes=num_classes, in_channels=in_channels, width=width)
