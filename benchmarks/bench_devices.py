"""Device measurement costs, side by side in one run.

1. Harness overhead: ticketbench's CPU latency (CpuDevice session + measure_latency) vs a bare ONNX Runtime
   loop on the same model, same thread count, same session options; p50 ratio, target <= 1.02. Blocks of
   the two alternate so machine load hits both alike; the ratio is the median over blocks.
2. Sampler cost: CPU time of the power sampler at its default rate (50 Hz) reading a sysfs-style file
   (the INA3221 reader on a fake TX2 tree in a temp dir), as a fraction of one core; target <= 1 %.
   Measured as process CPU time while the main thread sleeps, minus the same with no sampler.

With `--device gpu` (a CUDA GPU): 1. compares the gpu adapter's torch-cuda session + measure_latency with a bare
`module(x); torch.cuda.synchronize()` loop on the same module, and 2. costs the sampler reading NVML (the
energy counter where the GPU has one) instead of the sysfs file.

Run: `python benchmarks/bench_devices.py [--quick | --smoke] [--device cpu|gpu]` (`--smoke`: one short block,
only to show it runs, for benchmarks/gpu_check.sh's CI path). Prints the machine load (`uptime`).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from ticketbench.devices.cpu import CpuDevice  # noqa: E402
from ticketbench.devices.jetson_board import Ina3221Reader  # noqa: E402
from ticketbench.devices.measure import LatencyConfig, measure_latency  # noqa: E402
from ticketbench.devices.power import PowerSampler  # noqa: E402
from ticketbench.models.export import to_onnx_bytes  # noqa: E402
from ticketbench.models.zoo import create_model  # noqa: E402


def bare_ort_p50(path: Path, x: np.ndarray, n: int, warmup: int = 20) -> float:
    """The reference: an ONNX Runtime session timed with perf_counter around run(), nothing else."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = 1, 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    feed = {sess.get_inputs()[0].name: x}
    for _ in range(warmup):
        sess.run(None, feed)
    samples = np.empty(n)
    for i in range(n):
        a = time.perf_counter()
        sess.run(None, feed)
        samples[i] = time.perf_counter() - a
    return float(np.percentile(samples, 50) * 1e3)


def harness_overhead(tmp: Path, blocks: int, n: int) -> dict[str, float]:
    torch.manual_seed(0)
    out = {}
    for label, model, shape, batch in (
        ("small_cnn b1", create_model("small_cnn", num_classes=10, in_channels=1), (1, 8, 8), 1),
        ("small_cnn b32", create_model("small_cnn", num_classes=10, in_channels=1), (1, 8, 8), 32),
        ("resnet20 3x32x32 b1", create_model("preresnet20", num_classes=10, in_channels=3), (3, 32, 32), 1),
    ):
        path = tmp / f"{label.replace(' ', '_')}.onnx"
        path.write_bytes(to_onnx_bytes(model, shape))
        x = np.random.default_rng(0).standard_normal((batch, *shape), dtype=np.float32)
        session = CpuDevice(threads=1).load(path)
        cfg = LatencyConfig(
            warmup_iterations=20, warmup_seconds=0.0, min_iterations=n, min_seconds=0.0, max_iterations=n
        )
        ratios, ours, bare = [], [], []
        for _ in range(blocks):
            o = measure_latency(session, x, cfg).stats["latency_ms_p50"]
            b = bare_ort_p50(path, x, n)
            ours.append(o)
            bare.append(b)
            ratios.append(o / b)
        out[label] = (float(np.median(ours)), float(np.median(bare)), float(np.median(ratios)))
    return out


def bare_torch_cuda_p50(module: torch.nn.Module, x: np.ndarray, n: int, warmup: int = 20) -> float:
    """The GPU reference: host input to the device, the module, output back to the host (what run() does),
    synchronized, timed with perf_counter; nothing else."""
    with torch.inference_mode():
        for _ in range(warmup):
            module(torch.from_numpy(x).cuda()).cpu()
        torch.cuda.synchronize()
        samples = np.empty(n)
        for i in range(n):
            a = time.perf_counter()
            module(torch.from_numpy(x).cuda()).cpu()
            torch.cuda.synchronize()
            samples[i] = time.perf_counter() - a
    return float(np.percentile(samples, 50) * 1e3)


def harness_overhead_gpu(tmp: Path, blocks: int, n: int) -> dict[str, tuple[float, float, float]]:
    """ticketbench's torch-cuda session + measure_latency vs the bare loop doing the same copies and forward."""
    from ticketbench.devices.gpu import GpuDevice

    torch.manual_seed(0)
    out = {}
    for label, name, shape, batch in (
        ("small_cnn b1", "small_cnn", (1, 8, 8), 1),
        ("resnet20 3x32x32 b1", "preresnet20", (3, 32, 32), 1),
        ("vgg16 3x32x32 b64", "vgg16", (3, 32, 32), 64),
    ):
        model = create_model(name, num_classes=10, in_channels=shape[0]).eval()
        path = tmp / f"{name}.onnx"
        path.write_bytes(to_onnx_bytes(model, shape))
        session = GpuDevice(backend="torch-cuda").load(path, module=model)
        x = np.random.default_rng(0).standard_normal((batch, *shape), dtype=np.float32)
        cfg = LatencyConfig(
            warmup_iterations=20, warmup_seconds=0.0, min_iterations=n, min_seconds=0.0, max_iterations=n
        )
        ratios, ours, bare = [], [], []
        for _ in range(blocks):
            o = measure_latency(session, x, cfg).stats["latency_ms_p50"]
            b = bare_torch_cuda_p50(session.module, x, n)
            ours.append(o)
            bare.append(b)
            ratios.append(o / b)
        out[label] = (float(np.median(ours)), float(np.median(bare)), float(np.median(ratios)))
    return out


def sampler_cost(tmp: Path, seconds: float, device: str = "cpu") -> tuple[float, int]:
    if device == "gpu":
        from ticketbench.devices.power_nvml import cuda_pci_bus_id, probe_nvml_reader

        nvml, why = probe_nvml_reader(cuda_pci_bus_id(0))
        if nvml is None:
            raise SystemExit(f"no NVML reader: {why}")
        make_reader = lambda: nvml  # noqa: E731
    else:
        from fixtures.jetson.boards import make_board

        root = make_board(tmp / "board", "tx2")
        make_reader = lambda: Ina3221Reader(str(root))  # noqa: E731

    def cpu_fraction(with_sampler: bool) -> tuple[float, int]:
        sampler = PowerSampler(make_reader(), rate_hz=50.0).start() if with_sampler else None
        c0 = time.process_time()
        time.sleep(seconds)
        used = time.process_time() - c0
        n = 0
        if sampler:
            sampler.stop()
            n = len(sampler.t)
        return used / seconds, n

    base, _ = cpu_fraction(False)
    frac, n = cpu_fraction(True)
    return max(0.0, frac - base), n


def main() -> None:
    quick = "--quick" in sys.argv
    device = sys.argv[sys.argv.index("--device") + 1] if "--device" in sys.argv else "cpu"
    if device not in ("cpu", "gpu"):
        raise SystemExit(f"--device {device}: expected cpu or gpu")
    if device == "gpu" and not torch.cuda.is_available():
        raise SystemExit("--device gpu: torch sees no CUDA device")
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        overhead = harness_overhead_gpu if device == "gpu" else harness_overhead
        if "--smoke" in sys.argv:
            lat = overhead(tmp, blocks=1, n=30)
            frac, n = sampler_cost(tmp, 0.5, device)
        else:
            lat = overhead(tmp, blocks=3 if quick else 7, n=300 if quick else 1500)
            frac, n = sampler_cost(tmp, 2.0 if quick else 10.0, device)
    bare = "bare torch" if device == "gpu" else "bare ORT"
    if device == "gpu":
        print("device:", torch.cuda.get_device_name(0), "torch", torch.__version__, "CUDA", torch.version.cuda)
    print("1. harness overhead (p50 ms, median over alternating blocks; target ratio <= 1.02)")
    for label, (o, b, r) in lat.items():
        print(f"   {label:22s} ticketbench {o:8.4f}  {bare} {b:8.4f}  ratio {r:6.3f}")
    what = "NVML" if device == "gpu" else "a sysfs file"
    print(f"2. power sampler at 50 Hz on {what} (target <= 1 % of one core)")
    print(f"   {100 * frac:.3f} % of one core ({n} samples)")
    print("load:", subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())


if __name__ == "__main__":
    main()
