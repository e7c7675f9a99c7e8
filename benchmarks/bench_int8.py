"""int8 benchmark: what does ONNX Runtime's int8 add to a compacted ticket on the CPU? fp32 vs int8, side by side.

Models: VGG-16 and ResNet-18 (CIFAR), each dense and as an Early-Bird-style 50 % channel ticket. There is no
CIFAR here, so they are trained on the embedded digits upsampled to 32×32 (real images, 1 channel, 10 classes;
`--epochs`, default 3). The channel ticket is a *channel mask*, not the EB search: in every conv the 50 %
of channels with the smallest trained BN |γ| (EB's importance, per layer rather than EB's global threshold
so no layer dies) are killed exactly as an EB ticket kills them (models.compact.kill_channels), then the
ticket is fine-tuned with the mask fixed (`--finetune-epochs`, default 2) and compacted (align 8).

Every model is exported to ONNX (fp32, validated) and quantized by devices/int8_quantize.py exactly as
`bench run --precision int8` does it (QDQ, per-channel int8 weights, uint8 activations, entropy calibration on
256 seeded training images). Accuracy is computed from ORT's outputs on the digits test split (360 images),
and int8's top-1 agreement with fp32 beside it.

Latency: ORT CPU, batch 1 and 32, `--threads` intra-op threads (default 1), all eight (model, precision)
sessions timed in many short interleaved windows and the samples pooled (a load change hits all alike); the
p50 of the pool is reported, p10 beside it. The machine load (`uptime`) is printed before and after.

Run: `python benchmarks/bench_int8.py [--quick] [--threads 1] [--rounds 12] [--json out.json]`.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ticketbench.devices.cpu import OrtCpuSession
from ticketbench.devices.int8_quantize import (
    QuantizeConfig,
    calibration_set,
    compare_outputs,
    ort_outputs,
    quantize_onnx,
)
from ticketbench.devices.measure import LatencyConfig, measure_latency
from ticketbench.models.compact import CompactionConfig, compact, kill_channels
from ticketbench.models.cost import analyze
from ticketbench.models.data import DataBundle, load_dataset
from ticketbench.models.export import export_onnx
from ticketbench.models.masks import apply_masks
from ticketbench.models.train import TrainConfig, evaluate, train
from ticketbench.models.zoo import create_model

BATCHES = (1, 32)
TARGET = 1.5  # int8 over fp32 on the compacted VGG-16 ticket at batch 32 (issue 14)


def gamma_channel_mask(model: nn.Module, fraction: float, example: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per conv followed by a BN: the `fraction` of channels with the smallest |γ| (EB's channel importance)."""
    from ticketbench.models import channel_graph as cg

    graph = cg.build(cg.trace(model, example))
    out = {}
    for node in graph.gm.graph.nodes:
        if node.op != "call_module" or not isinstance(graph.module(node), nn.Conv2d):
            continue
        users = list(node.users)
        if len(users) == 1 and users[0].op == "call_module" and isinstance(graph.module(users[0]), nn.BatchNorm2d):
            gamma = graph.module(users[0]).weight.detach().abs()
            k = int(round(len(gamma) * fraction))
            out[str(node.target)] = gamma.argsort()[:k].sort().values
    return out


def zero_masks(model: nn.Module) -> dict[str, torch.Tensor]:
    """A mask for every parameter holding exact zeros: re-applied after each fine-tuning step."""
    return {n: (p != 0).float() for n, p in model.named_parameters() if (p == 0).any()}


def build(
    name: str, data: DataBundle, epochs: int, finetune: int, width: float
) -> list[tuple[str, nn.Module, nn.Module]]:
    """(label, compacted model to export, masked reference) for the dense model and its 50 % channel ticket."""
    torch.manual_seed(0)
    example = torch.zeros(1, *data.input_shape)
    dense = create_model(name, num_classes=10, in_channels=data.input_shape[0], width=width)
    train(dense, data, TrainConfig(epochs=epochs, lr=0.05, seed=0), evaluate_each_epoch=False)
    dense.eval()
    ticket = copy.deepcopy(dense)
    with torch.no_grad():
        kill_channels(ticket, gamma_channel_mask(ticket, 0.5, example), example)
    masks = zero_masks(ticket)
    if finetune:
        train(ticket, data, TrainConfig(epochs=finetune, lr=0.01, seed=1), after_step=[lambda m: apply_masks(m, masks)],
              evaluate_each_epoch=False)  # fmt: skip
    ticket.eval()
    compacted, _ = compact(ticket, example, CompactionConfig(align=8))
    return [(f"{name} dense", dense, dense), (f"{name} EB-style 50% ch", compacted.eval(), ticket)]


def run(quick: bool, threads: int, rounds: int, epochs: int, finetune: int) -> dict:
    load_before = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    data = load_dataset("digits", size=32)
    calib = calibration_set(data, 256, seed=0)
    test = [(x.numpy(), y.numpy()) for x, y in data.loader("test", 256, shuffle=False)]
    xs, ys = [x for x, _ in test], np.concatenate([y for _, y in test])
    workdir = Path(tempfile.mkdtemp(prefix="bench_int8_"))
    width = 0.5 if quick else 1.0
    entries = []  # (label, precision, session, row)
    for name in ("vgg16", "resnet18_cifar"):
        for label, model, reference in build(name, data, epochs, finetune, width):
            stem = label.replace(" ", "_").replace("%", "")
            exp = export_onnx(model, reference, data.input_shape, workdir / f"{stem}.onnx")
            q = quantize_onnx(exp.path, calib, workdir / f"{stem}.int8.onnx", QuantizeConfig())
            ref = ort_outputs(exp.path, xs)
            out8 = ort_outputs(q.path, xs)
            agree = compare_outputs(ref, out8)
            cost = analyze(model, data.input_shape)
            common = {"case": label, "macs": cost.macs, "torch_acc": round(evaluate(reference, data), 2)}
            for precision, path, logits, size in (
                ("fp32", exp.path, ref, exp.size_mb),
                ("int8", q.path, out8, q.size_mb),
            ):
                row = {
                    **common,
                    "precision": precision,
                    "size_mb": round(size, 3),
                    "accuracy": round(100.0 * float((logits.argmax(1) == ys).mean()), 2),
                }
                if precision == "int8":
                    row.update(agreement=round(agree.top1_agreement, 2), max_logit_err=round(agree.max_abs_error, 3),
                               float_nodes=q.float_nodes)  # fmt: skip
                entries.append((label, precision, OrtCpuSession(path, threads), row))
    cfg = LatencyConfig(warmup_iterations=2, warmup_seconds=0.0, min_iterations=3, min_seconds=0.05 if quick else 0.2)
    results = []
    for bs in BATCHES:
        x = np.random.default_rng(0).standard_normal((bs, *data.input_shape), dtype=np.float32)
        samples: list[list[float]] = [[] for _ in entries]
        for _ in range(rounds):  # interleaved windows: every (model, precision) sees the same load over time
            for i, (_, _, sess, _) in enumerate(entries):
                samples[i].extend(measure_latency(sess, x, cfg).samples_ms.tolist())
        p50 = {(e[0], e[1]): float(np.median(s)) for e, s in zip(entries, samples)}
        for (label, precision, _, row), s in zip(entries, samples):
            r = {**row, "batch": bs, "p50_ms": round(p50[label, precision], 3),
                 "p10_ms": round(float(np.percentile(s, 10)), 3), "samples": len(s)}  # fmt: skip
            dense_label = label.split()[0] + " dense"
            r["speedup_vs_dense_same_prec"] = round(p50[dense_label, precision] / p50[label, precision], 2)
            r["speedup_vs_fp32_dense"] = round(p50[dense_label, "fp32"] / p50[label, precision], 2)
            if precision == "int8":
                r["int8_over_fp32"] = round(p50[label, "fp32"] / p50[label, "int8"], 2)
                r["acc_change_pts"] = round(row["accuracy"] - next(
                    e[3]["accuracy"] for e in entries if e[0] == label and e[1] == "fp32"), 2)  # fmt: skip
            results.append(r)
    load_after = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    return {"rows": results, "threads": threads, "rounds": rounds, "epochs": epochs, "finetune_epochs": finetune,
            "width": width, "load_before": load_before, "load_after": load_after}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="half-width models, 1 epoch, short timing windows")
    ap.add_argument("--threads", type=int, default=1, help="ORT intra-op threads")
    ap.add_argument("--rounds", type=int, default=12, help="interleaved timing windows per (model, precision, batch)")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--finetune-epochs", type=int, default=2)
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args()
    torch.set_num_threads(max(1, args.threads))
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, args.threads)))
    t0 = time.time()
    epochs, ft = (1, 1) if args.quick else (args.epochs, args.finetune_epochs)
    out = run(args.quick, args.threads, args.rounds, epochs, ft)
    out["wall_s"] = round(time.time() - t0, 1)
    cols = ["case", "batch", "precision", "accuracy", "p50_ms", "p10_ms", "int8_over_fp32", "acc_change_pts",
            "agreement", "speedup_vs_dense_same_prec", "speedup_vs_fp32_dense", "size_mb"]  # fmt: skip
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for r in out["rows"]:
        print("| " + " | ".join(str(r.get(c, "")) for c in cols) + " |")
    vgg = next(
        r for r in out["rows"] if r["case"] == "vgg16 EB-style 50% ch" and r["batch"] == 32 and "int8_over_fp32" in r
    )
    verdict = "met" if vgg["int8_over_fp32"] >= TARGET else "NOT met"
    print(
        f"target int8 ≥ {TARGET}× fp32 on the compacted VGG-16 ticket at batch 32: {vgg['int8_over_fp32']}× ({verdict})"
    )
    print(f"{out['threads']} ORT thread(s), {out['rounds']} rounds, width {out['width']}, {out['epochs']}+"
          f"{out['finetune_epochs']} epochs, {out['wall_s']} s")  # fmt: skip
    print(f"load before: {out['load_before']}\nload after:  {out['load_after']}")
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
