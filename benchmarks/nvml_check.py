"""NVML through the project's own path, on a real GPU: what the fakes of tests/test_power_nvml.py stand for.

    python benchmarks/nvml_check.py [--json FILE]

For every CUDA device torch sees: its PCI bus id (bytes, from torch), NVML's handle by that bus id, the name
NVML gives against torch's name for the same CUDA index, and the power reader the adapters would use
(energy counter or polling). Then, on CUDA device 0, the energy counter against polled power over one loaded
window (the doctor checks the same with its 5 % bound; printed here as a ratio). The bindings' version is
printed, because the bus-id argument type depends on it (str needs nvidia-ml-py >= 11.515.48; bytes work in
every version).

Exit 0 when every device was found by its bus id under its own name; 1 otherwise; 0 with a line saying why
when there is no CUDA device or no pynvml (the CPU fallback of benchmarks/gpu_check.sh runs it too).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from importlib import metadata


def bindings_version() -> str:
    for dist in ("nvidia-ml-py", "pynvml"):
        try:
            return f"{dist} {metadata.version(dist)}"
        except metadata.PackageNotFoundError:
            continue
    return "unknown"


def loaded_window(index: int, seconds: float) -> tuple[float, float]:
    """Keep CUDA device `index` busy with matmuls for `seconds`; (t0, t1) monotonic."""
    import torch

    a = torch.randn(4096, 4096, device=f"cuda:{index}")
    t0 = time.monotonic()
    while time.monotonic() - t0 < seconds:
        a = (a @ a).clamp_(-1, 1)
        torch.cuda.synchronize(index)
    return t0, time.monotonic()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", help="also write the findings here")
    ap.add_argument("--seconds", type=float, default=3.0, help="loaded window for counter vs polling (s)")
    args = ap.parse_args(argv)
    import torch

    from ticketbench.devices.power import PowerSampler
    from ticketbench.devices.power_nvml import (
        NvmlEnergyReader,
        NvmlPowerReader,
        cuda_pci_bus_id,
        nvml_identity,
        probe_nvml_reader,
    )

    report: dict = {"bindings": bindings_version(), "devices": [], "ok": True}
    if not torch.cuda.is_available():
        print("nvml_check: no CUDA device: nothing to check")
        return 0
    try:
        import pynvml  # noqa: F401
    except ImportError:
        print("nvml_check: pynvml (nvidia-ml-py) not installed: nothing to check")
        return 0
    print("bindings:", report["bindings"])
    for i in range(torch.cuda.device_count()):
        bus = cuda_pci_bus_id(i)
        row: dict = {
            "cuda_index": i,
            "pci_bus_id": bus.decode() if bus else None,
            "torch_name": torch.cuda.get_device_name(i),
        }
        try:
            ident = nvml_identity(bus)
            reader, why = probe_nvml_reader(bus)
            row.update(nvml_name=ident["device_name"], power_limit_w=ident.get("power_limit_w"))
            row.update(reader=reader.source if reader else None, why=why)
            row["ok"] = bool(bus) and ident["device_name"] == row["torch_name"] and reader is not None
        except Exception as exc:  # a finding to report, not a crash: the other devices still get checked
            row.update(ok=False, error=f"{type(exc).__name__}: {exc}")
        report["devices"].append(row)
        report["ok"] &= row["ok"]
        print(json.dumps(row))
    bus0 = cuda_pci_bus_id(0)
    counter, _ = probe_nvml_reader(bus0)
    if isinstance(counter, NvmlEnergyReader):
        polled = NvmlPowerReader(counter.nvml, counter.handle)
        samplers = [PowerSampler(r, rate_hz=20.0).start() for r in (counter, polled)]
        time.sleep(1.0)
        t0, t1 = loaded_window(0, args.seconds)
        time.sleep(0.2)
        for s in samplers:
            s.stop()
        e_counter = samplers[0].window("load", t0 + 0.5, t1).energy_j
        e_polled = samplers[1].window("load", t0 + 0.5, t1).energy_j
        report["counter_vs_polling"] = {
            "window_s": t1 - t0 - 0.5,
            "counter_j": e_counter,
            "polled_j": e_polled,
            "ratio": e_counter / e_polled if e_counter and e_polled else None,
        }
        print("counter vs polling:", json.dumps(report["counter_vs_polling"]))
    else:
        print("counter vs polling: GPU 0 has no NVML energy counter (pre-Volta) or no reader")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)
    print("nvml_check:", "ok" if report["ok"] else "FAILED (see the device lines)")
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
