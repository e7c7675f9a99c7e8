"""Matplotlib figures rendered to inline SVG strings (no files, no network)."""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402


def _svg(fig) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight")
    plt.close(fig)
    text = buf.getvalue()
    return text[text.index("<svg") :]


def _series(df: pd.DataFrame, y: str):
    """One line per (model, dataset, method, device, batch) sorted by sparsity."""
    keys = [k for k in ("model", "dataset", "method", "device", "batch_size") if k in df]
    ok = df[(df["status"] == "ok") & df[y].notna()]
    for key, g in ok.groupby(keys, dropna=False):
        yield (
            " ".join(str(k) for k in (key if isinstance(key, tuple) else (key,))),
            g.sort_values("target_sparsity"),
        )


def accuracy_vs_sparsity(df: pd.DataFrame) -> str | None:
    d = df[df["status"] == "ok"].drop_duplicates(["model", "dataset", "method", "target_sparsity", "device"])
    if d["accuracy_top1"].isna().all():
        return None
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for label, g in _series(d.assign(batch_size="-"), "accuracy_top1"):
        ax.plot(g["target_sparsity"], g["accuracy_top1"], marker="o", label=label.replace(" -", ""))
    ax.set_xlabel("target sparsity")
    ax.set_ylabel("top-1 accuracy (%)")
    ax.set_title("Accuracy vs sparsity")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return _svg(fig)


def speed_vs_sparsity(df: pd.DataFrame) -> str | None:
    if df["latency_ms_p50"].isna().all():
        return None
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 3.8))
    for label, g in _series(df, "latency_ms_p50"):
        a1.plot(g["target_sparsity"], g["latency_ms_p50"], marker="o", label=label)
    a1.set_xlabel("target sparsity")
    a1.set_ylabel("latency p50 (ms)")
    a1.set_title("Latency vs sparsity")
    a1.grid(alpha=0.3)
    a1.legend(fontsize=6)
    for label, g in _series(df, "speedup"):
        (line,) = a2.plot(g["target_sparsity"], g["speedup"], marker="o", label=f"speedup {label}")
        a2.plot(
            g["target_sparsity"],
            g["acceleration_rate"],
            ls="--",
            color=line.get_color(),
            alpha=0.7,
            label=f"AR {label}",
        )
    a2.set_xlabel("target sparsity")
    a2.set_ylabel("× vs dense")
    a2.set_title("Realized speedup (solid) beside analytic AR (dashed)")
    a2.grid(alpha=0.3)
    a2.legend(fontsize=6)
    return _svg(fig)


def energy_per_device(df: pd.DataFrame) -> str | None:
    cols = [c for c in ("energy_mj_per_inference", "energy_j_per_train_epoch") if df[c].notna().any()]
    if not cols:
        return None
    fig, axes = plt.subplots(1, len(cols), figsize=(5.5 * len(cols), 3.6), squeeze=False)
    for ax, col in zip(axes[0], cols):
        for label, g in _series(df, col):
            ax.plot(g["target_sparsity"], g[col], marker="o", label=label)
        ax.set_xlabel("target sparsity")
        ax.set_ylabel(col)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6)
    return _svg(fig)
