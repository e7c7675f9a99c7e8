"""Every zoo model builds with any num_classes/in_channels, traces with torch.fx and exports to ONNX."""

from __future__ import annotations

import pytest
import torch
import torch.fx as fx
from torch import nn

from ticketbench.models.export import max_abs_error, to_onnx_bytes
from ticketbench.models.zoo import create_model, input_size, model_names
from ticketbench.models.zoo.preresnet import PreResNet

# Tiny widths so the whole zoo runs in seconds; torchvision models fed 64 px (any size ≥ 32 works).
SMALL = {"small_cnn": {"width": 4}, "resnet18": {"width": 0.125}, "resnet50": {"width": 0.0625}}
FEED = {"resnet18": 64, "resnet50": 64}


def _small(name: str, num_classes: int = 7, in_channels: int = 2) -> nn.Module:
    kw = SMALL.get(name, {"width": 0.125})
    torch.manual_seed(0)
    return create_model(name, num_classes=num_classes, in_channels=in_channels, **kw).eval()


def _shape(name: str, in_channels: int = 2) -> tuple[int, int, int]:
    s = FEED.get(name, input_size(name))
    return (in_channels, s, s)


def test_expected_models_registered():
    expected = {"vgg11", "vgg13", "vgg16", "vgg19", "preresnet20", "preresnet56", "preresnet101"}
    expected |= {"resnet18_cifar", "conv4", "conv6", "conv8", "mobilenetv1", "resnet18", "resnet50", "small_cnn"}
    assert expected <= set(model_names())


def test_input_size_hints():
    assert input_size("vgg16") == 32 and input_size("conv4") == 32 and input_size("mobilenetv1") == 32
    assert input_size("resnet18") == 224 and input_size("resnet50") == 224
    with pytest.raises(KeyError, match="unknown model"):
        input_size("nope")


@pytest.mark.parametrize("name", model_names())
def test_builds_traces_and_exports(name):
    model = _small(name)
    shape = _shape(name)
    x = torch.randn(3, *shape)
    with torch.no_grad():
        y = model(x)
    assert y.shape == (3, 7)
    gm = fx.symbolic_trace(model)
    with torch.no_grad():
        torch.testing.assert_close(gm(x), y)
    blob = to_onnx_bytes(model, shape)
    assert max_abs_error(model, blob, shape, n=2) < 1e-4


def test_full_width_parameter_counts_match_the_papers():
    """Known parameter counts pin the architectures (CIFAR-10, 3 input channels)."""

    def count(name):
        return sum(p.numel() for p in create_model(name, num_classes=10, in_channels=3).parameters())

    # VGG-16 of network slimming: 14,710,464 conv + 8,448 BN + 5,130 Linear; ResNet-18 CIFAR: 11.17M.
    assert count("vgg16") == 14_724_042
    assert count("resnet18_cifar") == 11_173_962
    assert count("conv4") == 2_425_024  # 38,592 + 73,728 + 147,456 conv + 2,097,152 + 65,536 + 2,560 fc
    assert count("resnet18") == sum(
        p.numel() for p in __import__("torchvision").models.resnet18(weights=None, num_classes=10).parameters()
    )


def test_vgg_and_preresnet_bn_gamma_init():
    for name in ("vgg11", "preresnet20"):
        m = create_model(name, width=0.25)
        gammas = torch.cat([b.weight for b in m.modules() if isinstance(b, nn.BatchNorm2d)])
        assert torch.all(gammas == 0.5)
        m = create_model(name, width=0.25, bn_gamma_init=1.0)
        assert all(torch.all(b.weight == 1.0) for b in m.modules() if isinstance(b, nn.BatchNorm2d))


def test_preresnet_depths_and_selection_layer():
    m = create_model("preresnet20", width=0.25)
    blocks = [b for b in m.modules() if b.__class__.__name__ == "PreActBottleneck"]
    assert len(blocks) == 6  # n = (20 - 2) / 9 = 2 per stage, 3 stages
    assert len([b for b in create_model("preresnet56", width=0.125).modules() if hasattr(b, "select")]) == 19
    blk = blocks[1].eval()
    x = torch.randn(2, blk.bn1.num_features, 4, 4)
    with torch.no_grad():
        blk.select.indexes[0] = 0.0
        selected = blk(x)
        blk.select.indexes[0] = 1.0
        blk.conv1.weight[:, 0] = 0.0  # zeroing selection index 0 = zeroing conv1's input column 0
        torch.testing.assert_close(blk(x), selected)
    with pytest.raises(ValueError, match="9n\\+2"):
        PreResNet(depth=21)


def test_conv4_has_no_bn_no_bias():
    m = create_model("conv4")
    assert not any(isinstance(x, nn.BatchNorm2d) for x in m.modules())
    assert all(getattr(x, "bias", None) is None for x in m.modules() if isinstance(x, (nn.Conv2d, nn.Linear)))
