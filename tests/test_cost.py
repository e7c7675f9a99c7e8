"""Analytic cost from the weights: hand-computed MACs, AR and sparsities; totals cross-checked with torch's counter.

The reference is torch.utils.flop_counter.FlopCounterMode, FLOPs / 2 = MACs. It counts conv, mm, addmm, bmm,
baddbmm and the GPU attention kernels; like analyze, it counts no bias, BN, pooling, activation or softmax.
Where both count, they must be equal (asserted on every torchvision classifier and every zoo model). The one
allowed difference: it has no formula for the CPU attention kernel (`_scaled_dot_product_flash_attention_for_cpu`)
that a ViT's MultiheadAttention(need_weights=False) runs here, so on a ViT analyze counts exactly the attention
MACs more (2·T²·E per block, computed by hand below). Both are run with MultiheadAttention's fused fast path
off (the counter sees nothing inside `_native_multi_head_attention`).
"""

from __future__ import annotations

from functools import lru_cache

import pytest
import torch
import torch.nn.functional as F
import torchvision
from test_compact import ARCHS, INPUT, randomize
from torch import nn
from torch.nn.utils import prune
from torch.utils.flop_counter import FlopCounterMode
from torchvision.models import VisionTransformer

from ticketbench.models.compact import compact
from ticketbench.models.cost import ModelCost, acceleration_rate, analyze
from ticketbench.models.zoo import create_model, input_size, model_names


def _two_layer() -> nn.Sequential:
    """conv(2→3, 3x3) on 5x5 → D=3, then conv(3→2, 1x1) → D=3; hand-placed zeros."""
    c1, c2 = nn.Conv2d(2, 3, 3), nn.Conv2d(3, 2, 1)
    with torch.no_grad():
        c1.weight.fill_(1.0)
        c1.weight[0, 1] = 0  # kernel (out 0, in 1) all zero
        c1.weight[2, 0] = 0  # kernel (out 2, in 0) all zero
        c1.weight[1, 1, 0, 0] = 0  # one zero weight inside a kernel: the kernel still counts
        c2.weight.fill_(1.0)
        c2.weight[1, 2] = 0
    return nn.Sequential(c1, nn.ReLU(), c2).eval()


def test_hand_computed_acceleration_rate_of_one_layer():
    cost = analyze(_two_layer(), (2, 5, 5))
    c1 = cost.layers[0]
    assert (c1.kernels, c1.zero_kernels, c1.out_hw, c1.kernel) == (6, 2, (3, 3), (3, 3))
    # AR = N·M·D²·k² / (P·D²·k²) = 6·9·9 / (4·9·9) = 1.5
    assert acceleration_rate([c1]) == pytest.approx(1.5)
    assert c1.macs == 6 * 9 * 9 and c1.macs_nonzero_kernels == 4 * 9 * 9
    assert c1.zero_weights == 2 * 9 + 1 and c1.weight_sparsity == pytest.approx(19 / 54)
    assert c1.kernel_sparsity == pytest.approx(2 / 6) and c1.zero_filters == 0


def test_hand_computed_acceleration_rate_over_layers():
    cost = analyze(_two_layer(), (2, 5, 5))
    # (6·9·9 + 6·9·1) / (4·9·9 + 5·9·1) = 540 / 369
    assert cost.acceleration_rate == pytest.approx(540 / 369)
    assert cost.kernel_sparsity == pytest.approx(3 / 12)
    assert cost.macs == 6 * 9 * 9 + 6 * 9 and cost.macs_nonzero_kernels == 4 * 81 + 5 * 9
    assert cost.params == 6 * 9 + 3 + 6 + 2 and cost.size_mb_fp32 == pytest.approx(4 * 65 / 1e6)


def test_analyze_runs_a_float64_model_with_the_same_counts():
    cost = analyze(_two_layer().double(), (2, 5, 5))  # the probe input follows the model's dtype (and device)
    assert cost.acceleration_rate == pytest.approx(540 / 369) and cost.layers[0].out_hw == (3, 3)


def test_channel_sparsity_and_linear_layers():
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.Flatten(), nn.Linear(4 * 16, 3)).eval()
    with torch.no_grad():
        model[0].weight[1:3] = 0
        model[2].weight[0] = 0
    cost = analyze(model, (1, 4, 4))
    conv, lin = cost.layers
    assert conv.zero_filters == 2 and cost.channel_sparsity == pytest.approx(0.5)
    assert lin.kind == "linear" and lin.macs == 64 * 3 and lin.macs_nonzero == 64 * 2 and lin.zero_filters == 1
    assert cost.acceleration_rate == pytest.approx(4 / 2)  # linear layers are not part of AR


def test_dense_model_has_unit_acceleration_rate():
    cost = analyze(ARCHS["resnet"](), INPUT)
    assert cost.acceleration_rate == 1.0 and cost.kernel_sparsity == 0.0 and cost.macs == cost.macs_nonzero_kernels


def _flops(model: nn.Module, shape) -> int:
    fastpath = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            model.eval()(torch.zeros(1, *shape))
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)
    return counter.get_total_flops()


@pytest.mark.parametrize("arch", sorted(ARCHS))
def test_macs_of_compacted_models_match_torch_flop_counter(arch):
    model = randomize(ARCHS[arch](), 0)
    compacted, _ = compact(model, torch.zeros(1, *INPUT))
    for m in (model, compacted):
        assert 2 * analyze(m, INPUT).macs == _flops(m, INPUT)  # FlopCounterMode counts 2 FLOPs per MAC


def test_macs_of_a_decomposed_model_match_torch_flop_counter():
    from test_compact_decompose import block_mask

    model = ARCHS["vgg"]().eval()
    block_mask(model.features[4], torch.arange(16) % 4, torch.arange(8) % 4)
    compacted, report = compact(model, torch.zeros(1, *INPUT))
    assert report.decomposed
    cost = analyze(compacted, INPUT)
    assert 2 * cost.macs == _flops(compacted, INPUT) < _flops(model, INPUT)


# --- hand-computed MACs of the layer kinds users bring ---------------------------------------------------------


@pytest.mark.parametrize("tokens", [(7,), (3, 7)])
def test_linear_counts_every_row_of_its_input(tokens):
    lin = nn.Linear(4, 5)
    with torch.no_grad():
        lin.weight[2] = 0
    cost = analyze(nn.Sequential(lin), (*tokens, 4))
    (lc,) = cost.layers
    rows = 7 * (3 if len(tokens) == 2 else 1)
    assert (lc.kind, lc.positions, lc.in_channels, lc.out_channels) == ("linear", rows, 4, 5)
    assert cost.macs == lc.macs == rows * 4 * 5 and lc.macs_nonzero == rows * 4 * 4 and lc.zero_filters == 1


def test_conv1d_counts_every_output_position():
    conv = nn.Conv1d(2, 3, 3)  # L = 9 → 7
    with torch.no_grad():
        conv.weight[0, 1] = 0  # one zero kernel of 6
    cost = analyze(conv, (2, 9))
    (lc,) = cost.layers
    assert (lc.kind, lc.kernel, lc.out_hw, lc.positions) == ("conv", (3,), (7,), 7)
    assert cost.macs == 3 * 2 * 3 * 7 and lc.macs_nonzero_kernels == 5 * 3 * 7
    assert cost.acceleration_rate == pytest.approx(6 / 5)


def test_conv3d_counts_every_output_voxel():
    cost = analyze(nn.Conv3d(2, 4, 3), (2, 5, 6, 7))  # → 3×4×5
    (lc,) = cost.layers
    assert (lc.kernel, lc.out_hw, lc.positions, lc.kernels) == ((3, 3, 3), (3, 4, 5), 60, 8)
    assert cost.macs == 4 * 2 * 27 * 60


def test_strided_grouped_transposed_conv_counts_every_input_pixel():
    conv = nn.ConvTranspose2d(4, 6, 3, stride=2, groups=2)  # weight [in 4, out/groups 3, 3, 3]; 5×5 → 11×11
    with torch.no_grad():
        conv.weight[0:2, 1] = 0  # group 0's inputs to its output 1: output channel 1 is all zero
    cost = analyze(conv, (4, 5, 5))
    (lc,) = cost.layers
    assert (lc.in_channels, lc.out_channels, lc.groups, lc.out_hw, lc.positions) == (4, 6, 2, (11, 11), 25)
    assert lc.transposed and (lc.kernels, lc.zero_kernels, lc.zero_filters) == (12, 2, 1)
    # each input pixel scatters every kernel once: in · out/groups · k² · H_in · W_in
    assert cost.macs == 4 * 3 * 9 * 25 and cost.acceleration_rate == pytest.approx(12 / 10)


@pytest.mark.parametrize(
    ("conv", "shape", "macs"),
    [
        (nn.ConvTranspose1d(2, 3, 4, stride=3), (2, 5), 2 * 3 * 4 * 5),
        (nn.ConvTranspose3d(2, 2, 2, stride=2), (2, 3, 3, 3), 2 * 2 * 8 * 27),
        (nn.Conv2d(4, 6, 3, groups=2, padding=1), (4, 5, 5), 6 * 2 * 9 * 25),
        (nn.Conv2d(4, 4, 3, groups=4, padding=1), (4, 5, 5), 4 * 1 * 9 * 25),  # depthwise
    ],
)
def test_transposed_grouped_and_depthwise_convs(conv, shape, macs):
    cost = analyze(conv, shape)
    assert cost.macs == macs == _flops(conv, shape) // 2 and cost.layers[0].kind == "conv"


class _SelfAttention(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(16, 2, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.attn(x, x, x, need_weights=False)[0]


def test_multihead_attention_counts_projections_as_rows_and_attention_apart():
    cost = analyze(_SelfAttention(), (5, 16))  # L = 5 tokens, E = 16
    names = [(lc.name, lc.macs) for lc in cost.layers]
    # the out_proj Linear is never called as a module (F.multi_head_attention_forward reads its weight)
    assert names == [("attn.in_proj_weight", 5 * 16 * 48), ("attn.out_proj", 5 * 16 * 16)]
    assert cost.macs_other == 2 * 5 * 5 * 16  # QKᵀ and AV over both heads
    assert cost.macs == 5 * 16 * 64 + 2 * 5 * 5 * 16 and cost.uncounted == []


def test_analyze_leaves_the_attention_fast_path_as_it_found_it():
    assert torch.backends.mha.get_fastpath_enabled()
    analyze(_SelfAttention(), (5, 16))
    with pytest.raises(AssertionError, match="embedding dimension"):
        analyze(_SelfAttention(), (5, 15))  # the forward raises
    assert torch.backends.mha.get_fastpath_enabled()


class _Functional(nn.Module):
    """Attention and a matmul written with functions: no module of its own does the products."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x [1, 10, 8]
        q = x.view(1, 2, 5, 8)  # 2 heads, 5 tokens, 8 dims
        a = F.scaled_dot_product_attention(q, q, q)
        return a.flatten(1) @ x.flatten(1).t()  # [1, 80]·[80, 1]


def test_functional_attention_and_matmul_are_counted():
    cost = analyze(_Functional(), (10, 8))
    assert cost.layers == [] and cost.macs == cost.macs_other == 2 * 2 * 5 * 5 * 8 + 80


class _HandMadeLinear(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(5, 4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x.unsqueeze(-2) * self.weight).sum(-1)  # a product no counter sees as one


class _Uncountable(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.bilinear, self.hand, self.fc = nn.Bilinear(4, 4, 3), _HandMadeLinear(), nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.bilinear(x, x), self.hand(x), self.fc(x)], -1)


def test_what_cannot_be_counted_is_listed_not_zero():
    cost = analyze(_Uncountable(), (4,))
    assert cost.macs == 4 * 2 and [lc.name for lc in cost.layers] == ["fc"]
    assert cost.uncounted == [
        "bilinear (Bilinear): aten::_trilinear has no MAC formula here",
        "hand (_HandMadeLinear): ran with a 5×4 weight, but no op counted here used it",
    ]
    assert cost.to_dict()["uncounted"] == cost.uncounted  # in cost.json


def test_masked_copies_of_weights_are_counted_with_their_zeros():
    model = nn.Sequential(nn.Conv2d(2, 4, 3), nn.Flatten(), nn.Linear(4 * 9, 3))
    prune.l1_unstructured(model[0], "weight", amount=0.5)  # forward pre-hooks: weight = weight_orig · mask
    prune.l1_unstructured(model[2], "weight", amount=0.5)
    cost = analyze(model, (2, 5, 5))
    conv, lin = cost.layers
    assert (conv.name, lin.name) == ("0", "2") and cost.uncounted == []
    assert (conv.zero_weights, lin.zero_weights) == (36, 54) and cost.macs == 72 * 9 + 108


# --- compaction's bias maps ---------------------------------------------------------------------------------------


def test_bias_maps_are_counted_apart_from_params():
    conv = nn.Conv2d(2, 3, 3, padding=1, bias=False)
    bn = nn.BatchNorm2d(3).eval()
    with torch.no_grad():
        conv.weight[1] = 0
        bn.bias.copy_(torch.tensor([0.0, 3.0, 0.0]))  # channel 1 is the constant 3 ...
    model = nn.Sequential(conv, bn, nn.ReLU(), nn.Conv2d(3, 2, 3, padding=1)).eval()  # ... seen through padding
    compacted, report = compact(model, torch.zeros(1, 2, 6, 6))
    assert report.folded_map == 1
    cost = analyze(compacted, (2, 6, 6))
    assert cost.params_bias_maps == 2 * 6 * 6  # the consumer's [C_out, H, W] map
    assert cost.params == sum(p.numel() for p in compacted.parameters())  # maps are buffers, not in params
    assert analyze(model, (2, 6, 6)).params_bias_maps == 0


# --- totals against torch's counter -------------------------------------------------------------------------------


def _torchvision_cases() -> list:
    """Every classifier torchvision builds offline, at the smallest size it allows or a small one (ViT, Swin and
    MaxViT need 224×224, Inception-v3 at least 75); all full-size models, so all in the e2e tier."""
    out = []
    for name in torchvision.models.list_models(module=torchvision.models):
        size = 224 if name.startswith(("vit", "swin", "maxvit")) else 96 if name == "inception_v3" else 64
        out.append(pytest.param(name, size, marks=pytest.mark.e2e, id=name))
    return out


def _vit_attention_macs(model: VisionTransformer) -> int:
    """QKᵀ and AV of every block: 2 · T² · E MACs (T tokens with the class token, E the width; heads split E)."""
    return len(model.encoder.layers) * 2 * model.seq_length**2 * model.hidden_dim


@lru_cache(maxsize=2)  # the two read again below; every model kept would be GBs
def _torchvision(name: str, size: int) -> tuple[nn.Module, ModelCost]:
    """Built and analysed once (ViT-B/16 takes seconds): the tests below only read them."""
    torch.manual_seed(0)
    model = torchvision.models.get_model(name, weights=None).eval()
    return model, analyze(model, (3, size, size))


@pytest.mark.parametrize(("name", "size"), _torchvision_cases())
def test_macs_of_torchvision_classifiers_match_torch_flop_counter(name, size):
    model, cost = _torchvision(name, size)
    shape = (3, size, size)
    attention = _vit_attention_macs(model) if isinstance(model, VisionTransformer) else 0
    assert cost.uncounted == [] and cost.macs - attention == _flops(model, shape) // 2
    assert cost.macs == sum(lc.macs for lc in cost.layers) + cost.macs_other
    if attention:
        assert cost.macs_other == attention  # nothing else in a ViT multiplies two activations


@pytest.mark.e2e
def test_vit_counts_every_token_and_the_attention_projections():
    _, cost = _torchvision("vit_b_16", 224)
    # patch conv, 12 × (in_proj, out_proj, 2 MLP linears), head; 197 tokens through every linear of a block
    assert len(cost.layers) == 1 + 12 * 4 + 1 and cost.layers[1].name.endswith("self_attention.in_proj_weight")
    assert {lc.positions for lc in cost.layers[1:-1]} == {197} and cost.layers[-1].positions == 1
    assert cost.macs == 17_563_828_224  # torchvision's documented 17.56 GFLOPS (multiply-adds)


@pytest.mark.e2e
def test_swin_attention_is_counted_window_by_window():
    _, cost = _torchvision("swin_t", 224)
    # 7×7 windows: QKᵀ and AV are 2 · 49 MACs per token and channel; stages of 56², 28², 14², 7² tokens
    stages = [(2, 56 * 56, 96), (2, 28 * 28, 192), (6, 14 * 14, 384), (2, 7 * 7, 768)]
    assert cost.macs_other == sum(blocks * 2 * tokens * 49 * dim for blocks, tokens, dim in stages)


@pytest.mark.parametrize("name", model_names())
def test_macs_of_zoo_models_match_torch_flop_counter(name):
    torch.manual_seed(0)
    model = create_model(name, num_classes=10, in_channels=3).eval()
    shape = (3, input_size(name) or 32, input_size(name) or 32)
    cost = analyze(model, shape)
    assert cost.uncounted == [] and cost.macs_other == 0 and 2 * cost.macs == _flops(model, shape)
