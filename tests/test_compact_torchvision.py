"""torchvision CNNs outside the zoo (built without weights): compaction is exact, idempotent, and leaves no
unexplained all-zero filter in the exported ONNX.

Masks: a random 50 % of every BN's γ zeroed with β kept (the channel becomes the constant β, which meets
zero padding in most of these nets: folded into bias maps); the same with β zeroed (the channel is exactly 0);
a random 90 % of conv/linear weights zeroed (unstructured). BN statistics look trained (non-zero means).
squeezenet has no BN: there the filter plays γ and its bias β.
A filter that is all zero in the ONNX graph (BN folded in by the exporter) must be listed in the compaction
report with a reason (`LayerCompaction.zero_filters` and its note: pinned group, last channel of a layer,
alignment, or another writer of the residual channel keeps it alive).

Small inputs (64x64, densenet121 at 32x32), batch 2, so the module runs in CI time.
"""

from __future__ import annotations

import onnx
import pytest
import torch
import torchvision.models as tvm
from torch import nn

from ticketbench.models.compact import CompactionConfig, compact
from ticketbench.models.export import export_onnx, zero_filters

pytestmark = pytest.mark.e2e  # full-size ImageNet models: seconds per case

MODELS = {
    "resnet34": (tvm.resnet34, 64),
    "resnet50": (tvm.resnet50, 64),
    "mobilenet_v2": (tvm.mobilenet_v2, 64),
    "mobilenet_v3_small": (tvm.mobilenet_v3_small, 64),
    "squeezenet1_1": (tvm.squeezenet1_1, 64),
    "densenet121": (tvm.densenet121, 32),
    "shufflenet_v2_x0_5": (tvm.shufflenet_v2_x0_5, 64),
    "efficientnet_b0": (tvm.efficientnet_b0, 64),
}
MASKS = ("gamma", "gamma_beta", "unstructured")


@torch.no_grad()
def masked(name: str, mask: str, seed: int = 0) -> tuple[nn.Module, tuple[int, int, int]]:
    """The torchvision model (no weights, 10 classes) with trained-looking BN statistics and `mask` applied."""
    fn, side = MODELS[name]
    torch.manual_seed(seed)
    model = fn(weights=None, num_classes=10).eval()
    g = torch.Generator().manual_seed(seed)
    if mask != "unstructured" and not any(isinstance(m, nn.BatchNorm2d) for m in model.modules()):
        for m in model.modules():  # no BN (squeezenet): the filter plays γ, its bias β
            if isinstance(m, nn.Conv2d):
                m.bias.copy_(torch.randn(m.out_channels, generator=g) * 0.1)  # torchvision initializes them to 0
                dead = torch.rand(m.out_channels, generator=g) < 0.5
                m.weight[dead] = 0
                m.bias[dead] = 0 if mask == "gamma_beta" else m.bias[dead]
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            c = m.num_features
            m.running_mean.copy_(torch.randn(c, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(c, generator=g) + 0.5)
            m.bias.copy_(torch.randn(c, generator=g) * 0.1)
            if mask != "unstructured":
                dead = torch.rand(c, generator=g) < 0.5
                m.weight[dead] = 0
                if mask == "gamma_beta":
                    m.bias[dead] = 0
        elif mask == "unstructured" and isinstance(m, (nn.Conv2d, nn.Linear)):
            m.weight.mul_((torch.rand(m.weight.shape, generator=g) >= 0.9).float())
    return model, (3, side, side)


def summary(report) -> dict[str, int]:
    """The table row of the closing note: removed (filters), folded (channels; through maps), kept with reason."""
    return {
        "removed": report.filters_removed,
        "branches": len(report.branches_removed),
        "folded": sum(g.folded for g in report.groups),
        "folded_map": report.folded_map,
        "zero_kept": sum(lc.zero_filters for lc in report.layers if lc.kind != "linear"),
        "pinned": sum(g.kept_pinned for g in report.groups),
    }


@pytest.mark.parametrize("mask", MASKS)
@pytest.mark.parametrize("name", sorted(MODELS))
def test_torchvision_compaction_is_exact_idempotent_and_leaves_no_unexplained_zero_filter(name, mask, tmp_path):
    model, shape = masked(name, mask)
    x = torch.zeros(1, *shape)
    compacted, report = compact(model, x, CompactionConfig())
    assert not any("compaction failed" in s for s in report.skipped), report.skipped
    # exact vs the masked model: ORT on random inputs, the export's own error bound (raises above it)
    result = export_onnx(compacted, model, shape, tmp_path / "m.onnx", tolerance=1e-4)
    assert result.max_abs_error <= 1e-4 * max(1.0, result.reference_max_abs)
    xb = torch.randn(2, *shape, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(compacted(xb), model(xb), rtol=1e-4, atol=1e-4)
    if mask != "unstructured":  # half of every BN's channels is constant: something must go
        assert report.filters_removed > 0
    # idempotent: a second pass finds nothing left to remove or fold
    _, again = compact(compacted, x, CompactionConfig())
    assert again.filters_removed == 0 and not again.branches_removed
    assert sum(g.folded for g in again.groups) == 0
    # every all-zero filter in the ONNX graph is accounted for, with a reason, in the report (cost.json)
    in_onnx = sum(zero_filters(onnx.load(str(result.path))).values())
    listed = [lc for lc in report.layers if lc.kind != "linear" and lc.zero_filters]
    assert in_onnx <= sum(lc.zero_filters for lc in listed), (in_onnx, summary(report))
    assert all(lc.note for lc in listed), [vars(lc) for lc in listed if not lc.note]
    print(name, mask, {"exact": result.max_abs_error, "onnx_zero_filters": in_onnx, **summary(report)})
