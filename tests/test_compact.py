"""Channel compaction through real dependencies: exact (same outputs) and complete (dead channels gone).

Small architectures written here cover each dependency kind (residual add with downsample, pre-activation
block with channel selection, depthwise-separable block, flatten into linear with spatial > 1, grouped conv),
so these tests do not depend on the zoo; tests/test_compact_zoo.py runs the same checks over the zoo.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ticketbench.models.compact import CompactionConfig, compact

NO_DECOMPOSE = CompactionConfig(decompose=False)


class ChannelSelection(nn.Module):
    """Network slimming's channel selection: keeps channels whose `indexes` entry is non-zero (numpy forward)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.indexes = nn.Parameter(torch.ones(channels))

    def forward(self, x):
        idx = np.squeeze(np.argwhere(self.indexes.data.cpu().numpy()))
        if idx.size == 1:
            idx = np.resize(idx, (1,))
        return x[:, idx, :, :]


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += self.shortcut(x)
        return F.relu(out)


class TinyResNet(nn.Module):
    def __init__(self, w: int = 8, num_classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, w, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(w)
        self.layer1 = nn.Sequential(BasicBlock(w, w), BasicBlock(w, w))
        self.layer2 = nn.Sequential(BasicBlock(w, 2 * w, 2), BasicBlock(2 * w, 2 * w))
        self.linear = nn.Linear(2 * w, num_classes)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer2(self.layer1(out))
        out = F.avg_pool2d(out, out.shape[-1])
        return self.linear(out.view(out.size(0), -1))


class PreActBottleneck(nn.Module):
    """Pre-activation bottleneck as in network slimming's PreResNet: bn1 → select → relu → conv1 …"""

    def __init__(self, cin: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.select = ChannelSelection(cin)
        self.conv1 = nn.Conv2d(cin, planes, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or cin != planes * 4:
            self.downsample = nn.Sequential(nn.Conv2d(cin, planes * 4, 1, stride, bias=False))

    def forward(self, x):
        residual = x
        out = self.relu(self.select(self.bn1(x)))
        out = self.conv1(out)
        out = self.conv2(self.relu(self.bn2(out)))
        out = self.conv3(self.relu(self.bn3(out)))
        if self.downsample is not None:
            residual = self.downsample(x)
        out += residual
        return out


class TinyPreResNet(nn.Module):
    def __init__(self, w: int = 4, num_classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4 * w, 3, padding=1, bias=False)
        self.layer1 = nn.Sequential(PreActBottleneck(4 * w, w), PreActBottleneck(4 * w, w))
        self.layer2 = nn.Sequential(PreActBottleneck(4 * w, 2 * w, 2), PreActBottleneck(8 * w, 2 * w))
        self.bn = nn.BatchNorm2d(8 * w)
        self.select = ChannelSelection(8 * w)
        self.relu = nn.ReLU(inplace=True)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8 * w, num_classes)

    def forward(self, x):
        x = self.layer2(self.layer1(self.conv1(x)))
        x = self.avgpool(self.relu(self.select(self.bn(x))))
        return self.fc(torch.flatten(x, 1))


def _dw_block(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cin, 3, stride, 1, groups=cin, bias=False),
        nn.BatchNorm2d(cin),
        nn.ReLU(inplace=True),
        nn.Conv2d(cin, cout, 1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class TinyMobileNet(nn.Module):
    def __init__(self, w: int = 8, num_classes: int = 10) -> None:
        super().__init__()
        self.model = nn.Sequential(
            nn.Conv2d(3, w, 3, 1, 1, bias=False),
            nn.BatchNorm2d(w),
            nn.ReLU(inplace=True),
            _dw_block(w, 2 * w, 1),
            _dw_block(2 * w, 2 * w, 2),
            _dw_block(2 * w, 4 * w, 2),
            nn.AdaptiveAvgPool2d(1),
        )
        self.fc = nn.Linear(4 * w, num_classes)

    def forward(self, x):
        return self.fc(self.model(x).view(-1, self.fc.in_features))


class TinyVGG(nn.Module):
    """conv stack → flatten of a 2x2 map (4 features per channel) → Linear → BN1d → ReLU → Linear."""

    def __init__(self, w: int = 8, num_classes: int = 10) -> None:
        super().__init__()
        layers, cin = [], 3
        for v in (w, "M", 2 * w, "M", 2 * w, "M"):
            if v == "M":
                layers.append(nn.MaxPool2d(2))
            else:
                layers += [nn.Conv2d(cin, v, 3, padding=1), nn.BatchNorm2d(v), nn.ReLU(inplace=True)]
                cin = v
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(
            nn.Linear(cin * 4, 4 * w), nn.BatchNorm1d(4 * w), nn.ReLU(inplace=True), nn.Linear(4 * w, num_classes)
        )

    def forward(self, x):
        x = self.features(x)
        return self.classifier(x.view(x.size(0), -1))


class GroupedNet(nn.Module):
    """A grouped (not depthwise) conv: channels around it must stay, the rest of the net still compacts."""

    def __init__(self, w: int = 8) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(3, w, 3, padding=1)
        self.c2 = nn.Conv2d(w, w, 3, padding=1, groups=2)
        self.c3 = nn.Conv2d(w, w, 1)
        self.fc = nn.Linear(w, 10)

    def forward(self, x):
        x = self.c3(F.relu(self.c2(F.relu(self.c1(x)))))
        return self.fc(F.relu(x).mean((2, 3)))


ARCHS = {
    "resnet": TinyResNet,
    "preresnet": TinyPreResNet,
    "mobilenet": TinyMobileNet,
    "vgg": TinyVGG,
    "grouped": GroupedNet,
}
INPUT = (3, 16, 16)


@torch.no_grad()
def randomize(
    model: nn.Module,
    seed: int,
    density: float = 0.5,
    empty: int = 0,
    filters: float = 0.3,
    columns: float = 0.2,
    zero_gamma: float = 0.15,
) -> nn.Module:
    """Trained-looking BN statistics with a `zero_gamma` fraction of γ = 0; random unstructured (`density`
    kept), filter and input-column masks (`filters`, `columns` removed); `empty` whole convs zeroed."""
    g = torch.Generator().manual_seed(seed)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    for m in model.modules():
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.5)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.copy_(torch.randn(m.num_features, generator=g))
            m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.5)
            m.weight[torch.rand(m.num_features, generator=g) < zero_gamma] = 0  # slimming-style zero γ
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            w = m.weight
            mask = (torch.rand(w.shape, generator=g) < density).float()
            mask *= (torch.rand(w.shape[0], generator=g) >= filters).float().view(-1, *[1] * (w.dim() - 1))
            if w.dim() == 4 and w.shape[1] > 1:
                mask *= (torch.rand(w.shape[1], generator=g) >= columns).float().view(1, -1, 1, 1)
            w.mul_(mask)
            if m.bias is not None:
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
    for i in torch.randperm(len(convs), generator=g)[:empty].tolist():
        convs[i].weight.zero_()
    return model.eval()


def check_exact(model: nn.Module, config: CompactionConfig = NO_DECOMPOSE, shape=INPUT, atol: float = 1e-4):
    compacted, report = compact(model, torch.zeros(1, *shape), config)
    x = torch.randn(4, *shape, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        ref, out = model(x), compacted(x)
    assert out.shape == ref.shape
    assert torch.allclose(out, ref, atol=atol, rtol=1e-4), float((out - ref).abs().max())
    for m in compacted.modules():  # never a layer with zero channels
        if isinstance(m, nn.Conv2d):
            assert m.in_channels > 0 and m.out_channels > 0
        if isinstance(m, nn.Linear):
            assert m.in_features > 0 and m.out_features > 0
    return compacted, report


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("arch", sorted(ARCHS))
@pytest.mark.parametrize("seed,empty", [(0, 0), (1, 1), (2, 3)])
def test_compaction_is_exact_and_removes_channels(arch, seed, empty):
    torch.manual_seed(seed)
    model = randomize(ARCHS[arch](), seed, empty=empty)
    compacted, report = check_exact(model)
    assert report.channels_removed > 0
    assert n_params(compacted) < n_params(model)


def test_dense_model_is_unchanged():
    torch.manual_seed(0)
    model = TinyResNet().eval()
    compacted, report = check_exact(model)
    assert report.channels_removed == 0
    assert n_params(compacted) == n_params(model)


def test_input_model_is_untouched():
    model = randomize(TinyVGG(), 3)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    compact(model, torch.zeros(1, *INPUT))
    after = model.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)


def _chain(consumer: nn.Module) -> nn.Sequential:
    """conv(2→3) → BN → ReLU → consumer; filter 1 of the conv is zero, BN shift of channel 1 is β."""
    conv = nn.Conv2d(2, 3, 3, padding=1, bias=False)
    with torch.no_grad():
        conv.weight[1] = 0
    bn = nn.BatchNorm2d(3).eval()
    return nn.Sequential(conv, bn, nn.ReLU(), consumer).eval()


@torch.no_grad()
def test_constant_channel_folds_into_unpadded_consumer_bias():
    consumer = nn.Conv2d(3, 2, 1)
    model = _chain(consumer)
    model[1].bias.copy_(torch.tensor([0.0, 3.0, 0.0]))  # zero filter → BN gives 3 → ReLU 3
    compacted, report = check_exact(model, shape=(2, 6, 6))
    new = compacted.get_submodule("3")
    assert new.in_channels == 2 and compacted.get_submodule("0").out_channels == 2
    # hand computation: bias'[o] = bias[o] + 3 · W[o, 1, 0, 0]
    assert torch.allclose(new.bias, consumer.bias + 3.0 * consumer.weight[:, 1, 0, 0])
    assert report.groups[1].folded == 1 and report.kept_nonexact == 0


@torch.no_grad()
def test_constant_meeting_zero_padding_folds_into_an_exact_bias_map():
    consumer = nn.Conv2d(3, 2, 3, padding=1)
    model = _chain(consumer)
    model[1].bias.copy_(torch.tensor([0.0, 3.0, 0.0]))
    compacted, report = check_exact(model, shape=(2, 6, 6))
    assert compacted.get_submodule("3").in_channels == 2 and report.kept_nonexact == 0
    assert report.groups[1].folded == 1 and report.folded_map == 1
    # hand computation: the map is 3 · (sum of the taps that fall inside the 6x6 image): all nine inside,
    # only taps [1:, 1:] at the top-left corner
    bmap = compacted.get_submodule("3_bias_map").map
    assert bmap.shape == (2, 6, 6)
    w = consumer.weight[:, 1]
    assert torch.allclose(bmap[:, 0, 0], 3.0 * w[:, 1:, 1:].sum((1, 2)), atol=1e-5)
    assert torch.allclose(bmap[:, 2, 3], 3.0 * w.sum((1, 2)), atol=1e-5)
    assert torch.equal(compacted.get_submodule("3").bias, consumer.bias)  # nothing position-independent to add


@torch.no_grad()
def test_bias_map_stays_before_a_batch_norm_without_running_statistics():
    # the map used to be moved behind any BN, scaled by 1/sqrt(running_var): None here, so compaction raised
    # TypeError and left the model as it was; a BN of batch statistics is not affine in its input
    consumer = nn.Conv2d(3, 2, 3, padding=1)
    model = nn.Sequential(*_chain(consumer), nn.BatchNorm2d(2, track_running_stats=False)).eval()
    model[1].bias.copy_(torch.tensor([0.0, 3.0, 0.0]))
    compacted, report = check_exact(model, shape=(2, 6, 6))
    assert not report.skipped
    assert compacted.get_submodule("3").in_channels == 2 and report.folded_map == 1
    assert compacted.get_submodule("3_bias_map").map.shape == (2, 6, 6)


@torch.no_grad()
def test_constant_meeting_zero_padding_is_kept_and_reported_when_input_size_is_unknown():
    model = _chain(nn.Conv2d(3, 2, 3, padding=1))
    model[1].bias.copy_(torch.tensor([0.0, 3.0, 0.0]))
    compacted, report = check_exact(model, CompactionConfig(decompose=False, input_size_known=False), shape=(2, 6, 6))
    assert compacted.get_submodule("3").in_channels == 3
    assert report.kept_nonexact == 1
    assert "zero padding" in report.layers[0].note and "input size is unknown" in report.layers[0].note


@torch.no_grad()
def test_zero_constant_is_removed_even_before_padding():
    model = _chain(nn.Conv2d(3, 2, 3, padding=1))
    model[1].bias.copy_(torch.tensor([0.0, -3.0, 0.0]))  # ReLU(−3) = 0: exactly zero, borders included
    compacted, report = check_exact(model, shape=(2, 6, 6))
    assert compacted.get_submodule("3").in_channels == 2 and report.kept_nonexact == 0


@torch.no_grad()
def test_zero_gamma_makes_channel_constant_whatever_the_filter():
    model = _chain(nn.Conv2d(3, 2, 3, padding=1))
    model[0].weight.normal_()
    model[1].weight.copy_(torch.tensor([1.0, 1.0, 0.0]))  # γ₂ = 0, β₂ = 0: output 0 for any input
    compacted, _ = check_exact(model, shape=(2, 6, 6))
    assert compacted.get_submodule("0").out_channels == 2


@torch.no_grad()
def test_residual_channel_removed_only_when_dead_in_every_member():
    model = TinyResNet(w=4).eval()
    writers = [model.conv1, model.layer1[0].conv2, model.layer1[1].conv2]
    readers = [model.layer1[0].conv1, model.layer1[1].conv1, model.layer2[0].conv1, model.layer2[0].shortcut[0]]
    for conv in readers[:-1]:
        conv.weight[:, 2] = 0  # channel 2 of the stage-1 stream is unread by all but the downsample conv
    _, report = check_exact(model)
    assert report.groups[1].channels_after == 4
    for conv in writers[:2]:
        conv.weight[2] = 0  # zero in two of three writers: still a live, read channel
    _, report = check_exact(model)
    assert report.groups[1].channels_after == 4
    readers[-1].weight[:, 2] = 0  # now unread everywhere: gone from every member of the group
    compacted, report = check_exact(model)
    assert report.groups[1].channels_after == 3
    assert (
        compacted.get_submodule("layer1.0.conv1").in_channels == 3
        and compacted.get_submodule("layer2.0.shortcut.0").in_channels == 3
    )
    assert compacted.bn1.num_features == 3 and compacted.get_submodule("layer1.1.conv2").out_channels == 3


@torch.no_grad()
def test_residual_constant_channel_written_by_every_member_folds_into_downsample():
    model = TinyResNet(w=4).eval()
    for conv in (model.conv1, model.layer1[0].conv2, model.layer1[1].conv2):
        conv.weight[2] = 0  # every writer of stream channel 2 is zero…
    model.bn1.bias[2] = 1.5  # …but the stem's BN shifts it: the stream carries a constant 1.5 (after ReLUs)
    for conv in (model.layer1[0].conv1, model.layer1[1].conv1, model.layer2[0].conv1):
        conv.weight[:, 2] = 0  # padded readers ignore it; only the unpadded 1x1 downsample reads it
    compacted, report = check_exact(model)
    assert report.groups[1].channels_after == 3 and report.groups[1].folded == 1
    assert compacted.get_submodule("layer2.0.shortcut.0").bias is not None


@torch.no_grad()
def test_depthwise_channel_goes_with_its_producer():
    model = TinyMobileNet(w=4).eval()
    dw, pw = model.model[3][0], model.model[3][3]
    pw.weight[:, 1] = 0  # nobody reads depthwise channel 1 → depthwise channel 1, BN and stem filter 1 go
    compacted, _ = check_exact(model)
    assert compacted.get_submodule("model.3.0").groups == 3 and compacted.get_submodule("model.3.0").out_channels == 3
    assert (
        compacted.get_submodule("model.0").out_channels == 3 and compacted.get_submodule("model.3.3").in_channels == 3
    )
    assert dw.groups == 4  # original untouched


@torch.no_grad()
def test_selection_indices_are_remapped():
    model = TinyPreResNet(w=2).eval()
    block = model.layer1[1]
    block.select.indexes.copy_(torch.tensor([1.0, 0, 1, 1, 0, 1, 1, 1]))  # selects 6 of 8 stream channels
    block.conv1 = nn.Conv2d(6, 2, 1, bias=False)  # as a slimmed network has it
    block.conv1.weight[:, 0] = 0  # selected position 0 (stream channel 0) unread → dropped from the selection
    compacted, _ = check_exact(model)
    assert compacted.get_submodule("layer1.1.conv1").in_channels == 5
    assert compacted.get_submodule("layer1.1.select").index.tolist() == [2, 3, 5, 6, 7]


class MaskSelection(nn.Module):
    """Channel selection as a 0/1 multiplier (traceable form used by the zoo)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.register_buffer("indexes", torch.ones(channels))

    def forward(self, x):
        return x * self.indexes.view(1, -1, 1, 1)


@torch.no_grad()
def test_multiplier_selection_becomes_a_gather_of_kept_channels():
    model = TinyPreResNet(w=2).eval()
    block = model.layer1[1]
    block.select = MaskSelection(8)
    block.select.indexes.copy_(torch.tensor([1.0, 0, 1, 1, 0, 1, 1, 1]))
    compacted, report = check_exact(model)
    new = compacted.get_submodule("layer1.1")
    assert new.bn1.num_features == 8  # the residual stream keeps all its channels…
    assert new.select.index.tolist() == [0, 2, 3, 5, 6, 7] and new.select.scale is None  # …conv1 reads six
    assert new.conv1.in_channels == 6


@torch.no_grad()
def test_flatten_with_spatial_blocks_into_linear():
    model = TinyVGG(w=4).eval()
    last = model.features[8]  # third conv, 8 channels → 2x2 map → 32 features
    last.weight[5] = 0
    last.bias[5] = 0
    model.features[9].bias[5] = -10.0  # ReLU kills it: channel 5 is exactly 0
    compacted, _ = check_exact(model)
    assert compacted.get_submodule("classifier.0").in_features == 7 * 4


@torch.no_grad()
def test_emptied_layer_keeps_one_channel():
    model = TinyVGG(w=4).eval()
    model.features[4].weight.zero_()  # second conv: all filters zero, and nothing downstream may be empty
    model.features[4].bias.zero_()
    compacted, report = check_exact(model)
    assert (
        compacted.get_submodule("features.4").out_channels == 1
        and compacted.get_submodule("features.8").in_channels == 1
    )
    assert compacted.get_submodule("features.0").out_channels == 1  # its input is unread: first conv also down to one
    assert any(g.kept_nonempty == 1 for g in report.groups)


@torch.no_grad()
def test_grouped_conv_is_pinned_with_reason():
    model = GroupedNet().eval()
    model.c2.weight[:, 0] = 0
    model.c3.weight[:, 3] = 0
    compacted, report = check_exact(model)
    assert compacted.c1.out_channels == 8 and compacted.c3.in_channels == 8
    assert any("grouped conv" in p for g in report.groups for p in g.pins)


def test_untraceable_model_is_returned_as_is():
    class Dynamic(nn.Module):
        def __init__(self):
            super().__init__()
            self.c = nn.Conv2d(3, 4, 3)

        def forward(self, x):
            return self.c(x) if x.sum() > 0 else -self.c(x)

    compacted, report = compact(Dynamic(), torch.zeros(1, *INPUT))
    assert isinstance(compacted, Dynamic) and "not traceable" in report.skipped[0]


def test_align_rounds_kept_channels_up_to_a_multiple():
    """32-channel conv with 19 live filters: align=8 keeps 24 (5 dead ones), align=1 keeps 19; same outputs."""
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 32, 3, padding=1, bias=False), nn.ReLU(), nn.Conv2d(32, 16, 3, padding=1), nn.ReLU()
    ).eval()
    with torch.no_grad():
        model[0].weight[19:] = 0  # channels 19..31 output exactly 0 after ReLU
    x = torch.randn(2, 3, 8, 8)
    plain, rp = compact(model, x[:1], CompactionConfig(decompose=False))
    aligned, ra = compact(model, x[:1], CompactionConfig(align=8, decompose=False))
    first = {m: dict(m.named_modules())["0"] for m in (plain, aligned)}  # GraphModules keep module names
    assert first[plain].out_channels == 19 and first[aligned].out_channels == 24
    assert [g.kept_aligned for g in ra.groups if g.channels_before == 32] == [5]
    with torch.no_grad():
        torch.testing.assert_close(aligned(x), model(x), rtol=0, atol=1e-6)
        torch.testing.assert_close(plain(x), model(x), rtol=0, atol=1e-6)


class DenseBlock(nn.Module):
    """DenseNet-style growth: every layer reads the concatenation of the stem and all earlier layers."""

    def __init__(self, c0: int = 6, growth: int = 4, layers: int = 3) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, c0, 3, padding=1)
        self.layers = nn.ModuleList()
        c = c0
        for _ in range(layers):
            self.layers.append(nn.Sequential(nn.BatchNorm2d(c), nn.ReLU(), nn.Conv2d(c, growth, 3, padding=1)))
            c += growth
        self.head = nn.Conv2d(c, 5, 1)

    def forward(self, x):
        feats = [self.stem(x)]
        for layer in self.layers:
            feats.append(layer(torch.cat(feats, 1)))
        return self.head(torch.cat(feats, 1)).mean((2, 3))


class Fire(nn.Module):
    """SqueezeNet's fire module: squeeze 1x1, then 1x1 and 3x3 expansions concatenated."""

    def __init__(self) -> None:
        super().__init__()
        self.squeeze = nn.Conv2d(3, 4, 1)
        self.e1 = nn.Conv2d(4, 6, 1)
        self.e3 = nn.Conv2d(4, 6, 3, padding=1)
        self.head = nn.Conv2d(12, 5, 1)

    def forward(self, x):
        s = F.relu(self.squeeze(x))
        return self.head(torch.cat([F.relu(self.e1(s)), F.relu(self.e3(s))], 1)).mean((2, 3))


@torch.no_grad()
def test_dead_channel_under_a_concatenation_is_removed_with_offsets_updated():
    model = Fire().eval()
    model.e1.weight[2] = 0
    model.e1.bias[2] = -1.0  # ReLU(−1) = 0: channel 2 of the cat is exactly 0
    model.e3.weight[4] = 0
    model.e3.bias[4] = 0.5  # constant 0.5 at cat channel 6 + 4 = 10: folded into the 1x1 head's bias
    compacted, report = check_exact(model, shape=(3, 8, 8))
    assert compacted.get_submodule("e1").out_channels == 5 and compacted.get_submodule("e3").out_channels == 5
    head = compacted.get_submodule("head")
    assert head.in_channels == 10
    keep = [c for c in range(12) if c not in (2, 10)]  # the head's columns follow the new offsets
    assert torch.equal(head.weight, model.head.weight[:, keep])
    assert report.filters_removed == 2


@torch.no_grad()
def test_dense_block_growth_channels_are_removed_across_every_reader():
    model = randomize(DenseBlock(), 0, density=1.0, filters=0, columns=0, zero_gamma=0)
    model.layers[0][2].weight[1] = 0  # growth channel 1 of layer 0: its bias is a constant that every later
    model.layers[0][2].bias[1] = 0.3  # BN sees; the 3x3 readers fold it into bias maps, the head into its bias
    for layer in model.layers[1:]:
        layer[0].bias[7] = 2.0  # cat channel 6 + 1: positive after BN and ReLU, so the padded readers see it
    compacted, report = check_exact(model, shape=(3, 8, 8))
    assert compacted.get_submodule("layers.0.2").out_channels == 3
    assert compacted.get_submodule("layers.1.0").num_features == 9 and compacted.get_submodule("head").in_channels == 17
    assert report.folded_map > 0 and report.filters_removed == 1
    _, again = compact(compacted, torch.zeros(1, 3, 8, 8), NO_DECOMPOSE)
    assert again.filters_removed == 0


def test_dense_model_with_concatenation_compacts_without_error():
    model = DenseBlock().eval()
    compacted, report = check_exact(model, shape=(3, 8, 8))
    assert report.filters_removed == 0 and not report.skipped


class Unknown(nn.Module):
    """A conv, then an op the channel graph does not know (a channel roll), then a conv."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 6, 3, padding=1)
        self.b = nn.Conv2d(6, 6, 1)
        self.c = nn.Conv2d(6, 4, 1)

    def forward(self, x):
        y = torch.roll(F.relu(self.a(x)), 1, 1)
        return self.c(F.relu(self.b(y))).mean((2, 3))


@torch.no_grad()
def test_unknown_op_pins_its_channels_with_a_reason_and_the_rest_compacts():
    model = Unknown().eval()
    model.a.weight[0] = 0  # dead, but behind the roll: pinned
    model.b.weight[3] = 0
    model.b.bias[3] = -1.0  # dead after ReLU, between two convs we understand: removed
    compacted, report = check_exact(model, shape=(3, 8, 8))
    assert compacted.get_submodule("a").out_channels == 6 and compacted.get_submodule("b").out_channels == 5
    assert any("roll" in p for g in report.groups for p in g.pins)
    assert any(lc.name == "a" and lc.zero_filters == 1 and "roll" in lc.note for lc in report.layers)


@torch.no_grad()
def test_dead_residual_branch_is_removed_whole_and_replaced_by_its_constant():
    model = randomize(TinyResNet(w=8), 0, density=1.0, filters=0, columns=0, zero_gamma=0)
    block = model.layer2[1]
    block.conv1.weight.zero_()  # the branch reads nothing: bn2(conv2(relu(bn1(0)))) is a fixed map
    compacted, report = check_exact(model)
    (branch,) = report.branches_removed
    assert {"layer2.1.conv1", "layer2.1.conv2", "layer2.1.bn1", "layer2.1.bn2"} <= set(branch["modules"])
    assert branch["filters"] == 32 and report.filters_removed >= 32
    names = dict(compacted.named_modules())
    assert "layer2.1.conv1" not in names and "layer2.1.conv2" not in names  # no dummy channels left behind
    _, again = compact(compacted, torch.zeros(1, *INPUT), NO_DECOMPOSE)
    assert again.filters_removed == 0 and not again.branches_removed


@torch.no_grad()
def test_constant_branch_is_kept_when_it_varies_with_position_and_the_input_size_is_unknown():
    model = randomize(TinyResNet(w=8), 0, density=1.0, filters=0, columns=0, zero_gamma=0)
    model.layer2[1].conv1.weight.zero_()  # the padded conv2 turns bn1's constants into a position-dependent map
    config = CompactionConfig(decompose=False, input_size_known=False)
    compacted, report = check_exact(model, config)
    assert not report.branches_removed and any("input size unknown" in s for s in report.skipped)


def test_filters_kept_for_alignment_count_filters_not_groups():
    """Two convs write one residual stream: a channel kept for alignment keeps one filter in each."""
    torch.manual_seed(0)
    model = randomize(TinyResNet(w=16), 0, density=1.0, filters=0, columns=0, zero_gamma=0).eval()
    with torch.no_grad():
        for conv in (model.layer1[0].conv1, model.layer1[1].conv1):
            conv.weight[:3] = 0  # three inner channels of each block dead (BN β → constant, folded)
    _, report = compact(model, torch.zeros(1, *INPUT), CompactionConfig(align=8, decompose=False))
    per_group = sum(g.kept_aligned for g in report.groups)
    writers = {
        g.gid: sum(1 for lc in report.layers if lc.group == g.gid and lc.kind != "depthwise") for g in report.groups
    }
    assert report.filters_kept_for_alignment == sum(g.kept_aligned * writers[g.gid] for g in report.groups)
    assert per_group > 0 and report.to_dict()["filters_kept_for_alignment"] == report.filters_kept_for_alignment
