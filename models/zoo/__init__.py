"""Model zoo: `create_model(name, num_classes=..., in_channels=...)`.

Each architecture module registers its factories with `@register_model(name, input_size=...)`
(`models/zoo/base.py`); the input size (pixels, square) tells callers what spatial shape to feed (32 for CIFAR
models, 224 for the ImageNet-shaped torchvision ones). To add a model, add a module here and import it below.
"""

from ticketbench.models.zoo import (  # noqa: F401  (importing the modules registers their models)
    convnets,
    mobilenet,
    preresnet,
    resnet_cifar,
    small_cnn,
    torchvision_resnet,
    vgg,
)
from ticketbench.models.zoo.base import (  # noqa: F401  (the zoo's public names)
    INPUT_SIZES,
    MAX_PARAMS,
    MODELS,
    allow_model_code,
    create_model,
    input_size,
    model_kwargs_problem,
    model_names,
    register_model,
    user_factory,
)
