"""Model zoo: `create_model(name, num_classes=..., in_channels=...)`.

Each architecture module registers its factories with `@register_model(name, input_size=...)`; the
input size (pixels, square) tells callers what spatial shape to feed (32 for CIFAR models, 224 for the
ImageNet-shaped torchvision ones).
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from ticketbench.registry import Registry

MODELS: Registry = Registry("model")
INPUT_SIZES: dict[str, int] = {}  # model name → expected input height = width (pixels)


def register_model(name: str, input_size: int | None = None) -> Callable:
    """Register a factory `fn(num_classes, in_channels, **kw) -> nn.Module` under `name`."""

    def deco(fn: Callable) -> Callable:
        MODELS.register(name)(fn)
        if input_size is not None:
            INPUT_SIZES[name] = input_size
        return fn

    return deco


def create_model(name: str, num_classes: int = 10, in_channels: int = 3, **kw) -> nn.Module:
    """Build a registered model; `num_classes`/`in_channels` follow the data set."""
    return MODELS.get(name)(num_classes=num_classes, in_channels=in_channels, **kw)


def model_names() -> list[str]:
    return MODELS.names()


def input_size(name: str) -> int | None:
    """Expected input height/width (pixels) of a registered model, or None when any size works."""
    MODELS.get(name)  # raises a clear KeyError for unknown names
    return INPUT_SIZES.get(name)


# Importing the modules registers their models.
from ticketbench.models.zoo import (  # noqa: E402,F401
    convnets,
    mobilenet,
    preresnet,
    resnet_cifar,
    small_cnn,
    torchvision_resnet,
    vgg,
)
