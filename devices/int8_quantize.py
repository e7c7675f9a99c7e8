"""Post-training int8: a reproducible calibration set from the ticket's own training split, ONNX Runtime static
quantization (QDQ) of the compacted ONNX, and the check of int8 outputs against fp32.

- Calibration: `size` training images drawn without replacement by `numpy.random.default_rng(seed)`, taken
  without augmentation (a random crop would make the set depend on the draw of the loader); the indices,
  the seed and a sha256 of the array are written beside the ticket so the same set can be rebuilt.
- Quantization: QuantFormat.QDQ, per-channel symmetric int8 weights, uint8 activations (U8S8: the layout
  ONNX Runtime's x86 int8 kernels (AVX2/AVX-512 VNNI) are written for), activation ranges from the
  calibration set by `method`: `entropy` (KL divergence of the histogram, as TensorRT's
  IInt8EntropyCalibrator2, the default), `minmax` or `percentile` (99.999 %).
- Validation: int8 logits against the fp32 ONNX's logits on the evaluation split: top-1 agreement (% of
  inputs with the same arg-max) must be ≥ AGREEMENT_MIN_PERCENT, the max |int8 − fp32| logit error is
  reported beside it (relative to the fp32 logits' max), never gated: int8 logits differ by design,
  what matters for a classifier is whether the decision moves. Both are written to results.csv either way.

It lives in devices/ beside int8_calibration.py (TensorRT's calibrator from these ranges): both prepare an ONNX
for a device's int8 kernels; the quantized file is an ONNX model like any other.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import io
import json
import logging
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ticketbench.files import atomic_write_bytes, atomic_write_text
from ticketbench.models.data import CifarDataset, DataBundle

AGREEMENT_MIN_PERCENT = 95.0  # int8 top-1 must equal fp32 top-1 on at least this share of the eval split
CALIBRATION_METHODS = ("entropy", "minmax", "percentile")
PERCENTILE = 99.999  # for method "percentile"


class CalibrationError(ValueError):
    """The calibration input cannot be used (empty split, wrong shape, non-finite values); says why."""


@dataclass
class CalibrationSet:
    """Calibration inputs (float32, N×C×H×W) and how they were drawn."""

    x: np.ndarray
    dataset: str
    indices: list[int]
    seed: int
    split: str = "train"

    @property
    def sha256(self) -> str:
        """Identity of the array (shape, dtype and bytes): keys calibration caches and quantized models."""
        h = hashlib.sha256(json.dumps([list(self.x.shape), str(self.x.dtype)]).encode())
        h.update(np.ascontiguousarray(self.x).tobytes())
        return h.hexdigest()

    def record(self) -> dict:
        """What calibration.json holds: enough to rebuild the set from the same data set."""
        return {
            "dataset": self.dataset,
            "split": self.split,
            "seed": self.seed,
            "size": len(self.indices),
            "shape": list(self.x.shape),
            "sha256": self.sha256,
            "sampler": "numpy.random.default_rng(seed).choice(len(split), size, replace=False), sorted",
            "indices": self.indices,
        }

    def write(self, directory: Path) -> Path:
        path = Path(directory) / "calibration.json"
        atomic_write_text(path, json.dumps(self.record(), indent=1))
        return path


def _unaugmented(ds):
    """The training split as evaluated (no random crop/flip), so a calibration draw is deterministic."""
    if isinstance(ds, CifarDataset) and ds.augment:
        ds = copy.copy(ds)
        ds.augment = False
    return ds


def calibration_set(data: DataBundle, size: int, seed: int = 0) -> CalibrationSet:
    """`size` images of the training split (all of it when smaller), drawn by `seed`; CalibrationError if unusable."""
    if not isinstance(size, int) or isinstance(size, bool) or size < 1:
        raise CalibrationError(f"calibration_size must be a positive integer (got {size!r})")
    ds = _unaugmented(data.train)
    n = len(ds)
    if n == 0:
        raise CalibrationError(f"{data.name}: the training split is empty; int8 calibration needs images")
    idx = np.sort(np.random.default_rng(seed).choice(n, size=min(size, n), replace=False))
    xs = []
    for i in idx:
        x = np.asarray(ds[int(i)][0], dtype=np.float32)
        if x.shape != tuple(data.input_shape):
            raise CalibrationError(
                f"{data.name}: training image {int(i)} has shape {x.shape}, the model input is {data.input_shape}"
            )
        xs.append(x)
    arr = np.stack(xs)
    if not np.isfinite(arr).all():
        raise CalibrationError(f"{data.name}: the calibration images hold NaN or infinite values")
    return CalibrationSet(arr, data.name, [int(i) for i in idx], seed)


@dataclass
class QuantizeConfig:
    method: str = "entropy"  # activation ranges: entropy | minmax | percentile
    per_channel: bool = True  # one weight scale per output channel
    batch_size: int = 32  # calibration inputs per ORT call (affects speed only)

    def __post_init__(self) -> None:
        if self.method not in CALIBRATION_METHODS:
            raise CalibrationError(
                f"unknown calibration method {self.method!r} (known: {', '.join(CALIBRATION_METHODS)})"
            )


@dataclass
class QuantizeResult:
    path: Path
    size_mb: float
    method: str
    per_channel: bool
    calibration_sha256: str
    calibration_size: int
    quant_format: str = "QDQ"
    activations: str = "uint8"
    weights: str = "int8 symmetric"
    quantized_nodes: dict[str, int] = field(default_factory=dict)  # op type → count of QDQ-wrapped nodes
    float_nodes: int = 0  # Conv/Gemm/MatMul nodes the quantizer left in float (they run fp32)

    def to_dict(self) -> dict:
        return {**asdict(self), "path": str(self.path)}


class _Reader:
    """onnxruntime.quantization.CalibrationDataReader over the calibration array, in fixed-size batches."""

    def __init__(self, name: str, x: np.ndarray, batch_size: int) -> None:
        # equal batches (the largest divisor of N up to batch_size): ORT's histogram collectors stack them
        self.name, self.x = name, x
        self.bs = max(d for d in range(1, max(1, min(batch_size, len(x))) + 1) if len(x) % d == 0)
        self.rewind()

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._it, None)

    def rewind(self) -> None:
        self._it: Iterator = iter({self.name: self.x[i : i + self.bs]} for i in range(0, len(self.x), self.bs))


def _input(onnx_path: Path) -> tuple[str, list[int | None]]:
    import onnx

    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    inits = {i.name for i in graph.initializer}
    inp = next(i for i in graph.input if i.name not in inits)
    return inp.name, [d.dim_value if d.dim_value > 0 else None for d in inp.type.tensor_type.shape.dim]


def quantize_onnx(
    onnx_path: Path, calib: CalibrationSet, out_path: Path, cfg: QuantizeConfig | None = None
) -> QuantizeResult:
    """Statically quantize `onnx_path` (QDQ, per-channel weights) with ranges from `calib`; write `out_path`."""
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quant_pre_process,
        quantize_static,
    )

    cfg = cfg or QuantizeConfig()
    name, dims = _input(Path(onnx_path))
    want = [d for d in dims[1:]]
    if list(calib.x.shape[1:]) != want:
        raise CalibrationError(f"calibration images are {list(calib.x.shape[1:])}, the ONNX input {name} is {want}")
    reader = _Reader(name, calib.x, cfg.batch_size)
    CalibrationDataReader.register(_Reader)
    method = {
        "entropy": CalibrationMethod.Entropy,
        "minmax": CalibrationMethod.MinMax,
        "percentile": CalibrationMethod.Percentile,
    }[cfg.method]
    extra = {"CalibPercentile": PERCENTILE} if cfg.method == "percentile" else {}
    out_path = Path(out_path)
    quiet = logging.getLogger()  # the quantizer warns and prints through the root logger and stdout
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()), tempfile.TemporaryDirectory(prefix="tb-quant-") as work:
            # shape inference and constant folding first, so biases are initializers the quantizer can fold
            pre, tmp = Path(work) / "pre.onnx", Path(work) / "quantized.onnx"  # our own fresh folder
            quant_pre_process(str(onnx_path), str(pre), skip_symbolic_shape=True)
            quantize_static(
                str(pre),
                str(tmp),
                reader,
                quant_format=QuantFormat.QDQ,
                per_channel=cfg.per_channel,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                calibrate_method=method,
                extra_options={"WeightSymmetric": True, **extra},
            )
            atomic_write_bytes(out_path, tmp.read_bytes())
    finally:
        quiet.setLevel(level)
    graph = onnx.load(str(out_path)).graph
    produced_by_dq = {o for n in graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    counts: dict[str, int] = {}
    for n in graph.node:
        if n.op_type not in ("QuantizeLinear", "DequantizeLinear", "Identity") and any(
            i in produced_by_dq for i in n.input
        ):
            counts[n.op_type] = counts.get(n.op_type, 0) + 1
    if not counts:
        raise CalibrationError(f"ONNX Runtime quantized no node of {onnx_path}")
    compute = ("Conv", "Gemm", "MatMul")
    float_nodes = sum(1 for n in graph.node if n.op_type in compute and not any(i in produced_by_dq for i in n.input))
    return QuantizeResult(
        out_path,
        out_path.stat().st_size / 1e6,
        cfg.method,
        cfg.per_channel,
        calib.sha256,
        len(calib.indices),
        quantized_nodes=counts,
        float_nodes=float_nodes,
    )


def ort_outputs(onnx_path: Path, batches: Iterable[np.ndarray], threads: int = 0) -> np.ndarray:
    """First output of `onnx_path` on ONNX Runtime CPU for each batch, concatenated: the fp32 reference."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    sess = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    return np.concatenate([sess.run(None, {name: np.ascontiguousarray(x, np.float32)})[0] for x in batches])


@dataclass
class Agreement:
    """int8 vs fp32 logits on the same inputs."""

    top1_agreement: float  # % of inputs whose int8 arg-max equals the fp32 arg-max
    max_abs_error: float  # max |int8 − fp32| over all logits
    reference_max_abs: float  # max |fp32 logit|: the scale the error is read against
    n: int
    min_agreement: float = AGREEMENT_MIN_PERCENT

    @property
    def within_tolerance(self) -> bool:
        return self.top1_agreement >= self.min_agreement

    @property
    def note(self) -> str:
        rel = self.max_abs_error / self.reference_max_abs if self.reference_max_abs else float("nan")
        verdict = "within" if self.within_tolerance else "OUTSIDE"
        return (
            f"int8 top-1 agrees with fp32 on {self.top1_agreement:.2f}% of {self.n} eval inputs "
            f"({verdict} tolerance ≥ {self.min_agreement:g}%); max logit error {self.max_abs_error:.3g} "
            f"({rel:.1%} of max |fp32 logit|)"
        )


def compare_outputs(reference: np.ndarray, quantized: np.ndarray, min_agreement: float = AGREEMENT_MIN_PERCENT):
    """Agreement of `quantized` logits with `reference` logits (same inputs, same order)."""
    ref = np.asarray(reference, dtype=np.float64).reshape(len(reference), -1)
    out = np.asarray(quantized, dtype=np.float64).reshape(len(quantized), -1)
    if ref.shape != out.shape or not len(ref):
        raise ValueError(f"cannot compare outputs of shapes {ref.shape} and {out.shape}")
    agree = 100.0 * float((ref.argmax(1) == out.argmax(1)).mean())
    return Agreement(agree, float(np.abs(out - ref).max()), float(np.abs(ref).max()), len(ref), min_agreement)


def activation_ranges(
    onnx_path: Path, calib: CalibrationSet, method: str = "entropy"
) -> dict[str, tuple[float, float]]:
    """Per-tensor (min, max) of every activation of `onnx_path` on `calib`, by ONNX Runtime's calibrator.

    What a TensorRT calibration cache for trtexec is written from (devices/int8_calibration.py), so a board with
    only trtexec gets ranges from the same calibration set and method as ONNX Runtime's int8 model.
    """
    from onnxruntime.quantization import CalibrationMethod
    from onnxruntime.quantization.calibrate import create_calibrator

    QuantizeConfig(method=method)  # validates the name
    name, dims = _input(Path(onnx_path))
    if list(calib.x.shape[1:]) != dims[1:]:
        raise CalibrationError(f"calibration images are {list(calib.x.shape[1:])}, the ONNX input {name} is {dims[1:]}")
    cm = {
        "entropy": CalibrationMethod.Entropy,
        "minmax": CalibrationMethod.MinMax,
        "percentile": CalibrationMethod.Percentile,
    }[method]
    quiet = logging.getLogger()
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()), tempfile.TemporaryDirectory(prefix="tb-ranges-") as work:
            pre = Path(work) / "pre.onnx"
            from onnxruntime.quantization import quant_pre_process

            quant_pre_process(str(onnx_path), str(pre), skip_symbolic_shape=True)
            extra = {"percentile": PERCENTILE} if method == "percentile" else {}
            calibrator = create_calibrator(
                pre, augmented_model_path=str(Path(work) / "augmented.onnx"), calibrate_method=cm, extra_options=extra
            )
            calibrator.collect_data(_Reader(name, calib.x, 32))
            data = calibrator.compute_data()
    finally:
        quiet.setLevel(level)
    ranges = {k: (float(np.asarray(v.range_value[0])), float(np.asarray(v.range_value[1]))) for k, v in data.items()}
    ranges.setdefault(name, (float(calib.x.min()), float(calib.x.max())))  # the network input needs a scale too
    return ranges
