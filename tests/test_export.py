"""ONNX export: opset, checker, validation against the masked model, loud failure, dead-filter inspection."""

from __future__ import annotations

import sys

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from test_compact import INPUT, TinyVGG, randomize
from torch import nn

from ticketbench.models.compact import compact
from ticketbench.models.export import OPSET, ExportError, export_onnx, to_onnx_bytes, zero_filters


def _pruned_vgg() -> nn.Module:
    model = TinyVGG(w=4).eval()
    with torch.no_grad():
        model.features[0].weight[1] = 0  # zero filters; default BN shift 0 → the channels output exactly 0
        model.features[0].bias[1] = 0
        model.features[4].weight[2:5] = 0
        model.features[4].bias[2:5] = 0
    return model


def test_export_writes_a_checked_validated_file(tmp_path):
    model = randomize(TinyVGG(w=4), 0)
    compacted, _ = compact(model, torch.zeros(1, *INPUT))
    result = export_onnx(compacted, model, INPUT, tmp_path / "sub" / "m.onnx", seed=3)
    proto = onnx.load(str(result.path))
    onnx.checker.check_model(proto, full_check=True)
    assert OPSET >= 17 and max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")) >= 17
    assert result.size_mb == pytest.approx(result.path.stat().st_size / 1e6)
    assert result.max_abs_error <= 1e-3 and result.seed == 3 and result.nodes == len(proto.graph.node)
    assert not list(tmp_path.rglob("*.tmp"))
    sess = ort.InferenceSession(str(result.path), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).standard_normal((3, *INPUT), dtype=np.float32)  # dynamic batch
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    assert np.allclose(sess.run(None, {"input": x})[0], ref, atol=1e-4)


def test_export_fails_loudly_when_outputs_differ(tmp_path):
    model = randomize(TinyVGG(w=4), 0)
    other = randomize(TinyVGG(w=4), 1)
    with pytest.raises(ExportError, match="differs from PyTorch"):
        export_onnx(other, model, INPUT, tmp_path / "m.onnx")
    assert not (tmp_path / "m.onnx").exists()


def test_zero_filters_are_found_in_the_onnx_initializers_and_gone_after_compaction():
    model = _pruned_vgg()
    before = zero_filters(onnx.load_from_string(to_onnx_bytes(model, INPUT)))
    assert sorted(before.values()) == [0, 1, 3]  # BN folded into the conv: zero filters stay zero
    compacted, report = compact(model, torch.zeros(1, *INPUT))
    after = zero_filters(onnx.load_from_string(to_onnx_bytes(compacted, INPUT)))
    assert sum(after.values()) == 0 and report.channels_removed == 4


def test_export_works_without_onnxslim(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxslim", None)  # import fails as if not installed
    model = _pruned_vgg()
    result = export_onnx(model, model, INPUT, tmp_path / "m.onnx")
    assert not result.slimmed and result.zero_filters and sum(result.zero_filters.values()) == 4


def test_export_uses_onnxslim_when_installed(tmp_path):
    pytest.importorskip("onnxslim")
    model = _pruned_vgg()
    result = export_onnx(model, model, INPUT, tmp_path / "m.onnx")
    assert result.slimmed and result.max_abs_error <= 1e-4


# -- the pipeline's steps (models/pipeline.py): what bench run, bench ticket and bench export all go through --------


def _ticket(model: nn.Module):
    from ticketbench.models.tickets import Ticket, TicketConfig

    return Ticket(model, {}, TicketConfig("tiny_vgg", "synthetic", "magnitude", 0.5))


def test_compact_and_export_validates_the_compacted_onnx_against_the_masked_ticket(tmp_path):
    from ticketbench.models.pipeline import compact_and_export

    model = _pruned_vgg()
    exported = compact_and_export(_ticket(model), tmp_path / "m.onnx", INPUT, align=1)
    assert exported.path == tmp_path / "m.onnx" and exported.path.is_file()
    assert exported.compaction.filters_removed == 4 and not exported.onnx.zero_filters  # dead filters gone
    v = exported.validation  # recorded: the error, its scale, the bound it passed and the inputs' seed
    assert v.passed and v.max_abs_error <= v.bound == pytest.approx(1e-3 * max(1.0, v.reference_max_abs))
    assert exported.onnx_record()["max_abs_error"] == v.max_abs_error and "path" not in exported.onnx_record()
    x = np.random.default_rng(1).standard_normal((2, *INPUT), dtype=np.float32)
    sess = ort.InferenceSession(str(exported.path), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        assert np.allclose(sess.run(None, {"input": x})[0], model(torch.from_numpy(x)).numpy(), atol=1e-4)
    kept = compact_and_export(_ticket(model), tmp_path / "a.onnx", INPUT, align=8)  # 8: dead channels kept
    assert kept.compaction.filters_kept_for_alignment > 0 and kept.validation.passed


def test_a_broken_compaction_fails_validation_instead_of_passing(tmp_path, monkeypatch):
    """A compaction that changed the function (here: another network's weights) is caught by validating against
    the masked ticket: ExportError carrying the failed Validation, and no file written."""
    from ticketbench.models import pipeline

    model = _pruned_vgg()
    wrong = randomize(TinyVGG(w=4), 7).eval()
    monkeypatch.setattr(pipeline, "compact", lambda m, x, config: (wrong, pipeline.CompactionReport()))
    with pytest.raises(ExportError, match="differs from PyTorch") as info:
        pipeline.compact_and_export(_ticket(model), tmp_path / "m.onnx", INPUT)
    v = info.value.validation
    assert v is not None and not v.passed and v.max_abs_error > v.bound
    assert not (tmp_path / "m.onnx").exists() and not list(tmp_path.iterdir())


def test_validation_never_passes_nan():
    from ticketbench.models.export import Validation

    assert not Validation(float("nan"), 1.0, 1e-3, 0).passed and Validation(5e-3, 10.0, 1e-3, 0).passed


def test_export_dense_writes_the_reference_once_with_its_cost(tmp_path):
    from ticketbench.models.pipeline import export_dense

    model = randomize(TinyVGG(w=4), 0).eval()
    dense = export_dense(model, INPUT, tmp_path / "dense.onnx")
    assert dense.size_mb == pytest.approx(dense.path.stat().st_size / 1e6) and dense.model is model
    assert dense.cost.params == sum(p.numel() for p in model.parameters()) and dense.cost.macs > 0
    onnx.checker.check_model(onnx.load(str(dense.path)))
