"""Model zoo: `create_model(name, num_classes=..., in_channels=...)`.

Each architecture module registers its factories with `@register_model`.
"""

from __future__ import annotations

from torch import nn

from models.registry import Registry

MODELS: Registry = Registry("model")
register_model = MODELS.register


def create_model(name: str, num_classes: int = 10, in_channels: int = 3, **kw) -> nn.Module:
    """Build a registered model; `num_classes`/`in_channels` follow the data set."""
    return MODELS.get(name)(num_classes=num_classes, in_channels=in_channels, **kw)


def model_names() -> list[str]:
    return MODELS.names()


# Importing the modules registers their models.
from models.zoo import small_cnn  # noqa: E402,F401
