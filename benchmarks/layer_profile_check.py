"""Exercise every per-layer profiler this machine has, on a real zoo export, and keep the raw files (gpu_check step).

    python benchmarks/layer_profile_check.py --device gpu|cpu --out DIR

For each profiler that is present: profile a VGG-11 (¼ width, CIFAR-shaped) export, map every runtime layer back to
the model (bench/layers.py) and check that each conv and the linear layer got a time of its own.

- gpu: the gpu adapter's own backend (TensorRT's IProfiler, or torch.profiler on torch-cuda); TensorRT's IProfiler
  again explicitly when the `tensorrt` module is importable; torch.profiler on CUDA; and, when a `trtexec` binary is
  on PATH (or /usr/src/tensorrt/bin), a real `trtexec --exportProfile --exportLayerInfo` run read by our readers.
  The raw files TensorRT wrote are kept under DIR/raw/: the real formats, to compare with the fakes' fixtures.
- cpu: ONNX Runtime's session profiling (the CPU fallback of gpu_check.sh), and the readers over the repository's
  fixtures.

Prints one line per profiler (ok, skipped with the reason, or FAILED with it) and writes DIR/layers.json; exit 1
when a profiler that is present failed or left a conv without a time.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import traceback
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ticketbench.bench.layers import format_table, layer_rows
from ticketbench.devices.layer_profile import (
    LayerProfile,
    LayerProfileUnavailable,
    OnnxGraph,
    read_layer_info,
    read_trtexec_profile,
    resolve_trt_layers,
)
from ticketbench.devices.trtexec import build_argv, parse_summary, parse_version, profile_argv
from ticketbench.models.cost import analyze
from ticketbench.models.export import to_onnx_bytes
from ticketbench.models.zoo import create_model

SHAPE = (3, 32, 32)
BATCH = 8
CALLS = 30
FIXTURES = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "layer_profile"


def check(name: str, prof: LayerProfile, cost: list, results: dict[str, Any]) -> None:
    """Map the profile onto the model; every conv/linear must have a time of its own."""
    rows = layer_rows(prof, cost)
    missing = [r.layer for r in rows if r.kind in ("conv", "linear") and r.ticket_ms is None]
    print(f"-- {name}: {prof.source}; {prof.iterations} calls at batch {prof.batch_size}")
    print(format_table(rows, limit=12))
    overhead = "not measured" if prof.overhead is None else f"{100 * prof.overhead:.0f} %"
    print(f"Σ layers {prof.total_ms:.4f} ms, per call {prof.plain_ms} ms unprofiled; profiling overhead {overhead}")
    results[name] = {
        "status": "FAILED" if missing else "ok",
        "source": prof.source,
        "layers": len(prof.layers),
        "layers_sum_ms": prof.total_ms,
        "plain_ms": prof.plain_ms,
        "profiled_ms": prof.profiled_ms,
        "overhead": prof.overhead,
        "unmapped_convs": missing,
    }


def find_trtexec() -> str | None:
    return shutil.which("trtexec") or next((p for p in ("/usr/src/tensorrt/bin/trtexec",) if Path(p).is_file()), None)


def trtexec_profile(exe: str, onnx: Path, raw: Path) -> LayerProfile:
    """A real trtexec: build an engine, profile it with our argv, read its files with our readers."""
    banner = subprocess.run([exe, "--help"], capture_output=True, text=True, timeout=60).stdout
    version = parse_version(banner)
    engine = raw / "model.engine"
    shape = [BATCH, *SHAPE]
    build = build_argv(exe, str(onnx), str(engine), "fp32", "input", shape, shape, shape, layer_info=None)
    done = subprocess.run(build, capture_output=True, text=True, timeout=300)
    (raw / "trtexec-build.log").write_text(done.stdout + done.stderr)
    if done.returncode != 0:
        raise RuntimeError(f"trtexec build failed (exit {done.returncode})")
    prof_file, info_file = raw / "trtexec-profile.json", raw / "trtexec-layers.json"
    argv = profile_argv(exe, str(engine), "input", shape, 200, CALLS, str(prof_file), str(info_file), version)
    ran = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    (raw / "trtexec-profile.log").write_text(" ".join(argv) + "\n" + ran.stdout + ran.stderr)
    if ran.returncode != 0:
        raise RuntimeError(f"trtexec profile run failed (exit {ran.returncode})")
    layers, count = read_trtexec_profile(prof_file.read_text())
    info = read_layer_info(info_file.read_text()) if info_file.is_file() else None
    resolve_trt_layers(layers, OnnxGraph.load(onnx), info)
    plain = parse_summary(ran.stdout).get("latency_ms", {}).get("median")
    return LayerProfile("tensorrt-trtexec", BATCH, count, layers, None, plain, f"trtexec {version} --exportProfile")


def run(device: str, out: Path) -> int:
    out.mkdir(parents=True, exist_ok=True)
    raw = out / "raw"
    raw.mkdir(exist_ok=True)
    torch.manual_seed(0)
    model = create_model("vgg11", num_classes=10, width=0.25).eval()
    cost = analyze(model, SHAPE).layers
    onnx = out / "vgg11-quarter.onnx"
    onnx.write_bytes(to_onnx_bytes(model, SHAPE))
    x = np.random.default_rng(0).standard_normal((BATCH, *SHAPE), dtype=np.float32)
    results: dict[str, Any] = {}

    def attempt(name: str, fn: Any) -> None:
        try:
            prof = fn()
        except (ModuleNotFoundError, LayerProfileUnavailable) as exc:  # absent, or a backend without a profiler
            results[name] = {"status": "skipped", "why": str(exc)}
            print(f"-- {name}: skipped ({exc})")
            return
        except Exception as exc:
            results[name] = {"status": "FAILED", "why": f"{type(exc).__name__}: {exc}"}
            print(f"-- {name}: FAILED {type(exc).__name__}: {exc}")
            traceback.print_exc()
            return
        if prof is None:
            return
        check(name, prof, cost, results)

    if device == "cpu":
        from ticketbench.devices.cpu import OrtCpuSession

        attempt("onnxruntime-cpu", lambda: OrtCpuSession(onnx, 2).profile_layers(x, CALLS))
        for fixture in ("trtexec_profile_trt82.json", "trtexec_profile_trt10.json"):
            layers, count = read_trtexec_profile((FIXTURES / fixture).read_text())
            results[f"reader {fixture}"] = {"status": "ok" if layers and count else "FAILED", "layers": len(layers)}
    else:
        from ticketbench.devices.gpu import GpuDevice, TorchCudaSession

        dev = GpuDevice()
        attempt(
            f"gpu adapter ({dev.backend})", lambda: dev.load(onnx, "fp32", BATCH, module=model).profile_layers(x, CALLS)
        )
        attempt("torch-cuda", lambda: TorchCudaSession(model, "cuda:0", "fp32").profile_layers(x, CALLS))

        def tensorrt() -> LayerProfile:
            from ticketbench.devices.tensorrt_engine import load_tensorrt

            cache = Path(tempfile.mkdtemp(prefix="tb-engines-"))
            return load_tensorrt(onnx, "fp32", "cuda:0", dev.identity_name(), cache, BATCH).profile_layers(x, CALLS)

        attempt("tensorrt IProfiler", tensorrt)
        exe = find_trtexec()
        if exe is None:
            results["trtexec"] = {"status": "skipped", "why": "no trtexec on PATH or in /usr/src/tensorrt/bin"}
            print("-- trtexec: skipped (no trtexec on PATH or in /usr/src/tensorrt/bin)")
        else:
            attempt("trtexec", lambda: trtexec_profile(exe, onnx, raw))
    (out / "layers.json").write_text(json.dumps(results, indent=2, default=str))
    failed = [k for k, v in results.items() if v["status"] == "FAILED"]
    print(
        "layer_profile_check:", "FAILED " + ", ".join(failed) if failed else "every present profiler mapped every layer"
    )
    return 1 if failed else 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", choices=["gpu", "cpu"], default="gpu")
    p.add_argument("--out", default="layer_profile_check")
    args = p.parse_args()
    return run(args.device, Path(args.out))


if __name__ == "__main__":
    sys.exit(main())
