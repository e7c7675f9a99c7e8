"""Per-layer time of one prepared model, measured in a profiling window of its own, never inside the timed rounds.

Profiling changes what is timed (ONNX Runtime records an event per node, TensorRT synchronizes after every layer),
so every profile is taken beside the same calls without the profiler, in alternating windows, and `LayerProfile`
keeps both per-call medians: `overhead` is what the profiler cost. Each runtime reports layers its own way; the
readers below turn each format into `LayerTime`s (ms per inference call: the median over the profiled calls where the
runtime gives every call's time, the mean where it gives only that):

- ONNX Runtime (`SessionOptions.enable_profiling`, read by `read_ort_profile`): a Chrome trace, a JSON list of
  events. One `{"cat": "Node", "name": "<node>_kernel_time", "dur": µs, "args": {"op_name", "provider", ...}}` per
  node per run and one `{"cat": "Session", "name": "model_run", "ts": µs, "dur": µs}` per run (ORT 1.x; recorded
  from ONNX Runtime 1.32 in tests/fixtures/layer_profile/). Its graph optimizer renames what it fuses: a conv fused
  with its activation into an NCHWc kernel is named after the fused output tensor plus `_nchwc`
  (`/features/features.2/Relu_output_0_nchwc`), so names are resolved through the graph (`ort_layer_nodes`).
- TensorRT Python API: an `IProfiler` subclass (`tensorrt_profiler`) whose `report_layer_time(layer_name, ms)`
  TensorRT calls once per layer per execution: for `execute_v2` only up to TensorRT 8.4 (enqueue did not profile),
  for `execute_async_v3` too from 8.5 (enqueue then reports synchronously).
- trtexec `--exportProfile=FILE` (`read_trtexec_profile`; samples/common/sampleReporting.cpp,
  `Profiler::exportJSONProfile`): `[{"count": N}, {"name", "timeMs" (total over N), "averageMs", "percentage"}, ...]`
  in TensorRT 8.0-8.5, with `"medianMs"` added from 8.6 (10.x and 11.x unchanged). Names are written unescaped.
- Layer information, `trtexec --exportLayerInfo` (TensorRT >= 8.2) or the engine inspector's JSON
  (`read_layer_info`): `{"Layers": [...], "Bindings": [...]}`, layers as plain names (default profiling verbosity) or,
  when the engine was built with detailed verbosity, objects with `Name`, `LayerType` and, from TensorRT 8.6,
  `Metadata`: the ONNX nodes a layer came from, `[ONNX Layer: <node>]` entries separated by \\x1e (8.6) or \\x1f.

A TensorRT layer name is its ONNX nodes joined by " + " when fused (`/conv1/Conv + /relu/Relu`); layers TensorRT
inserts (`Reformatting CopyNode for Input Tensor 0 to <layer>`, `(Unnamed Layer* 12) [Shuffle]`) and ONNX Runtime's
layout reorders (`ReorderInput`, `ReorderOutput`) are not layers of the model: they are marked `inserted`.
"""

from __future__ import annotations

import json
import logging
import math
import re
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger("ticketbench.devices.layer_profile")

# ONNX ops that do a layer's multiply-accumulates; a runtime layer covering one of them is that layer's time
COMPUTE_OPS = frozenset(
    {"Conv", "ConvTranspose", "Gemm", "MatMul", "QLinearConv", "QLinearMatMul", "ConvInteger", "MatMulInteger"}
)
# Runtime op names of fused compute kernels (ONNX Runtime's contrib ops)
RUNTIME_COMPUTE_OPS = COMPUTE_OPS | {"FusedConv", "FusedGemm", "FusedMatMul", "NhwcConv", "QLinearConv"}
# What ONNX Runtime and TensorRT fuse into a compute kernel after it: walked back through to find the kernel's conv
FUSABLE_OPS = frozenset(
    {"Relu", "Clip", "LeakyRelu", "Sigmoid", "HardSigmoid", "HardSwish", "Tanh", "Add", "Sum", "Mul",
     "BatchNormalization", "Identity", "QuantizeLinear", "DequantizeLinear"}
)  # fmt: skip
ORT_INSERTED_OPS = frozenset({"ReorderInput", "ReorderOutput", "MemcpyToHost", "MemcpyFromHost"})
TRT_INSERTED_TYPES = frozenset({"Reformat", "NoOp"})
METADATA_RE = re.compile(r"\[ONNX Layer: ([^\]\x1e\x1f]+)\]")
_TOKEN_SPLIT = re.compile(r"\.\.\.|[\s+(),\[\]{}]+")


class LayerProfileUnavailable(RuntimeError):
    """This backend (or this version of it) cannot report per-layer times; the message says why."""


@dataclass
class LayerTime:
    """One layer as the runtime ran it (a fused kernel is one layer)."""

    name: str  # the runtime's name for it
    op: str  # the runtime's op or layer type ("Conv", "CaskConvolution", "Reformat"); "" when not reported
    ms: float  # time per inference call (ms): the median over the profiled calls (trtexec before 8.6: the mean)
    onnx_nodes: list[str] = field(default_factory=list)  # the ONNX nodes it covers, compute node first when known
    onnx_ops: list[str] = field(default_factory=list)  # their op types, in the same order
    inserted: bool = False  # the runtime added it (reorder, reformat, copy): no layer of the model
    module: str = ""  # the PyTorch module it is, when the runtime runs the module itself (torch backends)


@dataclass
class LayerProfile:
    """Per-layer times of `iterations` calls at one batch size, and the per-call time with and without the profiler
    in the same window (alternating): what profiling cost."""

    backend: str
    batch_size: int
    iterations: int  # profiled calls the layer times are taken over
    layers: list[LayerTime]
    profiled_ms: float | None  # median end-to-end time per call with the profiler attached (ms); None: not timed
    plain_ms: float | None  # median per call of the same model without it, in the same window (ms)
    source: str  # what produced the times (runtime, version, mechanism)
    note: str = ""

    @property
    def total_ms(self) -> float:
        """Σ per-layer mean times (ms per call): what the runtime accounts for inside its layers."""
        return float(sum(t.ms for t in self.layers))

    @property
    def overhead(self) -> float | None:
        """profiled / plain − 1: by how much the profiler slowed each call (0.05 = 5 %); None when not timed."""
        if self.profiled_ms is None or self.plain_ms is None or not self.plain_ms > 0:
            return None
        return self.profiled_ms / self.plain_ms - 1.0


# -- the ONNX graph runtime names are resolved against ------------------------------------------------------------
@dataclass
class OnnxGraph:
    """Node names, op types and tensor producers of an ONNX file (initializers left out of the inputs)."""

    ops: dict[str, str]  # node name → op type, in graph order
    inputs: dict[str, list[str]]  # node name → the tensors it reads that another node produces
    producer: dict[str, str]  # tensor → the node that produces it

    @classmethod
    def load(cls, path: Path) -> OnnxGraph:
        import onnx

        graph = onnx.load(str(path), load_external_data=False).graph
        return cls.from_nodes((n.name or n.output[0], n.op_type, list(n.input), list(n.output)) for n in graph.node)

    @classmethod
    def from_nodes(cls, nodes: Any) -> OnnxGraph:
        """From (name, op type, inputs, outputs) tuples."""
        ops: dict[str, str] = {}
        producer: dict[str, str] = {}
        reads: dict[str, list[str]] = {}
        for name, op, ins, outs in nodes:
            ops[name] = op
            reads[name] = list(ins)
            for t in outs:
                producer[t] = name
        return cls(ops, {n: [t for t in ins if t in producer] for n, ins in reads.items()}, producer)


_ORT_SUFFIX = re.compile(r"_(?:nchwc|quant|token_\d+)$")


def _ort_start(name: str, graph: OnnxGraph) -> str | None:
    """The ONNX node an ONNX Runtime node name stands for: the node itself, or the producer of the tensor it is
    named after once ONNX Runtime's suffixes (`_nchwc`, `_quant`, `_token_N`) are stripped."""
    candidate = name
    while True:
        if candidate in graph.ops:
            return candidate
        if candidate in graph.producer:
            return graph.producer[candidate]
        stripped = _ORT_SUFFIX.sub("", candidate)
        if stripped == candidate:
            return None
        candidate = stripped


def ort_layer_nodes(name: str, op: str, graph: OnnxGraph) -> list[str]:
    """The ONNX nodes an ONNX Runtime node covers, compute node first; [] for nodes the runtime inserted.

    A fused compute kernel named after its activation's output (`/f/f.2/Relu_output_0_nchwc`, op Conv) is walked
    back through the fusable ops it absorbed (Relu, Add, Clip, ...) to its conv; the walk stops where it would be
    ambiguous (two convs feeding an Add), leaving the kernel mapped to what it is named after."""
    start = _ort_start(name, graph)
    if start is None:
        return []
    chain = [start]
    if op in RUNTIME_COMPUTE_OPS and graph.ops[start] not in COMPUTE_OPS:
        cur = start
        for _ in range(8):  # a fused chain is a few ops long
            if graph.ops[cur] not in FUSABLE_OPS:
                break
            preds = [graph.producer[t] for t in graph.inputs[cur]]
            compute = [p for p in preds if graph.ops[p] in COMPUTE_OPS]
            nxt = compute[0] if len(compute) == 1 else preds[0] if len(preds) == 1 else None
            if nxt is None:
                break
            chain.append(nxt)
            cur = nxt
            if graph.ops[cur] in COMPUTE_OPS:
                break
        if graph.ops[chain[-1]] in COMPUTE_OPS:
            chain = [chain[-1], *chain[:-1]]
    return chain


def metadata_nodes(metadata: str) -> list[str]:
    """ONNX node names from a TensorRT >= 8.6 layer's Metadata (`[ONNX Layer: a]\\x1f[ONNX Layer: b]`)."""
    return METADATA_RE.findall(metadata or "")


def trt_layer_nodes(name: str, graph: OnnxGraph, metadata: Sequence[str] = ()) -> tuple[list[str], bool]:
    """(ONNX nodes, inserted) of a TensorRT layer: from its Metadata when the engine has it (detailed verbosity,
    TensorRT >= 8.6), else from its name (fused nodes joined by " + ", `PWN(...)` pointwise fusions, a Myelin
    `{ForeignNode[first...last]}` naming only its ends). A reformat TensorRT inserted covers the nodes of the layer
    it feeds and is `inserted`; so is a layer naming no ONNX node (`(Unnamed Layer* 12) [Shuffle]`)."""
    if name.startswith("Reformatting CopyNode"):
        target = name.split(" to ", 1)[1] if " to " in name else ""
        return [t for t in _TOKEN_SPLIT.split(target) if t in graph.ops], True
    nodes = [n for n in metadata if n in graph.ops] or [t for t in _TOKEN_SPLIT.split(name) if t in graph.ops]
    nodes = list(dict.fromkeys(nodes))
    compute = [n for n in nodes if graph.ops[n] in COMPUTE_OPS]
    ordered = compute[:1] + [n for n in nodes if n not in compute[:1]]
    return ordered, not ordered


def resolve_trt_layers(layers: list[LayerTime], graph: OnnxGraph, info: dict[str, LayerInfo] | None = None) -> None:
    """Fill in each TensorRT layer's ONNX nodes (and its type from the layer information, when given)."""
    for lt in layers:
        li = (info or {}).get(lt.name)
        lt.op = lt.op or (li.layer_type if li else "")
        lt.onnx_nodes, inserted = trt_layer_nodes(lt.name, graph, li.onnx_nodes if li else ())
        lt.onnx_ops = [graph.ops[n] for n in lt.onnx_nodes]
        lt.inserted = inserted or lt.op in TRT_INSERTED_TYPES


def resolve_ort_layers(layers: list[LayerTime], graph: OnnxGraph) -> None:
    for lt in layers:
        lt.onnx_nodes = [] if lt.op in ORT_INSERTED_OPS else ort_layer_nodes(lt.name, lt.op, graph)
        lt.onnx_ops = [graph.ops[n] for n in lt.onnx_nodes]
        lt.inserted = not lt.onnx_nodes


# -- readers --------------------------------------------------------------------------------------------------------
def _json(text: str, what: str) -> Any:
    """JSON as trtexec and ONNX Runtime write it; trtexec prints inf/nan unquoted (read as Infinity/NaN)."""
    fixed = re.sub(
        r"(?<=[\s,:\[])(-?)(nan|inf)\b", lambda m: "NaN" if m.group(2) == "nan" else m.group(1) + "Infinity", text
    )
    try:
        return json.loads(fixed, strict=False)  # a raw \x1e/\x1f in a Metadata string is read, not refused
    except ValueError as exc:
        raise ValueError(f"{what}: not valid JSON ({exc})") from None


def read_ort_profile(text: str, skip_runs: int = 0) -> tuple[list[LayerTime], int]:
    """(layers, runs) from an ONNX Runtime profile: per node, the median over runs of its kernel time in a run (ms),
    over the runs after the first `skip_runs` (the profiling session's warm-up); nodes in execution order.

    The median, not the mean: on a shared machine one run in ten can take 10× the others (measured on this 2-core
    VM: 1 ms runs beside 13-21 ms ones), and a mean would hand that to every node. ValueError when malformed."""
    events = _json(text, "ONNX Runtime profile")
    if not isinstance(events, list):
        raise ValueError("ONNX Runtime profile: expected a JSON list of trace events")
    runs = sorted(
        (float(e["ts"]), float(e["ts"]) + float(e["dur"]))
        for e in events
        if isinstance(e, dict) and e.get("cat") == "Session" and e.get("name") == "model_run"
    )
    kept = runs[skip_runs:]
    if not kept:
        raise ValueError(f"ONNX Runtime profile: {len(runs)} model_run event(s), none after the {skip_runs} skipped")
    starts = np.array([a for a, _ in kept])
    per_run: dict[str, np.ndarray] = {}
    ops: dict[str, str] = {}
    for e in events:
        if not (isinstance(e, dict) and e.get("cat") == "Node" and str(e.get("name", "")).endswith("_kernel_time")):
            continue
        ts = float(e["ts"])
        i = int(np.searchsorted(starts, ts, side="right")) - 1
        if i < 0 or ts > kept[i][1]:
            continue  # a warm-up run's node, or one outside every run
        name = str(e["name"])[: -len("_kernel_time")]
        if name not in per_run:
            per_run[name] = np.zeros(len(kept))
            ops[name] = str((e.get("args") or {}).get("op_name", ""))
        per_run[name][i] += float(e["dur"])  # µs
    return [LayerTime(name, ops[name], float(np.median(us)) / 1e3) for name, us in per_run.items()], len(kept)


def read_trtexec_profile(text: str) -> tuple[list[LayerTime], int]:
    """(layers, count) from `trtexec --exportProfile`: per layer, its time per inference (ms): medianMs where the
    version writes it (8.6 and later), else averageMs (8.0-8.5: timeMs, the total over `count` runs, / count).
    Layers with no time (TensorRT's NoOp reformats) are kept at 0."""
    doc = _json(text, "trtexec profile")
    if not isinstance(doc, list) or not doc or not isinstance(doc[0], dict) or "count" not in doc[0]:
        raise ValueError('trtexec profile: expected a JSON list starting with {"count": N}')
    count = int(doc[0]["count"])
    if count < 1:
        raise ValueError(f"trtexec profile: count {count}: no profiled iteration")
    out = []
    for rec in doc[1:]:
        if not isinstance(rec, dict) or "name" not in rec:
            raise ValueError(f"trtexec profile: a layer record without a name: {str(rec)[:80]}")
        value = rec.get("medianMs", rec.get("averageMs"))
        ms = float(value) if value is not None else float(rec["timeMs"]) / count
        out.append(LayerTime(str(rec["name"]), "", ms if math.isfinite(ms) else 0.0))
    return out, count


@dataclass
class LayerInfo:
    """What TensorRT's layer information says of one layer."""

    name: str
    layer_type: str = ""  # detailed verbosity only ("CaskConvolution", "Reformat", ...)
    onnx_nodes: list[str] = field(default_factory=list)  # from Metadata (TensorRT >= 8.6, detailed verbosity)


def read_layer_info(text: str) -> dict[str, LayerInfo]:
    """Layer name → LayerInfo from `trtexec --exportLayerInfo` or the engine inspector's JSON: names only at the
    default verbosity, Name / LayerType / Metadata objects at detailed verbosity. ValueError when malformed."""
    doc = _json(text, "TensorRT layer information")
    layers = doc.get("Layers") if isinstance(doc, dict) else None
    if not isinstance(layers, list):
        raise ValueError('TensorRT layer information: expected {"Layers": [...]}')
    out = {}
    for layer in layers:
        if isinstance(layer, str):
            out[layer] = LayerInfo(layer)
        elif isinstance(layer, dict) and "Name" in layer:
            name = str(layer["Name"])
            out[name] = LayerInfo(name, str(layer.get("LayerType", "")), metadata_nodes(str(layer.get("Metadata", ""))))
    return out


# -- TensorRT's IProfiler -------------------------------------------------------------------------------------------
class LayerTimeSink:
    """What TensorRT reports through IProfiler.report_layer_time: every time (ms) per layer, in the order TensorRT
    first reported them (its execution order)."""

    def __init__(self) -> None:
        self.ms: dict[str, list[float]] = {}

    def report(self, layer_name: str, ms: float) -> None:
        self.ms.setdefault(str(layer_name), []).append(float(ms))

    def layers(self, calls: int) -> list[LayerTime]:
        """Median per call over `calls` executions (a layer TensorRT did not report in some call counts 0 there)."""
        return [LayerTime(name, "", float(np.median(v + [0.0] * (calls - len(v))))) for name, v in self.ms.items()]


def tensorrt_profiler(trt: Any, sink: LayerTimeSink) -> Any:
    """A `trt.IProfiler` that hands every report_layer_time(layer_name, ms) to `sink`."""

    class Profiler(trt.IProfiler):
        def __init__(self) -> None:
            trt.IProfiler.__init__(self)  # TensorRT's docs: the base class must be initialized explicitly

        def report_layer_time(self, layer_name: str, ms: float) -> None:
            sink.report(layer_name, ms)

    return Profiler()


# -- timing beside the profile --------------------------------------------------------------------------------------
def paired_times(
    plain: Callable[[], object],
    profiled: Callable[[], object],
    calls: int,
    windows: int = 3,
    profiled_window: Callable[[], AbstractContextManager[Any]] = nullcontext,
) -> tuple[np.ndarray, np.ndarray]:
    """Per-call times (ms) of the same model without and with the profiler, `calls` each, in `windows` alternating
    windows (a load change during the profile hits both alike). Each callable must return only once the device has
    finished (sync included); `profiled_window` is entered around each profiled window (a profiler that is switched
    on for a whole window, like torch.profiler, stays off while the plain calls run)."""
    per = max(1, math.ceil(calls / windows))
    a: list[float] = []
    b: list[float] = []
    for _ in range(windows):
        for fn, out, around in ((plain, a, nullcontext), (profiled, b, profiled_window)):
            with around():
                for _ in range(per):
                    t0 = time.perf_counter()
                    fn()
                    out.append((time.perf_counter() - t0) * 1e3)
    return np.array(a), np.array(b)


def ort_profile(
    onnx_path: Path,
    options: Any,
    providers: list[Any],
    plain: Callable[[np.ndarray], object],
    x: np.ndarray,
    calls: int,
    backend: str,
    warmup: int = 3,
) -> LayerProfile:
    """Per-node times of an ONNX file on ONNX Runtime: a second session with `options` (a SessionOptions set up like
    the timed one) and profiling on, timed in alternating windows beside `plain` (the timed session's run), so
    the profiler's cost is measured, not assumed. Its first `warmup` runs are left out of the layer times."""
    import tempfile

    import onnxruntime as ort

    graph = OnnxGraph.load(onnx_path)
    with tempfile.TemporaryDirectory(prefix="tb-ort-profile-") as tmp:
        options.enable_profiling = True
        options.profile_file_prefix = str(Path(tmp) / "profile")
        sess = ort.InferenceSession(str(onnx_path), options, providers=providers)
        name = sess.get_inputs()[0].name
        feed = {name: x}
        for _ in range(warmup):
            sess.run(None, feed)
        a, b = paired_times(lambda: plain(x), lambda: sess.run(None, feed), calls)
        path = Path(sess.end_profiling())
        text = path.read_text()
    layers, runs = read_ort_profile(text, skip_runs=warmup)
    resolve_ort_layers(layers, graph)
    return LayerProfile(
        backend,
        int(x.shape[0]),
        runs,
        layers,
        float(np.median(b)),
        float(np.median(a)),
        f"onnxruntime {ort.__version__} session profiling ({', '.join(str(p) for p in providers)})",
    )


def torch_profile(
    module: Any, device: Any, dtype: Any, x: np.ndarray, calls: int, plain: Callable[[], object], backend: str
) -> LayerProfile:
    """Per-module times of a PyTorch model through torch.profiler: every leaf module's forward is wrapped in a
    `record_function` range (forward hooks, only while a profiled window runs), and a range's time is the device
    time of the kernels launched inside it on CUDA (`device_time_total`), its CPU time on the CPU. The profiler
    is switched on for the profiled windows only, so the plain calls beside them run without it."""
    import torch
    from torch.profiler import ProfilerActivity, profile, record_function

    cuda = getattr(device, "type", str(device)) == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    leaves = [(n, m) for n, m in module.named_modules() if n and not any(True for _ in m.children())]
    ranges: dict[str, list[Any]] = {}
    recording = [False]
    events: list[Any] = []

    def pre(name: str) -> Callable[..., None]:
        def hook(_m: Any, _inp: Any) -> None:
            if recording[0]:
                r = record_function(f"tb::{name}")
                r.__enter__()
                ranges.setdefault(name, []).append(r)

        return hook

    def post(name: str) -> Callable[..., None]:
        def hook(_m: Any, _inp: Any, _out: Any) -> None:
            if recording[0] and ranges.get(name):
                ranges[name].pop().__exit__(None, None, None)

        return hook

    @contextmanager
    def window() -> Iterator[None]:
        with profile(activities=activities) as prof:
            recording[0] = True
            try:
                yield
            finally:
                recording[0] = False
        events.extend(prof.events())

    xt = torch.from_numpy(np.ascontiguousarray(x)).to(device, dtype)

    def profiled() -> None:
        with torch.inference_mode():
            module(xt)
        if cuda:
            torch.cuda.synchronize(device)

    for _ in range(2):  # warm-up, unprofiled: first calls pay for kernel selection and allocations
        plain()
        profiled()
    handles = [m.register_forward_pre_hook(pre(n)) for n, m in leaves]
    handles += [m.register_forward_hook(post(n)) for n, m in leaves]
    try:
        a, b = paired_times(plain, profiled, calls, profiled_window=window)
    finally:
        for h in handles:
            h.remove()
    per: dict[str, list[float]] = {}
    for ev in events:
        if str(ev.name).startswith("tb::"):
            us = ev.device_time_total if cuda else ev.cpu_time_total
            per.setdefault(str(ev.name)[4:], []).append(float(us) / 1e3)
    kinds = dict((n, type(m).__name__) for n, m in leaves)
    n = len(b)
    layers = [
        LayerTime(name, kinds.get(name, ""), float(np.median(v + [0.0] * (n - len(v)))), module=name)
        for name, v in per.items()
    ]
    what = "device time of the kernels launched in each module" if cuda else "CPU time of each module's forward"
    return LayerProfile(
        backend,
        int(x.shape[0]),
        n,
        layers,
        float(np.median(b)),
        float(np.median(a)),
        f"torch {torch.__version__} torch.profiler, record_function per leaf module ({what})",
    )
