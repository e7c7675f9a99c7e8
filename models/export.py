"""ONNX export of a (compacted) ticket, checked by onnx.checker and validated numerically.

Validation runs ONNX Runtime on fresh random inputs and compares with the *masked, uncompacted*
PyTorch model, so it checks compaction and export together. Export fails loudly above tolerance.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

OPSET = 17


class ExportError(RuntimeError):
    """The exported graph disagrees with PyTorch beyond tolerance, or fails the ONNX checker."""


@dataclass
class ExportResult:
    path: Path
    size_mb: float
    max_abs_error: float
    tolerance: float
    opset: int = OPSET


def to_onnx_bytes(model: nn.Module, input_shape: tuple[int, ...], opset: int = OPSET) -> bytes:
    """Export with a dynamic batch axis named 'batch'; input 'input', output 'logits'."""
    model = model.eval()
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (torch.zeros(1, *input_shape),),
            buf,
            input_names=["input"],
            output_names=["logits"],
            dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
            opset_version=opset,
            dynamo=False,
        )
    return buf.getvalue()


def max_abs_error(
    reference: nn.Module, onnx_bytes: bytes, input_shape: tuple[int, ...], n: int = 8, seed: int = 1234
) -> float:
    """Max |ORT(x) − reference(x)| over a batch of `n` standard-normal inputs."""
    import onnxruntime as ort

    x = torch.randn(n, *input_shape, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        ref = reference.eval()(x).numpy()
    sess = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    out = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]
    return float(np.max(np.abs(out - ref)))


def export_onnx(
    model: nn.Module,
    reference: nn.Module,
    input_shape: tuple[int, ...],
    path: Path,
    tolerance: float = 1e-3,
) -> ExportResult:
    """Export `model`, check it, validate it against `reference`, then write `path` atomically."""
    import onnx

    blob = to_onnx_bytes(model, input_shape)
    try:
        onnx.checker.check_model(onnx.load_from_string(blob), full_check=True)
    except Exception as exc:
        raise ExportError(f"onnx.checker rejected the graph: {exc}") from exc
    err = max_abs_error(reference, blob, input_shape)
    if not err <= tolerance:
        raise ExportError(f"ONNX output differs from PyTorch by {err:.3g} > tolerance {tolerance:.1g}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".onnx.tmp")
    tmp.write_bytes(blob)
    tmp.replace(path)
    return ExportResult(path, len(blob) / 1e6, err, tolerance)
