"""Write one pruned checkpoint per source tool, the way that tool writes it, and `bench import` each one.

    python examples/import_tickets.py            # → runs/imported/<kind>/ (ticket dirs) and their checkpoints
    python -m bench run --suite examples/imported.toml --device cpu

The networks are random (nothing is downloaded): the point is the hardware profile of each imported ticket, and
that each import is exact (`bench run` validates every ONNX against its ticket).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from torch import nn
from torch.nn.utils import prune

from ticketbench.bench.cli import main as bench
from ticketbench.models.zoo import create_model
from ticketbench.models.zoo.vgg import VGG


def torch_prune(out: Path) -> list[str]:
    """torch.nn.utils.prune: 80% L1-unstructured on each conv/linear; the state_dict keeps weight_orig + weight_mask."""
    model = create_model("small_cnn", num_classes=10, in_channels=1)
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            prune.l1_unstructured(m, "weight", amount=0.8)
    torch.save(model.state_dict(), out / "torch_prune.pt")
    return ["--model", "small_cnn", "--checkpoint", str(out / "torch_prune.pt")]


def eb(out: Path) -> list[str]:
    """Early-Bird vggprune.py: a global |γ| threshold at 50% of BN channels, kept channels copied into vgg(cfg)."""
    dense = create_model("vgg11").eval()
    for m in dense.modules():
        if isinstance(m, nn.BatchNorm2d):
            nn.init.uniform_(m.weight, 0.0, 1.0)  # stands in for the L1-sparsified γ of the EB search
    bns = [m for m in dense.feature if isinstance(m, nn.BatchNorm2d)]
    thre = torch.cat([m.weight.detach().abs() for m in bns]).sort().values[int(sum(m.num_features for m in bns) * 0.5)]
    keeps = [(m.weight.detach().abs() > thre).nonzero().flatten() for m in bns]
    cfg, k = [], iter(keeps)
    for m in dense.feature:
        if isinstance(m, nn.BatchNorm2d):
            cfg.append(len(next(k)))
        elif isinstance(m, nn.MaxPool2d):
            cfg.append("M")
    new = VGG(11, cfg=cfg)
    prev, i = torch.arange(3), 0
    for a, b in zip(dense.feature, new.feature, strict=True):
        if isinstance(a, nn.Conv2d):
            b.weight.data = a.weight.data[keeps[i]][:, prev].clone()
        elif isinstance(a, nn.BatchNorm2d):
            for attr in ("weight", "bias", "running_mean", "running_var"):
                getattr(b, attr).data = getattr(a, attr).data[keeps[i]].clone()
            prev, i = keeps[i], i + 1
    new.classifier.weight.data = dense.classifier.weight.data[:, prev].clone()
    new.classifier.bias.data = dense.classifier.bias.data.clone()
    torch.save({"cfg": cfg, "state_dict": new.state_dict()}, out / "pruned.pth.tar")
    return ["--model", "vgg11", "--checkpoint", str(out / "pruned.pth.tar")]


def open_lth(out: Path) -> list[str]:
    """open_lth level 3: mask.pth (global magnitude, 0.8³ ≈ 51% kept) beside model_ep*_it*.pth."""
    model = create_model("preresnet20")
    weights = {n: p.detach() for n, p in model.named_parameters() if n.endswith("weight") and p.dim() > 1}
    thre = torch.cat([w.abs().flatten() for w in weights.values()]).quantile(1 - 0.8**3)
    level = out / "lottery" / "level_3" / "main"
    level.mkdir(parents=True, exist_ok=True)
    torch.save({n: (w.abs() >= thre).int() for n, w in weights.items()}, level / "mask.pth")
    torch.save(model.state_dict(), level / "model_ep160_it0.pth")
    return ["--model", "preresnet20", "--checkpoint", str(level / "model_ep160_it0.pth")]


def mpt(out: Path) -> list[str]:
    """biprop/MPT: scores beside every weight; the checkpoint records prune_rate (fraction kept) and conv_type."""
    model = create_model("conv4")
    sd = dict(model.state_dict())
    for n, p in model.named_parameters():
        if n.endswith("weight") and p.dim() > 1:
            sd[n[: -len("weight")] + "scores"] = torch.randn_like(p)
    blob = {"epoch": 100, "arch": "conv4", "state_dict": sd, "prune_rate": 0.2, "conv_type": "SubnetConv"}
    torch.save(blob, out / "model_best.pth")
    return ["--model", "conv4", "--checkpoint", str(out / "model_best.pth")]


def state_dict(out: Path) -> list[str]:
    """A plain state_dict with zeros: 70% of each conv's weights and a quarter of its filters set to zero."""
    model = create_model("mobilenetv1")
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Conv2d):
                w = m.weight
                w.mul_((w.abs() >= w.abs().flatten().quantile(0.7)).float())
                w[: w.shape[0] // 4] = 0
    torch.save(model.state_dict(), out / "zeros.pth")
    return ["--model", "mobilenetv1", "--checkpoint", str(out / "zeros.pth")]


def torch_pruning(out: Path) -> list[str]:
    """Torch-Pruning: 50% of channels physically removed; save the pruned module's state_dict (not the module)."""
    import torch_pruning as tp

    model = create_model("conv4").eval()
    imp = tp.importance.MagnitudeImportance(p=1)
    tp.pruner.MagnitudePruner(
        model, torch.zeros(1, 3, 32, 32), importance=imp, pruning_ratio=0.5, ignored_layers=[model.linear[-1]]
    ).step()
    torch.save(model.state_dict(), out / "tp_pruned.pth")
    return ["--model", "conv4", "--checkpoint", str(out / "tp_pruned.pth")]


KINDS = {
    "torch_prune": torch_prune,
    "eb": eb,
    "open_lth": open_lth,
    "mpt": mpt,
    "state_dict": state_dict,
    "torch_pruning": torch_pruning,
}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="runs/imported", help="checkpoints and ticket dirs (default runs/imported)")
    args = p.parse_args()
    out = Path(args.out)
    (out / "checkpoints").mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    for kind, write in KINDS.items():
        argv = ["import", *write(out / "checkpoints"), "--out", str(out / kind)]
        print("python -m bench", " ".join(argv), flush=True)
        if bench(argv) != 0:
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
