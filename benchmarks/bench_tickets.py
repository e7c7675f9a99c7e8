"""Ticket-method benchmarks, each a ratio measured side by side in one run.

1. MPT thresholding vs sorting: time per training step on the same model and batch (the Efficient-MPT
   report measures 13% less time per epoch with thresholding).
2. Early-Bird detection overhead: time of the per-epoch check (channel masks for every tracked ratio +
   mask distances) as a fraction of search-epoch training time (target < 0.1%).
3. Early-Bird reproduction at small scale: the EB epoch appears well before the end of the search, and the
   retrained EB ticket is within 1 point of the ticket drawn at the final search epoch (same retraining).

Run: `python benchmarks/bench_tickets.py [--quick] [--device cpu|cuda]`. The machine load (`uptime`) is
printed with the figures, since other processes skew wall-clock ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import time

import torch
from torch import nn

from ticketbench.models.data import load_dataset
from ticketbench.models.tickets import TicketConfig, TicketContext, find_ticket
from ticketbench.models.tickets.mpt import attach, mpt_init_
from ticketbench.models.zoo import create_model


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def mpt_step_times(
    model_name: str, width: float, batch: int, steps: int, reps: int, device: str, power: float = 1.0
) -> dict:
    """Median seconds per MPT training step (forward, backward, SGD on scores) for sort and threshold."""
    torch.manual_seed(0)
    x = torch.randn(batch, 3, 32, 32, device=device)
    y = torch.randint(0, 10, (batch,), device=device)
    loss_fn = nn.CrossEntropyLoss()
    setups = {}
    for mode in ("sort", "threshold"):
        torch.manual_seed(0)
        model = create_model(model_name, width=width)
        mpt_init_(model, 0.5)
        model.to(device)
        sm = attach(model, 0.5, "global", mode, power)
        for layer in sm.layers:
            layer.scores.data = layer.scores.data.to(device)
        opt = torch.optim.SGD([la.scores for la in sm.layers], lr=0.1, momentum=0.9, weight_decay=1e-4)
        if mode == "threshold":
            sm.refresh_threshold()  # once per epoch in training: amortized to ~0 per step
        setups[mode] = (model, opt)

    def run(mode: str) -> float:
        model, opt = setups[mode]
        model.train()
        _sync(device)
        t0 = time.perf_counter()
        for _ in range(steps):
            opt.zero_grad(set_to_none=True)
            loss_fn(model(x), y).backward()
            opt.step()
        _sync(device)
        return (time.perf_counter() - t0) / steps

    run("sort"), run("threshold")  # warm-up
    times = {"sort": [], "threshold": []}
    for _ in range(reps):  # interleaved so load changes hit both modes alike
        for mode in ("sort", "threshold"):
            times[mode].append(run(mode))
    med = {m: statistics.median(v) for m, v in times.items()}
    n_scores = sum(p.numel() for p in setups["sort"][0].parameters() if p.dim() > 1)
    return {
        "model": model_name,
        "width": width,
        "scores": n_scores,
        "batch": batch,
        "sort_ms_per_step": 1e3 * med["sort"],
        "threshold_ms_per_step": 1e3 * med["threshold"],
        "threshold_time_saving": 1 - med["threshold"] / med["sort"],
    }


def eb_overhead(model_name: str, width: float, data, epochs: int) -> dict:
    """Detection time / training time over a full EB search (ε < 0: never stops early)."""
    opts = {"model_kwargs": {"width": width}, "epsilon": -1.0, "search_full": True}
    cfg = TicketConfig(model_name, data.name, "eb", 0.5, epochs, 0, 0.1, 64, options=opts)
    t = find_ticket(cfg, data)
    a = t.artifacts
    return {
        "model": model_name,
        "epochs": epochs,
        "search_train_s": a["search_train_s"],
        "detect_s": a["eb_detect_s"],
        "distance_s": a["eb_distance_s"],
        "detect_fraction": a["eb_detect_s"] / a["search_train_s"],
        "distance_fraction": a["eb_distance_s"] / a["search_train_s"],
        "ratios_tracked": len(t.provenance["ratios"]),
    }


def eb_reproduction(model_name: str, width: float, data, epochs: int, retrain: int, sparsity: float) -> dict:
    """EB ticket (drawn at the EB epoch) vs the ticket drawn at the final search epoch, same retraining."""
    base = {"model_kwargs": {"width": width}, "search_full": True}
    ctx = TicketContext()

    def ticket(eps: float):
        opts = {**base, "epsilon": eps}
        cfg = TicketConfig(model_name, data.name, "eb", sparsity, epochs, retrain, 0.1, 64, options=opts)
        return find_ticket(cfg, data, ctx)

    eb = ticket(0.1)
    final = ticket(-1.0)  # no EB: drawn at the last search epoch
    dense_acc = max((r["accuracy"] or 0.0) for r in final.train_log if r["phase"] == "search")
    return {
        "model": model_name,
        "dataset": data.name,
        "sparsity": sparsity,
        "search_epochs": epochs,
        "retrain_epochs": retrain,
        "eb_epoch": eb.artifacts["eb_epoch"],
        "eb_epochs_by_ratio": eb.artifacts["eb_epochs"],
        "eb_ticket_acc": eb.accuracy,
        "final_epoch_ticket_acc": final.accuracy,
        "acc_gap_points": (eb.accuracy or 0) - (final.accuracy or 0),
        "dense_search_best_acc": dense_acc,
        "eb_vs_final_mask_distance": eb.artifacts["final_epoch_mask_distance"],
        "flops_saving_vs_dense_then_prune": eb.artifacts["flops_saving"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller models and fewer epochs")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    q = args.quick
    out = {"load": subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip(), "cpus": os.cpu_count()}
    out["mpt_threshold_vs_sort"] = [
        mpt_step_times("conv4", 1.0, 64, 3 if q else 10, 3 if q else 7, args.device),
        mpt_step_times("resnet18_cifar", 0.25 if q else 0.5, 32, 2 if q else 5, 3 if q else 5, args.device, 2.0),
    ]
    print(json.dumps(out["mpt_threshold_vs_sort"], indent=1), flush=True)
    digits = load_dataset("digits")
    synth = load_dataset("synthetic", n_train=512 if q else 2048, n_test=512)
    out["eb_overhead"] = [
        eb_overhead("small_cnn", 32, digits, 6 if q else 20),
        eb_overhead("vgg16", 0.25, synth, 3 if q else 8),
    ]
    print(json.dumps(out["eb_overhead"], indent=1), flush=True)
    out["eb_reproduction"] = [
        eb_reproduction("small_cnn", 32, digits, 15 if q else 40, 5 if q else 15, 0.5),
        eb_reproduction("vgg11", 0.25, synth, 10 if q else 30, 4 if q else 10, 0.5),
    ]
    print(json.dumps(out["eb_reproduction"], indent=1), flush=True)
    out["load_after"] = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    print(json.dumps({"load": out["load"], "load_after": out["load_after"]}))


if __name__ == "__main__":
    main()
