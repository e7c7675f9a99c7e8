"""trtexec: command lines and parsers for its log, its timing trace and its exported outputs.

Formats handled (checked against recorded logs in tests/fixtures/trtexec/):
- TensorRT 8.2 (JetPack 4.6, TX2/Nano/Xavier): summary lines `Latency: min = .. ms, max = .., mean = ..,
  median = .., percentile(99%) = .. ms`, plus `End-to-End Host Latency`; the --exportTimes trace
  includes the warm-up queries.
- TensorRT 10.x: `percentile(90%)`, `percentile(95%)`, `percentile(99%)`, no End-to-End line; the
  trace excludes warm-up queries.
In both, trace times are ms since the inference phase started, which trtexec announces with its
`Starting inference` line; devices/jetson.py timestamps that line on the board to place the timing
window on the board's monotonic clock.

Options differ by version, and trtexec stops on any option it does not know, so argv is built for the
board's version (the `[TensorRT vNNNN]` banner):
- TensorRT 8.0 (JetPack 4.6) has neither --profilingVerbosity nor --exportLayerInfo (both from 8.2), so
  an int8 build there cannot report its layer precisions (`LAYER_INFO_FROM`).
- TensorRT 11 changed the inference defaults: host↔device transfers are left out of the timing and CUDA
  graphs are on. `--includeDataTransfers --noCudaGraph` (options that 8.x/10.x reject) restore what
  earlier versions measure, so `Latency` stays H2D + compute + D2H and the energy window covers the copies.
  Spin wait is also on by default in 11 (off before); it changes CPU power, not what is timed, and is left as
  trtexec sets it (docs/devices.md, support matrix).
- Per-layer profiles (`profile_argv`): `--exportProfile` in every version; the profiler is attached in a second run
  after the timed one with `--separateProfileRun` (8.0-10.x; 11 always runs it apart and deprecates the flag), and
  `--exportLayerInfo` names the layers from 8.2 on (devices/layer_profile.py reads both files).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from typing import Any

import numpy as np

VERSION_RE = re.compile(r"\[TensorRT v(\d+)\]")
LAYER_INFO_FROM = (8, 2)  # --profilingVerbosity and --exportLayerInfo
TRANSFERS_OFF_FROM = 11  # data transfers off and CUDA graphs on by default (trtexec 11 sampleOptions)
STAT_LINE_RE = re.compile(
    r"\] (Latency|End-to-End Host Latency|Enqueue Time|H2D Latency|GPU Compute Time|D2H Latency): (min = .*)$"
)
STAT_RE = re.compile(r"(min|max|mean|median|percentile\((\d+(?:\.\d+)?)%\)) = ([-+\d.eE]+|inf|nan) ms")
KEYS = {
    "Latency": "latency_ms",
    "End-to-End Host Latency": "end_to_end_ms",
    "Enqueue Time": "enqueue_ms",
    "H2D Latency": "h2d_ms",
    "GPU Compute Time": "gpu_compute_ms",
    "D2H Latency": "d2h_ms",
}


def parse_version(text: str) -> str | None:
    """'8.2.1' from '[TensorRT v8201]', '10.2.0' from '[TensorRT v100200]'."""
    m = VERSION_RE.search(text or "")
    if not m:
        return None
    d = m.group(1)
    if len(d) == 4:  # MNPP
        return f"{d[0]}.{d[1]}.{int(d[2:])}"
    if len(d) == 6:  # MMNNPP
        return f"{int(d[:2])}.{int(d[2:4])}.{int(d[4:])}"
    return d


def version_tuple(version: str | None) -> tuple[int, int]:
    """(8, 2) from '8.2.1'; (0, 0) when unknown."""
    parts = [int(p) if p.isdigit() else 0 for p in str(version or "").split(".")[:2]]
    return (parts + [0, 0])[0], (parts + [0, 0])[1]


def has_layer_info(version: str | None) -> bool:
    """Whether this trtexec can export the built layers and their precisions (TensorRT >= 8.2)."""
    return version_tuple(version) >= LAYER_INFO_FROM


def comparable_timing_options(version: str | None) -> list[str]:
    """Options that make this trtexec time what 8.x/10.x time by default (H2D + compute + D2H, no CUDA graph)."""
    return ["--includeDataTransfers", "--noCudaGraph"] if version_tuple(version)[0] >= TRANSFERS_OFF_FROM else []


def parse_summary(log: str) -> dict[str, Any]:
    """trtexec's own figures: version, throughput (qps), per-metric stats (ms), walltime and warm-up."""
    out: dict[str, Any] = {"version": parse_version(log)}
    for line in log.splitlines():
        m = STAT_LINE_RE.search(line)
        if m:
            stats = {}
            for name, pct, value in STAT_RE.findall(m.group(2)):
                key = f"p{pct.rstrip('0').rstrip('.') if '.' in pct else pct}" if pct else name
                stats[key] = float(value)  # float() reads trtexec's inf/nan too
            out[KEYS[m.group(1)]] = stats
            continue
        for pattern, key, conv in (
            (r"\] Throughput: ([\d.eE+-]+) qps", "throughput_qps", float),
            (r"\] Total Host Walltime: ([\d.eE+-]+) s", "host_walltime_s", float),
            (r"\] Total GPU Compute Time: ([\d.eE+-]+) s", "gpu_compute_total_s", float),
        ):
            mm = re.search(pattern, line)
            if mm:
                out[key] = conv(mm.group(1))
        mm = re.search(r"Warmup completed (\d+) queries over ([\d.]+) ms", line)
        if mm:
            out["warmup_queries"], out["warmup_ms"] = int(mm.group(1)), float(mm.group(2))
        mm = re.search(r"Timing trace has (\d+) queries over ([\d.eE+-]+) s", line)
        if mm:
            out["timed_queries"], out["timed_s"] = int(mm.group(1)), float(mm.group(2))
    return out


def parse_times(text: str, warmup_ms: float = 0.0) -> list[dict[str, float]]:
    """The --exportTimes trace, without warm-up queries (TensorRT 8.x writes them; 10.x does not).

    A query belongs to the warm-up when its compute started before `warmup_ms`, trtexec's own rule.
    """
    trace = json.loads(text)
    return [q for q in trace if q.get("startComputeMs", math.inf) >= warmup_ms]


def trace_latencies_ms(trace: Sequence[dict[str, float]]) -> np.ndarray:
    """Per-query latency (ms) = H2D + GPU compute + D2H, what trtexec reports as 'Latency'."""
    return np.array([q["latencyMs"] for q in trace], dtype=float)


def trace_window_ms(trace: Sequence[dict[str, float]]) -> tuple[float, float]:
    """(first H2D start, last D2H end) in ms since 'Starting inference': the timed window (its walltime)."""
    start = min(_first(q, "startH2dMs", "startInMs", "startComputeMs") for q in trace)
    end = max(_first(q, "endD2hMs", "endOutMs", "endComputeMs") for q in trace)
    return start, end


def _first(query: dict[str, float], *keys: str) -> float:
    """The first of `keys` the query has (trace fields were renamed between versions)."""
    for key in keys:
        if key in query:
            return float(query[key])
    raise ValueError(f"trtexec timing trace entry has none of {keys}")


def parse_outputs(text: str) -> dict[str, np.ndarray]:
    """--exportOutput JSON → {tensor name: array shaped by its 'dimensions' ('256x10')}."""
    # trtexec prints nan/inf unquoted; json reads NaN / Infinity / -Infinity
    fixed = re.sub(
        r"(?<=[\s,\[])(-?)(nan|inf)\b",
        lambda m: "NaN" if m.group(2) == "nan" else m.group(1) + "Infinity",
        text,
    )
    out = {}
    for entry in json.loads(fixed):
        dims = [int(d) for d in str(entry["dimensions"]).split("x") if d]
        values = np.array([float(v) for v in entry["values"]], dtype=np.float32)
        out[entry["name"]] = values.reshape(dims) if dims and int(np.prod(dims)) == values.size else values
    return out


def shape_arg(name: str, shape: Sequence[int]) -> str:
    """'input:32x1x8x8' as trtexec's --shapes/--minShapes/... expect."""
    return f"{name}:{'x'.join(str(int(d)) for d in shape)}"


def build_argv(
    exe: str,
    onnx: str,
    engine: str,
    precision: str,
    input_name: str,
    min_shape: Sequence[int] | None,
    opt_shape: Sequence[int] | None,
    max_shape: Sequence[int] | None,
    strongly_typed: bool = False,
    calib: str | None = None,
    layer_info: str | None = None,
    trt_version: str | None = None,
) -> list[str]:
    """Build and serialize an engine from ONNX; the inference trtexec would run afterwards is cut to one query.

    `strongly_typed` (TensorRT >= 11, where trtexec has no --fp16): fp16 comes from the ONNX's own types,
    so the caller passes an fp16 ONNX and no precision flag is added.
    int8 needs `calib`, a calibration cache on the board (devices/int8_calibration.py), and allows fp16 for
    layers without int8 kernels; TensorRT >= 11 has no --int8 (no implicit quantization) and is refused.
    `layer_info` exports the built layers with their precisions (detailed profiling verbosity); refused for a
    `trt_version` before 8.2, whose trtexec has no such options.
    """
    argv = [exe, f"--onnx={onnx}", f"--saveEngine={engine}"]
    if precision == "fp16":
        if not strongly_typed:
            argv.append("--fp16")
    elif precision == "int8" and calib and not strongly_typed:
        argv += ["--int8", "--fp16", f"--calib={calib}"]
    elif precision == "int8" and calib:
        raise ValueError("trtexec of TensorRT >= 11 has no --int8 (strongly typed networks): no calibrated int8")
    elif precision != "fp32":
        raise ValueError(f"trtexec path supports fp32, fp16, and int8 with --calib (asked for {precision})")
    if layer_info:
        if not has_layer_info(trt_version):
            raise ValueError(f"trtexec of TensorRT {trt_version} has no --exportLayerInfo (from 8.2)")
        argv += ["--profilingVerbosity=detailed", f"--exportLayerInfo={layer_info}"]
    if min_shape is not None:
        assert opt_shape is not None and max_shape is not None, "a dynamic profile needs all three shapes"
        argv += [
            f"--minShapes={shape_arg(input_name, min_shape)}",
            f"--optShapes={shape_arg(input_name, opt_shape)}",
            f"--maxShapes={shape_arg(input_name, max_shape)}",
        ]
    return argv + ["--iterations=1", "--warmUp=0", "--duration=0"]


def _engine_argv(
    exe: str, engine: str, input_name: str, shape: Sequence[int] | None, trt_version: str | None
) -> list[str]:
    """The part every engine run shares: load the engine, time what every version times (H2D + compute + D2H,
    no CUDA graph), and fix the input shape when it is dynamic."""
    argv = [exe, f"--loadEngine={engine}", *comparable_timing_options(trt_version)]
    if shape is not None:
        argv.append(f"--shapes={shape_arg(input_name, shape)}")
    return argv


def timing_argv(
    exe: str,
    engine: str,
    input_name: str,
    shape: Sequence[int] | None,
    warmup_ms: float,
    min_iterations: int,
    min_seconds: float,
    times_file: str,
    trt_version: str | None = None,
) -> list[str]:
    """Time an engine with trtexec's rule: run until BOTH --iterations and --duration are reached.

    --duration is a whole number of seconds in TensorRT 8.2, so it is rounded up.
    """
    return _engine_argv(exe, engine, input_name, shape, trt_version) + [
        f"--warmUp={int(round(warmup_ms))}",
        f"--iterations={int(min_iterations)}",
        f"--duration={max(1, math.ceil(min_seconds))}",
        f"--exportTimes={times_file}",
    ]


def profile_argv(
    exe: str,
    engine: str,
    input_name: str,
    shape: Sequence[int] | None,
    warmup_ms: float,
    iterations: int,
    profile_file: str,
    layer_info_file: str | None,
    trt_version: str | None = None,
) -> list[str]:
    """Per-layer times of an engine: a timed run of `iterations` queries without the profiler (its summary gives the
    unprofiled latency), then the profile run (--separateProfileRun; TensorRT 11 always separates them and deprecates
    the flag), written by --exportProfile; --exportLayerInfo (TensorRT >= 8.2 only) adds the engine's layer
    information. --duration=0: the iteration count alone bounds both runs."""
    argv = _engine_argv(exe, engine, input_name, shape, trt_version) + [
        f"--warmUp={int(round(warmup_ms))}",
        f"--iterations={int(iterations)}",
        "--duration=0",
        f"--exportProfile={profile_file}",
    ]
    if version_tuple(trt_version)[0] < TRANSFERS_OFF_FROM:
        argv.append("--separateProfileRun")
    if layer_info_file and has_layer_info(trt_version):
        argv.append(f"--exportLayerInfo={layer_info_file}")
    return argv


def infer_argv(
    exe: str,
    engine: str,
    input_name: str,
    shape: Sequence[int] | None,
    input_file: str,
    output_file: str,
    times_file: str,
    trt_version: str | None = None,
) -> list[str]:
    """One query on given inputs (raw float32 file), outputs and the query's timing exported as JSON."""
    return _engine_argv(exe, engine, input_name, shape, trt_version) + [
        f"--loadInputs={input_name}:{input_file}",
        f"--exportOutput={output_file}",
        f"--exportTimes={times_file}",
        "--iterations=1",
        "--warmUp=0",
        "--duration=0",
    ]
