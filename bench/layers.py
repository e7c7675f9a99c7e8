"""Per-layer realization: each conv/linear of a ticket beside the same layer of its dense reference.

A ticket realizes 0.8 of its MAC reduction, or 0.33: which layers delivered theirs and which did not? The device
profiles both models in windows of their own (devices/layer_profile.py: runtime layers and the ONNX nodes each
covers); here every runtime layer is put back on the model layer it computes, and each conv/linear gets

- `mac_reduction` = its dense MACs / its MACs in the compacted ticket (models/cost.py, per image),
- `time_reduction` = its dense time / its ticket time (ms per call at the profiled batch),
- `realization` = time_reduction / mac_reduction, and `lost_ms` = ticket time − dense time / mac_reduction: the
  time the layer takes beyond what its MAC reduction would leave (what the report ranks).

How a runtime layer finds its model layer: its compute node (a conv or matmul among the ONNX nodes it covers; a
fused "conv + relu" is its conv) is paired with its cost row when the caller gives the export's node map
(models/export.onnx_layer_map: by order, checked by weight shape; what compacted FX models need, their node names
being `/conv1_3/Conv`), else named by its module (models/export.node_module); a module compaction rewrote keeps its
dense name as a prefix (a grouped conv `feature.4.conv`, a split conv's `feature.4.convs.0`, its Gathers in
`feature.4`), so it is the dense layer whose name is that module or a dotted prefix of it. Runtime layers with no
compute node (pooling, flatten) are rows of kind `other`, keyed `module:Op`; what the runtime inserted (ONNX Runtime's
NCHWc reorders, TensorRT's reformats) are rows of kind `overhead`, keyed by the runtime's name, or
`<Op> → <layer>` for a reformat feeding a model layer.
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from ticketbench.devices.layer_profile import COMPUTE_OPS, LayerProfile, LayerTime
from ticketbench.models.cost import LayerCost
from ticketbench.models.export import node_module

COLUMNS = (
    "layer",
    "kind",
    "macs_dense",
    "macs",
    "mac_reduction",
    "dense_ms",
    "ticket_ms",
    "time_reduction",
    "realization",
    "lost_ms",
    "ticket_share",
    "dense_runtime_layers",
    "ticket_runtime_layers",
)


@dataclass
class LayerRow:
    """One model layer (or runtime overhead) of a ticket beside its dense reference; MACs per image, ms per call."""

    layer: str
    kind: str  # conv | linear | other | overhead
    macs_dense: int | None = None
    macs: int | None = None
    dense_ms: float | None = None
    ticket_ms: float | None = None
    dense_runtime_layers: list[str] = field(default_factory=list)
    ticket_runtime_layers: list[str] = field(default_factory=list)
    ticket_share: float | None = None  # ticket_ms / Σ ticket_ms of the profile

    @property
    def mac_reduction(self) -> float | None:
        return _ratio(self.macs_dense, self.macs)

    @property
    def time_reduction(self) -> float | None:
        return _ratio(self.dense_ms, self.ticket_ms)

    @property
    def realization(self) -> float | None:
        return _ratio(self.time_reduction, self.mac_reduction)

    @property
    def lost_ms(self) -> float | None:
        """Ticket time beyond what the layer's MAC reduction leaves of its dense time (ms); for rows without MACs
        (other, overhead) the ticket time beyond the dense time."""
        if self.ticket_ms is None:
            return None
        red = self.mac_reduction
        if self.kind in ("conv", "linear"):
            if self.dense_ms is None or red is None:
                return None
            return self.ticket_ms - self.dense_ms / red
        return self.ticket_ms - (self.dense_ms or 0.0)

    def values(self) -> dict[str, object]:
        return {c: _csv_value(getattr(self, c)) for c in COLUMNS}


def _ratio(a: float | int | None, b: float | int | None) -> float | None:
    if a is None or b is None or not (a > 0 and b > 0) or not (math.isfinite(a) and math.isfinite(b)):
        return None
    return float(a) / float(b)


def _csv_value(v: object) -> object:
    if isinstance(v, list):
        return ";".join(v)
    return v


def dense_key(module: str, dense_layers: Iterable[str]) -> str:
    """The dense layer a ticket module stands for: the longest dense layer name equal to it or a dotted prefix of
    it (`feature.4.conv` → `feature.4`), else the module itself."""
    best = ""
    for d in dense_layers:
        if (module == d or module.startswith(d + ".")) and len(d) > len(best):
            best = d
    return best or module


class _Keys:
    """Assigns runtime layers of one model to row keys, given the dense model's compute layers and this model's."""

    def __init__(self, compute: dict[str, str], own: Sequence[str], nodes: Mapping[str, str] | None = None) -> None:
        self.compute = compute  # dense layer name → conv | linear
        self.own = set(own)  # this model's compute layer names (for node_module's suffix match)
        self.nodes = nodes or {}  # ONNX compute node → this model's layer name (models/export.onnx_layer_map)

    def key(self, lt: LayerTime) -> tuple[str, str]:
        """(row key, kind) of one runtime layer."""
        if lt.module:  # a torch backend: the module itself
            k = dense_key(lt.module, self.compute)
            return (k, self.compute[k]) if k in self.compute else (f"{lt.module}:{lt.op}", "other")
        if lt.inserted:
            if lt.onnx_nodes:  # a reformat feeding a model layer
                target, _ = self._node_key(lt.onnx_nodes, lt.onnx_ops)
                return f"Reformat → {target}", "overhead"
            return lt.op or lt.name, "overhead"  # every ReorderOutput in one row (ONNX Runtime numbers them)
        return self._node_key(lt.onnx_nodes, lt.onnx_ops)

    def _node_key(self, nodes: list[str], ops: list[str]) -> tuple[str, str]:
        compute = [n for n, op in zip(nodes, ops) if op in COMPUTE_OPS]
        if compute:
            k = dense_key(self.nodes.get(compute[0]) or node_module(compute[0], self.own), self.compute)
            return k, self.compute.get(k, "conv" if "Conv" in ops[nodes.index(compute[0])] else "linear")
        if not nodes:
            return "(unmapped)", "overhead"
        module = node_module(nodes[0], self.own)
        k = dense_key(module, self.compute)
        if k in self.compute:  # compaction's own ops inside a rewritten layer (Gather, Concat, Slice)
            return k, self.compute[k]
        return f"{module or '(model)'}:{ops[0]}", "other"


def layer_rows(
    ticket: LayerProfile,
    ticket_cost: Sequence[LayerCost],
    dense: LayerProfile | None = None,
    dense_cost: Sequence[LayerCost] | None = None,
    ticket_nodes: Mapping[str, str] | None = None,
    dense_nodes: Mapping[str, str] | None = None,
) -> list[LayerRow]:
    """The per-layer table of a ticket profile (and its dense reference's, when given), in execution order.

    `ticket_cost` / `dense_cost` are models/cost.py's per-call rows of the compacted ticket and of the dense model;
    `ticket_nodes` / `dense_nodes` their exports' node maps (models/export.onnx_layer_map), when known.
    Compute layers absent from a profile (fused into another runtime layer) keep their MACs and an empty time."""
    base = dense_cost if dense_cost is not None else ticket_cost
    compute = {lc.name: lc.kind for lc in base}
    rows: dict[str, LayerRow] = {}

    def row(key: str, kind: str) -> LayerRow:
        if key not in rows:
            rows[key] = LayerRow(key, kind)
        return rows[key]

    def add(profile: LayerProfile, own: Sequence[LayerCost], side: str, nodes: Mapping[str, str] | None) -> None:
        keys = _Keys(compute, [lc.name for lc in own], nodes)
        for lt in profile.layers:
            r = row(*keys.key(lt))
            if side == "dense":
                r.dense_ms = (r.dense_ms or 0.0) + lt.ms
                r.dense_runtime_layers.append(lt.name)
            else:
                r.ticket_ms = (r.ticket_ms or 0.0) + lt.ms
                r.ticket_runtime_layers.append(lt.name)

    if dense is not None:
        add(dense, base, "dense", dense_nodes)
    add(ticket, ticket_cost, "ticket", ticket_nodes)
    for lc in base if dense_cost is not None else ():
        r = row(lc.name, lc.kind)
        r.macs_dense = (r.macs_dense or 0) + lc.macs
    for lc in ticket_cost:
        k = dense_key(lc.name, compute)
        r = row(k, compute.get(k, lc.kind))
        r.macs = (r.macs or 0) + lc.macs
    total = sum(r.ticket_ms or 0.0 for r in rows.values())
    for r in rows.values():
        r.ticket_share = (r.ticket_ms / total) if r.ticket_ms is not None and total > 0 else None
    return list(rows.values())


def biggest_losses(rows: Sequence[LayerRow], n: int = 3) -> list[LayerRow]:
    """The `n` rows with the most `lost_ms` (time beyond what their MAC reduction leaves), largest first."""
    lost = [r for r in rows if r.lost_ms is not None and r.lost_ms > 0]
    return sorted(lost, key=lambda r: r.lost_ms or 0.0, reverse=True)[:n]


def to_csv(rows: Sequence[LayerRow]) -> str:
    """samples/<case>-b<bs>-layers.csv: one row per LayerRow, COLUMNS in order (docs/results.md)."""
    import csv

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(COLUMNS)
    for r in rows:
        w.writerow(["" if v is None else f"{v:.6g}" if isinstance(v, float) else v for v in r.values().values()])
    return buf.getvalue()


def profile_summary(profile: LayerProfile) -> dict[str, object]:
    """What the layers file's JSON companion keeps of a profile: its source and the profiler's cost."""
    return {
        "backend": profile.backend,
        "source": profile.source,
        "batch_size": profile.batch_size,
        "iterations": profile.iterations,
        "layers_sum_ms": profile.total_ms,
        "profiled_ms": profile.profiled_ms,
        "plain_ms": profile.plain_ms,
        "overhead": profile.overhead,
        "note": profile.note,
    }


def format_table(rows: Sequence[LayerRow], limit: int | None = None) -> str:
    """A plain-text table of the rows (most ticket time first), for `bench measure --layers` and the closing note.
    Without a dense reference (one ONNX alone) only time, share and the runtime's layer names are shown."""
    shown = sorted(rows, key=lambda r: r.ticket_ms or 0.0, reverse=True)[:limit]

    def f(v: float | None, spec: str) -> str:
        return "" if v is None else format(v, spec)

    def share(r: LayerRow) -> str:
        return f(None if r.ticket_share is None else 100 * r.ticket_share, ".1f")

    head: tuple[str, ...]
    lines: list[tuple[str, ...]]
    if any(r.dense_ms is not None for r in rows):
        head = ("layer", "kind", "MAC red.", "dense ms", "ticket ms", "time red.", "realiz.", "lost ms", "share %")
        lines = [
            (
                r.layer[:40],
                r.kind,
                f(r.mac_reduction, ".2f"),
                f(r.dense_ms, ".4f"),
                f(r.ticket_ms, ".4f"),
                f(r.time_reduction, ".2f"),
                f(r.realization, ".2f"),
                f(r.lost_ms, "+.4f"),
                share(r),
            )
            for r in shown
        ]
    else:
        head = ("layer", "kind", "ms", "share %", "runtime layers")
        lines = [
            (r.layer[:40], r.kind, f(r.ticket_ms, ".4f"), share(r), "; ".join(r.ticket_runtime_layers)[:70])
            for r in shown
        ]
    left = {0, 1, len(head) - 1} if len(head) == 5 else {0, 1}
    widths = [max(len(h), *(len(ln[i]) for ln in lines)) if lines else len(h) for i, h in enumerate(head)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            c.ljust(w) if i in left else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths))
        ).rstrip()

    return "\n".join([line(head), *(line(ln) for ln in lines)])
