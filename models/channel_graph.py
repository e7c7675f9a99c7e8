"""Channel dependency graph of a traced model: which tensors share one channel axis, who creates it, who reads it.

A *group* is a set of tensors (torch.fx nodes) whose channel axis is one and the same: a conv output, the BN
and activation after it, a residual add and everything the add ties together, a depthwise conv (channel c in,
channel c out), and a flatten (channel c becomes a block of H·W features). A channel of a group can only be
removed from every member at once. Each group has

- *sources* that create its channels: dense convs and linears (output filters), channel selections (indices);
- *internal* per-channel layers that follow the channel: BatchNorm, depthwise convs, channel scales;
- *sinks* that read it: dense convs and linears (input columns), channel selections, concatenations
  (channel c of input i is channel offset_i + c of the `cat` output, whose group is another group);
- *pins*: reasons no channel may be removed (model input or output, an op we do not understand). An op the
  builder does not understand pins its inputs and output with a reason; it never raises.

Constants are propagated structurally, never by sampling. A channel is *independent* when its value does not
depend on the input (a zero filter gives its bias, BN with γ = 0 gives β, a padded conv of those gives a fixed
map), and *constant* when, in addition, that value is the same at every position: zero padding breaks
constness at borders but not independence. The value of an independent channel is read off one forward pass
(`trace` records every node's batch-1 output), which is exact: it does not depend on the input.

What the builder knows about a module kind sits in one `LayerRule` per kind, found through the module's type
(the most specific registered class in its MRO wins; rules sharing a type are tried in registration order,
the first whose `applies(m)` holds is used). A rule says how the layer ties channels (`read`: a dense source
whose filters mix every input channel, an internal per-channel layer, a pass-through, a selection, or a
refusal with a reason), what a constant input channel becomes (`constant`), and how to slice it (`take_out`
and `take_in` for dense layers, `take_channels` for per-channel ones). A module kind without a rule is not
understood: its input and output groups are pinned with the reason "module <type> not understood".

To add a layer kind:

1. Subclass `LayerRule[YourModule]` and decorate it with `@register_layer_rule("<name>", YourModule, ...)`.
   `trace` keeps the listed types as fx leaves (one call_module node each); a subclass of a listed type uses
   the rule too when fx leaves it whole (override `applies(m)` to take only some instances).
2. In `read(b, node, m, x)` tie its channels through the `Builder`: `b.internal(node, x)` for a per-channel
   layer with parameters (channel c in is channel c out), `b.follow(node, x)` for one without,
   `b.unsupported(node, why)` to pin its groups with a reason. A dense layer subclasses `DenseRule` instead.
3. Override `constant(m, f)` when a constant input channel stays constant through it (the default: never;
   `f.kept()` passes constants through), and `take_channels(m, index)` when it holds per-channel parameters.
   A dense kind also needs `mix_edge`, and compaction (models/compact.py) folds only into nn.Conv2d and
   nn.Linear: on another dense kind it fails and leaves the model as it was, with the reason.

tests/test_channel_graph.py registers a toy per-channel scale this way and compacts through it.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar, Generic, TypeVar

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn
from torch.fx.node import Argument
from torch.fx.passes.shape_prop import ShapeProp
from torchvision.ops import stochastic_depth

from ticketbench.registry import Registry

M = TypeVar("M", bound=nn.Module)

_ELEMENTWISE_FUNCTIONS = {
    F.relu,
    torch.relu,
    F.relu6,
    F.leaky_relu,
    F.hardtanh,
    torch.sigmoid,
    F.sigmoid,
    torch.tanh,
    F.tanh,
    F.silu,
    F.gelu,
    F.hardswish,
    F.elu,
    torch.clamp,
}
_ELEMENTWISE_METHODS = {"relu", "relu_", "sigmoid", "tanh", "clamp", "clamp_min", "contiguous", "clone", "detach"}
_POOL_FUNCTIONS = {F.max_pool2d, F.avg_pool2d, F.adaptive_avg_pool2d, F.adaptive_max_pool2d}
_IDENTITY_FUNCTIONS = {F.dropout, F.dropout2d}
_BINARY: dict[Callable[..., object], Callable[..., torch.Tensor]] = {
    operator.add: torch.add,
    operator.iadd: torch.add,
    torch.add: torch.add,
    operator.sub: torch.sub,
    operator.isub: torch.sub,
    torch.sub: torch.sub,
    operator.mul: torch.mul,
    operator.imul: torch.mul,
    torch.mul: torch.mul,
    operator.truediv: torch.div,
    torch.div: torch.div,
}
_BINARY_METHODS: dict[str, Callable[..., torch.Tensor]] = {
    "add": torch.add,
    "add_": torch.add,
    "sub": torch.sub,
    "mul": torch.mul,
    "mul_": torch.mul,
}
_SHAPE_METHODS = {"size", "dim"}  # read a tensor's metadata only


def is_selection_module(m: nn.Module) -> bool:
    """Channel selection / channel mask modules (network slimming's `channel_selection` and its kin)."""
    name = type(m).__name__.lower()
    return "select" in name or hasattr(m, "indexes")


class SelectionTracer(fx.Tracer):
    """fx tracer that keeps channel selections (their forward often calls numpy on the mask), bias maps (so a
    compacted model reads back as it was built) and every type registered with a layer rule as leaves."""

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        registered = type(m) in _RULES_BY_TYPE  # the exact type: a subclass may compute something else
        return is_selection_module(m) or registered or super().is_leaf_module(m, qualname)


class _Recorder(ShapeProp):
    """ShapeProp that also keeps each tensor node's batch-1 output (node.meta['value']): the values of
    input-independent channels, read where compaction folds them."""

    def run_node(self, n: fx.Node):
        out = super().run_node(n)
        if isinstance(out, torch.Tensor) and out.dim() >= 1 and out.shape[0] >= 1:
            n.meta["value"] = out[:1].detach().clone()  # clone: a later in-place op must not change it
        return out


def trace(model: nn.Module, example_input: torch.Tensor) -> fx.GraphModule:
    """Trace with SelectionTracer; record every node's output shape (meta 'tensor_meta') and value (meta 'value')."""
    graph = SelectionTracer().trace(model)
    gm = fx.GraphModule(model, graph, type(model).__name__)
    with torch.no_grad():
        _Recorder(gm).propagate(example_input)
    return gm


def probe_selection(m: nn.Module, channels: int) -> tuple[torch.Tensor, torch.Tensor] | None:
    """What a selection module does, learned by feeding channel c the value c+1 (exact: integers in fp32).

    Returns (index, scale): output channel j is input channel index[j] times scale[j] ∈ {0, 1}. Covers an
    index selection (network slimming) and a 0/1 channel multiplier (the zoo's ChannelSelection) alike;
    None when the module is neither.
    """
    x = (torch.arange(channels, dtype=torch.float32) + 1).view(1, channels, 1, 1).expand(1, channels, 2, 2)
    try:
        with torch.no_grad():
            y = m(x.clone())
    except Exception:
        return None
    if not isinstance(y, torch.Tensor) or y.dim() != 4 or y.shape[0] != 1 or y.shape[2:] != (2, 2):
        return None
    v = y[0, :, 0, 0]
    if not bool((y == v.view(1, -1, 1, 1)).all()) or not bool(((v == v.round()) & (v >= 0) & (v <= channels)).all()):
        return None
    scale = (v > 0).float()
    index = torch.where(v > 0, v.long() - 1, torch.arange(v.numel()).clamp_max(channels - 1))
    return index, scale


class BiasMap(nn.Module):
    """y = x + map: what an input-independent contribution becomes when it is folded out of the graph.

    `map` is [C, H, W] (a constant that depends on the position, e.g. a constant channel seen through a
    zero-padded conv; valid for the input size it was computed at) or [C, 1, 1] / [C] (a per-channel bias).
    """

    map: torch.Tensor  # a buffer

    def __init__(self, value: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("map", value.detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.map


def uniform(value: torch.Tensor, rtol: float = 1e-6) -> torch.Tensor:
    """[C] bool: channel c of a [C, ...] value is the same everywhere (to fp32 round-off of its scale)."""
    flat = value.reshape(value.shape[0], -1)
    spread = flat.amax(1) - flat.amin(1)
    return spread <= rtol * flat.abs().amax(1).clamp_min(1.0)


@dataclass
class MixEdge:
    """A dense conv/linear reading group channels: input column c holds features [c·mult, (c+1)·mult)."""

    consumer: fx.Node
    member: fx.Node
    nonzero: torch.Tensor  # [out, C] bool: output o reads channel c through a non-zero weight
    weight_sum: torch.Tensor  # [out, C, mult]: Σ weights over kernel taps, for folding constants into bias
    folds_any_constant: bool  # False for a zero-padded conv: a non-zero constant is not constant at borders


@dataclass
class SelectEdge:
    consumer: fx.Node
    member: fx.Node
    index: torch.Tensor  # output position j reads input channel index[j]…
    scale: torch.Tensor  # …times scale[j] ∈ {0, 1}


@dataclass
class CatEdge:
    """A `torch.cat` along channels: input `member`'s channel c is channel offset + c of the cat output."""

    consumer: fx.Node
    member: fx.Node
    offset: int
    size: int


@dataclass
class Group:
    gid: int
    size: int
    members: list[fx.Node] = field(default_factory=list)
    sources: list[fx.Node] = field(default_factory=list)
    internal: list[fx.Node] = field(default_factory=list)
    sinks: list[MixEdge | SelectEdge | CatEdge] = field(default_factory=list)
    pins: list[str] = field(default_factory=list)


@dataclass
class ChannelGraph:
    gm: fx.GraphModule
    groups: list[Group]
    group_of: dict[fx.Node, int]  # tensor node → group id
    mult: dict[fx.Node, int]  # features per channel at that node (1, or H·W after a flatten)
    const: dict[fx.Node, torch.Tensor]  # [C] bool: channel is constant over inputs and positions
    value: dict[fx.Node, torch.Tensor]  # [C, mult] float: the constant (0 where not constant)
    selections: dict[fx.Node, tuple[torch.Tensor, torch.Tensor]]  # selection nodes → (index, scale)
    out_group: dict[fx.Node, int] = field(default_factory=dict)  # conv/linear/select node → group it feeds
    reshapes: list[fx.Node] = field(default_factory=list)  # view/reshape nodes that may hold literal sizes
    # [C] bool: channel does not depend on the input (constant, or a fixed map where zero padding meets a constant)
    indep: dict[fx.Node, torch.Tensor] = field(default_factory=dict)
    cats: set[fx.Node] = field(default_factory=set)  # torch.cat nodes (sources of their output group)
    kind: dict[fx.Node, str] = field(default_factory=dict)  # how the builder read each node (see Builder.kind)

    def module(self, node: fx.Node) -> nn.Module:
        return self.gm.get_submodule(module_path(node))

    def module_of(self, node: fx.Node, kind: type[M]) -> M | None:
        """The module a call_module node calls when it is a `kind`, else None."""
        m = self.module(node) if node.op == "call_module" else None
        return m if isinstance(m, kind) else None

    def layer(self, node: fx.Node) -> nn.Conv2d | nn.Linear:
        """The dense conv or linear of a source or of a MixEdge's consumer (only those read channels that way)."""
        m = self.module(node)
        if not isinstance(m, (nn.Conv2d, nn.Linear)):
            raise TypeError(f"{node.name}: {type(m).__name__} is not a conv or linear")
        return m

    def act(self, node: fx.Node) -> torch.Tensor | None:
        """The node's batch-1 output recorded by `trace` (exact for its independent channels), or None."""
        return node.meta.get("value")

    def is_module(self, node: fx.Node, *types: type) -> bool:
        return node.op == "call_module" and isinstance(self.module(node), types)


def module_path(node: fx.Node) -> str:
    """The submodule path a call_module node calls (fx types every node's target as str | callable)."""
    if not isinstance(node.target, str):
        raise TypeError(f"{node.name} ({node.op}) does not call a submodule")
    return node.target


def _shape(node) -> tuple[int, ...] | None:
    meta = node.meta.get("tensor_meta") if isinstance(node, fx.Node) else None
    return tuple(meta.shape) if meta is not None and hasattr(meta, "shape") else None


def _tracked_shape(node: fx.Node) -> tuple[int, ...]:
    """Shape of a tensor node the graph tracks: the builder only tracks nodes with a recorded shape."""
    shape = _shape(node)
    assert shape is not None, f"{node.name}: tracked without a recorded shape"
    return shape


def zero_padded(m: nn.Conv2d) -> bool:
    """True when the conv pads with zeros, so a constant input is not constant at the borders."""
    if m.padding_mode != "zeros":
        return False
    if isinstance(m.padding, str):
        return m.padding == "same" and any(k > 1 for k in m.kernel_size)
    return any(p > 0 for p in m.padding)


def dense_kernel_view(m: nn.Conv2d) -> tuple[torch.Tensor, torch.Tensor]:
    """(nonzero [O, I] bool, tap sums [O, I]) of a conv of any groups, laid out as if it were dense."""
    w = m.weight.detach()
    o, i_g = w.shape[:2]
    nz_g, sum_g = w.flatten(2).ne(0).any(-1), w.flatten(2).sum(-1)
    if m.groups == 1:
        return nz_g, sum_g
    nz = torch.zeros(o, m.in_channels, dtype=torch.bool)
    sm = torch.zeros(o, m.in_channels)
    o_g = o // m.groups
    for g in range(m.groups):
        rows, cols = slice(g * o_g, (g + 1) * o_g), slice(g * i_g, (g + 1) * i_g)
        nz[rows, cols], sm[rows, cols] = nz_g[rows], sum_g[rows]
    return nz, sm


# Layer rules: one class per module kind (see "To add a layer kind" in the module docstring)


@dataclass
class Constants:
    """What `LayerRule.constant` reads: the constants of the layer's input channels, the size of its output."""

    graph: ChannelGraph
    node: fx.Node  # the layer's call
    x: fx.Node  # its input
    k: torch.Tensor  # [C_in] bool: input channel c is constant (input-independent when not exact)
    v: torch.Tensor  # [C_in, mult_in]: its value (0 where not constant)
    c: int  # output channels
    mult: int  # output features per channel
    exact: bool  # False: pretend zero padding keeps a constant constant (input independence)

    def none(self) -> tuple[torch.Tensor, torch.Tensor]:
        """No output channel is constant."""
        return torch.zeros(self.c, dtype=torch.bool), torch.zeros(self.c, self.mult)

    def kept(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Each constant stays that constant, spread over the output's features per channel."""
        v = self.v.reshape(self.c, -1).expand(self.c, self.mult) if self.v.shape[1] != self.mult else self.v
        return self.k, v


class LayerRule(Generic[M]):
    """How one module kind ties input to output channels, what it holds per channel, and how to slice it.

    The defaults describe a layer through which no constant is folded and that holds nothing to slice;
    override what the kind needs (the module docstring says which).
    """

    dense: ClassVar[bool] = False  # output filters mix every input channel: a group source and a MixEdge sink

    def applies(self, m: M) -> bool:
        """Whether this rule describes `m` (rules may share a type: dense, depthwise and grouped convs)."""
        return True

    def read(self, b: Builder, node: fx.Node, m: M, x: fx.Node) -> None:
        """Tie node's channels to its one tracked input `x`: b.source, b.internal, b.follow or b.unsupported."""
        raise NotImplementedError

    def constant(self, m: M, f: Constants) -> tuple[torch.Tensor, torch.Tensor]:
        """([C] bool, [C, mult] value): which output channels are constant given the input's, and their value."""
        return f.none()

    def take_channels(self, m: M, index: torch.Tensor) -> None:
        """Keep channels `index` (in that order) of a per-channel layer."""
        raise TypeError(f"{type(m).__name__} holds no per-channel parameters to slice")

    def take_out(self, m: M, index: torch.Tensor) -> None:
        """Keep output filters `index` (in that order) of a dense layer."""
        raise TypeError(f"{type(m).__name__} is not a dense layer")

    def take_in(self, m: M, index: torch.Tensor) -> None:
        """Keep input channels/features `index` (in that order) of a dense layer."""
        raise TypeError(f"{type(m).__name__} is not a dense layer")

    def mix_edge(self, consumer: fx.Node, member: fx.Node, m: M, channels: int, mult: int) -> MixEdge:
        """How a dense layer reads group channels (input column c holds features [c·mult, (c+1)·mult))."""
        raise TypeError(f"{type(m).__name__} is not a dense layer")

    def source_constant(self, m: M, c: int, mult: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Constant outputs of a dense layer whose input the graph does not track (its zero filters)."""
        raise TypeError(f"{type(m).__name__} is not a dense layer")


LAYER_RULES: Registry[LayerRule] = Registry("layer rule")
_RULES_BY_TYPE: dict[type, list[LayerRule]] = {}
R = TypeVar("R", bound=LayerRule)


def register_layer_rule(name: str, *modules: type[nn.Module]) -> Callable[[type[R]], type[R]]:
    """Class decorator: an instance of the LayerRule subclass describes `modules` and their subclasses."""

    def deco(cls: type[R]) -> type[R]:
        rule = cls()
        LAYER_RULES.register(name)(rule)
        for t in modules:
            _RULES_BY_TYPE.setdefault(t, []).append(rule)
        return cls

    return deco


def layer_rule(m: nn.Module) -> LayerRule | None:
    """The rule describing `m`: from the most specific registered class of its MRO, the first that applies."""
    for t in type(m).__mro__:
        for rule in _RULES_BY_TYPE.get(t, ()):
            if rule.applies(m):
                return rule
    return None


def _rule(m: nn.Module) -> LayerRule:
    rule = layer_rule(m)
    if rule is None:
        raise TypeError(f"no layer rule for {type(m).__name__}")
    return rule


def _take(p: torch.Tensor, index: torch.Tensor, dim: int) -> nn.Parameter:
    return nn.Parameter(p.data.index_select(dim, index).clone(), requires_grad=p.requires_grad)


def _take_filters(m: nn.Conv2d | nn.Linear, index: torch.Tensor) -> None:
    m.weight = _take(m.weight, index, 0)
    if m.bias is not None:
        m.bias = _take(m.bias, index, 0)


def _conv_constant(m: nn.Conv2d, f: Constants) -> tuple[torch.Tensor, torch.Tensor]:
    nz, wsum = dense_kernel_view(m)
    vin1 = f.v[:, 0]
    ok_in = f.k & ((vin1 == 0) | (not (f.exact and zero_padded(m))))
    k = ~(nz & ~ok_in.unsqueeze(0)).any(1)
    v = (wsum * vin1.unsqueeze(0)).sum(1) + (m.bias.detach() if m.bias is not None else 0)
    return k, v.unsqueeze(1)


D = TypeVar("D", nn.Conv2d, nn.Linear)


class DenseRule(LayerRule[D]):
    """A layer whose output filters each mix every input channel: a group's source, and a MixEdge of its input."""

    dense = True
    counts: ClassVar[tuple[str, str]]  # the module's attributes holding its output and input channel counts

    def read(self, b: Builder, node: fx.Node, m: D, x: fx.Node) -> None:
        b.source(node, x)

    def take_out(self, m: D, index: torch.Tensor) -> None:
        _take_filters(m, index)
        setattr(m, self.counts[0], int(index.numel()))

    def take_in(self, m: D, index: torch.Tensor) -> None:
        m.weight = _take(m.weight, index, 1)
        setattr(m, self.counts[1], int(index.numel()))

    def source_constant(self, m: D, c: int, mult: int) -> tuple[torch.Tensor, torch.Tensor]:
        k, v = m.weight.detach().flatten(1).eq(0).all(1), torch.zeros(c, mult)
        if m.bias is not None:
            v = m.bias.detach().view(c, 1).expand(c, mult).clone()
        return k, v


@register_layer_rule("conv", nn.Conv2d)
class ConvRule(DenseRule[nn.Conv2d]):
    """A dense conv (groups = 1)."""

    counts = ("out_channels", "in_channels")

    def applies(self, m: nn.Conv2d) -> bool:
        return m.groups == 1

    def constant(self, m: nn.Conv2d, f: Constants) -> tuple[torch.Tensor, torch.Tensor]:
        return _conv_constant(m, f)

    def mix_edge(self, consumer: fx.Node, member: fx.Node, m: nn.Conv2d, channels: int, mult: int) -> MixEdge:
        taps = m.weight.detach().flatten(2)
        return MixEdge(consumer, member, taps.ne(0).any(-1), taps.sum(-1, keepdim=True), not zero_padded(m))


@register_layer_rule("depthwise_conv", nn.Conv2d)
class DepthwiseConvRule(LayerRule[nn.Conv2d]):
    """A depthwise conv (groups = in = out channels): channel c in is channel c out, one filter per channel."""

    def applies(self, m: nn.Conv2d) -> bool:
        return m.groups != 1 and m.groups == m.in_channels == m.out_channels

    def read(self, b: Builder, node: fx.Node, m: nn.Conv2d, x: fx.Node) -> None:
        b.internal(node, x)

    def constant(self, m: nn.Conv2d, f: Constants) -> tuple[torch.Tensor, torch.Tensor]:
        return _conv_constant(m, f)

    def take_channels(self, m: nn.Conv2d, index: torch.Tensor) -> None:
        _take_filters(m, index)
        m.out_channels = m.in_channels = m.groups = int(index.numel())


@register_layer_rule("grouped_conv", nn.Conv2d)
class GroupedConvRule(LayerRule[nn.Conv2d]):
    """Any other grouped conv: refused (its channels tie in blocks the graph does not model)."""

    def applies(self, m: nn.Conv2d) -> bool:
        return m.groups != 1 and not m.groups == m.in_channels == m.out_channels

    def read(self, b: Builder, node: fx.Node, m: nn.Conv2d, x: fx.Node) -> None:
        b.unsupported(node, f"grouped conv (groups={m.groups})")


@register_layer_rule("linear", nn.Linear)
class LinearRule(DenseRule[nn.Linear]):
    """A linear on [batch, features]; an input channel spans `mult` input columns (after a flatten)."""

    counts = ("out_features", "in_features")

    def read(self, b: Builder, node: fx.Node, m: nn.Linear, x: fx.Node) -> None:
        if len(_tracked_shape(x)) != 2:
            b.unsupported(node, "linear on a tensor that is not [batch, features]")
            return
        b.source(node, x)

    def constant(self, m: nn.Linear, f: Constants) -> tuple[torch.Tensor, torch.Tensor]:
        w = m.weight.detach()
        feats_const = f.k.repeat_interleave(f.graph.mult[f.x])
        k = ~(w.ne(0) & ~feats_const.unsqueeze(0)).any(1)
        v = w @ f.v.flatten() + (m.bias.detach() if m.bias is not None else 0)
        return k, v.unsqueeze(1)

    def mix_edge(self, consumer: fx.Node, member: fx.Node, m: nn.Linear, channels: int, mult: int) -> MixEdge:
        w = m.weight.detach()
        wv = w.view(w.shape[0], channels, mult)
        return MixEdge(consumer, member, wv.ne(0).any(-1), wv.clone(), True)


_BatchNorm = nn.BatchNorm1d | nn.BatchNorm2d


@register_layer_rule("batchnorm", nn.BatchNorm1d, nn.BatchNorm2d)
class BatchNormRule(LayerRule[_BatchNorm]):
    """BatchNorm with running statistics: γ, β, mean and var per channel (without statistics: refused)."""

    def read(self, b: Builder, node: fx.Node, m: _BatchNorm, x: fx.Node) -> None:
        if not m.track_running_stats or m.running_mean is None:
            b.unsupported(node, "batch norm without running statistics")
            return
        b.internal(node, x)

    def constant(self, m: _BatchNorm, f: Constants) -> tuple[torch.Tensor, torch.Tensor]:
        assert m.running_var is not None and m.running_mean is not None  # `read` refused BNs without them
        scale = torch.rsqrt(m.running_var + m.eps)
        shift = -m.running_mean * scale
        if m.affine:
            scale, shift = scale * m.weight.detach(), shift * m.weight.detach() + m.bias.detach()
        scale, shift = scale.view(f.c, -1), shift.view(f.c, -1)
        k = f.k | scale.eq(0).all(1)
        return k, f.v * scale + shift

    def take_channels(self, m: _BatchNorm, index: torch.Tensor) -> None:
        if m.affine:
            m.weight = _take(m.weight, index, 0)
            if m.bias is not None:
                m.bias = _take(m.bias, index, 0)
        assert m.running_mean is not None and m.running_var is not None  # `read` refused BNs without them
        m.running_mean = m.running_mean.index_select(0, index).clone()
        m.running_var = m.running_var.index_select(0, index).clone()
        m.num_features = int(index.numel())


@register_layer_rule("prelu", nn.PReLU)
class PReLURule(LayerRule[nn.PReLU]):
    """PReLU: per channel with a slope per channel, a pass-through with one shared slope."""

    def read(self, b: Builder, node: fx.Node, m: nn.PReLU, x: fx.Node) -> None:
        if m.num_parameters > 1:
            b.internal(node, x)
        else:
            b.follow(node, x)

    def constant(self, m: nn.PReLU, f: Constants) -> tuple[torch.Tensor, torch.Tensor]:
        return f.k, m(f.v.clone().view(1, f.c * f.mult)).view(f.c, f.mult)

    def take_channels(self, m: nn.PReLU, index: torch.Tensor) -> None:
        m.weight = _take(m.weight, index, 0)
        m.num_parameters = int(index.numel())


@register_layer_rule("bias_map", BiasMap)
class BiasMapRule(LayerRule[BiasMap]):
    """A folded constant (y = x + map): per channel, its map sliced with the channel."""

    def read(self, b: Builder, node: fx.Node, m: BiasMap, x: fx.Node) -> None:
        out = _shape(node)
        if out is None or m.map.dim() + 1 != len(out) or m.map.shape[0] != out[1]:
            b.unsupported(node, "bias map that is not per channel")
            return
        b.internal(node, x)

    def constant(self, m: BiasMap, f: Constants) -> tuple[torch.Tensor, torch.Tensor]:
        flat = m.map.reshape(f.c, -1)
        return (f.k & uniform(flat)) if f.exact else f.k, f.v + flat[:, :1]

    def take_channels(self, m: BiasMap, index: torch.Tensor) -> None:
        m.map = m.map.index_select(0, index).clone()


_PASS_THROUGH: tuple[type[nn.Module], ...] = (
    nn.Identity, nn.Dropout, nn.Dropout2d, nn.AlphaDropout, nn.MaxPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d,
)  # fmt: skip


@register_layer_rule("pass_through", *_PASS_THROUGH)
class PassThroughRule(LayerRule[M]):
    """Identity, dropout, pools: channel c out is channel c in, and a constant channel stays that constant."""

    def read(self, b: Builder, node: fx.Node, m: M, x: fx.Node) -> None:
        b.follow(node, x)

    def constant(self, m: M, f: Constants) -> tuple[torch.Tensor, torch.Tensor]:
        return f.kept()


# Activations applied channel by channel with no parameters: the output channel c depends on input channel c only.
_ACTIVATIONS: tuple[type[nn.Module], ...] = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.Hardtanh, nn.Sigmoid, nn.Tanh, nn.SiLU, nn.GELU, nn.Hardswish,
    nn.Hardsigmoid, nn.ELU, nn.Mish, nn.Softplus,
)  # fmt: skip


@register_layer_rule("elementwise", *_ACTIVATIONS)
class ElementwiseRule(PassThroughRule[nn.Module]):
    """An activation without parameters: a pass-through whose constant is mapped value by value."""

    def constant(self, m: nn.Module, f: Constants) -> tuple[torch.Tensor, torch.Tensor]:
        return f.k, m(f.v.clone())


@register_layer_rule("avg_pool", nn.AvgPool2d)
class AvgPoolRule(PassThroughRule[nn.AvgPool2d]):
    """AvgPool2d: a pass-through, but zero padding, ceil mode or a divisor make a non-zero constant vary."""

    def constant(self, m: nn.AvgPool2d, f: Constants) -> tuple[torch.Tensor, torch.Tensor]:
        pads = m.padding if isinstance(m.padding, tuple) else (m.padding,)
        if f.exact and (any(p > 0 for p in pads) or m.ceil_mode or m.divisor_override):
            return f.k & f.v.eq(0).all(1), f.v
        return f.k, f.v


@register_layer_rule("flatten", nn.Flatten)
class FlattenRule(PassThroughRule[nn.Flatten]):
    """nn.Flatten from dim 1: channel c becomes a block of H·W features."""

    def read(self, b: Builder, node: fx.Node, m: nn.Flatten, x: fx.Node) -> None:
        b.flatten(node, x, m.start_dim, m.end_dim)


@register_layer_rule("selection", nn.Module)
class SelectionRule(LayerRule[nn.Module]):
    """A channel selection of any type (`is_selection_module`), read by probing it (`probe_selection`)."""

    def applies(self, m: nn.Module) -> bool:
        return is_selection_module(m)

    def read(self, b: Builder, node: fx.Node, m: nn.Module, x: fx.Node) -> None:
        out = _shape(node)
        found = probe_selection(m, b.channels(x)) if len(_tracked_shape(x)) == 4 and b.mult[x] == 1 else None
        if found is None or out is None or out[1] != found[0].numel():
            b.unsupported(node, "selection module with unknown behaviour")
        else:
            b.select(node, x, found)

    def constant(self, m: nn.Module, f: Constants) -> tuple[torch.Tensor, torch.Tensor]:
        index, scale = f.graph.selections[f.node]
        return f.k[index] | scale.eq(0), f.v[index] * scale.view(f.c, 1)


class Builder:
    """Reads a traced graph into channel groups; layer rules call its `source`, `internal`, `follow`, `flatten`,
    `select` and `unsupported` to say how a layer ties its channels."""

    def __init__(self, gm: fx.GraphModule) -> None:
        self.gm = gm
        self.mods = dict(gm.named_modules())
        self.parent: dict[fx.Node, fx.Node] = {}
        self.pins: dict[fx.Node, list[str]] = {}
        self.mult: dict[fx.Node, int] = {}
        self.roles: dict[fx.Node, str] = {}  # "source" | "internal"
        self.edges: list[tuple[fx.Node, fx.Node, str]] = []  # (consumer, member, kind)
        self.selections: dict[fx.Node, tuple[torch.Tensor, torch.Tensor]] = {}
        self.module_calls: dict[str, list[fx.Node]] = {}
        self.reshapes: list[fx.Node] = []
        self.cat_edges: list[tuple[fx.Node, fx.Node, int, int]] = []  # (cat, input, offset, size)
        # how each node was read: "input", "source", "internal", "follow" (channel c → channel c, no parameters),
        # "binary", "cat", "select", "opaque" (not understood: pinned, never constant)
        self.kind: dict[fx.Node, str] = {}

    # union-find over tensor nodes
    def find(self, n: fx.Node) -> fx.Node:
        while self.parent[n] is not n:
            self.parent[n] = self.parent[self.parent[n]]
            n = self.parent[n]
        return n

    def add(self, n: fx.Node, mult: int = 1) -> None:
        self.parent[n] = n
        self.mult[n] = mult

    def union(self, a: fx.Node, b: fx.Node) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra is not rb:
            self.parent[rb] = ra

    def pin(self, n, reason: str) -> None:
        if isinstance(n, fx.Node) and n in self.parent:
            self.pins.setdefault(n, []).append(reason)

    def tensor_args(self, node: fx.Node) -> list[fx.Node]:
        return [a for a in node.all_input_nodes if a in self.parent]

    def channels(self, n: fx.Node) -> int:
        return _tracked_shape(n)[1]

    def follow(self, node: fx.Node, src: fx.Node, mult: int | None = None) -> None:
        """node's channel axis is src's (same channels, possibly reshaped to `mult` features per channel)."""
        out, inp = _shape(node), _tracked_shape(src)
        if out is None or len(out) not in (2, 4) or out[0] != inp[0]:
            self.unsupported(node, "changes the batch or rank")
            return
        m = self.mult[src] if mult is None else mult
        if out[1] * self.mult[src] != inp[1] * m:
            self.unsupported(node, "changes the channel count")
            return
        self.add(node, m)
        self.union(node, src)
        self.kind.setdefault(node, "follow")

    def unsupported(self, node: fx.Node, why: str) -> None:
        what = node.target if node.op == "call_module" else getattr(node.target, "__name__", str(node.target))
        reason = f"{node.name} ({what}): {why}"
        for a in self.tensor_args(node):
            self.pin(a, reason)
        shape = _shape(node)
        self.kind[node] = "opaque"
        if shape is not None and len(shape) in (2, 4) and shape[1] > 0:
            if node not in self.parent:
                self.add(node, 1)
            self.pin(node, reason)

    def build(self) -> None:
        for node in self.gm.graph.nodes:
            shape = _shape(node)
            if node.op == "placeholder":
                if shape is not None and len(shape) in (2, 4):
                    self.add(node)
                    self.kind[node] = "input"
                    self.pin(node, "model input")
            elif node.op == "output":
                for a in node.all_input_nodes:
                    self.pin(a, "model output")
            elif node.op == "get_attr":
                continue
            elif node.op == "call_module":
                self.module_calls.setdefault(node.target, []).append(node)
                self.call_module(node, self.mods[node.target])
            elif node.op == "call_method" and node.target in _SHAPE_METHODS:
                continue
            elif node.op == "call_function" and node.target is getattr and node.args[1] in ("shape", "dtype", "device"):
                continue
            else:
                self.call_function(node)
        for target, nodes in self.module_calls.items():
            if len(nodes) > 1 and any(True for _ in self.mods[target].parameters()):
                for n in nodes:
                    self.unsupported(n, f"module {target} is called {len(nodes)} times")

    def source(self, node: fx.Node, x: fx.Node | None) -> None:
        """node's output channels are its own filters (a new group); x's channels are its input columns."""
        self.add(node)
        self.roles[node] = self.kind[node] = "source"
        if x is not None:
            self.edges.append((node, x, "mix"))

    def internal(self, node: fx.Node, x: fx.Node) -> None:
        """node is x's channel axis, with parameters per channel (sliced with it)."""
        self.follow(node, x)
        self.roles[node] = self.kind[node] = "internal"

    def select(self, node: fx.Node, x: fx.Node, found: tuple[torch.Tensor, torch.Tensor]) -> None:
        """node's output position j is x's channel index[j] times scale[j] (see `probe_selection`)."""
        self.selections[node] = found
        self.add(node)
        self.roles[node] = "source"
        self.kind[node] = "select"
        self.edges.append((node, x, "select"))

    def call_module(self, node: fx.Node, m: nn.Module) -> None:
        rule = layer_rule(m)
        args = self.tensor_args(node)
        out = _shape(node)
        dense = rule is not None and rule.dense
        if not args and dense and len(node.args) == 1 and out is not None and len(out) in (2, 4):
            # its input has no channel axis we track (e.g. after a channel shuffle): the input columns stay,
            # but its output filters are a group like any other
            self.source(node, None)
            return
        if len(args) != 1 or len(node.args) != 1:
            self.unsupported(node, "not a single-tensor call")
            return
        if rule is None:
            self.unsupported(node, f"module {type(m).__name__} not understood")
            return
        rule.read(self, node, m, args[0])

    def flatten(self, node: fx.Node, x: fx.Node, start: Argument, end: Argument) -> None:
        s_in, s_out = _tracked_shape(x), _shape(node)
        if len(s_in) == 4 and start == 1 and end in (-1, 3) and s_out is not None and len(s_out) == 2:
            self.follow(node, x, mult=self.mult[x] * s_in[2] * s_in[3])
        elif len(s_in) == 2:
            self.follow(node, x)
        else:
            self.unsupported(node, "flatten not from dim 1")

    def call_function(self, node: fx.Node) -> None:
        if node.op == "call_function" and node.target in (torch.cat, torch.concat):
            self.cat(node)
            return
        args = self.tensor_args(node)
        if not args:
            return
        t = node.target
        first = node.args[0] if node.args else None
        # the call's only tracked tensor, when it is its first positional argument (x.relu(), torch.flatten(x, 1))
        x = args[0] if len(args) == 1 and first is args[0] else None
        if node.op == "call_method":
            name = t
            if name in _ELEMENTWISE_METHODS and x is not None:
                self.follow(node, x)
            elif name == "flatten" and x is not None:
                start = node.args[1] if len(node.args) > 1 else node.kwargs.get("start_dim", 0)
                end = node.args[2] if len(node.args) > 2 else node.kwargs.get("end_dim", -1)
                self.flatten(node, x, start, end)
            elif name in ("view", "reshape") and x is not None:
                self.reshape(node, x)
            elif name in ("mean", "amax") and x is not None:
                self.spatial_reduce(node, x)
            elif name in _BINARY_METHODS:
                self.binary(node, args)
            else:
                self.unsupported(node, f"method {name} not understood")
            return
        if t is stochastic_depth and not (node.args[3] if len(node.args) > 3 else node.kwargs.get("training", True)):
            # eval mode: the identity. Its one tensor is `input`, positional or not (first is None for input=x)
            if len(args) == 1:
                self.follow(node, args[0])
            else:
                self.unsupported(node, "function on several tensors")
        elif t in _ELEMENTWISE_FUNCTIONS or t in _POOL_FUNCTIONS or t in _IDENTITY_FUNCTIONS:
            if x is not None:
                self.follow(node, x)
            else:
                self.unsupported(node, "function on several tensors")
        elif t is torch.flatten and x is not None:
            start = node.args[1] if len(node.args) > 1 else node.kwargs.get("start_dim", 0)
            end = node.args[2] if len(node.args) > 2 else node.kwargs.get("end_dim", -1)
            self.flatten(node, x, start, end)
        elif t in (torch.mean, torch.amax) and x is not None:
            self.spatial_reduce(node, x)
        elif t in (torch.reshape,) and x is not None:
            self.reshape(node, x)
        elif t in _BINARY:
            self.binary(node, args)
        else:
            self.unsupported(node, "function not understood")

    def cat(self, node: fx.Node) -> None:
        """Concatenation along channels: a new group whose channels are the inputs' channels at offsets."""
        parts = node.args[0] if node.args else node.kwargs.get("tensors")
        dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim", 0)
        out = _shape(node)
        along_channels = out is not None and len(out) in (2, 4) and isinstance(dim, int) and dim % len(out) == 1
        if not isinstance(parts, (list, tuple)) or not along_channels:
            self.unsupported(node, "concatenation not along channels")
            return
        if not all(isinstance(p, fx.Node) and p in self.parent and self.mult[p] == 1 for p in parts):
            self.unsupported(node, "concatenation of tensors without a channel axis we track")
            return
        self.add(node)
        self.roles[node] = "source"
        self.kind[node] = "cat"
        offset = 0
        for p in parts:
            self.cat_edges.append((node, p, offset, self.channels(p)))
            offset += self.channels(p)

    def reshape(self, node: fx.Node, x: fx.Node) -> None:
        s_in, s_out = _tracked_shape(x), _shape(node)
        if len(s_in) == 4 and s_out is not None and len(s_out) == 2 and s_out[1] == s_in[1] * s_in[2] * s_in[3]:
            self.follow(node, x, mult=self.mult[x] * s_in[2] * s_in[3])
            self.reshapes.append(node)
        elif s_in == s_out:
            self.follow(node, x)
            self.reshapes.append(node)
        else:
            self.unsupported(node, "reshape that is not a flatten")

    def spatial_reduce(self, node: fx.Node, x: fx.Node) -> None:
        s_in, s_out = _tracked_shape(x), _shape(node)
        dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")
        listed = dim if isinstance(dim, (tuple, list)) else [dim]
        ints = [d for d in listed if isinstance(d, int)]
        axes = {d % 4 for d in ints} if dim is not None and len(ints) == len(listed) else None
        if len(s_in) == 4 and axes == {2, 3} and s_out is not None and s_out[:2] == s_in[:2] and self.mult[x] == 1:
            self.follow(node, x, mult=1)
        else:
            self.unsupported(node, "reduction that is not over H and W")

    def binary(self, node: fx.Node, args: list[fx.Node]) -> None:
        out = _shape(node)
        others = [a for a in node.args if isinstance(a, fx.Node) and a not in self.parent]
        full = [a for a in args if _tracked_shape(a) == out]
        # channel-wise broadcasting (an SE block's [N, C, 1, 1] scale times [N, C, H, W]) keeps channel c ↔ c
        spatial = out is not None and all(
            _tracked_shape(a) == out
            or (len(out) == 4 and _tracked_shape(a)[:2] == out[:2] and _tracked_shape(a)[2:] == (1, 1))
            for a in args
        )
        if others or not full or not spatial or len({self.mult[a] for a in args}) != 1:
            self.unsupported(node, "broadcasting other than over H×W, or a non-tensor operand")
            return
        self.follow(node, full[0])
        for a in args:
            self.union(node, a)
        self.kind[node] = "binary"

    def finish(self) -> ChannelGraph:
        roots: dict[fx.Node, int] = {}
        groups: list[Group] = []
        group_of: dict[fx.Node, int] = {}
        for n in self.parent:
            r = self.find(n)
            if r not in roots:
                roots[r] = len(groups)
                groups.append(Group(len(groups), _tracked_shape(n)[1] // self.mult[n]))
            g = groups[roots[r]]
            group_of[n] = g.gid
            g.members.append(n)
            for reason in self.pins.get(n, []):
                if reason not in g.pins:
                    g.pins.append(reason)
        for n, role in self.roles.items():
            if n in group_of:
                (groups[group_of[n]].sources if role == "source" else groups[group_of[n]].internal).append(n)
        graph = ChannelGraph(self.gm, groups, group_of, self.mult, {}, {}, self.selections)
        graph.reshapes = self.reshapes
        graph.kind = self.kind
        graph.cats = {c for c, *_ in self.cat_edges if c in group_of}
        for n in self.roles:
            if n in group_of:
                graph.out_group[n] = group_of[n]
        for consumer, member, kind in self.edges:
            if member not in group_of or consumer not in group_of:
                continue
            g = groups[group_of[member]]
            if kind == "select":
                g.sinks.append(SelectEdge(consumer, member, *self.selections[consumer]))
            else:
                m = self.mods[module_path(consumer)]
                rule = _rule(m)
                assert rule.dense  # mix edges come from dense layers only
                g.sinks.append(rule.mix_edge(consumer, member, m, g.size, self.mult[member]))
        for cat, member, offset, size in self.cat_edges:
            if cat in group_of and member in group_of:
                groups[group_of[member]].sinks.append(CatEdge(cat, member, offset, size))
        _propagate_constants(graph, self.mods, exact=True)
        graph.indep = _propagate_constants(graph, self.mods, exact=False)[0]
        return graph


@torch.no_grad()
def _propagate_constants(graph: ChannelGraph, mods: dict[str, nn.Module], exact: bool) -> tuple[dict, dict]:
    """Forward pass over per-channel constants in graph order (see the module docstring).

    exact=True fills graph.const/value; exact=False pretends zero padding keeps constants constant.
    """
    const, value = (graph.const, graph.value) if exact else ({}, {})
    for node in graph.gm.graph.nodes:
        if node not in graph.group_of:
            continue
        c = graph.groups[graph.group_of[node]].size
        mult = graph.mult[node]
        args = [a for a in node.all_input_nodes if a in graph.group_of]
        k, v = torch.zeros(c, dtype=torch.bool), torch.zeros(c, mult)
        if graph.kind.get(node) == "opaque":
            pass  # an op we do not understand is never constant (its output may not even have c channels)
        elif not args:
            layer = mods[node.target] if node.op == "call_module" else None
            rule = layer_rule(layer) if layer is not None else None
            if layer is not None and rule is not None and rule.dense:
                # a source whose input we do not track: only its zero filters are constant
                k, v = rule.source_constant(layer, c, mult)
        elif node in graph.cats:
            parts = node.args[0]
            if all(p in const for p in parts):
                k = torch.cat([const[p] for p in parts])
                v = torch.cat([value[p] for p in parts])
        elif node.op == "call_module":
            m, x = mods[node.target], args[0]
            rule = layer_rule(m)
            if rule is not None and x in const:
                k, v = rule.constant(m, Constants(graph, node, x, const[x], value[x], c, mult, exact))
        else:
            k, v = _function_constant(node, args, graph, const, value, c, mult, exact)
        const[node], value[node] = k, torch.where(k.unsqueeze(1), v, torch.zeros_like(v))
    return const, value


def _function_constant(node, args, graph, const, value, c, mult, exact):
    zeros = torch.zeros(c, dtype=torch.bool), torch.zeros(c, mult)
    if any(a not in const for a in args):
        return zeros
    t = node.target
    x = args[0]
    kin, vin = const[x], value[x]
    if t in _BINARY or t in _BINARY_METHODS:
        fn = _BINARY.get(t) or _BINARY_METHODS[t]
        vals = [value[a] if isinstance(a, fx.Node) else a for a in node.args[:2]]
        k = torch.ones(c, dtype=torch.bool)
        for a in args:
            k &= const[a]
        if fn is torch.mul and len(args) == 2:  # 0 · anything = 0
            for a in args:
                k |= const[a] & _zero(graph, a, value[a], exact)
        return k, fn(*vals)
    if t in _ELEMENTWISE_FUNCTIONS or (node.op == "call_method" and t in _ELEMENTWISE_METHODS):
        fn = getattr(torch.Tensor, t) if node.op == "call_method" else t
        rest = [a for a in node.args[1:]]
        kwargs = {k: v for k, v in node.kwargs.items() if k != "inplace"}
        return kin, fn(vin.clone(), *rest, **kwargs)
    if t is F.avg_pool2d:
        pad = node.args[3] if len(node.args) > 3 else node.kwargs.get("padding", 0)
        pads = pad if isinstance(pad, (tuple, list)) else (pad,)
        if exact and (any(p > 0 for p in pads) or node.kwargs.get("ceil_mode") or len(node.args) > 4):
            return kin & vin.eq(0).all(1), vin
        return kin, vin
    # pools, dropout, flatten, reshape, spatial mean/max: a constant stays that constant
    return kin, vin.reshape(c, -1).expand(c, mult) if vin.shape[1] != mult else vin


def _zero(graph: ChannelGraph, node: fx.Node, value: torch.Tensor, exact: bool) -> torch.Tensor:
    """[C] bool: the (constant or independent) channel is 0 at every position. `value` holds the interior value
    only when exact=False, so the recorded output decides then."""
    act = graph.act(node)
    if exact or act is None:
        return value.eq(0).all(1)
    return act[0].reshape(value.shape[0], -1).eq(0).all(1)


def build(gm: fx.GraphModule) -> ChannelGraph:
    """Channel groups, sinks and constants of a traced, shape-propagated GraphModule (see `trace`)."""
    b = Builder(gm)
    b.build()
    return b.finish()


class ChannelSelect(nn.Module):
    """y = x[:, index] · scale: what a channel selection becomes after compaction (ONNX: Gather, then Mul if needed)."""

    index: torch.Tensor  # buffers
    scale: torch.Tensor | None

    def __init__(self, index: torch.Tensor, scale: torch.Tensor | None = None) -> None:
        super().__init__()
        self.register_buffer("index", index.long().clone())
        self.register_buffer("scale", None if scale is None or bool(scale.eq(1).all()) else scale.float().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x.index_select(1, self.index)
        if self.scale is not None:
            y = y * self.scale.view(1, -1, 1, 1)
        return y


def expand(index: torch.Tensor, mult: int) -> torch.Tensor:
    """Channel indices → feature indices when each channel spans `mult` consecutive features."""
    if mult == 1:
        return index
    return (index.unsqueeze(1) * mult + torch.arange(mult)).flatten()


def _bypass(gm: fx.GraphModule, node: fx.Node) -> None:
    x = next(a for a in node.all_input_nodes)
    node.replace_all_uses_with(x)
    gm.graph.erase_node(node)
    if node.op == "call_module":
        gm.delete_submodule(module_path(node))


@torch.no_grad()
def reindex(graph: ChannelGraph, index: dict[int, torch.Tensor]) -> None:
    """Keep channels `index[gid]` of each listed group, in that order, in every member at once.

    A subset removes channels, a permutation reorders them; either way the function the model computes is
    unchanged for the channels kept (the caller has made sure removed channels are unused or folded).
    Selections are rewritten as ChannelSelect, or dropped when they became the identity.
    """
    for gid, idx in index.items():
        g = graph.groups[gid]
        for n in g.sources:
            if n not in graph.selections and n not in graph.cats:
                m = graph.module(n)
                _rule(m).take_out(m, idx)
        for n in g.internal:
            if n not in graph.selections:
                m = graph.module(n)
                _rule(m).take_channels(m, expand(idx, graph.mult[n]))
        for e in g.sinks:
            if isinstance(e, MixEdge):
                m = graph.module(e.consumer)
                _rule(m).take_in(m, expand(idx, graph.mult[e.member]))
    cat_edges: dict[fx.Node, list[CatEdge]] = {}
    for g in graph.groups:
        for e in g.sinks:
            if isinstance(e, CatEdge):
                cat_edges.setdefault(e.consumer, []).append(e)
    for n in graph.cats:  # the cat of the kept inputs must be exactly the cat group's kept channels
        g_out = graph.groups[graph.group_of[n]]
        edges = sorted(cat_edges.get(n, []), key=lambda e: e.offset)
        got = torch.cat([e.offset + index.get(graph.group_of[e.member], torch.arange(e.size)) for e in edges])
        if not torch.equal(got, index.get(g_out.gid, torch.arange(g_out.size))):
            raise RuntimeError(f"{n.name}: concatenation would not match its consumers' channels")
    for n, (sel, scale) in graph.selections.items():
        x = next(a for a in n.all_input_nodes if a in graph.group_of)
        g_in, g_out = graph.groups[graph.group_of[x]], graph.groups[graph.group_of[n]]
        idx_in = index.get(g_in.gid, torch.arange(g_in.size))
        pos = torch.full((g_in.size,), -1, dtype=torch.long)
        pos[idx_in] = torch.arange(idx_in.numel())
        own = index.get(g_out.gid, torch.arange(g_out.size))
        new, new_scale = pos[sel[own]], scale[own]
        if bool((new[new_scale != 0] < 0).any()):
            raise RuntimeError(f"{n.name}: selection reads a removed channel")
        new = new.clamp_min(0)  # a zero-scaled position may point anywhere
        identity = torch.equal(new, torch.arange(idx_in.numel())) and bool(new_scale.eq(1).all())
        if identity:
            _bypass(graph.gm, n)
        else:
            graph.gm.add_submodule(module_path(n), ChannelSelect(new, new_scale))
    for n in graph.reshapes:  # `x.view(-1, 512)` spells the channel count: make it a flatten (or nothing)
        src = n.args[0]
        assert isinstance(src, fx.Node)  # the builder records a reshape only when it reshapes its first argument
        if len(_tracked_shape(n)) == len(_tracked_shape(src)):
            n.replace_all_uses_with(src)
        else:
            with graph.gm.graph.inserting_after(n):
                flat = graph.gm.graph.call_function(torch.flatten, (src, 1))
            n.replace_all_uses_with(flat)
        graph.gm.graph.erase_node(n)
    graph.reshapes = []
    graph.gm.graph.lint()
    graph.gm.recompile()
