"""ONNX export of a (compacted) ticket, checked by onnx.checker and validated numerically.

Validation runs ONNX Runtime on fresh random inputs and compares with the *masked, uncompacted*
PyTorch model, so it checks compaction and export together. Export fails loudly above tolerance.
The exporter folds BatchNorm into the preceding conv, so a filter that is all zero in the ONNX graph is
exactly a channel that still costs compute while producing a constant: `zero_filters` lists them.
"""

from __future__ import annotations

import contextlib
import io
import random
import warnings
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ticketbench.files import atomic_write_bytes
from ticketbench.models.cost import LayerCost
from ticketbench.models.train import _device_of

OPSET = 17


@dataclass(frozen=True)
class Validation:
    """ONNX Runtime against the PyTorch reference on standard-normal inputs: what `export_onnx` checked.

    Passed when max_abs_error ≤ tolerance · max(1, reference_max_abs) (absolute for outputs of order one, relative
    for large logits); a NaN error never passes."""

    max_abs_error: float  # max |ORT − PyTorch reference| over the validation batch
    reference_max_abs: float  # max |reference output|: the scale the error is judged against
    tolerance: float
    seed: int  # seed of the validation inputs

    @property
    def bound(self) -> float:
        return self.tolerance * max(1.0, self.reference_max_abs)

    @property
    def passed(self) -> bool:
        return bool(self.max_abs_error <= self.bound)  # False for NaN


class ExportError(RuntimeError):
    """The exported graph disagrees with PyTorch beyond tolerance (`validation` says by how much), or fails the
    ONNX checker (`validation` None: never validated)."""

    def __init__(self, message: str, validation: Validation | None = None) -> None:
        super().__init__(message)
        self.validation = validation


@dataclass
class ExportResult:
    path: Path
    size_mb: float  # ONNX file size, 10⁶ bytes
    max_abs_error: float  # max |ORT − PyTorch reference| over the validation batch
    tolerance: float
    opset: int = OPSET
    reference_max_abs: float = 0.0  # max |reference output|: the scale the error is judged against
    seed: int = 0  # seed of the validation inputs (standard normal)
    slimmed: bool = False  # onnxslim cleanup applied
    nodes: int = 0
    zero_filters: dict[str, int] = field(default_factory=dict)  # Conv node → all-zero output filters left

    @property
    def validation(self) -> Validation:
        return Validation(self.max_abs_error, self.reference_max_abs, self.tolerance, self.seed)


def to_onnx_bytes(model: nn.Module, input_shape: tuple[int, ...], opset: int = OPSET) -> bytes:
    """Export with a dynamic batch axis named 'batch'; input 'input', output 'logits'."""
    model = model.eval()
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (torch.zeros(1, *input_shape, device=_device_of(model)),),
            buf,  # type: ignore[arg-type]  # torch types f as a path, but the TorchScript exporter writes file objects
            input_names=["input"],
            output_names=["logits"],
            dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
            opset_version=opset,
            dynamo=False,
        )
    return buf.getvalue()


def node_module(node_name: str, modules: Collection[str] = ()) -> str:
    """The PyTorch module an exported ONNX node came from ("" for ops of the model's own forward).

    The TorchScript exporter names a node `/<scope>/.../<Op>[_N]`, one scope per module call on the way down, each
    the module's *unqualified* name: its qualified name from the last non-numeric atom on (torch.onnx.utils,
    `_unqualified_variable_name`: `layer1.0.conv1` → `conv1`, `layer1.0` → `layer1.0`). A child's attribute name is
    the last atom of its scope, so the qualified name is the first scope, then the last atom of each later one:
    /layer1/layer1.0/conv1/Conv → layer1.0.conv1; /feature.4/conv/Conv (an FX module calling feature.4 directly, as
    compaction's are) → feature.4.conv. When `modules` (the model's module names) is given and the name is not one
    of them (a call that skipped its parent's forward), the one module ending in it is taken."""
    scopes = [p for p in node_name.split("/")[1:-1] if p] if node_name.startswith("/") else []
    if not scopes:
        return ""
    name = scopes[0] + "".join("." + s.rsplit(".", 1)[-1] for s in scopes[1:])
    if modules and name not in modules:
        ends = [m for m in modules if m.endswith("." + name)]
        if len(ends) == 1:
            return ends[0]
    return name


_WEIGHT_PASSTHROUGH = ("Identity", "DequantizeLinear", "Cast")  # ops between an initializer and the layer reading it


def _weight_dims(model: Any) -> Callable[[str], list[int] | None]:
    """tensor → dims of the initializer (or Constant) it is, or comes from through Identity/DequantizeLinear/Cast."""
    from onnx import numpy_helper

    inits = {t.name: list(t.dims) for t in model.graph.initializer}
    producers = {o: n for n in model.graph.node for o in n.output}

    def dims(tensor: str) -> list[int] | None:
        for _ in range(8):
            if tensor in inits:
                return inits[tensor]
            node = producers.get(tensor)
            if node is None:
                return None
            if node.op_type == "Constant" and node.attribute:
                return list(numpy_helper.to_array(node.attribute[0].t).shape)
            if node.op_type not in _WEIGHT_PASSTHROUGH:
                return None
            tensor = node.input[0]
        return None

    return dims


def onnx_layer_map(onnx_path: Path, layers: Sequence[LayerCost]) -> dict[str, str]:
    """ONNX node → the models/cost.py row it computes, for every conv and weighted matmul of an export.

    Names cannot say it for a compacted (FX) model: its calls skip their parents' forward, so the exporter names its
    convs `/conv1/Conv`, `/conv1_1/Conv`, ... (models/export.node_module works for plain modules only). Order and
    shape can: the exporter traces the same forward that analyze() counts, so each conv/matmul with a weight takes
    the earliest row not yet taken whose weight has its shape ([out, in/groups, k...] for a conv, [in, out/groups,
    k...] transposed, {in, out} for a matmul). Earliest, not next: onnxslim's topological sort moves a ResNet
    shortcut (1×1) ahead of the block's second conv (3×3). Two parallel branches of one shape that the sort swapped
    would swap their rows; no zoo model has them. A node no row fits stays out (names decide for it)."""
    import onnx

    model = onnx.load(str(onnx_path), load_external_data=False)
    dims = _weight_dims(model)
    rows = [lc for lc in layers if lc.kind in ("conv", "linear")]
    taken = [False] * len(rows)
    out: dict[str, str] = {}
    for node in model.graph.node:
        if node.op_type not in ("Conv", "ConvTranspose", "Gemm", "MatMul") or len(node.input) < 2:
            continue
        w = dims(node.input[1]) if node.op_type != "MatMul" else (dims(node.input[1]) or dims(node.input[0]))
        if w is None:
            continue  # a product of two activations (attention): no cost row
        k = next((i for i, lc in enumerate(rows) if not taken[i] and _same_weight(node.op_type, w, lc)), None)
        if k is not None:
            taken[k] = True
            out[node.name or node.output[0]] = rows[k].name
    return out


def _same_weight(op: str, w: list[int], lc: LayerCost) -> bool:
    if op in ("Conv", "ConvTranspose"):
        first, second = (lc.in_channels, lc.out_channels) if lc.transposed else (lc.out_channels, lc.in_channels)
        return w == [first, second // max(lc.groups, 1), *lc.kernel]
    return sorted(w) == sorted([lc.in_channels, lc.out_channels])


def slim(blob: bytes) -> bytes | None:
    """onnxslim cleanup (constant folding, dead nodes) when onnxslim is installed, else None."""
    try:
        import onnxslim
    except ImportError:
        return None
    import onnx

    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return onnxslim.slim(onnx.load_from_string(blob)).SerializeToString()


def zero_filters(onnx_model) -> dict[str, int]:
    """Per Conv node (by node name), how many output filters of its weight initializer are all zero."""
    from onnx import numpy_helper

    inits = {i.name: i for i in onnx_model.graph.initializer}
    consts = {
        n.output[0]: a.t
        for n in onnx_model.graph.node
        if n.op_type == "Constant"
        for a in n.attribute
        if a.name == "value"
    }
    out = {}
    for n in onnx_model.graph.node:
        if n.op_type != "Conv" or len(n.input) < 2:
            continue
        t = inits.get(n.input[1]) or consts.get(n.input[1])
        if t is None:
            continue
        w = numpy_helper.to_array(t)
        out[n.name] = int((~np.any(w.reshape(w.shape[0], -1) != 0, axis=1)).sum())
    return out


def validate(
    reference: nn.Module, onnx_bytes: bytes, input_shape: tuple[int, ...], n: int = 8, seed: int = 1234
) -> tuple[float, float]:
    """(max |ORT(x) − reference(x)|, max |reference(x)|) over a batch of `n` standard-normal inputs."""
    import onnxruntime as ort

    x = torch.randn(n, *input_shape, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        ref = reference.eval()(x.to(_device_of(reference))).cpu().numpy()
    sess = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    out = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]
    return float(np.max(np.abs(out - ref))), float(np.max(np.abs(ref)))


def max_abs_error(
    reference: nn.Module, onnx_bytes: bytes, input_shape: tuple[int, ...], n: int = 8, seed: int = 1234
) -> float:
    """Max |ORT(x) − reference(x)| over a batch of `n` standard-normal inputs."""
    return validate(reference, onnx_bytes, input_shape, n, seed)[0]


def export_onnx(
    model: nn.Module,
    reference: nn.Module,
    input_shape: tuple[int, ...],
    path: Path,
    tolerance: float = 1e-3,
    use_slim: bool = True,
    seed: int | None = None,
    opset: int = OPSET,
) -> ExportResult:
    """Export `model`, check it, validate it against `reference`, then write `path` atomically.

    The error bound is `tolerance · max(1, max |reference output|)`: absolute for outputs of order one,
    relative for large logits (fp32 round-off grows with magnitude). `seed=None` draws fresh inputs and
    records their seed. onnxslim is used when installed and `use_slim`; the slimmed graph is what is
    validated and written. `opset` is lowered for devices whose ONNX parser is older (TensorRT 8.2: 13).
    """
    import onnx

    blob = to_onnx_bytes(model, input_shape, opset)
    slimmed = slim(blob) if use_slim else None
    blob = slimmed or blob
    proto = onnx.load_from_string(blob)
    try:
        onnx.checker.check_model(proto, full_check=True)
    except Exception as exc:
        raise ExportError(f"onnx.checker rejected the graph: {exc}") from exc
    seed = random.randrange(2**31) if seed is None else seed
    err, scale = validate(reference, blob, input_shape, seed=seed)
    checked = Validation(err, scale, tolerance, seed)
    if not checked.passed:
        raise ExportError(
            f"ONNX output differs from PyTorch by {err:.3g} > tolerance {tolerance:.1g} "
            f"(reference max |y| = {scale:.3g}, seed {seed})",
            checked,
        )
    path = Path(path)
    atomic_write_bytes(path, blob)  # a unique temp name: a link planted at a fixed one is never followed
    zeros = {k: v for k, v in zero_filters(proto).items() if v}
    return ExportResult(
        path, len(blob) / 1e6, err, tolerance, opset, scale, seed, slimmed is not None, len(proto.graph.node), zeros
    )
