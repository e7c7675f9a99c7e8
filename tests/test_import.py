"""`bench import`: each source format is built here with the tool's own conventions, imported, exported, and the
ONNX must compute what the source network computes; the derived masks must be the source's masks."""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn
from torch.nn.utils import prune

from ticketbench.bench.cli import main
from ticketbench.models.tickets import load_ticket
from ticketbench.models.zoo import create_model
from ticketbench.models.zoo.vgg import VGG


def lively(model: nn.Module, seed: int = 0) -> nn.Module:
    """Random BN statistics and affine terms, so a wrongly embedded channel cannot hide behind BN's identity init."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(0.1 * torch.randn(n, generator=g))
            m.running_var.copy_(0.5 + torch.rand(n, generator=g))
            m.weight.data.copy_(0.5 + torch.rand(n, generator=g))
            m.bias.data.copy_(0.01 * torch.randn(n, generator=g))
    return model.eval()


def do_import(tmp_path: Path, ckpt: Path, model: str, *extra: str) -> tuple[Path, dict]:
    out = tmp_path / "ticket"
    assert main(["import", "--model", model, "--checkpoint", str(ckpt), "--out", str(out), *extra]) == 0
    return out, load_ticket(out).provenance["imported_from"]


def export_matches(tmp_path: Path, ticket_dir: Path, source: nn.Module, shape: tuple[int, ...]) -> onnx.ModelProto:
    """`bench export` the ticket (every dead channel removed) and compare ONNX Runtime with the source model."""
    path = tmp_path / "model.onnx"
    assert main(["export", str(ticket_dir), "--out", str(path), "--align", "1"]) == 0
    x = torch.randn(4, *shape, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = source.eval()(x).numpy()
    got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"input": x.numpy()})[0]
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-5 * float(np.abs(ref).max()))
    return onnx.load(str(path))


def onnx_conv_widths(model: onnx.ModelProto) -> list[int]:
    inits = {i.name: i for i in model.graph.initializer}
    return [inits[n.input[1]].dims[0] for n in model.graph.node if n.op_type == "Conv"]


def conv_widths(model: nn.Module) -> list[int]:
    return [m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d)]


def test_torch_prune_masks_are_the_weight_mask_buffers_and_export_is_exact(tmp_path):
    torch.manual_seed(0)
    src = lively(create_model("small_cnn", num_classes=10, in_channels=1))
    for m in src.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            prune.l1_unstructured(m, "weight", amount=0.6)
    prune.ln_structured(src.features[3], "weight", amount=0.5, n=1, dim=0)  # whole filters too
    torch.save(src.state_dict(), tmp_path / "pruned.pt")

    tdir, info = do_import(tmp_path, tmp_path / "pruned.pt", "small_cnn")
    assert info["format"] == "torch-prune"
    masks = load_ticket(tdir).masks
    expected = {f"{n}.weight": m.weight_mask for n, m in src.named_modules() if hasattr(m, "weight_mask")}
    assert masks.keys() == expected.keys()
    for k, m in expected.items():
        assert torch.equal(masks[k], m), k
    export_matches(tmp_path, tdir, src, (1, 8, 8))


def eb_prune(dense: VGG, percent: float) -> tuple[list, VGG]:
    """What Early-Bird's vggprune.py does: one global |γ| threshold, keep '>' it, copy kept channels into vgg(cfg)."""
    gammas = torch.cat([m.weight.detach().abs() for m in dense.modules() if isinstance(m, nn.BatchNorm2d)])
    thre = gammas.sort().values[int(len(gammas) * percent)]
    cfg, keeps = [], []
    for m in dense.feature:
        if isinstance(m, nn.BatchNorm2d):
            keep = (m.weight.detach().abs() > thre).nonzero().flatten()
            cfg.append(len(keep))
            keeps.append(keep)
        elif isinstance(m, nn.MaxPool2d):
            cfg.append("M")
    new = VGG(11, num_classes=10, in_channels=3, cfg=cfg).eval()
    prev, i = torch.arange(3), 0
    convs_bns = [
        (a, b) for a, b in zip(dense.feature, new.feature, strict=True) if not isinstance(a, (nn.ReLU, nn.MaxPool2d))
    ]
    for a, b in convs_bns:
        idx = keeps[i]
        if isinstance(a, nn.Conv2d):
            b.weight.data = a.weight.data[idx][:, prev].clone()
        else:
            for attr in ("weight", "bias", "running_mean", "running_var"):
                getattr(b, attr).data = getattr(a, attr).data[idx].clone()
            prev, i = idx, i + 1
    new.classifier.weight.data = dense.classifier.weight.data[:, prev].clone()
    new.classifier.bias.data = dense.classifier.bias.data.clone()
    return cfg, new


def test_eb_cfg_checkpoint_keeps_the_cfg_channel_counts_and_exports_exactly(tmp_path):
    torch.manual_seed(0)
    dense = lively(VGG(11, num_classes=10, in_channels=3, width=0.125))
    cfg, pruned = eb_prune(dense, 0.5)
    torch.save({"cfg": cfg, "state_dict": pruned.state_dict()}, tmp_path / "pruned.pth.tar")

    tdir, info = do_import(
        tmp_path, tmp_path / "pruned.pth.tar", "fixtures.import_models:vgg11_slim", "--input-shape", "3,32,32"
    )
    assert info["format"] == "eb" and info["cfg"] == cfg
    masks = load_ticket(tdir).masks
    convs = [f"feature.{i}.weight" for i, m in enumerate(dense.feature) if isinstance(m, nn.Conv2d)]
    kept = [int((masks[k].flatten(1).sum(1) > 0).sum()) for k in convs]
    assert kept == [v for v in cfg if v != "M"]  # live filters per layer = the cfg's channel counts
    model = export_matches(tmp_path, tdir, pruned, (3, 32, 32))
    assert onnx_conv_widths(model) == conv_widths(pruned)  # compaction recovers the physically pruned widths


def resprune(dense: nn.Module, seed: int) -> tuple[list[int], dict[str, torch.Tensor], nn.Module]:
    """What Early-Bird's resprune.py does to network slimming's PreResNet: a block's first BN stays whole and its
    channel selection zeroes the pruned channels; other BNs and their convs are sliced; the residual stream stays.
    Returns (cfg, pruned state_dict, the dense model with the same channels killed: the function it computes)."""
    g = torch.Generator().manual_seed(seed)
    sd, cfg, ref = {}, [], copy.deepcopy(dense)
    keep: dict[str, torch.Tensor] = {}  # BN name → kept channels
    for name, m in dense.named_modules():
        if isinstance(m, nn.BatchNorm2d):
            k = (torch.rand(m.num_features, generator=g) < 0.6).nonzero().flatten()
            keep[name] = k if len(k) else torch.tensor([0])
            cfg.append(len(keep[name]))
    for name, m in dense.named_modules():
        parent = name.rpartition(".")[0]
        select = f"{parent}.select" if parent else "select"
        if isinstance(m, nn.BatchNorm2d):
            whole = name.endswith("bn1") or name == "bn"
            idx = slice(None) if whole else keep[name]
            for attr in ("weight", "bias", "running_mean", "running_var"):
                sd[f"{name}.{attr}"] = getattr(m, attr).detach()[idx].clone()
            sd[f"{name}.num_batches_tracked"] = m.num_batches_tracked
            if whole:
                sd[f"{select}.indexes"] = torch.zeros(m.num_features).index_fill_(0, keep[name], 1.0)
                ref.get_submodule(select).indexes.copy_(sd[f"{select}.indexes"])
            else:
                dead = torch.ones(m.num_features, dtype=torch.bool).index_fill_(0, keep[name], False)
                bn = ref.get_submodule(name)
                bn.weight.data[dead], bn.bias.data[dead] = 0.0, 0.0
        elif isinstance(m, nn.Conv2d):
            w = m.weight.detach()
            if name.endswith("conv1") and parent:
                w = w[keep[f"{parent}.bn2"]][:, keep[f"{parent}.bn1"]]
            elif name.endswith("conv2"):
                w = w[keep[f"{parent}.bn3"]][:, keep[f"{parent}.bn2"]]
            elif name.endswith("conv3"):
                w = w[:, keep[f"{parent}.bn3"]]
            sd[f"{name}.weight"] = w.clone()
        elif isinstance(m, nn.Linear):
            sd[f"{name}.weight"] = m.weight.detach()[:, keep["bn"]].clone()
            sd[f"{name}.bias"] = m.bias.detach().clone()
    return cfg, sd, ref


@pytest.mark.e2e
def test_eb_resprune_checkpoint_places_selected_inputs_and_exports_exactly(tmp_path):
    torch.manual_seed(0)
    dense = lively(create_model("preresnet20", num_classes=10, in_channels=3))
    cfg, sd, ref = resprune(dense, seed=4)
    torch.save({"cfg": cfg, "state_dict": sd}, tmp_path / "pruned.pth.tar")

    tdir, info = do_import(tmp_path, tmp_path / "pruned.pth.tar", "preresnet20")
    assert info["format"] == "eb" and info["cfg"] == cfg
    masks = load_ticket(tdir).masks
    conv1 = masks["layer1.0.conv1.weight"].flatten(2).sum(2)  # (out, in) connections kept
    assert int((conv1.sum(1) > 0).sum()) == cfg[1]  # bn2's kept channels are its live filters
    assert torch.equal((conv1.sum(0) > 0).float(), sd["layer1.0.select.indexes"])  # reads the selected inputs
    export_matches(tmp_path, tdir, ref, (3, 32, 32))


def test_open_lth_weights_are_masked_by_mask_pth(tmp_path):
    torch.manual_seed(0)
    src = lively(create_model("small_cnn", num_classes=10, in_channels=1))
    g = torch.Generator().manual_seed(2)
    mask = {
        f"{n}.weight": (torch.rand(m.weight.shape, generator=g) > 0.7).int()
        for n, m in src.named_modules()
        if isinstance(m, (nn.Conv2d, nn.Linear))
    }
    level = tmp_path / "lottery_3" / "level_2" / "main"
    level.mkdir(parents=True)
    torch.save(src.state_dict(), level / "model_ep40_it0.pth")  # weights under the mask drifted: not zero
    torch.save(mask, level / "mask.pth")
    masked = copy.deepcopy(src)
    with torch.no_grad():
        for k, m in mask.items():
            masked.get_parameter(k).mul_(m)

    tdir, info = do_import(tmp_path, level / "model_ep40_it0.pth", "small_cnn")
    assert info["format"] == "open_lth" and info["mask_file"] == str(level / "mask.pth")
    masks = load_ticket(tdir).masks
    for k, m in mask.items():
        assert torch.equal(masks[k], m.float()), k
    export_matches(tmp_path, tdir, masked, (1, 8, 8))


class BipropNet(nn.Module):
    """The forward pass of biprop's SubnetConv, written from its definition: per layer the top-k |scores| are kept,
    j = int((1 − k)·n) lowest dropped, and the layer computes α·sign(W)·M with α = Σ|W|·M / int(k·n)."""

    def __init__(self, dense: nn.Module, scores: dict[str, torch.Tensor], k: float) -> None:
        super().__init__()
        self.dense, self.scores, self.k = dense, scores, k

    def weight(self, name: str, w: torch.Tensor) -> torch.Tensor:
        s = self.scores[name].abs().flatten()
        m = torch.ones_like(s)
        m[s.sort().indices[: int((1 - self.k) * s.numel())]] = 0
        m = m.view_as(w)
        alpha = (w.abs() * m).sum() / int(self.k * w.numel())
        return torch.sign(w) * alpha * m

    def forward(self, x):
        params = {k: self.weight(k, v) if k in self.scores else v for k, v in self.dense.named_parameters()}
        return torch.func.functional_call(self.dense, {**params, **dict(self.dense.named_buffers())}, (x,))


def test_mpt_masks_are_top_k_scores_at_the_checkpoint_prune_rate(tmp_path):
    torch.manual_seed(0)
    dense = lively(create_model("small_cnn", num_classes=10, in_channels=1))
    g = torch.Generator().manual_seed(3)
    scores = {
        n: torch.randn(p.shape, generator=g)
        for n, p in dense.named_parameters()
        if n.endswith("weight") and p.dim() > 1
    }
    sd = dict(dense.state_dict())
    sd.update({k[: -len("weight")] + "scores": v for k, v in scores.items()})
    k = 0.3  # biprop's prune_rate: the fraction KEPT
    torch.save(
        {"epoch": 5, "arch": "small", "state_dict": sd, "prune_rate": k, "conv_type": "SubnetConv"},
        tmp_path / "m.state",
    )

    tdir, info = do_import(tmp_path, tmp_path / "m.state", "small_cnn")
    assert info["format"] == "mpt" and info["prune_rate"] == k
    ticket = load_ticket(tdir)
    masks = ticket.masks
    for name, s in scores.items():
        want = BipropNet(dense, scores, k).weight(name, dense.get_parameter(name)).detach()
        torch.testing.assert_close(ticket.model.get_parameter(name).detach(), want, rtol=1e-6, atol=0)
        n_drop = int((1 - k) * s.numel())
        assert int(masks[name].sum()) == s.numel() - n_drop
        assert masks[name][s.abs() > s.abs().flatten().sort().values[n_drop]].all()  # the largest |scores| are kept
    export_matches(tmp_path, tdir, BipropNet(dense, scores, k), (1, 8, 8))


@pytest.mark.e2e
def test_plain_state_dict_masks_are_its_zeros(tmp_path):
    torch.manual_seed(0)
    src = lively(create_model("preresnet20", num_classes=10, in_channels=3))
    with torch.no_grad():
        for m in src.modules():
            if isinstance(m, nn.Conv2d):
                w = m.weight
                w.mul_((w.abs() > w.abs().flatten().kthvalue(int(0.7 * w.numel())).values).float())
                w[: w.shape[0] // 4] = 0  # and some whole filters
    torch.save({"state_dict": {f"module.{k}": v for k, v in src.state_dict().items()}}, tmp_path / "zeros.pth")

    tdir, info = do_import(tmp_path, tmp_path / "zeros.pth", "preresnet20")
    assert info["format"] == "state_dict"
    masks = load_ticket(tdir).masks
    for n, m in src.named_modules():
        if isinstance(m, nn.Conv2d):
            assert torch.equal(masks[f"{n}.weight"], (m.weight != 0).float()), n
    export_matches(tmp_path, tdir, src, (3, 32, 32))


def test_torch_pruning_module_imports_as_a_physically_pruned_state_dict(tmp_path):
    tp = pytest.importorskip("torch_pruning")
    torch.manual_seed(0)
    src = lively(create_model("small_cnn", num_classes=10, in_channels=1))
    pruner = tp.pruner.MagnitudePruner(
        src,
        torch.zeros(1, 1, 8, 8),
        importance=tp.importance.MagnitudeImportance(p=1),
        pruning_ratio=0.5,
        ignored_layers=[src.classifier],
    )
    pruner.step()
    assert conv_widths(src) == [16, 16, 32, 32]
    torch.save(src.state_dict(), tmp_path / "tp.pth")

    tdir, info = do_import(tmp_path, tmp_path / "tp.pth", "small_cnn", "--format", "state_dict")
    assert info["embedded"]  # smaller tensors sat in the dense model's leading slices
    masks = load_ticket(tdir).masks
    live = [int((masks[f"features.{i}.weight"].flatten(1).sum(1) > 0).sum()) for i in (0, 3, 7, 10)]
    assert live == conv_widths(src)
    model = export_matches(tmp_path, tdir, src, (1, 8, 8))
    assert onnx_conv_widths(model) == conv_widths(src)


def import_fails(tmp_path: Path, capsys, ckpt: Path, *extra: str) -> str:
    code = main(["import", "--model", "small_cnn", "--checkpoint", str(ckpt), "--out", str(tmp_path / "t"), *extra])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("error: "), err
    assert not (tmp_path / "t").exists()
    return err[0]


class Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_checkpoint_with_a_malicious_pickle_is_refused_without_running_it(tmp_path, capsys):
    marker = tmp_path / "pwned"
    torch.save({"state_dict": create_model("small_cnn").state_dict(), "extra": Payload(marker)}, tmp_path / "evil.pt")
    err = import_fails(tmp_path, capsys, tmp_path / "evil.pt")
    assert "weights_only=True" in err
    assert not marker.exists()


@pytest.mark.parametrize(
    "blob, fmt, needle",
    [
        ({"epoch": 3, "note": "no tensors"}, "auto", "unknown checkpoint format (expected a state_dict"),
        (
            {"cfg": [1, "M", 2], "state_dict": {"a.running_mean": torch.zeros(3), "a.running_var": torch.ones(3)}},
            "eb",
            "cfg channel counts [1, 2]",
        ),
        ({"state_dict": {"c.weight": torch.ones(2, 2), "c.scores": torch.ones(2, 2)}}, "mpt", "'prune_rate'"),
        ({"c.weight": torch.ones(2, 2)}, "torch-prune", "<name>_orig + <name>_mask"),
        ({"c.weight": torch.ones(2, 2)}, "open_lth", "no mask.pth"),
        ({"c.weight": torch.ones(2, 2)}, "auto", "does not fit the model: missing ['features.0.weight'"),
        ({"c.weight": torch.ones(2, 2)}, "tflite", "invalid choice"),
    ],
)
def test_unknown_or_inconsistent_checkpoint_is_one_line_exit_2(tmp_path, capsys, blob, fmt, needle):
    torch.save(blob, tmp_path / "c.pt")
    if fmt == "tflite":  # argparse's own one-line usage error
        assert main(["import", "--model", "small_cnn", "--checkpoint", str(tmp_path / "c.pt"), "--format", fmt]) == 2
        assert needle in capsys.readouterr().err
        return
    assert needle in import_fails(tmp_path, capsys, tmp_path / "c.pt", "--format", fmt)


def test_mask_file_is_only_for_open_lth(tmp_path, capsys):
    src = create_model("small_cnn", num_classes=10, in_channels=1)
    torch.save(src.state_dict(), tmp_path / "sd.pt")
    torch.save({"classifier.weight": torch.ones(10, 64, dtype=torch.int)}, tmp_path / "mask.pth")
    err = import_fails(
        tmp_path, capsys, tmp_path / "sd.pt", "--format", "state_dict", "--mask", str(tmp_path / "mask.pth")
    )
    assert "--mask is for open_lth checkpoints, not format state_dict" in err
    tdir, info = do_import(tmp_path, tmp_path / "sd.pt", "small_cnn", "--mask", str(tmp_path / "mask.pth"))
    assert info["format"] == "open_lth" and load_ticket(tdir).masks["classifier.weight"].all()


def test_user_code_is_imported_only_when_named(tmp_path, monkeypatch):
    from ticketbench.models import zoo

    monkeypatch.setattr(zoo.base, "_ALLOWED_CODE", set())
    monkeypatch.delenv("TICKETBENCH_MODEL_CODE", raising=False)
    with pytest.raises(ValueError, match="is user code: name it"):
        zoo.create_model("fixtures.import_models:vgg11_slim")
    monkeypatch.setenv("TICKETBENCH_MODEL_CODE", "fixtures.import_models:vgg11_slim")
    assert isinstance(zoo.create_model("fixtures.import_models:vgg11_slim"), VGG)


def test_import_prints_where_and_how(tmp_path, capsys):
    src = create_model("small_cnn", num_classes=10, in_channels=1)
    with torch.no_grad():
        src.classifier.weight[:, :4] = 0
    torch.save(src.state_dict(), tmp_path / "sd.pt")
    assert (
        main(["import", "--model", "small_cnn", "--checkpoint", str(tmp_path / "sd.pt"), "--out", str(tmp_path / "t")])
        == 0
    )
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["format"] == "state_dict" and out["masks_derived"] == "zeros of the weights"
    assert out["weight_sparsity"] == pytest.approx(
        40 / sum(p.numel() for n, p in src.named_parameters() if n.endswith("weight") and p.dim() > 1)
    )
