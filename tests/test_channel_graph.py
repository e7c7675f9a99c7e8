"""Channel graph builder (models/channel_graph.py): an op it reads must not make it raise."""

from __future__ import annotations

import torch
import torch.fx
from torch import nn
from torchvision.ops import stochastic_depth

from ticketbench.models import channel_graph as cg

# A leaf for fx here as in torchvision's own StochasticDepth module, so the call stays one node in the graph.
torch.fx.wrap("stochastic_depth")


class _DropPath(nn.Module):
    def __init__(self, keyword: bool) -> None:
        super().__init__()
        self.keyword = keyword
        self.a = nn.Conv2d(3, 8, 3, padding=1)
        self.b = nn.Conv2d(8, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.a(x)
        if self.keyword:
            y = stochastic_depth(input=y, p=0.2, mode="row", training=False)
        else:
            y = stochastic_depth(y, 0.2, "row", False)
        return self.b(y)


def test_eval_stochastic_depth_follows_its_input_positional_or_keyword():
    # `input=y` left the call's first positional argument None; the builder followed None and raised TypeError
    for keyword in (False, True):
        graph = cg.build(cg.trace(_DropPath(keyword).eval(), torch.zeros(1, 3, 8, 8)))
        node = next(n for n in graph.gm.graph.nodes if n.target is stochastic_depth)
        conv = next(n for n in graph.gm.graph.nodes if n.target == "a")
        assert graph.kind[node] == "follow"
        assert graph.group_of[node] == graph.group_of[conv]
        assert not graph.groups[graph.group_of[node]].pins


class ChannelScale(nn.Module):
    """A toy layer kind outside torch.nn: y = x · weight per channel (fx would trace through it unregistered)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.rand(channels) + 0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.weight.view(1, -1, 1, 1)


@cg.register_layer_rule("test_channel_scale", ChannelScale)
class ChannelScaleRule(cg.LayerRule[ChannelScale]):
    def read(self, b: cg.Builder, node: torch.fx.Node, m: ChannelScale, x: torch.fx.Node) -> None:
        b.internal(node, x)

    def constant(self, m: ChannelScale, f: cg.Constants) -> tuple[torch.Tensor, torch.Tensor]:
        return f.k, f.v * m.weight.detach().view(-1, 1)

    def take_channels(self, m: ChannelScale, index: torch.Tensor) -> None:
        m.weight = nn.Parameter(m.weight.data.index_select(0, index).clone())


class _Scaled(nn.Module):
    def __init__(self, norm: nn.Module) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 8, 3, padding=1)
        self.norm = norm
        self.b = nn.Conv2d(8, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(torch.relu(self.norm(self.a(x))))


def _kill_filters(model: _Scaled, dead: list[int]) -> None:
    with torch.no_grad():
        model.a.weight[dead] = 0


def test_registered_layer_kind_is_a_leaf_in_its_producers_group_and_is_compacted():
    from ticketbench.models.compact import CompactionConfig, compact

    assert "test_channel_scale" in cg.LAYER_RULES.names()
    torch.manual_seed(0)
    model = _Scaled(ChannelScale(8)).eval()
    _kill_filters(model, [1, 5])
    x = torch.randn(2, 3, 8, 8)
    graph = cg.build(cg.trace(model, x[:1]))
    scale = next(n for n in graph.gm.graph.nodes if n.target == "norm")  # one call_module node: a leaf
    a = next(n for n in graph.gm.graph.nodes if n.target == "a")
    group = graph.groups[graph.group_of[a]]
    assert graph.kind[scale] == "internal" and scale in group.internal and not group.pins
    # a dead filter gives its bias; the scale keeps it constant (bias · weight), so it folds into b's bias
    assert graph.const[scale][[1, 5]].all() and not graph.const[scale][[0, 2, 3, 4, 6, 7]].any()
    small, report = compact(model, x[:1], CompactionConfig(decompose=False))
    assert small.get_submodule("a").out_channels == 6 and small.get_submodule("b").in_channels == 6
    assert small.get_submodule("norm").weight.shape == (6,)
    torch.testing.assert_close(small(x), model(x), rtol=1e-5, atol=1e-5)


def test_module_kind_without_a_rule_is_pinned_and_left_whole():
    from ticketbench.models.compact import CompactionConfig, compact

    assert cg.layer_rule(nn.GroupNorm(2, 8)) is None
    torch.manual_seed(0)
    model = _Scaled(nn.GroupNorm(2, 8)).eval()
    _kill_filters(model, [1, 5])
    x = torch.randn(2, 3, 8, 8)
    graph = cg.build(cg.trace(model, x[:1]))
    norm = next(n for n in graph.gm.graph.nodes if n.target == "norm")
    a = next(n for n in graph.gm.graph.nodes if n.target == "a")
    assert graph.kind[norm] == "opaque"
    assert graph.groups[graph.group_of[a]].pins == ["norm (norm): module GroupNorm not understood"]
    small, report = compact(model, x[:1], CompactionConfig(decompose=False))
    assert small.get_submodule("a").out_channels == 8
    assert any("GroupNorm not understood" in p for g in report.groups for p in g.pins)
    torch.testing.assert_close(small(x), model(x), rtol=1e-5, atol=1e-5)


def test_conv_rule_follows_groups():
    rules = {g: cg.layer_rule(nn.Conv2d(8, 8, 3, groups=g)) for g in (1, 2, 8)}
    assert [type(r).__name__ for r in rules.values()] == ["ConvRule", "GroupedConvRule", "DepthwiseConvRule"]
    assert rules[1] is not None and rules[1].dense

    class SelectLike(nn.Module):  # no type of its own registered: read as a selection by its name
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x

    assert isinstance(cg.layer_rule(SelectLike()), cg.SelectionRule)
    assert cg.layer_rule(nn.Module()) is None
