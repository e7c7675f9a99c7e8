"""Matplotlib figures rendered to inline SVG strings (no files, no network).

SVG ids are salted with the figure's name and the date is left out, so the same results give a byte-identical
report and several figures can share one HTML page without id clashes. Each function returns None when the
table (or the artifacts) hold nothing to draw.
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Iterable

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.ticker import FormatStrFormatter, NullFormatter  # noqa: E402

from ticketbench.reports.artifacts import TicketArtifacts  # noqa: E402

_METADATA = re.compile(r"<metadata>.*?</metadata>\s*", re.S)
MAX_PANELS = 6  # per figure; more cases than this are listed in the table only


def _svg(fig, salt: str) -> str:
    buf = io.StringIO()
    with plt.rc_context({"svg.hashsalt": salt}):
        fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None})
    plt.close(fig)
    text = buf.getvalue()
    return _METADATA.sub("", text[text.index("<svg") :])  # drop the RDF block: namespace URLs only, no content


SERIES_KEYS = ("model", "dataset", "method", "structure", "device", "precision", "batch_size")
LINE_KEYS = ("method", "structure")  # what a pruning curve is; the dense row of the other keys starts it


def _series(df: pd.DataFrame, y: str, keys: tuple[str, ...] = SERIES_KEYS):
    """(label, rows sorted by sparsity): one line per (model, dataset, method, structure, device, batch).

    Each pruning method's line (one per `structure` when the results hold that column) starts at the dense
    row of its group (sparsity 0), so a curve reads as what pruning does to that network. Labels name the
    method, its structure, and only the other keys that vary between lines.
    """
    keys = tuple(k for k in keys if k in df)
    ok = df[(df["status"] == "ok") & df[y].notna()]
    if ok.empty:
        return
    varying = [k for k in keys if k not in LINE_KEYS and ok[k].nunique(dropna=False) > 1]
    group = [k for k in keys if k not in LINE_KEYS]
    dense = {_tuple(k): g for k, g in ok[ok["method"] == "dense"].groupby(group, dropna=False)} if group else {}
    pruned = ok[ok["method"] != "dense"]
    seen = set()
    for key, g in pruned.groupby(list(keys), dropna=False):
        kd = dict(zip(keys, _tuple(key)))
        gk = tuple(kd[k] for k in group)
        seen.add(gk)
        g = pd.concat([dense[gk], g]) if gk in dense else g
        yield _label(kd, varying), g.sort_values("target_sparsity")
    for gk, g in dense.items():
        if gk not in seen:
            yield _label({**dict(zip(group, gk)), "method": "dense"}, varying), g.sort_values("target_sparsity")


def _tuple(key) -> tuple:
    """A groupby key as a tuple, empty cells (NaN, which never equals itself) as None so keys match."""
    key = key if isinstance(key, tuple) else (key,)
    return tuple(None if isinstance(v, float) and v != v else v for v in key)


def _label(key: dict, varying: list[str]) -> str:
    parts = [str(key.get("method", ""))]
    if isinstance(key.get("structure"), str) and key["structure"]:
        parts.append(key["structure"])
    parts += [f"b{key[k]}" if k == "batch_size" else str(key[k]) for k in varying]
    return " ".join(parts)


def _legend(ax) -> None:
    """Inside the axes when short, to the right when there are many lines."""
    n = len(ax.get_legend_handles_labels()[0])
    if n > 6:
        ax.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    elif n:
        ax.legend(fontsize=7)


def accuracy_vs_sparsity(df: pd.DataFrame) -> str | None:
    """Top-1 (%) vs target sparsity per method (and device, precision, when several); not per batch."""
    keys = [k for k in ("model", "dataset", "method", "structure", "device", "precision") if k in df]
    d = df[df["status"] == "ok"].drop_duplicates([*keys, "target_sparsity"])
    if d["accuracy_top1"].isna().all():
        return None
    fig, ax = plt.subplots(figsize=(6, 3.6), layout="constrained")
    for label, g in _series(d, "accuracy_top1", tuple(keys)):
        ax.plot(g["target_sparsity"], g["accuracy_top1"], marker="o", label=label)
    ax.set_xlabel("target sparsity")
    ax.set_ylabel("top-1 accuracy (%)")
    ax.set_title("Accuracy vs sparsity")
    ax.grid(alpha=0.3)
    _legend(ax)
    return _svg(fig, "accuracy")


def speed_vs_sparsity(df: pd.DataFrame) -> str | None:
    """p50 latency (ms) and realized speedup vs sparsity (bars: the slowest to the fastest round's gain over the
    dense reference beside it), the MAC reduction compaction made (macs_dense / macs) dashed in the same colour:
    realization is the one over the other. Results without a mac_reduction column draw no dashed line."""
    if df["latency_ms_p50"].isna().all():
        return None
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 3.8), layout="constrained")
    for label, g in _series(df, "latency_ms_p50"):
        a1.plot(g["target_sparsity"], g["latency_ms_p50"], marker="o", label=label)
    a1.set_xlabel("target sparsity")
    a1.set_ylabel("latency p50 (ms)")
    a1.set_title("Latency vs sparsity")
    a1.grid(alpha=0.3)
    for label, g in _series(df, "speedup"):
        (line,) = a2.plot(g["target_sparsity"], g["speedup"], marker="o", label=label)
        if "speedup_lo" in g and g["speedup_lo"].notna().any():
            lo, hi = (g["speedup"] - g["speedup_lo"]).clip(lower=0), (g["speedup_hi"] - g["speedup"]).clip(lower=0)
            a2.errorbar(g["target_sparsity"], g["speedup"], yerr=[lo.fillna(0), hi.fillna(0)], fmt="none",
                        ecolor=line.get_color(), capsize=3, alpha=0.8)  # fmt: skip
        if "mac_reduction" in g:
            x, y = g["target_sparsity"], g["mac_reduction"]
            a2.plot(x, y, ls="--", marker="x", color=line.get_color(), alpha=0.7)
    a2.set_xlabel("target sparsity")
    a2.set_ylabel("× vs dense")
    a2.set_title("Realized speedup (solid) beside the MAC reduction of compaction (dashed)")
    a2.grid(alpha=0.3)
    _legend(a2)
    return _svg(fig, "speed")


def precision_gain(df: pd.DataFrame) -> str | None:
    """With several precisions: speedup over the fp32 dense model (pruning and precision together) and the
    accuracy change from fp32 to each lower precision, per ticket, both vs sparsity."""
    if "speedup_vs_fp32_dense" not in df or df["precision"].nunique(dropna=True) < 2:
        return None
    ok = df[df["status"] == "ok"]
    if ok["speedup_vs_fp32_dense"].isna().all():
        return None
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 3.8), layout="constrained")
    for label, g in _series(ok, "speedup_vs_fp32_dense"):
        a1.plot(g["target_sparsity"], g["speedup_vs_fp32_dense"], marker="o", label=label)
    a1.axhline(1.0, color="grey", lw=0.8)
    a1.set_xlabel("target sparsity")
    a1.set_ylabel("× vs fp32 dense")
    a1.set_title("Speedup over the fp32 dense model (pruning × precision)")
    a1.grid(alpha=0.3)
    _legend(a1)
    keys = ["model", "dataset", "method", "target_sparsity", "device"]
    acc = ok.drop_duplicates([*keys, "precision"]).set_index([*keys, "precision"])["accuracy_top1"]
    fp32 = acc.xs("fp32", level="precision") if "fp32" in acc.index.get_level_values("precision") else None
    drew = False
    for p in sorted(set(acc.index.get_level_values("precision")) - {"fp32"}):
        if fp32 is None:
            break
        delta = (acc.xs(p, level="precision") - fp32).dropna().reset_index()
        for (model, method), g in delta.groupby(["model", "method"]):
            g = g.sort_values("target_sparsity")
            a2.plot(g["target_sparsity"], g["accuracy_top1"], marker="o", label=f"{method} {model} {p}")
            drew = True
    a2.axhline(0.0, color="grey", lw=0.8)
    a2.set_xlabel("target sparsity")
    a2.set_ylabel("top-1 change vs fp32 (points)")
    a2.set_title("Accuracy change from fp32")
    a2.grid(alpha=0.3)
    if drew:
        _legend(a2)
    return _svg(fig, "precision")


ENERGY_METRICS = {
    "energy_mj_per_inference": "energy per inference (mJ)",
    "energy_j_per_train_epoch": "energy per training epoch (J)",
}


def energy_per_device(df: pd.DataFrame) -> str | None:
    """Energy per inference and per training epoch vs sparsity, one line per device (and model, method, batch)."""
    cols = [c for c in ENERGY_METRICS if c in df and df[c].notna().any()]
    if not cols:
        return None
    fig, axes = plt.subplots(1, len(cols), figsize=(5.5 * len(cols), 3.6), squeeze=False, layout="constrained")
    for ax, col in zip(axes[0], cols):
        per_case = col != "energy_mj_per_inference"  # a training epoch does not depend on the inference batch
        d = df.drop_duplicates(["run_id", "case_id", "device"]) if per_case else df
        keys = SERIES_KEYS if col == "energy_mj_per_inference" else ("model", "dataset", "method", "device")
        for label, g in _series(d, col, keys):
            ax.plot(g["target_sparsity"], g[col], marker="o", label=label)
        ax.set_xlabel("target sparsity")
        ax.set_ylabel(ENERGY_METRICS[col])
        ax.set_title(ENERGY_METRICS[col].split(" (")[0].capitalize() + " per device")
        ax.grid(alpha=0.3)
        _legend(ax)
    return _svg(fig, "energy")


def _grid(n: int, width: float, height: float):
    cols = min(n, 3)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False, layout="constrained")
    flat = list(axes.ravel())
    for ax in flat[n:]:
        ax.set_visible(False)
    return fig, flat[:n]


def eb_heatmaps(arts: Iterable[TicketArtifacts], labels: dict[str, str]) -> str | None:
    """Pairwise mask distance between epochs (the Early-Bird paper's heat map), EB epoch marked in red.

    Rows/columns are labelled with `mask_epochs` (the numbering `eb_epoch` uses), else 0, 1, 2, ...
    """
    panels = [(a, name, m) for a in arts for name, m in a.eb_mask_distances.items() if m and m[0]][:MAX_PANELS]
    if not panels:
        return None
    fig, axes = _grid(len(panels), 4.2, 3.6)
    for ax, (a, name, m) in zip(axes, panels):
        im = ax.imshow(m, cmap="viridis", origin="upper", interpolation="nearest", aspect="auto")
        fig.colorbar(im, ax=ax, fraction=0.046, label="mask distance")
        title = " ".join(x for x in (labels.get(a.case_id, a.case_id), name) if x)
        epochs = a.mask_epochs if a.mask_epochs and len(a.mask_epochs) == len(m[0]) else list(range(len(m[0])))
        ticks = list(range(0, len(epochs), max(1, len(epochs) // 8)))
        ax.set_xticks(ticks, [str(epochs[i]) for i in ticks])
        if len(m) == len(epochs):
            ax.set_yticks(ticks, [str(epochs[i]) for i in ticks])
        e = a.eb_epoch
        if e is not None and e in epochs:
            i = epochs.index(e)
            if len(m) > 1:
                ax.axhline(i, color="red", lw=1.2, ls="--")
            ax.axvline(i, color="red", lw=1.2, ls="--")
            title += f"\nEB epoch {e}"
        elif e is not None:
            title += f"\nEB epoch {e} (outside the matrix)"
        else:
            title += "\nno EB ticket drawn"
        ax.set_title(title, fontsize=8)
        ax.set_xlabel("epoch")
        ax.set_ylabel("epoch" if len(m) > 1 else "")
    return _svg(fig, "eb")


def zero_kernels(arts: Iterable[TicketArtifacts], labels: dict[str, str]) -> str | None:
    """Per conv layer: kernels that are entirely zero, one bar per case, one panel per architecture."""
    by_arch: dict[tuple[str, ...], list[TicketArtifacts]] = {}
    for a in arts:
        if a.layers and any(lc["zero_kernels"] for lc in a.layers):
            by_arch.setdefault(tuple(lc["name"] for lc in a.layers), []).append(a)
    if not by_arch:
        return None
    groups = list(by_arch.items())[:MAX_PANELS]
    fig, axes = plt.subplots(len(groups), 1, figsize=(10, 3.2 * len(groups)), squeeze=False, layout="constrained")
    for ax, (names, group) in zip(axes[:, 0], groups):
        group = group[:8]
        width = 0.8 / len(group)
        x = range(len(names))
        for j, a in enumerate(group):
            ax.bar(
                [i + (j - (len(group) - 1) / 2) * width for i in x],
                [lc["zero_kernels"] for lc in a.layers],
                width,
                label=labels.get(a.case_id, a.case_id),
            )
        totals = [lc["kernels"] for lc in group[0].layers]
        ax.set_xticks(list(x), [f"{n}\n(of {t})" for n, t in zip(names, totals)], fontsize=7)
        ax.set_ylabel("zero kernels")
        ax.grid(alpha=0.3, axis="y")
        _legend(ax)
    axes[0, 0].set_title("All-zero conv kernels per layer")
    return _svg(fig, "kernels")


def score_distributions(arts: Iterable[TicketArtifacts], labels: dict[str, str]) -> str | None:
    """Multi-Prize Ticket score histograms as densities, one step line per layer, one panel per case."""
    panels = [a for a in arts if a.score_hist][:MAX_PANELS]
    if not panels:
        return None
    fig, axes = _grid(len(panels), 4.2, 3.2)
    for ax, a in zip(axes, panels):
        for layer, (counts, edges) in list(a.score_hist.items())[:12]:
            total = sum(counts)
            widths = [hi - lo for lo, hi in zip(edges, edges[1:])]
            density = [c / (total * w) if total and w > 0 else 0.0 for c, w in zip(counts, widths)]
            ax.stairs(density, edges, label=layer)  # density, so layers of very different sizes compare
        ax.set_title(labels.get(a.case_id, a.case_id), fontsize=8)
        ax.set_xlabel("score")
        ax.set_ylabel("density")
        ax.grid(alpha=0.3)
        _legend(ax)
    return _svg(fig, "scores")


def trend(df: pd.DataFrame, ylabel: str) -> str | None:
    """A metric over nights: one panel per farm device, one line per case and batch size.

    `df` has columns night, farm_device, case_id, batch_size, value (bench.store.ResultsStore.trend).
    """
    df = df.dropna(subset=["value"])
    if df.empty:
        return None
    devices = sorted(df["farm_device"].unique())[:MAX_PANELS]
    fig, axes = _grid(len(devices), 5.0, 3.4)
    for ax, dev in zip(axes, devices):
        d = df[df["farm_device"] == dev]
        nights = sorted(d["night"].unique())
        pos = {n: i for i, n in enumerate(nights)}
        for (case, bs), g in d.groupby(["case_id", "batch_size"], dropna=False):
            g = g.sort_values("night")
            ax.plot([pos[n] for n in g["night"]], g["value"], marker="o", label=f"{case} b{bs}")
        ax.set_xticks(range(len(nights)), nights, rotation=30, ha="right", fontsize=6)
        ax.set_title(str(dev), fontsize=9)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        _legend(ax)
    return _svg(fig, "trend-" + ylabel)


MAX_LAYER_ROWS = 40  # layers drawn per ticket; the rest (least ticket time) are in the CSV only


def layer_times(rows: pd.DataFrame, title: str) -> str | None:
    """One ticket's per-layer table (reports.layers): per layer, its time in the dense reference and in the ticket
    (ms per call), and beside it its MAC reduction and time reduction (×, log scale); realization = their ratio.
    Layers in execution order, the runtime's overhead rows last."""
    d = rows[rows["ticket_ms"].notna() | rows["dense_ms"].notna()]
    if d.empty:
        return None
    order = {"conv": 0, "linear": 0, "other": 0, "overhead": 1}
    d = d.assign(_o=d["kind"].map(order).fillna(1)).sort_values("_o", kind="stable").head(MAX_LAYER_ROWS)
    y = list(range(len(d)))[::-1]
    fig, (a1, a2) = plt.subplots(
        1, 2, figsize=(11, 1.2 + 0.28 * len(d)), sharey=True, layout="constrained", width_ratios=(3, 2)
    )
    h = 0.4
    a1.barh([v + h / 2 for v in y], d["dense_ms"].fillna(0), h, label="dense reference", color="#9aa7b8")
    a1.barh([v - h / 2 for v in y], d["ticket_ms"].fillna(0), h, label="ticket", color="#d9822b")
    a1.set_yticks(
        y, [f"{lay} ({k})" if k in ("other", "overhead") else str(lay) for lay, k in zip(d["layer"], d["kind"])]
    )
    a1.set_xlabel("time per call (ms)")
    a1.set_title(title)
    a1.grid(axis="x", alpha=0.3)
    a1.legend(fontsize=8, loc="lower right")
    compute = d["kind"].isin(["conv", "linear"])
    for col, marker, label in (("mac_reduction", "o", "MAC reduction"), ("time_reduction", "s", "time reduction")):
        sel = compute & d[col].notna() & (d[col] > 0)
        a2.scatter(d.loc[sel, col], [v for v, s in zip(y, sel) if s], marker=marker, label=label, zorder=3)
    a2.axvline(1.0, color="#888", lw=0.8)
    a2.set_xscale("log")
    seen = pd.concat([d.loc[compute, "mac_reduction"], d.loc[compute, "time_reduction"]]).dropna()
    seen = seen[seen > 0]
    lo, hi = (float(seen.min()), float(seen.max())) if len(seen) else (1.0, 1.0)
    left, right = min(0.5, lo / 1.3), max(2.0, hi * 1.3)
    a2.set_xlim(left, right)
    a2.set_xticks([2.0**k for k in range(-6, 9) if left <= 2.0**k <= right])
    a2.xaxis.set_major_formatter(FormatStrFormatter("%g"))
    a2.xaxis.set_minor_formatter(NullFormatter())
    a2.set_xlabel("dense ÷ ticket (×)")
    a2.set_title("MAC reduction vs time reduction")
    a2.grid(alpha=0.3)
    a2.legend(fontsize=8, loc="lower right")
    return _svg(fig, f"layers-{title}")
