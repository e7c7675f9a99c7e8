"""Kernel sparsity that pays: structured MPT tickets measured side by side, and the Efficient-MPT claims.

Parts (each runnable alone with `--part a|b|c`; every table is printed with the machine load):

a. ResNet-18 (CIFAR shape, full width) MPT tickets at 90/95 % (`--sparsities`) for `structure = group` with
   `groups = uniform` (one class count for the network) and `groups = auto` (one per channel group), or any
   `--structures`: AR, MAC reduction after compaction (AR / MAC reduction > 1 is sparsity a grouped conv cannot
   skip: zero kernels inside the blocks), blocks per conv, Gathers, and the speedup on ONNX Runtime CPU at batch
   1 and 32. Each ticket is timed beside the dense reference in the same rounds through the runner's own code
   (bench.runner.measure_session: per-round ratios, speedup = 1 / their median, the slowest and fastest round
   beside it, the CPU time other processes took, `disturbed`). realization = speedup / AR (issue 27's figure)
   and speedup / MAC reduction (results.csv's). Score training at this scale is out of reach on a shared CPU,
   so masks are drawn at *score init* (0 search epochs) through the real `mpt` code path: the cost side is the
   method's own, the accuracy side is part b's.
b. The price of structure: top-1 of unstructured vs kernel vs group (auto and uniform) at the same weight
   sparsity (70/90/95 %) on the embedded digits with small_cnn, for magnitude pruning (trained dense parent,
   fine-tuned) and MPT (score training from random weights).
c. The report's claims at small scale: (1) thresholding vs sorting time per training step for α ∈ {1,2,3},
   per-round savings (report Table 2: about 13 % less time per epoch); (2) power-propagation α ∈ {1,2,3} on
   Conv-4/Conv-6, digits, sparsity {0.2, 0.3, 0.5, 0.7, 0.8} so that both readings of the report's "pruning
   ratio" (fraction pruned, or biprop's prune_rate = fraction kept) cover {0.2, 0.3, 0.5, 0.7}, each α at a
   shared lr sweep (0.1/0.3/1.0) and α > 1 at the boundary-matched lr (models/tickets/mpt.py score_lr_scale),
   seeds 0/1, with the fraction of the mask the search changed beside every accuracy (report Fig. 1: α > 1
   helps below p = 0.5, neutral above); (3) fine-tuning first / last / all layers over lr 1e-3..1 × 3/10
   epochs, with the sign flips and α movement that are the only ways a binarized layer can change.

`--claims docs/mpt_claims.md` writes the claims table (the report's claim, our measurement, verdict, why) from
the figures (pure functions below, re-renderable with `--from-json` without measuring again). Nothing here is
tuned to reproduce a claim; directions are reported as measured.

Run: `nice -n 19 python benchmarks/bench_kernel_structure.py [--part a|b|c|all] [--quick] [--json out.json]
[--claims docs/mpt_claims.md]`.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from ticketbench.bench.configs import MeasureConfig
from ticketbench.bench.runner import measure_session
from ticketbench.devices.cpu import OrtCpuSession
from ticketbench.devices.power_meter import PowerMeter
from ticketbench.models.compact import CompactionConfig, compact
from ticketbench.models.cost import analyze
from ticketbench.models.data import load_dataset
from ticketbench.models.export import export_onnx
from ticketbench.models.tickets import TicketConfig, TicketContext, find_ticket

sys.path.insert(0, str(Path(__file__).parent))
from bench_tickets import mpt_step_times  # noqa: E402

STRUCTURES = ("unstructured", "kernel", "group")
SPARSITIES = (0.7, 0.9, 0.95)
SHAPE = (3, 32, 32)
# Columns of the tables printed and written into the claims page.
POWER_COLS = ["model", "p_pruned", "p_kept", "alpha", "lr", "power_lr", "score_lr", "seeds", "accuracy_per_seed"]
POWER_COLS += ["accuracy", "vs_alpha1_lr0.1", "mask_change", "nonfinite_scores"]
FT_COLS = ["finetune", "finetune_lr", "finetune_epochs", "seeds", "accuracy_per_seed", "accuracy", "vs_none_points"]
FT_COLS += ["vs_none_per_seed", "sign_flips", "flip_fraction", "max_rel_alpha_change"]
A_COLS = ["structure", "sparsity", "AR", "mac_reduction", "blocks_per_conv", "gathers"]
TIMING_COLS = ["alpha", "sort_ms_per_step", "threshold_ms_per_step", "threshold_time_saving", "saving_lo", "saving_hi"]


def load() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def _md(rows: list[dict], cols: list[str]) -> str:
    """A markdown table of `cols` (printed by every part, and written into the claims page)."""
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(_fmt(r.get(c)).replace("|", "\\|") for c in cols) + " |" for r in rows]
    return "\n".join(lines)


def _table(rows: list[dict], cols: list[str]) -> None:
    print(_md(rows, cols))


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 100 else f"{v:.1f}"
    return "" if v is None else str(v)


# -- part a -------------------------------------------------------------------------------------------------


def _latency(batch: int) -> MeasureConfig:
    """Per (case, batch): rounds of the ticket's window then the dense reference's (the runner's pairing); the
    iterations and seconds are split over the rounds (`--rounds` replaces the 5 here)."""
    if batch == 1:
        return MeasureConfig(batch_sizes=[1], min_iterations=40, min_seconds=1.0, warmup_iterations=5, rounds=5)
    # batch 32: 40 iterations (8 per round of 5), so that a round's median is not one or two samples of a busy machine
    return MeasureConfig(batch_sizes=[batch], min_iterations=40, min_seconds=2.0, warmup_iterations=2, rounds=5)


def part_a(
    quick: bool,
    threads: int,
    rounds: int,
    structures: tuple[str, ...] = ("group",),
    group_modes: tuple[str, ...] = ("uniform", "auto", "auto@32"),
    sparsities: tuple[float, ...] = (0.9, 0.95),
) -> dict:
    """Realization of structured MPT tickets at score init: every ticket timed beside the dense reference in the
    same rounds (bench.runner.measure_session, as `bench run` does), so its speedup is the median of per-round
    ratios and the spread across rounds is reported beside it."""
    width = 0.5 if quick else 1.0
    data = load_dataset("synthetic", n_train=16, n_test=16)
    ctx = TicketContext()
    workdir = Path(tempfile.mkdtemp(prefix="bench_kernel_structure_"))
    x0 = torch.zeros(1, *SHAPE)
    dense_cfg = TicketConfig(
        "resnet18_cifar", "synthetic", "dense", 0.0, 0, 0, options={"model_kwargs": {"width": width}}
    )
    dense = ctx.fresh_model(dense_cfg, data).eval()
    dense_path = export_onnx(dense, dense, SHAPE, workdir / "dense.onnx", tolerance=1e-3).path
    macs_dense = analyze(dense, SHAPE).macs
    variants = [(st, gm) for st in structures for gm in (group_modes if st == "group" else ("",))]
    rows = []
    t_find = time.time()
    for structure, mode in variants:
        for s in sparsities:
            opts: dict = {"model_kwargs": {"width": width}, "structure": structure, "finetune": "none"}
            if structure == "group":
                groups, _, width_min = mode.partition("@")  # "auto@32": groups=auto, min_group_width=32
                opts["groups"] = groups if groups in ("auto", "uniform") else int(groups)
                if width_min:
                    opts["min_group_width"] = int(width_min)
            t = find_ticket(TicketConfig("resnet18_cifar", "synthetic", "mpt", s, 0, 0, options=opts), data, ctx)
            c, rep = compact(t.model, x0, CompactionConfig(align=8))
            cost, after = analyze(t.model, SHAPE), analyze(c, SHAPE)
            exp = export_onnx(c, t.model, SHAPE, workdir / f"{structure}{mode}-{s}.onnx", tolerance=1e-3)
            blocks = Counter(t.provenance.get("conv_groups", {}).values())
            rows.append(
                {
                    "structure": structure + (f" groups={mode}" if mode else ""),
                    "sparsity": s,
                    "weight_sparsity": cost.weight_sparsity,
                    "kernel_sparsity": cost.kernel_sparsity,
                    "AR": cost.acceleration_rate,
                    "mac_reduction": macs_dense / after.macs,
                    "blocks_per_conv": " ".join(f"{g}×{n}" for g, n in sorted(blocks.items())) or None,
                    "decomposed": len(rep.decomposed),
                    "gathers": sum(d["input_gather"] + d["output_gather"] for d in rep.decomposed),
                    "dead_layers": len(t.artifacts["dead_layers"]),
                    "onnx_err": exp.max_abs_error,
                    "path": exp.path,
                }
            )
    find_s = time.time() - t_find
    reference = OrtCpuSession(dense_path, threads)
    for batch in (1, 32):
        m = _latency(batch)
        m = replace(m, rounds=rounds)
        for r in rows:
            (bm,) = measure_session(OrtCpuSession(r["path"], threads), SHAPE, m, PowerMeter(), reference, threads)
            col = bm.columns
            r[f"p50_ms_b{batch}"] = col["latency_ms_p50"]
            r[f"dense_p50_ms_b{batch}"] = float(np.median(bm.reference.samples_ms)) if bm.reference else None
            r[f"speedup_b{batch}"] = col.get("speedup")
            r[f"speedup_lo_b{batch}"] = col.get("speedup_lo")
            r[f"speedup_hi_b{batch}"] = col.get("speedup_hi")
            r[f"round_cv_b{batch}"] = col.get("speedup_round_cv")
            r[f"other_load_cores_b{batch}"] = col.get("other_load_cores")
            r[f"disturbed_b{batch}"] = col.get("disturbed")
            sp = col.get("speedup")
            r[f"realization_b{batch}"] = sp / r["AR"] if sp else None  # the figure: of the AR
            r[f"realization_macs_b{batch}"] = sp / r["mac_reduction"] if sp else None  # results.csv's realization
    for r in rows:
        r.pop("path")
        r["AR_over_mac_reduction"] = r["AR"] / r["mac_reduction"]
    cols = ["structure", "sparsity", "weight_sparsity", "AR", "mac_reduction", "AR_over_mac_reduction"]
    cols += ["blocks_per_conv", "decomposed", "gathers", "dead_layers", "onnx_err"]
    print(
        f"\n## a. ResNet-18 CIFAR width {width}: MPT tickets at score init (0 search epochs), ORT CPU, {threads} thread"
    )
    _table(rows, cols)
    for batch in (1, 32):
        print(f"\nbatch {batch}: paired speedup over {rounds} rounds (median [slowest, fastest round]), realization")
        _table(
            [{**r, "speedup [lo, hi]": _spread(r, batch)} for r in rows],
            ["structure", "sparsity", "AR", "mac_reduction", f"p50_ms_b{batch}", f"dense_p50_ms_b{batch}"]
            + ["speedup [lo, hi]", f"round_cv_b{batch}", f"realization_b{batch}", f"realization_macs_b{batch}"]
            + [f"other_load_cores_b{batch}", f"disturbed_b{batch}"],
        )
    print(f"search (score init) + compaction + export {find_s:.0f} s; load: {load()}")
    convs = conv_realization(threads, rounds, width)
    return {"width": width, "threads": threads, "rounds": rounds, "rows": rows, "conv_rows": convs, "load": load()}


def conv_realization(threads: int, rounds: int, width: float = 1.0) -> list[dict]:
    """One grouped 3×3 conv (+ ReLU) per ResNet-18 CIFAR stage shape against its dense conv, paired, at batch 1
    and 32: how much of a g-fold MAC cut ONNX Runtime delivers per stage (where a ticket's realization goes)."""
    workdir = Path(tempfile.mkdtemp(prefix="bench_kernel_structure_conv_"))
    rows = []
    for c, hw in ((int(64 * width), 32), (int(128 * width), 16), (int(256 * width), 8), (int(512 * width), 4)):
        paths = {}
        for g in (1, 2, 4, 8, 16):
            if c // g < 16:
                continue
            conv = torch.nn.Sequential(torch.nn.Conv2d(c, c, 3, padding=1, groups=g), torch.nn.ReLU()).eval()
            paths[g] = export_onnx(conv, conv, (c, hw, hw), workdir / f"c{c}g{g}.onnx").path
        for batch in (1, 32):
            m = replace(_latency(batch), rounds=rounds)
            reference = OrtCpuSession(paths[1], threads)
            for g, path in paths.items():
                if g == 1:
                    continue
                (bm,) = measure_session(OrtCpuSession(path, threads), (c, hw, hw), m, PowerMeter(), reference, threads)
                col = bm.columns
                rows.append(
                    {
                        "channels": c,
                        "hw": hw,
                        "groups": g,
                        "class_width": c // g,
                        "batch": batch,
                        "speedup": col.get("speedup"),
                        "speedup_lo": col.get("speedup_lo"),
                        "speedup_hi": col.get("speedup_hi"),
                        "realization": col["speedup"] / g if col.get("speedup") else None,
                        "disturbed": col.get("disturbed"),
                    }
                )
    print("\nPer stage: one grouped 3×3 conv vs its dense conv (paired rounds), realization = speedup / groups")
    _table(
        rows,
        ["channels", "hw", "groups", "class_width", "batch", "speedup", "speedup_lo", "speedup_hi"]
        + [
            "realization",
            "disturbed",
        ],
    )
    print(f"load: {load()}")
    return rows


def _spread(r: dict, batch: int) -> str:
    sp, lo, hi = (r.get(f"{k}_b{batch}") for k in ("speedup", "speedup_lo", "speedup_hi"))
    return "" if sp is None else f"{sp:.2f} [{lo:.2f}, {hi:.2f}]"


# -- part b -------------------------------------------------------------------------------------------------


def part_b(quick: bool) -> dict:
    data = load_dataset("digits")
    ctx = TicketContext()
    rows = []
    mag_epochs, mpt_epochs = (6, 4) if quick else (12, 10)
    dense = find_ticket(
        TicketConfig(
            "small_cnn", "digits", "dense", 0.0, mag_epochs, 0, 0.05, 64, options={"model_kwargs": {"width": 32}}
        ),
        data,
        ctx,
    )
    rows.append({"method": "dense", "structure": "", "sparsity": 0.0, "accuracy": dense.accuracy, "AR": 1.0})
    for method in ("magnitude", "mpt"):
        for s in SPARSITIES:
            for structure in (*STRUCTURES, "group-uniform"):
                opts: dict = {"model_kwargs": {"width": 32}, "structure": structure.removesuffix("-uniform")}
                if structure == "group-uniform":
                    opts["groups"] = "uniform"
                if method == "mpt":
                    opts["finetune"] = "none"
                    cfg = TicketConfig("small_cnn", "digits", "mpt", s, mpt_epochs, 0, 0.1, 64, options=opts)
                else:
                    cfg = TicketConfig("small_cnn", "digits", "magnitude", s, mag_epochs, 3, 0.05, 64, options=opts)
                t = find_ticket(cfg, data, ctx)
                cost = analyze(t.model, data.input_shape)
                g = t.provenance.get("conv_groups", {})
                rows.append(
                    {
                        "method": method,
                        "structure": structure,
                        "sparsity": s,
                        "weight_sparsity": cost.weight_sparsity,
                        "accuracy": t.accuracy,
                        "AR": cost.acceleration_rate,
                        "groups": max(g.values()) if g else None,
                    }
                )
    base = {(r["method"], r["sparsity"]): r["accuracy"] for r in rows if r["structure"] == "unstructured"}
    for r in rows:
        if r["method"] != "dense":
            r["vs_unstructured_points"] = r["accuracy"] - base[(r["method"], r["sparsity"])]
    print(
        f"\n## b. Price of structure: small_cnn (width 32) on digits; magnitude {mag_epochs}+3 epochs, MPT {mpt_epochs}"
    )
    _table(
        rows,
        ["method", "structure", "sparsity", "weight_sparsity", "AR", "groups", "accuracy", "vs_unstructured_points"],
    )
    print(f"load: {load()}")
    return {"rows": rows, "load": load()}


# -- part c -------------------------------------------------------------------------------------------------

# Sparsity = the fraction REMOVED. The report's "pruning ratio" p reads two ways: fraction pruned (p = sparsity) or
# biprop's prune_rate, the fraction kept (p = 1 − sparsity). {0.2, 0.3, 0.5, 0.7, 0.8} covers p ∈ {0.2, 0.3, 0.5,
# 0.7} under both readings.
POWER_SPARSITIES = (0.2, 0.3, 0.5, 0.7, 0.8)
# (α, base lr, power_lr): every α at the lr sweep, and α > 1 at the boundary-matched lr (score_lr_scale).
POWER_SETTINGS = [(a, lr, "shared") for a in (1.0, 2.0, 3.0) for lr in (0.1, 0.3, 1.0)] + [
    (2.0, 0.1, "boundary"),
    (3.0, 0.1, "boundary"),
]
FT_LAYERS = ("first", "last", "all")
FT_LRS = (1e-3, 1e-2, 1e-1, 1.0)
FT_EPOCHS = (3, 10)
DIGITS_KW = {"width": 0.5, "input_size": 8}


def _mean(v: list[float]) -> float:
    return float(np.mean(v)) if v else float("nan")


def power_grid(quick: bool, seeds: tuple[int, ...]) -> list[dict]:
    """Power-propagation on digits: every (model, sparsity, α, lr setting, seed), with the mask-change fraction."""
    data = load_dataset("digits")
    epochs = {"conv4": 6 if quick else 10, "conv6": 4 if quick else 6}
    settings = POWER_SETTINGS[:1] + POWER_SETTINGS[3:4] + POWER_SETTINGS[-2:] if quick else POWER_SETTINGS
    rows = []
    for model, ep in epochs.items():
        for s in POWER_SPARSITIES:
            for alpha, lr, rule in settings:
                for seed in seeds:
                    opts = {"model_kwargs": DIGITS_KW, "power": alpha, "power_lr": rule, "finetune": "none"}
                    cfg = TicketConfig(model, "digits", "mpt", s, ep, 0, lr, 64, seed, options=opts)
                    t = find_ticket(cfg, data)
                    scale = list(t.artifacts["score_lr_scale"].values())
                    rows.append(
                        {
                            "model": model,
                            "epochs": ep,
                            "sparsity": s,
                            "p_pruned": s,
                            "p_kept": round(1 - s, 3),
                            "alpha": alpha,
                            "lr": lr,
                            "power_lr": rule,
                            "score_lr": f"{lr * min(scale):.3g}-{lr * max(scale):.3g}",
                            "seed": seed,
                            "accuracy": t.accuracy,
                            "mask_change": t.artifacts["mask_change_fraction"],
                            "nonfinite_scores": t.artifacts["nonfinite_scores"],
                        }
                    )
                    print(
                        f"  {model} s={s} α={alpha} lr={lr} {rule} seed {seed}: {t.accuracy:.1f} % "
                        f"change {t.artifacts['mask_change_fraction']:.3f}",
                        flush=True,
                    )
    return rows


def power_summary(rows: list[dict]) -> list[dict]:
    """Seeds pooled per (model, sparsity, α, lr setting); Δ against α = 1 at lr 0.1 (the search default)."""
    cells: dict[tuple, list[dict]] = {}
    for r in rows:
        cells.setdefault((r["model"], r["sparsity"], r["alpha"], r["lr"], r["power_lr"]), []).append(r)
    out = []
    for (model, s, *_), rs in cells.items():
        base = cells.get((model, s, 1.0, 0.1, "shared"), [])
        acc = [r["accuracy"] for r in rs]
        out.append(
            {
                **{k: rs[0][k] for k in ("model", "sparsity", "p_pruned", "p_kept", "alpha", "lr", "power_lr")},
                "score_lr": rs[0]["score_lr"],
                "seeds": ",".join(str(r["seed"]) for r in rs),
                "accuracy_per_seed": "/".join(f"{a:.1f}" for a in acc),
                "accuracy": _mean(acc),
                "vs_alpha1_lr0.1": _mean(acc) - _mean([r["accuracy"] for r in base]),
                "mask_change": _mean([r["mask_change"] for r in rs]),
                "nonfinite_scores": sum(r["nonfinite_scores"] for r in rs),
            }
        )
    return out


def finetune_grid(quick: bool, seeds: tuple[int, ...]) -> list[dict]:
    """Conv-4 on digits at sparsity 0.5 (both readings agree): the same search, then fine-tuning over a grid."""
    data = load_dataset("digits")
    search = 6 if quick else 10
    grid = [("none", 0.0, 0)] + [
        (which, lr, ep)
        for which in (("last", "all") if quick else FT_LAYERS)
        for lr in FT_LRS
        for ep in (FT_EPOCHS[:1] if quick else FT_EPOCHS)
    ]
    rows = []
    for which, lr, ep in grid:
        for seed in seeds:
            opts = {"model_kwargs": DIGITS_KW, "finetune": which, "finetune_lr": lr or 1e-3}
            t = find_ticket(TicketConfig("conv4", "digits", "mpt", 0.5, search, ep, 0.1, 64, seed, options=opts), data)
            rep = t.artifacts["finetune"]
            kept = sum(v["kept"] for v in rep.values())
            flips = sum(v["sign_flips"] for v in rep.values())
            rows.append(
                {
                    "finetune": which,
                    "finetune_lr": lr,
                    "finetune_epochs": ep,
                    "seed": seed,
                    "accuracy": t.accuracy,
                    "sign_flips": flips,
                    "kept_tuned": kept,
                    "flip_fraction": flips / kept if kept else 0.0,
                    "max_rel_alpha_change": max(
                        (abs(v["alpha_change"]) / v["alpha_before"] for v in rep.values()), default=0.0
                    ),
                }
            )
            print(f"  finetune {which} lr {lr} {ep} ep seed {seed}: {t.accuracy:.1f} % flips {flips}", flush=True)
    return rows


def finetune_summary(rows: list[dict]) -> list[dict]:
    """Seeds pooled per (layers, lr, epochs); Δ against no fine-tuning from the same searches (paired by seed)."""
    none = {r["seed"]: r["accuracy"] for r in rows if r["finetune"] == "none"}
    cells: dict[tuple, list[dict]] = {}
    for r in rows:
        cells.setdefault((r["finetune"], r["finetune_lr"], r["finetune_epochs"]), []).append(r)
    out = []
    for (which, lr, ep), rs in cells.items():
        acc = [r["accuracy"] for r in rs]
        out.append(
            {
                "finetune": which,
                "finetune_lr": lr,
                "finetune_epochs": ep,
                "seeds": ",".join(str(r["seed"]) for r in rs),
                "accuracy_per_seed": "/".join(f"{a:.1f}" for a in acc),
                "accuracy": _mean(acc),
                "vs_none_points": _mean([r["accuracy"] - none[r["seed"]] for r in rs]),
                "vs_none_per_seed": "/".join(f"{r['accuracy'] - none[r['seed']]:+.1f}" for r in rs),
                "sign_flips": "/".join(str(r["sign_flips"]) for r in rs),
                "flip_fraction": _mean([r["flip_fraction"] for r in rs]),
                "max_rel_alpha_change": max(r["max_rel_alpha_change"] for r in rs),
            }
        )
    return out


def part_c(quick: bool, seeds: tuple[int, ...] = (0, 1), timing_rounds: int = 4) -> dict:
    out: dict = {"seeds": list(seeds)}
    steps = 2
    timing = []
    for alpha in (1.0, 2.0, 3.0):
        rounds = [mpt_step_times("conv4", 1.0, 64, steps, 1, "cpu", alpha) for _ in range(timing_rounds)]
        saving = [r["threshold_time_saving"] for r in rounds]
        timing.append(
            {
                "alpha": alpha,
                "scores": rounds[0]["scores"],
                "sort_ms_per_step": float(np.median([r["sort_ms_per_step"] for r in rounds])),
                "threshold_ms_per_step": float(np.median([r["threshold_ms_per_step"] for r in rounds])),
                "threshold_time_saving": float(np.median(saving)),
                "saving_lo": min(saving),
                "saving_hi": max(saving),
            }
        )
    out["threshold_vs_sort"] = timing
    print(
        f"\n## c1. Thresholding vs sorting, ms per MPT training step (conv4 full width, batch 64, CIFAR shape; "
        f"{timing_rounds} rounds, each sort then threshold)"
    )
    print("report (ResNet-18, GPU): 24.3/25.4/26.8 s vs 21.5/22.3/24.5 s per epoch for α = 1/2/3, about 11-13 % less")
    _table(
        timing,
        ["alpha", "scores", "sort_ms_per_step", "threshold_ms_per_step", "threshold_time_saving"]
        + [
            "saving_lo",
            "saving_hi",
        ],
    )
    print(f"load: {load()}")

    out["power_propagation_runs"] = grid = power_grid(quick, seeds)
    out["power_propagation"] = power_summary(grid)
    out["finetune_runs"] = ft = finetune_grid(quick, seeds)
    out["finetune"] = finetune_summary(ft)
    for title, claim, key, cols in (
        (
            "c2. Power-propagation on digits (Conv-4 10 / Conv-6 6 search epochs, width 0.5, 8×8 input)",
            "report Fig. 1 (CIFAR-10): α > 1 raises accuracy below pruning ratio 0.5, about equal above",
            "power_propagation",
            POWER_COLS,
        ),
        (
            "c3. Fine-tuning Conv-4 on digits, sparsity 0.5, 10 search epochs (lr 0.1), then SGD cosine, mask fixed",
            "report Fig. 3 / Table 1 (lr 1e-3): fine-tuning helps slightly, the last layer most",
            "finetune",
            FT_COLS,
        ),
    ):
        print(f"\n## {title}\n{claim}")
        _table(out[key], cols)
    out["load"] = load()
    print(f"load: {out['load']}")
    return out


# -- the claims table ----------------------------------------------------------------------------------------
# Pure functions of the figures (no I/O), so the table can be re-rendered from saved JSON (`--from-json`).

ACCURACY_FLOOR = 1.0  # points: an accuracy difference below this, or below the seeds' own range, is "equal"
REALIZATION_TARGETS = {0.9: 0.9, 0.95: 0.8}  # issue 27, ResNet-18 CIFAR, batch 32 (the 90 % one needs AR ≥ 4)
CLAIMS_BEGIN, CLAIMS_END = (
    "<!-- claims:begin (generated by benchmarks/bench_kernel_structure.py) -->",
    "<!-- claims:end -->",
)


def compare_accuracy(a: list[float], b: list[float], floor: float = ACCURACY_FLOOR) -> tuple[float, float, str]:
    """(Δ = mean a − mean b, noise, higher|equal|lower): equal unless |Δ| exceeds both the floor and the range of
    either side's seeds (one seed's luck must not decide a direction)."""
    delta = float(np.mean(a) - np.mean(b))
    noise = max(floor, max(a) - min(a), max(b) - min(b))
    return delta, noise, "higher" if delta > noise else "lower" if delta < -noise else "equal"


def _runs(rows: list[dict], **match) -> list[float]:
    return [r["accuracy"] for r in rows if all(r[k] == v for k, v in match.items())]


def own_lr_accuracy(rows: list[dict], model: str, sparsity: float, alpha: float) -> tuple[str, list[float]]:
    """α's accuracies (per seed) at its own best lr setting: the sweep and, for α > 1, the boundary rule."""
    settings = sorted({(r["lr"], r["power_lr"]) for r in rows if r["alpha"] == alpha})
    best = max(
        settings,
        key=lambda st: _mean(_runs(rows, model=model, sparsity=sparsity, alpha=alpha, lr=st[0], power_lr=st[1])),
    )
    label = "boundary rule" if best[1] == "boundary" else f"lr {best[0]:g}"
    return label, _runs(rows, model=model, sparsity=sparsity, alpha=alpha, lr=best[0], power_lr=best[1])


def power_claim(rows: list[dict], reading: str, below: bool) -> dict:
    """The report's Fig. 1 claim for one reading of "pruning ratio" (pruned: p = sparsity; kept: biprop's
    prune_rate, p = 1 − sparsity): α > 1 raises accuracy below p = 0.5 (below=True) / about equal above."""
    key = "p_pruned" if reading == "pruned" else "p_kept"
    cells = sorted({(r["model"], r["sparsity"], r[key]) for r in rows if (r[key] < 0.5) == below and r[key] != 0.5})
    parts, verdicts = [], []
    for model, s, p in cells:
        base_label, base = own_lr_accuracy(rows, model, s, 1.0)
        best, texts = None, []
        for alpha in sorted({r["alpha"] for r in rows if r["alpha"] > 1}):
            label, acc = own_lr_accuracy(rows, model, s, alpha)
            d, noise, v = compare_accuracy(acc, base)
            rule = _runs(rows, model=model, sparsity=s, alpha=alpha, power_lr="boundary")
            shared = _runs(rows, model=model, sparsity=s, alpha=alpha, lr=0.1, power_lr="shared")
            d_rule = compare_accuracy(rule, base)[0] if rule else float("nan")
            d_shared = compare_accuracy(shared, _runs(rows, model=model, sparsity=s, alpha=1.0, lr=0.1))[0]
            texts.append(f"α={alpha:g} {d:+.1f} at {label} (rule {d_rule:+.1f}, shared lr 0.1 {d_shared:+.1f})")
            if best is None or d > best[0]:
                best = (d, v, noise)
        if best is not None:
            verdicts.append(best[1])
            parts.append(
                f"{model} p={p:g} [α=1 at {base_label}]: {', '.join(texts)}; best: {best[1]}, noise {best[2]:.1f}"
            )
    want = "higher" if below else "equal"
    hits = sum(v == want for v in verdicts) + (0 if below else sum(v == "higher" for v in verdicts))
    n = len(verdicts)
    verdict = "reproduced" if n and hits == n else "not reproduced" if hits == 0 else f"partly ({hits} of {n} cells)"
    what = "raises accuracy" if below else "about equal (never worse)"
    side = "below" if below else "above"
    return {
        "claim": f"power-propagation α > 1 {what} {side} pruning ratio 0.5 (ratio = fraction {reading})",
        "source": "Efficient-MPT report Fig. 1",
        "measurement": "; ".join(parts) or "not measured in this run",
        "verdict": verdict if n else "not measured",
        "why": "each α at its own best lr (sweep 0.1/0.3/1.0 and the boundary rule); best α > 1 per cell; lr "
        "chosen on the test split for both sides; digits, conv4/conv6 width 0.5, 140-230 steps",
    }


def shared_lr_claim(rows: list[dict]) -> dict:
    """What the earlier table said (α = 2 hurts) against what the mask-change fraction says it was (a stall)."""
    parts, worse, stalled = [], 0, 0
    cells = sorted({(r["model"], r["sparsity"]) for r in rows})
    for model, s in cells:
        one = [
            r
            for r in rows
            if (r["model"], r["sparsity"], r["alpha"], r["lr"], r["power_lr"]) == (model, s, 1.0, 0.1, "shared")
        ]
        two = [
            r
            for r in rows
            if (r["model"], r["sparsity"], r["alpha"], r["lr"], r["power_lr"]) == (model, s, 2.0, 0.1, "shared")
        ]
        rule = [
            r for r in rows if (r["model"], r["sparsity"], r["alpha"], r["power_lr"]) == (model, s, 2.0, "boundary")
        ]
        if not (one and two):
            continue
        d, _, v = compare_accuracy([r["accuracy"] for r in two], [r["accuracy"] for r in one])
        c1, c2 = _mean([r["mask_change"] for r in one]), _mean([r["mask_change"] for r in two])
        cr = _mean([r["mask_change"] for r in rule]) if rule else float("nan")
        worse += v == "lower"
        stalled += c2 < 0.5 * c1
        parts.append(f"{model} s={s:g}: {d:+.1f} pts, mask change {c2:.3f} vs {c1:.3f} (rule: {cr:.3f})")
    n = len(parts)
    return {
        "claim": "(this project's earlier table) α = 2 is 3-60 points worse than α = 1",
        "source": "bench_kernel_structure c2 before issue 27 (shared lr 0.1)",
        "measurement": "α = 2 vs α = 1 at lr 0.1: " + "; ".join(parts) if parts else "not measured in this run",
        "verdict": (
            f"reproduced at a shared lr only ({worse} of {n} cells worse; α = 2 changed less than half as "
            f"much of the mask in {stalled} of {n}): a stalled search, see the rows above"
        )
        if n
        else "not measured",
        "why": "score_lr_scale: at a shared lr α = 2 moves boundary scores 4τ as fast as α = 1 (τ ≈ 0.008-0.04)",
    }


def finetune_claim(rows: list[dict]) -> dict:
    """Report Fig. 3 / Table 1: fine-tuning (SGD lr 1e-3, cosine) helps slightly, the last layer most."""
    none = {r["seed"]: r["accuracy"] for r in rows if r["finetune"] == "none"}
    if not none:
        return {
            "claim": "fine-tuning helps slightly, the last layer most",
            "source": "report Fig. 3 / Table 1",
            "measurement": "not measured in this run",
            "verdict": "not measured",
            "why": "",
        }
    cells: dict[tuple, list[dict]] = {}
    for r in rows:
        if r["finetune"] != "none":
            cells.setdefault((r["finetune"], r["finetune_lr"], r["finetune_epochs"]), []).append(r)
    parts = [f"without fine-tuning {_mean(list(none.values())):.1f} %"]
    report_budget = [rs for (w, lr, ep), rs in cells.items() if lr == 1e-3 and ep == 3]
    flips_at_report = sum(r["sign_flips"] for rs in report_budget for r in rs)
    parts.append(f"at the report's lr 1e-3 × 3 epochs: {flips_at_report} sign flips over all layer choices and seeds")
    helped: dict[str, tuple[float, str]] = {}
    for which in FT_LAYERS:
        mine = sorted(((lr * ep, lr, ep), rs) for (w, lr, ep), rs in cells.items() if w == which)
        if not mine:
            continue
        first = next(((lr, ep) for (_, lr, ep), rs in mine if any(r["sign_flips"] > 0 for r in rs)), None)
        best = None
        for (_, lr, ep), rs in mine:
            d, noise, v = compare_accuracy([r["accuracy"] for r in rs], [none[r["seed"]] for r in rs])
            if best is None or d > best[0]:
                best = (d, f"lr {lr:g} × {ep} ep", v, noise)
        assert best is not None
        helped[which] = (best[0], best[2])
        first_s = f"first flips at lr {first[0]:g} × {first[1]} ep" if first else "no flips in the grid"
        parts.append(f"{which}: {first_s}; best {best[0]:+.1f} pts at {best[1]} ({best[2]}, noise {best[3]:.1f})")
    helps = [w for w, (_, v) in helped.items() if v == "higher"]
    last_most = bool(helped) and max(helped, key=lambda w: helped[w][0]) == "last"
    if helps and last_most:
        verdict = "reproduced"
    elif helps:
        verdict = f"partly: helps ({', '.join(helps)}), but the last layer is not the best"
    else:
        verdict = "not reproduced: no budget in the grid beats no fine-tuning beyond the noise"
    return {
        "claim": "fine-tuning the latent weights (SGD lr 1e-3, cosine) helps slightly, the last layer most",
        "source": "Efficient-MPT report Fig. 3 / Table 1",
        "measurement": "; ".join(parts),
        "verdict": verdict,
        "why": "with α·sign(W)·M only a sign flip (or α between layers) changes the network; grid lr "
        "1e-3..1 × 3/10 epochs; conv4 digits sparsity 0.5, where the search alone is near the data set's ceiling, "
        "so a slight gain is below what 2 seeds resolve",
    }


def threshold_claim(timing: list[dict]) -> dict:
    """Report Table 2: thresholding saves about 11-13 % of the time per epoch against sorting."""
    if not timing:
        return {
            "claim": "thresholding instead of sorting saves about 11-13 % time per epoch",
            "source": "report Table 2",
            "measurement": "not measured in this run",
            "verdict": "not measured",
            "why": "",
        }
    parts = [
        f"α={t['alpha']:g}: {t['threshold_time_saving']:.0%} [{t['saving_lo']:.0%}, {t['saving_hi']:.0%}]"
        for t in timing
    ]
    all_pos = all(t["saving_lo"] > 0 for t in timing)
    all_neg = all(t["saving_hi"] < 0 for t in timing)
    verdict = (
        "reproduced in direction"
        if all_pos
        else "not reproduced"
        if all_neg
        else "not resolved: rounds disagree in sign"
    )
    return {
        "claim": "thresholding instead of sorting saves about 11-13 % time per epoch",
        "source": "Efficient-MPT report Table 2 (ResNet-18, GPU)",
        "measurement": "time saved per step, median [rounds' range]: " + "; ".join(parts),
        "verdict": verdict,
        "why": "conv4 at full width on a shared 2-core CPU (nice 19): the sort's share of a step differs from "
        "a GPU's, so the size of the saving is not testable at this scale, only its direction",
    }


def realization_claim(rows: list[dict]) -> dict:
    """Issue 27's target for the seeds' inference claim: group tickets realize ≥ 0.9 of AR ≥ 4 at 90 % and ≥ 0.8
    at 95 % (ResNet-18 CIFAR, batch 32). Judged per groups mode; the verdict names the default (auto) first."""
    parts = []
    reached: dict[float, list[str]] = {t: [] for t in REALIZATION_TARGETS}
    best: dict[float, str] = {}
    measured = False
    for r in rows:
        if not r["structure"].startswith("group"):
            continue
        mode = r["structure"].removeprefix("group groups=")
        for b in (1, 32):
            if r.get(f"speedup_b{b}") is None:
                continue
            parts.append(
                f"{mode} {r['sparsity']:.0%} b{b}: AR {r['AR']:.2f}, speedup {_spread(r, b)}, realization "
                f"{r[f'realization_b{b}']:.2f} of AR ({r[f'realization_macs_b{b}']:.2f} of the MAC reduction "
                f"{r['mac_reduction']:.2f})"
            )
        s = r["sparsity"]
        if s in REALIZATION_TARGETS and r.get("realization_b32") is not None:
            measured = True
            if r["realization_b32"] >= REALIZATION_TARGETS[s] and (r["AR"] >= 4 or s != 0.9):
                reached[s].append(mode)
            elif s not in best or r["realization_b32"] > float(best[s].split()[0]):
                best[s] = f"{r['realization_b32']:.2f} {mode} at AR {r['AR']:.2f}"
    if not measured:
        verdict = "not measured"
    elif all("auto" in modes for modes in reached.values()):
        verdict = "reached"
    else:
        each = [
            f"{s:.0%}: reached by {', '.join(modes)}" if modes else f"{s:.0%}: not reached (best {best.get(s, '-')})"
            for s, modes in reached.items()
        ]
        verdict = "not reached with the default groups=auto at batch 32; " + "; ".join(each)
    return {
        "claim": "group-structured kernel tickets realize their AR: ≥ 0.9 at AR ≥ 4 (90 %), ≥ 0.8 at 95 % "
        "(ResNet-18 CIFAR, batch 32)",
        "source": "the seeds' inference claim; targets from issue 27",
        "measurement": "; ".join(parts) or "not measured in this run",
        "verdict": verdict,
        "why": "masks at score init through the mpt code path (cost side only); ORT CPU 1 thread, every ticket "
        "timed beside the dense model in the same rounds; realization = paired speedup / AR; per-stage grouped "
        "conv figures below say where it goes",
    }


NOT_TESTABLE = {
    "claim": "the report's CIFAR-10 accuracies (Conv-4/6, ResNet-18 at 39k search steps)",
    "source": "Efficient-MPT report Fig. 1-3",
    "measurement": "",
    "verdict": "not testable at this scale",
    "why": "no CIFAR-10 in the embedded data and ~39,000 search steps are out of reach on 2 shared cores; "
    "the rows above test directions on digits at 140-230 steps",
}


def claims(figures: dict) -> list[dict]:
    """The claims table rows from the benchmark's figures (parts a and c; missing parts say so)."""
    c = figures.get("c", {})
    pp = c.get("power_propagation_runs", [])
    rows = [threshold_claim(c.get("threshold_vs_sort", []))]
    for reading in ("pruned", "kept"):
        rows += [power_claim(pp, reading, below=True), power_claim(pp, reading, below=False)]
    rows.append(shared_lr_claim(pp))
    rows.append(finetune_claim(c.get("finetune_runs", [])))
    rows.append(realization_claim(figures.get("a", {}).get("rows", [])))
    rows.append(NOT_TESTABLE)
    return rows


def render_claims(rows: list[dict], meta: str, figures: dict | None = None) -> str:
    """The generated block: the claims table, then the figures it was read from."""

    def cell(v: str) -> str:
        return str(v).replace("|", "\\|").replace("\n", " ")

    lines = [
        CLAIMS_BEGIN,
        "",
        meta,
        "",
        "| claim | source | our measurement | verdict | why / scale |",
        "|---|---|---|---|---|",
    ]
    lines += [
        "| " + " | ".join(cell(r[k]) for k in ("claim", "source", "measurement", "verdict", "why")) + " |" for r in rows
    ]
    figures = figures or {}
    a, c = figures.get("a", {}), figures.get("c", {})
    if a.get("rows"):
        lines += [
            "",
            f"### Group tickets: realization (ResNet-18 CIFAR width {a['width']}, ORT CPU {a['threads']} "
            f"thread, {a['rounds']} paired rounds)",
            "",
            f"Load: {a.get('load', '-')}.",
            "",
        ]
        cols = list(A_COLS)
        for b in (1, 32):
            cols += [f"speedup [lo, hi] b{b}", f"realization_b{b}", f"realization_macs_b{b}", f"disturbed_b{b}"]
        table = [{**r, **{f"speedup [lo, hi] b{b}": _spread(r, b) for b in (1, 32)}} for r in a["rows"]]
        lines.append(_md(table, cols))
    if a.get("conv_rows"):
        lines += [
            "",
            "One grouped 3×3 conv per stage shape vs its dense conv (paired), realization = speedup / groups:",
            "",
        ]
        lines.append(
            _md(
                a["conv_rows"],
                ["channels", "hw", "groups", "class_width", "batch", "speedup", "speedup_lo"]
                + ["speedup_hi", "realization", "disturbed"],
            )
        )
    if c.get("power_propagation"):
        lines += ["", f"### Power-propagation (digits, seeds {c.get('seeds')})", "", f"Load: {c.get('load', '-')}.", ""]
        lines.append(_md(c["power_propagation"], POWER_COLS))
    if c.get("finetune"):
        lines += ["", "### Fine-tuning (Conv-4, digits, sparsity 0.5, the same searches per seed)", ""]
        lines.append(_md(c["finetune"], FT_COLS))
    if c.get("threshold_vs_sort"):
        lines += ["", "### Thresholding vs sorting (ms per step, conv4 full width, batch 64, median of rounds)", ""]
        lines.append(_md(c["threshold_vs_sort"], TIMING_COLS))
    return "\n".join([*lines, "", CLAIMS_END])


def replace_between_markers(text: str, block: str) -> str:
    """`text` with its claims block replaced by `block` (appended when the markers are missing)."""
    if CLAIMS_BEGIN in text and CLAIMS_END in text:
        head, rest = text.split(CLAIMS_BEGIN, 1)
        return head + block + rest.split(CLAIMS_END, 1)[1]
    return text.rstrip("\n") + "\n\n" + block + "\n"


def _git_sha() -> str:
    r = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=Path(__file__).parent
    )
    return r.stdout.strip() or "unknown"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--part", choices=["a", "b", "c", "all", "none"], default="all")
    ap.add_argument("--quick", action="store_true", help="half-width ResNet-18, fewer epochs, settings and grid")
    ap.add_argument("--threads", type=int, default=1, help="ORT intra-op threads (part a)")
    ap.add_argument("--rounds", type=int, default=5, help="paired timing rounds per (case, batch) (part a)")
    ap.add_argument("--structures", default="group", help="comma list of structures timed in part a")
    ap.add_argument(
        "--groups", default="uniform,auto,auto@32", help="groups modes of part a's group tickets; @N: min_group_width N"
    )
    ap.add_argument("--sparsities", default="0.9,0.95", help="comma list of sparsities of part a")
    ap.add_argument("--seeds", default="0,1", help="comma list of seeds of parts c2 and c3")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    ap.add_argument("--from-json", type=Path, nargs="*", default=[], help="figures of earlier runs (merged by part)")
    ap.add_argument("--claims", type=Path, help="write the claims table into this markdown file (between markers)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    start_load = load()
    print(f"load at start: {start_load}; {os.cpu_count()} CPUs")
    out: dict = {}
    for f in args.from_json:
        out.update({k: v for k, v in json.loads(f.read_text()).items() if k in ("a", "b", "c")})
    loaded = sorted(out)
    t0 = time.time()
    if args.part in ("a", "all"):
        out["a"] = part_a(
            args.quick,
            args.threads,
            args.rounds,
            tuple(args.structures.split(",")),
            tuple(args.groups.split(",")),
            tuple(float(x) for x in args.sparsities.split(",")),
        )
    if args.part in ("b", "all"):
        out["b"] = part_b(args.quick)
    if args.part in ("c", "all"):
        out["c"] = part_c(args.quick, tuple(int(x) for x in args.seeds.split(",")))
    out["wall_s"] = round(time.time() - t0, 1)
    end_load = load()
    print(f"\nwall {out['wall_s']} s; load at end: {end_load}")
    if args.json:
        args.json.write_text(json.dumps(out, indent=2, default=str))
    if args.claims:
        loads = "; ".join(f"part {k}: {out[k]['load']}" for k in ("a", "c") if k in out and "load" in out[k])
        saved = f"; parts {', '.join(loaded)} from earlier runs' figures" if loaded else ""
        meta = (
            f"Generated by `python benchmarks/bench_kernel_structure.py`, rendered at git {_git_sha()} on "
            f"{os.cpu_count()} CPUs "
            f"(seeds {out.get('c', {}).get('seeds', '-')}{saved}; load at the end of each part: {loads or '-'})."
        )
        rows = claims(out)
        path = args.claims
        text = path.read_text() if path.exists() else ""
        path.write_text(replace_between_markers(text, render_claims(rows, meta, out)))
        print(f"claims table written to {path}")
        _table(rows, ["claim", "verdict"])


if __name__ == "__main__":
    main()
