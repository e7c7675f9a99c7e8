"""Physically remove dead output channels so a ticket's sparsity becomes real speed.

A conv output channel is *dead* when its filter is all zero (its output is a constant) or when every
consumer weight reading it is zero (its value is never used). We trace the model with torch.fx and
compact *chains*: conv → channel-wise ops (BN, activation, pooling, dropout, flatten) → one conv/linear,
where no intermediate value is used anywhere else (residual adds are left alone here).

Exactness: a zero filter produces the constant b (its bias, or 0). We push that constant through the
chain (BN affine, activation, pooling). If it arrives as 0 the channel is dropped exactly. If it is
non-zero and the consumer is a Linear or an unpadded conv, we fold `c · Σ W[:, ch]` into the consumer's
bias, which is exact. A padded conv would see the constant at interior pixels but zeros at borders, so
the channel is kept and the reason recorded. No layer is ever left with zero channels.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import torch
import torch.fx as fx
from torch import nn

_CHANNELWISE = (
    nn.BatchNorm2d,
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.Hardtanh,
    nn.Sigmoid,
    nn.Tanh,
    nn.SiLU,
    nn.GELU,
    nn.Identity,
    nn.Dropout,
    nn.Dropout2d,
    nn.MaxPool2d,
    nn.AvgPool2d,
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveMaxPool2d,
)
_ACTS = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.Hardtanh, nn.Sigmoid, nn.Tanh, nn.SiLU, nn.GELU)


@dataclass
class LayerCompaction:
    name: str
    channels_before: int
    channels_after: int
    kept_nonexact: int = 0  # dead channels kept because removing them would not be exact
    note: str = ""


@dataclass
class CompactionReport:
    layers: list[LayerCompaction] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # convs not compacted, with the reason

    @property
    def channels_removed(self) -> int:
        return sum(lc.channels_before - lc.channels_after for lc in self.layers)

    def to_dict(self) -> dict:
        return {
            "channels_removed": self.channels_removed,
            "layers": [vars(lc) for lc in self.layers],
            "skipped": self.skipped,
        }


@dataclass
class _Chain:
    producer: str  # conv module path
    ops: list[str]  # channel-wise module paths in order ("<flatten>" marks a flatten)
    consumer: str  # conv or linear module path
    spatial: int  # H·W at the flatten (1 when consumer is a conv)


def _find_chains(model: nn.Module, gm: fx.GraphModule, report: CompactionReport) -> list[_Chain]:
    mods = dict(model.named_modules())
    chains = []
    for node in gm.graph.nodes:
        if node.op != "call_module" or not isinstance(mods[node.target], nn.Conv2d):
            continue
        if mods[node.target].groups != 1:
            report.skipped.append(f"{node.target}: grouped conv")
            continue
        ops, cur, spatial, ok = [], node, 1, True
        while True:
            if len(cur.users) != 1:
                ok = False
                report.skipped.append(f"{node.target}: output used by {len(cur.users)} nodes")
                break
            nxt = next(iter(cur.users))
            if nxt.op == "call_module" and isinstance(mods[nxt.target], (nn.Conv2d, nn.Linear)):
                if isinstance(mods[nxt.target], nn.Conv2d) and (mods[nxt.target].groups != 1 or spatial != 1):
                    ok = False
                    report.skipped.append(f"{node.target}: consumer {nxt.target} is grouped")
                elif isinstance(mods[nxt.target], nn.Linear) and "<flatten>" not in ops:
                    ok = False
                    report.skipped.append(f"{node.target}: linear consumer without flatten")
                break
            if nxt.op == "call_module" and isinstance(mods[nxt.target], _CHANNELWISE):
                ops.append(nxt.target)
            elif _is_flatten(nxt, mods):
                shape = cur.meta.get("tensor_meta").shape
                spatial = int(shape[-1] * shape[-2]) if len(shape) == 4 else 1
                ops.append("<flatten>")
            elif nxt.op == "call_function" and nxt.target in (torch.relu, torch.nn.functional.relu):
                ops.append("<relu>")
            else:
                ok = False
                report.skipped.append(f"{node.target}: feeds {nxt.op} {nxt.target}")
                break
            cur = nxt
        if ok:
            chains.append(_Chain(node.target, ops, nxt.target, spatial))
    return chains


def _is_flatten(node: fx.Node, mods: dict) -> bool:
    if node.op == "call_module" and isinstance(mods[node.target], nn.Flatten):
        return True
    if node.op == "call_function" and node.target is torch.flatten:
        return True
    return node.op == "call_method" and node.target == "flatten"


def _propagate_constant(value: torch.Tensor, ops: list[str], mods: dict) -> tuple[torch.Tensor, bool]:
    """Push per-channel constants through channel-wise ops; returns (values, exact_at_borders)."""
    v = value.clone()
    exact = True
    for op in ops:
        if op == "<flatten>":
            continue
        if op == "<relu>":
            v = v.clamp_min(0)
            continue
        m = mods[op]
        if isinstance(m, nn.BatchNorm2d):
            scale = m.weight / torch.sqrt(m.running_var + m.eps) if m.affine else 1 / torch.sqrt(m.running_var + m.eps)
            shift = m.bias if m.affine else 0
            v = (v - m.running_mean) * scale + shift
        elif isinstance(m, _ACTS):
            v = m(v)
        elif isinstance(m, nn.AvgPool2d) and m.padding and m.count_include_pad:
            exact = False  # padded average at borders mixes in zeros
    return v, exact


def _slice_out(m: nn.Module, keep: torch.Tensor) -> None:
    if isinstance(m, nn.Conv2d):
        m.weight = nn.Parameter(m.weight.data[keep].clone())
        if m.bias is not None:
            m.bias = nn.Parameter(m.bias.data[keep].clone())
        m.out_channels = int(keep.numel())
    elif isinstance(m, nn.BatchNorm2d):
        if m.affine:
            m.weight = nn.Parameter(m.weight.data[keep].clone())
            m.bias = nn.Parameter(m.bias.data[keep].clone())
        m.running_mean = m.running_mean[keep].clone()
        m.running_var = m.running_var[keep].clone()
        m.num_features = int(keep.numel())


def _consumer_columns(consumer: nn.Module, spatial: int) -> torch.Tensor:
    """Consumer weight regrouped as [out, channel, rest] for per-channel reads."""
    w = consumer.weight.data
    if isinstance(consumer, nn.Linear):
        return w.view(w.shape[0], -1, spatial)
    return w.flatten(2)


@torch.no_grad()
def compact(model: nn.Module, example_input: torch.Tensor) -> tuple[nn.Module, CompactionReport]:
    """Return a compacted deep copy (eval mode) and what was removed; the input model is untouched."""
    model = copy.deepcopy(model).eval()
    report = CompactionReport()
    try:
        gm = fx.symbolic_trace(model)
        from torch.fx.passes.shape_prop import ShapeProp

        ShapeProp(gm).propagate(example_input)
    except Exception as exc:  # untraceable models are exported as they are
        report.skipped.append(f"<model>: not traceable by torch.fx ({type(exc).__name__})")
        return model, report
    mods = dict(model.named_modules())
    for ch in _find_chains(model, gm, report):
        prod, cons = mods[ch.producer], mods[ch.consumer]
        w = prod.weight.data
        zero_filter = w.flatten(1).eq(0).all(1)
        cols = _consumer_columns(cons, ch.spatial)  # [out, C, rest]
        unused = cols.eq(0).all(2).all(0)
        const = prod.bias.data.clone() if prod.bias is not None else torch.zeros(w.shape[0])
        value, exact_pool = _propagate_constant(const, ch.ops, mods)
        removable = unused.clone()
        nonexact = 0
        for c in torch.nonzero(zero_filter & ~unused).flatten().tolist():
            if value[c] == 0 and exact_pool:
                removable[c] = True
            elif isinstance(cons, nn.Linear) or (all(p == 0 for p in cons.padding) and exact_pool):
                removable[c] = True
                fold = value[c] * cols[:, c, :].sum(1)
                if cons.bias is None:
                    cons.bias = nn.Parameter(torch.zeros(cons.weight.shape[0]))
                cons.bias.data += fold
            else:
                nonexact += 1
        if bool(removable.all()):  # never leave a layer with zero channels
            removable[0] = False
        keep = torch.nonzero(~removable).flatten()
        before = w.shape[0]
        if keep.numel() < before:
            _slice_out(prod, keep)
            for op in ch.ops:
                if not op.startswith("<"):
                    _slice_out(mods[op], keep)
            if isinstance(cons, nn.Linear):
                cw = cons.weight.data.view(cons.weight.shape[0], before, ch.spatial)[:, keep, :]
                cons.weight = nn.Parameter(cw.reshape(cons.weight.shape[0], -1).clone())
                cons.in_features = cons.weight.shape[1]
            else:
                cons.weight = nn.Parameter(cons.weight.data[:, keep].clone())
                cons.in_channels = int(keep.numel())
        note = "dead channel kept: constant output meets zero padding" if nonexact else ""
        report.layers.append(LayerCompaction(ch.producer, before, int(keep.numel()), nonexact, note))
    return model, report
