"""Conv-4/6/8 of the lottery-ticket and hidden-networks / Multi-Prize-Ticket papers (CIFAR, 32 px).

Pairs of conv3x3-ReLU followed by 2x2 max pools (64, 128, 256, 512 filters), then fully connected
256-256-classes. No BN and no biases, as in the hidden-networks builder (the reference writes the
fully connected layers as 1x1 convs on the flattened map; Linear is the same function).
"""

from __future__ import annotations

from torch import nn

from ticketbench.models.zoo.base import register_model
from ticketbench.models.zoo.layers import scaled

_STAGES = {4: (64, 128), 6: (64, 128, 256), 8: (64, 128, 256, 512)}


class ConvNet(nn.Module):
    def __init__(
        self, depth: int = 4, num_classes: int = 10, in_channels: int = 3, width: float = 1.0, input_size: int = 32
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c = in_channels
        for v in _STAGES[depth]:
            w = scaled(v, width)
            layers += [nn.Conv2d(c, w, 3, padding=1, bias=False), nn.ReLU(inplace=True)]
            layers += [nn.Conv2d(w, w, 3, padding=1, bias=False), nn.ReLU(inplace=True), nn.MaxPool2d(2)]
            c = w
        self.convs = nn.Sequential(*layers)
        spatial = input_size // 2 ** len(_STAGES[depth])
        hidden = scaled(256, width)
        self.linear = nn.Sequential(
            nn.Flatten(),
            nn.Linear(c * spatial * spatial, hidden, bias=False),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, hidden, bias=False),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, num_classes, bias=False),
        )

    def forward(self, x):
        return self.linear(self.convs(x))


def _factory(depth: int):
    def make(num_classes: int = 10, in_channels: int = 3, width: float = 1.0, input_size: int = 32) -> nn.Module:
        return ConvNet(depth, num_classes, in_channels, width, input_size)

    make.__doc__ = f"Conv-{depth} (MPT / hidden-networks)."
    return make


for _d in _STAGES:
    register_model(f"conv{_d}", input_size=32)(_factory(_d))
