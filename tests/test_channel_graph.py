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
