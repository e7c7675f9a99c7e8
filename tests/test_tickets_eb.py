"""Early-Bird tickets: mask distance, FIFO detection, BN threshold, structure, L1 penalty, EB Train."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from fixtures.cifar import write_cifar
from torch import nn

from ticketbench.models.cost import analyze
from ticketbench.models.data import load_dataset
from ticketbench.models.low_precision import fake_quantize, low_precision, quantize
from ticketbench.models.tickets import TicketConfig, find_ticket, load_ticket
from ticketbench.models.tickets.channels import bn_groups, channel_masks, weight_masks
from ticketbench.models.tickets.eb import EarlyBirdDetector, bn_l1_penalty, distance_matrix, mask_distance
from ticketbench.models.zoo import create_model


def _m(bits: str) -> torch.Tensor:
    return torch.tensor([c == "1" for c in bits])


def test_mask_distance_is_hamming_over_total():
    assert mask_distance(_m("11001"), _m("10011")) == pytest.approx(2 / 5)
    assert mask_distance(_m("1111"), _m("1111")) == 0.0
    assert mask_distance(_m("1010"), _m("0101")) == 1.0
    mat = distance_matrix([_m("1100"), _m("1000"), _m("0011")])
    assert mat == [[0.0, 0.25, 1.0], [0.25, 0.0, 0.75], [1.0, 0.75, 0.0]]
    with pytest.raises(ValueError):
        mask_distance(_m("1"), _m("11"))


def test_detector_needs_a_full_fifo_and_compares_newest_with_each_older():
    det = EarlyBirdDetector(epsilon=0.1, fifo=5)
    same = _m("1111100000")
    assert [det.push(same) for _ in range(4)] == [False] * 4  # queue not full yet, even if identical
    assert det.push(same) is True
    assert det.last_distances == [0.0] * 4


def test_detector_on_hand_built_sequence():
    base = "1111100000"
    flip1 = "0111110000"  # 2 of 10 differ from base → 0.2
    near = "1111100001"  # 1 of 10 differs from base → 0.1 (within ε: '≤' passes, as the reference's '> ε' fails)
    seq = [flip1, base, base, base, base, near, near, base]
    det = EarlyBirdDetector(epsilon=0.1, fifo=5)
    out = [det.push(_m(s)) for s in seq]
    # epoch 5: newest (base) vs flip1 = 0.2 > ε → no; epoch 6: near vs 4 bases = 0.1 → yes (flip1 left the FIFO)
    assert out == [False, False, False, False, False, True, True, True]
    det = EarlyBirdDetector(epsilon=0.05, fifo=5)
    assert not any(det.push(_m(s)) for s in seq[:7])  # 0.1 > 0.05 until the queue holds one mask only
    assert det.push(_m(base)) is False  # newest base vs near (0.1) still too far


def test_bn_threshold_is_global_and_strict():
    g = [torch.tensor([0.1, 0.2, -0.3, 0.4]), torch.tensor([0.2, -0.5])]
    # sorted |γ| = [.1 .2 .2 .3 .4 .5]; index ⌊6·0.5⌋ = 3 → threshold .3; |γ| = .3 is pruned (strict >)
    keep = channel_masks(g, 0.5)
    assert keep[0].tolist() == [False, False, False, True]
    assert keep[1].tolist() == [False, True]
    assert all(k.all() for k in channel_masks(g, 0.0))


def test_no_layer_loses_every_channel():
    g = [torch.tensor([0.1, 0.05]), torch.tensor([0.9, 0.8, 0.7])]
    keep = channel_masks(g, 0.5)  # threshold = sorted[2] = 0.7 → layer 0 would be empty
    assert keep[0].tolist() == [True, False]  # keeps its largest |γ|
    assert keep[1].tolist() == [True, True, False]


def test_residual_outputs_are_not_pruned():
    groups, skipped = bn_groups(create_model("resnet18_cifar", width=0.125))
    names = {g.bn for g in groups}
    assert "layer1.0.bn1" in names and "layer2.0.bn1" in names
    assert not names & {"bn1", "layer1.0.bn2", "layer2.0.shortcut.1"}
    assert any(s.startswith("layer1.0.bn2: residual") for s in skipped)
    pre, pre_skipped = bn_groups(create_model("preresnet20", width=0.25))
    bn1 = next(g for g in pre if g.bn == "layer1.0.bn1")
    assert bn1.producer is None and bn1.consumers == ["layer1.0.conv1"] and bn1.selects == ["layer1.0.select"]
    assert not pre_skipped


def test_l1_penalty_adds_s_sign_gamma():
    torch.manual_seed(0)
    model = create_model("vgg11", width=0.125)
    with torch.no_grad():
        model.feature[1].weight[0] = -0.3
    groups, _ = bn_groups(model)
    model(torch.randn(4, 3, 32, 32)).sum().backward()
    before = [b.weight.grad.clone() for b in model.modules() if isinstance(b, nn.BatchNorm2d)]
    bn_l1_penalty(model, groups, 1e-2)(model)
    for b, g0 in zip([b for b in model.modules() if isinstance(b, nn.BatchNorm2d)], before, strict=True):
        torch.testing.assert_close(b.weight.grad, g0 + 1e-2 * torch.sign(b.weight))
    assert model.feature[1].weight.grad[0] == pytest.approx(float(before[0][0]) - 1e-2)


def test_pruned_channels_are_dead_and_compacted():
    torch.manual_seed(0)
    model = create_model("vgg11", width=0.25).eval()
    groups, _ = bn_groups(model)
    keeps = [torch.rand(g.channels) > 0.5 for g in groups]
    masks = weight_masks(model, groups, keeps)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if n in masks:
                p.mul_(masks[n])
    act = {}
    model.feature[2].register_forward_hook(lambda m, i, o: act.setdefault("relu0", o))
    model(torch.randn(3, 3, 32, 32))
    dead = ~keeps[0]
    assert torch.all(act["relu0"][:, dead] == 0)
    assert torch.all(model.feature[4].weight[:, dead] == 0)  # the next conv reads nothing from them
    cost = analyze(model, (3, 32, 32))  # the compactor removes exactly these all-zero filters
    assert sum(lc.zero_filters for lc in cost.layers) == int(sum((~k).sum() for k in keeps))


def _cfg(**opts) -> TicketConfig:
    o = {"model_kwargs": {"width": 0.125}, **opts}
    return TicketConfig("vgg11", "synthetic", "eb", 0.5, epochs=7, finetune_epochs=1, lr=0.05, batch_size=32, options=o)


@pytest.fixture(scope="module")
def tiny_data():
    return load_dataset("synthetic", n_train=64, n_test=32)


def test_eb_train_stops_at_eb_epoch_and_retrains_a_dead_channel_ticket(tiny_data):
    # ε = 1 accepts any distance, so the EB ticket is drawn as soon as the FIFO is full: epoch 5 of 7.
    t = find_ticket(_cfg(epsilon=1.0), tiny_data)
    assert t.artifacts["eb_epoch"] == 5
    assert [r["phase"] for r in t.train_log] == ["search"] * 5 + ["retrain"]
    assert len(t.artifacts["mask_distance_matrix"]) == 5
    groups, _ = bn_groups(t.model)
    keeps = [torch.tensor(k) for k in t.artifacts["channel_keep"]]
    mods = dict(t.model.named_modules())
    for g, k in zip(groups, keeps, strict=True):
        assert torch.all(mods[g.bn].weight[~k] == 0) and torch.all(mods[g.bn].bias[~k] == 0)
        assert torch.all(mods[g.producer].weight[~k] == 0)
    f = t.artifacts["training_flops"]
    assert f["eb_train"] < f["dense_then_prune"]
    assert f["search"] == pytest.approx(f["dense_full"] * 5 / 7)


def test_eb_not_found_draws_at_last_epoch_and_reinit_changes_weights(tiny_data):
    t = find_ticket(_cfg(epsilon=-1.0, search_full=True), tiny_data)  # nothing is within a negative ε
    assert t.artifacts["eb_epoch"] is None and len(t.artifacts["mask_distance_matrix"]) == 7
    a = find_ticket(_cfg(epsilon=1.0), tiny_data)
    b = find_ticket(_cfg(epsilon=1.0, reinit=True), tiny_data)
    assert a.artifacts["channel_keep"] == b.artifacts["channel_keep"]  # same search, same mask
    assert not torch.equal(a.model.feature[0].weight, b.model.feature[0].weight)


def test_low_precision_quantizes_and_restores():
    x = torch.tensor([-1.0, -0.5, 0.001, 0.3, 1.0])
    q = quantize(x, 8)
    assert torch.allclose(q * 127, torch.round(q * 127)) and q[0] == -1.0 and q[2] == 0.0
    xs = x.clone().requires_grad_(True)
    fake_quantize(xs, 4).sum().backward()
    assert torch.equal(xs.grad, torch.ones_like(x))  # straight-through
    torch.manual_seed(0)
    model = create_model("vgg11", width=0.125).eval()
    inp = torch.randn(2, 3, 32, 32)
    ref = model(inp)
    with low_precision(model, 8):
        lp = model(inp)
    assert not torch.equal(lp, ref) and torch.allclose(lp, ref, atol=0.05 * float(ref.detach().abs().max()))
    assert torch.equal(model(inp), ref)


def test_low_precision_search_runs(tiny_data):
    t = find_ticket(_cfg(epsilon=1.0, low_precision=True), tiny_data)
    assert t.provenance["low_precision_bits"] == 8 and t.artifacts["eb_epoch"] == 5


@pytest.mark.e2e
def test_cli_ticket_vgg16_eb_on_tiny_cifar(tmp_path):
    write_cifar(tmp_path / "data", "cifar10", n_per_file=8, n_test=16)
    out = tmp_path / "ticket"
    cmd = [sys.executable, "-m", "bench", "ticket", "--model", "vgg16", "--method", "eb", "--sparsity", "0.5"]
    cmd += ["--data-root", str(tmp_path / "data"), "--out", str(out), "--width", "0.0625", "--epochs", "6"]
    cmd += ["--finetune-epochs", "1", "--option", "epsilon=1.0"]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert res.returncode == 0, res.stderr
    summary = json.loads(res.stdout.strip().splitlines()[-1])
    assert summary["eb_epoch"] == 5
    t = load_ticket(out)
    assert t.config.dataset == "cifar10" and t.artifacts["eb_epoch"] == 5


def test_preresnet_eb_prunes_through_the_selection_layer(tiny_data):
    opts = {"model_kwargs": {"width": 0.25}, "epsilon": 1.0}
    t = find_ticket(TicketConfig("preresnet20", "synthetic", "eb", 0.4, 5, 0, 0.05, 32, options=opts), tiny_data)
    groups, _ = bn_groups(t.model)
    mods = dict(t.model.named_modules())
    keeps = dict(zip([g.bn for g in groups], [torch.tensor(k) for k in t.artifacts["channel_keep"]], strict=True))
    name = next(n for n, k in keeps.items() if n.endswith("bn1") and not k.all())  # a block input with pruning
    k, blk = keeps[name], mods[name.rsplit(".", 1)[0]]
    assert torch.equal(blk.select.indexes, k.float())
    assert torch.all(blk.conv1.weight[:, ~k] == 0) and torch.all(blk.bn1.weight[~k] == 0)
    assert t.artifacts["channel_sparsity"] == pytest.approx(1 - float(torch.cat(list(keeps.values())).float().mean()))


def test_search_applies_the_l1_penalty_to_bn_gammas(tiny_data):
    def gammas(s: float) -> torch.Tensor:
        cfg = _cfg(epsilon=1.0, s=s)
        cfg.finetune_epochs = 0  # the ticket is the searched network at the EB epoch, masked
        t = find_ticket(cfg, tiny_data)
        return torch.cat([b.weight.detach().abs() for b in t.model.modules() if isinstance(b, nn.BatchNorm2d)])

    # same seed, data and steps: only the s·sign(γ) term differs, and it pulls every |γ| towards 0
    assert gammas(0.05).sum() < gammas(0.0).sum() - 0.01
