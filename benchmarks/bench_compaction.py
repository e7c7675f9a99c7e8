"""Compaction benchmark: does a ticket's sparsity become speed on ONNX Runtime CPU? Side by side, one run.

Cases (CIFAR-shaped input 3x32x32, batch 1 unless --batch, one ORT thread unless --threads):
1. VGG-16 dense vs an Early-Bird-style channel ticket: a random 50 % of every conv's channels killed
   exactly as an EB ticket kills them (filter, BN γ/β, reader weights; models.compact.kill_channels).
   The pruning literature reports about 4x smaller and 3x faster for VGG-19 at 0.5 (network slimming / EB).
   The same channel mask compacted by Torch-Pruning (if installed) must match our parameter count, and we
   must be no slower.
2. ResNet-18 (CIFAR) "MPT-style" tickets at 70/90/95 % weight sparsity. The MPT method needs score
   training that is out of reach here, so the masks are *synthetic*: whole 3x3 kernels are zeroed at the
   rate that gives the Efficient-MPT report's acceleration rates (AR 1.4/2.3/3.0, kernel sparsity
   1 − 1/AR), the surviving kernels are thinned to the target weight sparsity. This is right for the cost
   side (AR, MACs); the accuracy side is not measured. Random kernel sparsity leaves every channel alive and
   the kernel graph connected, so dense ORT cannot exploit it: realization = speedup / AR shows how much.
3. ResNet-18 with a group-structured kernel ticket (synthetic: every channel group's channels are split
   into 4 random classes, kernels kept only within a class, i.e. block diagonal after permutation). Kernel
   level decomposition turns the convs into grouped convs; this is the case where kernel removal pays.

4. torchvision ResNet-50 and MobileNetV2 (no weights, trained-looking BN statistics), beside Torch-Pruning:
   the same channel mask (a random 50 % of every block-internal conv's filters: ResNet-50's conv1/conv2 of each
   bottleneck, MobileNetV2's expansion convs) killed as an EB ticket kills them and compacted by us, and pruned
   by Torch-Pruning's DependencyGraph. Ours must have no more parameters and MACs and run no slower on ORT CPU
   (the `vs Torch-Pruning` lines give the ratios). Input 3x`--size`x`--size` (default 224).

Latency: every case is timed in many short interleaved windows (devices.measure, trtexec's rule per
window) and the samples pooled; speedup uses the pooled p50, so a load change on the machine hits all cases
alike. p10 is printed as well (less sensitive to other processes). The machine load (`uptime`) is printed
with the figures.

Run: `python benchmarks/bench_compaction.py [--quick] [--cases all|cifar|torchvision] [--size 224] [--batch 1]
[--threads 1] [--rounds 20] [--json out.json]`.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ticketbench.devices.cpu import OrtCpuSession
from ticketbench.devices.measure import LatencyConfig, measure_latency
from ticketbench.models.compact import CompactionConfig, compact, kill_channels
from ticketbench.models.cost import analyze
from ticketbench.models.decompose import block_structured
from ticketbench.models.export import export_onnx
from ticketbench.models.zoo import create_model

SHAPE = (3, 32, 32)
MPT_AR = {0.7: 1.4, 0.9: 2.3, 0.95: 3.0}  # Efficient-MPT report, Table 4 (ResNet-18, CIFAR-10)


@dataclass
class Case:
    name: str
    model: nn.Module  # what is exported and timed
    reference: nn.Module  # the masked model it must reproduce
    ticket_ar: float = 1.0
    note: str = ""
    info: dict = field(default_factory=dict)
    shape: tuple[int, int, int] = SHAPE
    family: str = ""  # speedups are against the dense case of the same family (default: the name's first word)


@torch.no_grad()
def trained_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    """BN statistics of a trained-looking network (non-zero shifts), so constants are not trivially zero."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.1)
    return model.eval()


def eb_channel_mask(model: nn.Module, fraction: float, seed: int) -> dict[str, torch.Tensor]:
    """A random `fraction` of every conv's output channels (EB-style structure at a uniform ratio)."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for name, m in model.named_modules():
        if isinstance(m, nn.Conv2d):
            k = int(round(m.out_channels * fraction))
            out[name] = torch.randperm(m.out_channels, generator=g)[:k].sort().values
    return out


@torch.no_grad()
def mpt_style(model: nn.Module, sparsity: float, ar: float, seed: int) -> nn.Module:
    """Synthetic MPT-style ticket: kernel sparsity 1 − 1/AR on convs, total weight sparsity `sparsity`."""
    g = torch.Generator().manual_seed(seed)
    ks = 1 - 1 / ar
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            o, i, kh, kw = m.weight.shape
            taps = kh * kw
            alive = torch.rand(o, i, generator=g) >= ks
            keep_per_kernel = taps * (1 - sparsity) / (1 - ks)  # expected non-zeros in a surviving kernel
            q = min(1.0, max(0.0, (keep_per_kernel - 1) / max(taps - 1, 1)))
            mask = torch.rand(o, i, taps, generator=g) < q
            mask[torch.arange(o)[:, None], torch.arange(i)[None, :], torch.randint(taps, (o, i), generator=g)] = True
            m.weight.mul_((mask & alive[:, :, None]).view_as(m.weight).float())
        elif isinstance(m, nn.Linear):
            m.weight.mul_((torch.rand(m.weight.shape, generator=g) >= sparsity).float())
    return model.eval()


def torch_pruning(model: nn.Module, channels: dict[str, torch.Tensor], shape=SHAPE) -> nn.Module | None:
    """The same channel mask compacted by Torch-Pruning (None when it is not installed)."""
    try:
        import torch_pruning as tp
    except ImportError:
        return None
    model = copy.deepcopy(model).eval()
    dg = tp.DependencyGraph().build_dependency(model, example_inputs=torch.zeros(1, *shape), verbose=False)
    for name, idx in channels.items():
        dg.get_pruning_group(model.get_submodule(name), tp.prune_conv_out_channels, idxs=idx.tolist()).prune()
    return model


def internal_convs(name: str, model: nn.Module) -> list[str]:
    """Block-internal convs, whose channels no residual add ties to other layers: the same mask means the same
    thing to both tools."""
    out = []
    for n, m in model.named_modules():
        if not isinstance(m, nn.Conv2d) or m.groups != 1:
            continue
        if name == "resnet50" and n.startswith("layer") and n.rsplit(".", 1)[-1] in ("conv1", "conv2"):
            out.append(n)
        elif name == "mobilenet_v2" and n.endswith("conv.0.0") and m.kernel_size == (1, 1):
            out.append(n)  # expansion 1x1 (its channels run through the depthwise conv to the projection)
    return out


def torchvision_cases(size: int) -> list[Case]:
    """ResNet-50 and MobileNetV2 (torchvision, no weights): dense, ours and Torch-Pruning on one channel mask."""
    import torchvision.models as tvm

    shape = (3, size, size)
    x = torch.zeros(1, *shape)
    cases = []
    for name, fn in (("resnet50", tvm.resnet50), ("mobilenet_v2", tvm.mobilenet_v2)):
        torch.manual_seed(0)
        dense = trained_bn(fn(weights=None, num_classes=1000))
        g = torch.Generator().manual_seed(1)
        channels = {}
        for n in internal_convs(name, dense):
            c = dense.get_submodule(n).out_channels
            channels[n] = torch.randperm(c, generator=g)[: c // 2].sort().values
        ticket = kill_channels(copy.deepcopy(dense), channels, x)
        ours, rep = compact(ticket, x)
        ar = analyze(ticket, shape).acceleration_rate
        cases.append(Case(f"{name} dense", dense, dense, shape=shape, family=name))
        info = {"channels_removed": rep.filters_removed, "mask_filters": sum(len(i) for i in channels.values())}
        cases.append(Case(f"{name} 50% internal channels, ours", ours, ticket, ar, info=info, shape=shape, family=name))
        theirs = torch_pruning(dense, channels, shape)
        if theirs is not None:
            cases.append(
                Case(
                    f"{name} 50% internal channels, Torch-Pruning",
                    theirs,
                    theirs,
                    ar,
                    "same mask, TP's compaction",
                    shape=shape,
                    family=name,
                )
            )
    return cases


def build_cases(quick: bool) -> list[Case]:
    torch.manual_seed(0)
    vgg = trained_bn(create_model("vgg16", num_classes=10, width=0.5 if quick else 1.0))
    chans = eb_channel_mask(vgg, 0.5, seed=1)
    ticket = kill_channels(copy.deepcopy(vgg), chans, torch.zeros(1, *SHAPE))
    ours, rep = compact(ticket, torch.zeros(1, *SHAPE))
    ar = analyze(ticket, SHAPE).acceleration_rate
    cases = [
        Case("vgg16 dense", vgg, vgg),
        Case("vgg16 EB-style 50% channels", ours, ticket, ar, info={"channels_removed": rep.channels_removed}),
    ]
    # Channel alignment: a 45% mask leaves odd widths; align=8 keeps a few dead channels so widths are multiples
    # of 8 (ORT's NCHWc blocks). Same ticket, two compactions, timed side by side.
    odd = kill_channels(copy.deepcopy(vgg), eb_channel_mask(vgg, 0.45, seed=2), torch.zeros(1, *SHAPE))
    odd_ar = analyze(odd, SHAPE).acceleration_rate
    for align in (1, 8):
        c, rep = compact(odd, torch.zeros(1, *SHAPE), CompactionConfig(align=align))
        kept = sum(g.kept_aligned for g in rep.groups)
        cases.append(Case(f"vgg16 45% channels, align {align}", c, odd, odd_ar, info={"kept_for_alignment": kept}))
    tp_model = torch_pruning(vgg, chans)
    if tp_model is not None:
        cases.append(Case("vgg16 50% channels, Torch-Pruning", tp_model, tp_model, ar, "same mask, TP's compaction"))
    resnet = trained_bn(create_model("resnet18_cifar", num_classes=10, width=0.5 if quick else 1.0))
    cases.append(Case("resnet18 dense", resnet, resnet))
    for s, ar_target in MPT_AR.items():
        t = mpt_style(copy.deepcopy(resnet), s, ar_target, seed=int(s * 100))
        c, rep = compact(t, torch.zeros(1, *SHAPE))
        cases.append(
            Case(
                f"resnet18 MPT-style {int(s * 100)}% (synthetic)",
                c,
                t,
                analyze(t, SHAPE).acceleration_rate,
                info={"channels_removed": rep.channels_removed, "decomposed": len(rep.decomposed)},
            )
        )
    t = block_structured(copy.deepcopy(resnet), torch.zeros(1, *SHAPE), 4, seed=3)
    c, rep = compact(t, torch.zeros(1, *SHAPE))
    gathers = sum(d["input_gather"] + d["output_gather"] for d in rep.decomposed)
    cases.append(
        Case(
            "resnet18 4-class kernel ticket (synthetic)",
            c,
            t,
            analyze(t, SHAPE).acceleration_rate,
            info={"decomposed": len(rep.decomposed), "gathers": gathers},
        )
    )
    return cases


def run(quick: bool, batch: int, threads: int, rounds: int, which: str = "all", size: int = 224) -> dict:
    cases = (build_cases(quick) if which in ("all", "cifar") else []) + (
        torchvision_cases(size) if which in ("all", "torchvision") else []
    )
    workdir = Path(tempfile.mkdtemp(prefix="bench_compaction_"))
    sessions, rows = [], []
    for i, case in enumerate(cases):
        exp = export_onnx(case.model, case.reference, case.shape, workdir / f"case{i}.onnx", tolerance=1e-3)
        cost = analyze(case.model, case.shape)
        sessions.append(OrtCpuSession(exp.path, threads))
        rows.append(
            {
                "case": case.name,
                "params": cost.params,
                "macs": cost.macs,
                "size_mb": round(exp.size_mb, 3),
                "acceleration_rate": round(case.ticket_ar, 3),
                "onnx_max_abs_error": exp.max_abs_error,
                "onnx_nodes": exp.nodes,
                "note": case.note,
                **case.info,
            }
        )
    rng = np.random.default_rng(0)
    inputs = {c.shape: rng.standard_normal((batch, *c.shape), dtype=np.float32) for c in cases}
    cfg = LatencyConfig(warmup_iterations=2, warmup_seconds=0.0, min_iterations=5, min_seconds=0.05 if quick else 0.15)
    samples: list[list[float]] = [[] for _ in cases]
    for _ in range(rounds):  # short interleaved windows: load changes hit every case alike
        for i, sess in enumerate(sessions):
            samples[i].extend(measure_latency(sess, inputs[cases[i].shape], cfg).samples_ms.tolist())
    p50 = [float(np.median(s)) for s in samples]
    family = [c.family or c.name.split()[0] for c in cases]
    dense = {f: p for f, c, p in zip(family, cases, p50) if c.name.endswith(" dense")}
    for row, lat, fam in zip(rows, p50, family):
        base = dense[fam]
        row["latency_ms_p50"] = round(lat, 3)
        row["latency_ms_p10"] = round(float(np.percentile(samples[rows.index(row)], 10)), 3)
        row["samples"] = len(samples[rows.index(row)])
        row["speedup"] = round(base / lat, 3)
        row["realization"] = round(row["speedup"] / row["acceleration_rate"], 3)
    versus = []  # ours against Torch-Pruning on the same mask: ratios ≤ 1 mean ours is smaller / faster
    for r in rows:
        if r["case"].endswith(", Torch-Pruning"):
            mine = next((o for o in rows if o["case"] == r["case"].replace(", Torch-Pruning", ", ours")), None)
            if mine is not None:
                versus.append(
                    {
                        "case": mine["case"].removesuffix(", ours"),
                        "params_ours": mine["params"],
                        "params_tp": r["params"],
                        "macs_ours": mine["macs"],
                        "macs_tp": r["macs"],
                        "latency_ratio_p50": round(mine["latency_ms_p50"] / r["latency_ms_p50"], 3),
                        "latency_ratio_p10": round(mine["latency_ms_p10"] / r["latency_ms_p10"], 3),
                    }
                )
    return {
        "rows": rows,
        "versus_torch_pruning": versus,
        "batch": batch,
        "threads": threads,
        "rounds": rounds,
        "load": subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip(),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="half-width models, shorter timing windows")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1, help="ORT intra-op threads")
    ap.add_argument("--rounds", type=int, default=20, help="interleaved timing windows per case")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    ap.add_argument("--cases", choices=("all", "cifar", "torchvision"), default="all")
    ap.add_argument("--size", type=int, default=224, help="input side of the torchvision cases")
    args = ap.parse_args()
    torch.set_num_threads(1)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    t0 = time.time()
    print("load before:", subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())
    out = run(args.quick, args.batch, args.threads, args.rounds, args.cases, args.size)
    out["wall_s"] = round(time.time() - t0, 1)
    cols = ["case", "params", "size_mb", "macs", "acceleration_rate", "latency_ms_p50", "speedup", "realization"]
    print(" | ".join(cols))
    for r in out["rows"]:
        print(" | ".join(str(r[c]) for c in cols))
    for r in out["rows"]:
        extra = {k: v for k, v in r.items() if k not in cols and v not in ("", None)}
        print(f"  {r['case']}: {extra}")
    for v in out["versus_torch_pruning"]:
        print(
            f"vs Torch-Pruning, {v['case']}: params {v['params_ours']} vs {v['params_tp']}, MACs {v['macs_ours']} vs"
            f" {v['macs_tp']}, ORT CPU latency ours/TP p50 {v['latency_ratio_p50']} (p10 {v['latency_ratio_p10']})"
        )
    print(f"batch {out['batch']}, {out['threads']} ORT thread(s), {out['rounds']} rounds; load after: {out['load']}")
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
