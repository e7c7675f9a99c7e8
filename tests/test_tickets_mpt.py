"""Multi-Prize Tickets: top-k masks, α gain, straight-through scores, power-propagation, threshold mode."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from ticketbench.models.data import load_dataset
from ticketbench.models.export import max_abs_error, to_onnx_bytes
from ticketbench.models.tickets import TicketConfig, find_ticket
from ticketbench.models.tickets.mpt import (
    MptOptions,
    PowerProp,
    attach,
    bake,
    mask_change,
    mpt_init_,
    ramp_kept,
    ramp_length,
    score_lr_scale,
    score_weight_decay,
    threshold_masks,
    thresholds,
    topk_masks,
)
from ticketbench.models.zoo import create_model


def test_topk_masks_hand_computed():
    a, b = torch.tensor([0.1, -0.9, 0.3]), torch.tensor([[0.5], [-0.2]])
    # global: 5 scores, prune ⌊0.4·5⌋ = 2 smallest |S| (0.1 and 0.2)
    ga, gb = topk_masks([a, b], 0.4, "global")
    assert ga.tolist() == [0, 1, 1] and gb.flatten().tolist() == [1, 0]
    # layer-wise: ⌊0.4·3⌋ = 1 from a, ⌊0.4·2⌋ = 0 from b
    la, lb = topk_masks([a, b], 0.4, "layer")
    assert la.tolist() == [0, 1, 1] and lb.flatten().tolist() == [1, 1]


@pytest.mark.parametrize("scope", ["global", "layer"])
def test_threshold_agrees_with_sort_without_ties(scope):
    g = torch.Generator().manual_seed(0)
    scores = [torch.randn(8, 3, 3, 3, generator=g), torch.randn(10, 72, generator=g), torch.randn(5, generator=g)]
    for s in (0.1, 0.5, 0.9):
        expect = topk_masks(scores, s, scope)
        got = threshold_masks(scores, thresholds(scores, s, scope))
        for e, m in zip(expect, got, strict=True):
            assert torch.equal(e, m)


def _linear_supermask():
    model = nn.Sequential(nn.Linear(2, 2, bias=False))
    sm = attach(model, 0.5, scope="layer", mode="sort", power=None)
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[1.0, -2.0], [3.0, -4.0]]))
        sm.layers[0].scores.copy_(torch.tensor([[5.0, 0.1], [-0.2, -6.0]]))  # keeps |5| and |−6|
    return model, sm


def test_alpha_gain_and_binarized_forward():
    model, sm = _linear_supermask()
    y = model(torch.tensor([[1.0, 1.0]]))
    # M = [[1,0],[0,1]], α = (|1| + |−4|) / 2 = 2.5, w = α·sign(W)·M = [[2.5, 0], [0, −2.5]]
    assert y.tolist() == [[2.5, -2.5]]
    masks = bake(model, sm)
    assert model[0].weight.tolist() == [[2.5, 0.0], [0.0, -2.5]]
    assert masks["0.weight"].tolist() == [[1.0, 0.0], [0.0, 1.0]]
    assert "forward" not in vars(model[0]) and model[0].weight.requires_grad


def test_straight_through_gradient_to_scores():
    model, sm = _linear_supermask()
    x = torch.tensor([[0.5, -3.0]])
    model(x).sum().backward()
    # dL/dw[i,j] = x[j]; biprop's STE: dL/ds = dL/dw · sign(W) · |W| · sign(s) = x[j] · W[i,j] · sign(s[i,j]),
    # for pruned entries too (that is what lets a pruned weight come back).
    W = torch.tensor([[1.0, -2.0], [3.0, -4.0]])
    sgn = torch.tensor([[1.0, 1.0], [-1.0, -1.0]])
    expect = x.expand(2, 2) * W * sgn
    torch.testing.assert_close(sm.layers[0].scores.grad, expect)
    assert model[0].weight.grad is None  # the weights stay frozen


@pytest.mark.parametrize("alpha", [2.0, 3.0, 4.0])
def test_power_propagation_gradient_matches_autograd_and_formula(alpha):
    s = torch.tensor([-1.5, -0.3, 0.2, 0.7, 2.0], dtype=torch.float64, requires_grad=True)
    g = torch.tensor([0.3, -1.0, 2.0, 0.5, -0.7], dtype=torch.float64)
    S = PowerProp.apply(s, alpha)
    torch.testing.assert_close(S, s * s.abs() ** (alpha - 1))
    (ours,) = torch.autograd.grad(S, s, g)
    (auto,) = torch.autograd.grad(s * s.abs() ** (alpha - 1), s, g)
    torch.testing.assert_close(ours, auto)
    torch.testing.assert_close(ours, g * alpha * s.detach().abs() ** (alpha - 1))
    z = torch.zeros(1, requires_grad=True)
    (gz,) = torch.autograd.grad(PowerProp.apply(z, alpha), z, torch.ones(1))
    assert gz.item() == 0.0  # α > 1: no gradient at s = 0 (the report's plateau property)


def test_power_one_is_identity_with_unit_gradient():
    s = torch.tensor([-2.0, 0.0, 0.5], requires_grad=True)
    S = PowerProp.apply(s, 1.0)
    (gs,) = torch.autograd.grad(S, s, torch.tensor([1.0, 2.0, 3.0]))
    assert torch.equal(S.detach(), s.detach()) and gs.tolist() == [1.0, 2.0, 3.0]


@pytest.fixture(scope="module")
def tiny_data():
    return load_dataset("synthetic", n_train=96, n_test=32)


def _cfg(sparsity=0.6, epochs=2, finetune_epochs=0, **opts) -> TicketConfig:
    o = {"model_kwargs": {"width": 0.125}, **opts}
    return TicketConfig("conv4", "synthetic", "mpt", sparsity, epochs, finetune_epochs, 0.1, 32, options=o)


def _losses(t):
    return [r["loss"] for r in t.train_log]


def test_alpha_one_reproduces_plain_exactly(tiny_data):
    plain = find_ticket(_cfg(power=None), tiny_data)
    one = find_ticket(_cfg(power=1.0), tiny_data)
    assert _losses(plain) == _losses(one)
    for k, v in plain.model.state_dict().items():
        assert torch.equal(v, one.model.state_dict()[k]), k
    two = find_ticket(_cfg(power=2.0), tiny_data)
    assert _losses(two) != _losses(plain)


def test_threshold_refreshed_every_step_equals_sorting(tiny_data):
    srt = find_ticket(_cfg(mode="sort"), tiny_data)
    thr = find_ticket(_cfg(mode="threshold", refresh_steps=1), tiny_data)
    assert _losses(srt) == pytest.approx(_losses(thr), rel=0, abs=0)
    for k in srt.masks:
        assert torch.equal(srt.masks[k], thr.masks[k])
    lazy = find_ticket(_cfg(mode="threshold"), tiny_data)  # refreshed once per epoch
    assert lazy.weight_sparsity == pytest.approx(srt.weight_sparsity)  # final mask is an exact sort
    assert len(lazy.artifacts["kept_fraction_per_epoch"]) == 2


def test_ticket_is_plain_binarized_exportable_model(tiny_data):
    t = find_ticket(_cfg(sparsity=0.7, finetune_epochs=1, finetune="last"), tiny_data)
    fresh = create_model("conv4", num_classes=10, in_channels=3, width=0.125)
    assert type(t.model) is type(fresh) and list(t.model.state_dict()) == list(fresh.state_dict())
    n = sum(m.numel() for m in t.masks.values())
    assert t.weight_sparsity == pytest.approx(int(0.7 * n) / n)
    for name, m in t.model.named_modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nz = m.weight[m.weight != 0].abs()
            assert torch.allclose(nz, nz[0].expand_as(nz)), name  # one magnitude per layer: α·sign(W)
            assert torch.equal(m.weight != 0, t.masks[f"{name}.weight"].bool())
    assert t.provenance["prune_rate_kept"] == pytest.approx(0.3) and t.provenance["finetune"] == "last"
    hist = t.artifacts["score_histograms"]["convs.0"]
    assert sum(hist["counts"]) == t.masks["convs.0.weight"].numel() and len(hist["edges"]) == 51
    assert max_abs_error(t.model, to_onnx_bytes(t.model, (3, 32, 32)), (3, 32, 32), n=2) < 1e-4


@pytest.mark.parametrize("which", ["first", "last", "all"])
def test_finetuning_changes_only_chosen_layers_and_keeps_the_mask(tiny_data, which):
    base = find_ticket(_cfg(finetune_epochs=0), tiny_data)
    tuned = find_ticket(_cfg(finetune_epochs=1, finetune=which, finetune_lr=0.5), tiny_data)
    names = [n for n in base.masks]
    changed = [n for n in names if not torch.equal(base.model.state_dict()[n], tuned.model.state_dict()[n])]
    expect = {"first": names[:1], "last": names[-1:], "all": names}[which]
    assert set(changed) <= set(expect) and changed
    for n in names:
        assert torch.equal(base.masks[n], tuned.masks[n])


def test_ramp_follows_biprop_cubic_schedule():
    # kept = target + (0.5 − target)·(1 − e/E)³ for e < E, then the target; no ramp when the target keeps > 0.5
    assert ramp_kept(0, 0.1, 10) == pytest.approx(0.5)
    assert ramp_kept(5, 0.1, 10) == pytest.approx(0.1 + 0.4 * 0.125)
    assert ramp_kept(10, 0.1, 10) == ramp_kept(12, 0.1, 10) == pytest.approx(0.1)
    assert ramp_kept(0, 0.7, 10) == pytest.approx(0.7) and ramp_kept(0, 0.1, 0) == pytest.approx(0.1)
    assert ramp_length(10, 4) == 3 and ramp_length(10, 40) == 10 and ramp_length(10, 1) == 0


def test_search_draws_masks_at_the_ramped_sparsity(tiny_data):
    t = find_ticket(_cfg(sparsity=0.9, epochs=3, ramp_epochs=10), tiny_data)
    # 3 epochs: the ramp is squeezed to 2 epochs; epoch 0 at kept 0.5, epoch 1 at 0.1 + 0.4/8, epoch 2 at 0.1
    assert t.artifacts["ramp_kept_per_epoch"] == pytest.approx([0.5, 0.15, 0.1])
    assert t.artifacts["kept_fraction_per_epoch"] == pytest.approx([0.5, 0.15, 0.1], abs=2e-3)
    n = sum(m.numel() for m in t.masks.values())
    assert t.weight_sparsity == pytest.approx(int(0.9 * n) / n)


def _resnet18_dead_layers(sparsity: float, floor: float) -> list[str]:
    torch.manual_seed(0)
    model = create_model("resnet18_cifar", num_classes=10)
    mpt_init_(model, 1 - sparsity)
    sm = attach(model, sparsity, "global", "sort", 1.0, floor_fraction=floor)
    sm.draw_masks(exact=True)
    assert 1 - sm.kept_fraction() == pytest.approx(sparsity, abs=1e-6)
    return sm.dead_layers()


@pytest.mark.parametrize("sparsity", [0.9, 0.95])
def test_resnet18_global_at_score_init_has_no_dead_layer(sparsity):
    assert _resnet18_dead_layers(sparsity, MptOptions().min_kept_per_layer) == []


def test_without_the_floor_resnet18_loses_whole_layers_at_95():
    assert _resnet18_dead_layers(0.95, 0.0)  # what the floor prevents: layer4's big convs lose every weight


@pytest.mark.parametrize("alpha", [2.0, 3.0])
def test_power_propagation_starts_from_the_alpha_one_scores(alpha):
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Flatten(), nn.Linear(8 * 30 * 30, 4))
    torch.manual_seed(0)
    one = attach(copy.deepcopy(model), 0.5, power=1.0)
    torch.manual_seed(0)
    powered = attach(copy.deepcopy(model), 0.5, power=alpha)
    for a, b in zip(one.effective_scores(), powered.effective_scores(), strict=True):
        torch.testing.assert_close(a.detach(), b.detach())
    one.draw_masks(exact=True)
    powered.draw_masks(exact=True)
    assert all(torch.equal(x.mask, y.mask) for x, y in zip(one.layers, powered.layers, strict=True))


def test_alpha_two_moves_the_mask(tiny_data):
    t = find_ticket(_cfg(sparsity=0.5, epochs=2, power=2.0, finetune="none"), tiny_data)
    assert t.artifacts["mask_change_fraction"] > 0.0


def test_finetuning_reports_sign_flips_and_alpha_movement(tiny_data):
    base = find_ticket(_cfg(finetune_epochs=0), tiny_data)
    tuned = find_ticket(_cfg(finetune_epochs=1, finetune="last", finetune_lr=0.5), tiny_data)
    (name,) = tuned.artifacts["finetune"]
    rep = tuned.artifacts["finetune"][name]
    w0, w1 = base.model.state_dict()[f"{name}.weight"], tuned.model.state_dict()[f"{name}.weight"]
    kept = tuned.masks[f"{name}.weight"].bool()
    assert rep["sign_flips"] == int((torch.sign(w0) != torch.sign(w1))[kept].sum())
    assert rep["kept"] == int(kept.sum())
    assert rep["alpha_before"] == pytest.approx(float(w0[kept].abs()[0]), rel=1e-5)
    assert rep["alpha_after"] == pytest.approx(float(w1[kept].abs()[0]), rel=1e-5)
    assert base.artifacts["finetune"] == {}


def test_score_lr_scale_hand_computed():
    # 1 / (α² · τ^(2(α−1)/α))
    assert score_lr_scale(2.0, 0.01) == pytest.approx(1 / (4 * 0.01))  # 25
    assert score_lr_scale(3.0, 0.001) == pytest.approx(1 / (9 * 1e-4))  # τ^(4/3) = 1e-4
    assert score_lr_scale(0.5, 0.1) == pytest.approx(4 * 0.01)  # α < 1: τ^(−2), so the lr shrinks
    assert score_lr_scale(1.0, 0.01) == score_lr_scale(None, 0.01) == 1.0
    assert score_lr_scale(2.0, 0.0) == score_lr_scale(2.0, float("-inf")) == 1.0  # no boundary: nothing to match
    assert score_weight_decay(1e-4, 2.0, 25.0) == pytest.approx(1e-4 / 50)


def _sgd_step_on_S(alpha: float, S0: torch.Tensor, g: torch.Tensor, lr: float, wd: float = 0.0) -> torch.Tensor:
    """One plain SGD step on s = Ψ⁻¹(S0) with ∂L/∂S = g; returns the new S."""
    s = torch.nn.Parameter(torch.sign(S0) * S0.abs().pow(1 / alpha))
    opt = torch.optim.SGD([s], lr=lr, weight_decay=wd)
    (PowerProp.apply(s, alpha) * g).sum().backward()
    opt.step()
    return PowerProp.apply(s.detach(), alpha)


@pytest.mark.parametrize("alpha", [2.0, 3.0])
def test_boundary_lr_moves_boundary_scores_as_fast_as_alpha_one(alpha):
    tau, lr = 0.02, 0.1
    S0 = torch.tensor([tau, -tau], dtype=torch.float64)
    g = torch.tensor([1e-4, -2e-4], dtype=torch.float64)  # small steps: first order holds
    step_one = _sgd_step_on_S(1.0, S0, g, lr) - S0
    step_rule = _sgd_step_on_S(alpha, S0, g, lr * score_lr_scale(alpha, tau)) - S0
    torch.testing.assert_close(step_rule, step_one, rtol=1e-2, atol=0)
    step_shared = _sgd_step_on_S(alpha, S0, g, lr) - S0  # the stall: α²·τ^(2(α−1)/α) as fast
    torch.testing.assert_close(
        step_shared / step_one, torch.full_like(S0, alpha**2 * tau ** (2 * (alpha - 1) / alpha)), rtol=1e-2, atol=0
    )
    # decay alone shrinks S by the same fraction per step when λ is divided by α·scale
    x = score_lr_scale(alpha, tau)
    decayed_one = _sgd_step_on_S(1.0, S0, torch.zeros_like(S0), lr, wd=1e-3)
    decayed = _sgd_step_on_S(alpha, S0, torch.zeros_like(S0), lr * x, wd=score_weight_decay(1e-3, alpha, x))
    torch.testing.assert_close(decayed, decayed_one, rtol=1e-4, atol=0)


def test_mask_change_counts_new_kept_weights_of_the_final_mask():
    initial = [torch.tensor([1.0, 1.0, 0.0, 0.0]), torch.tensor([[1.0, 0.0]])]
    final = [torch.tensor([1.0, 0.0, 1.0, 0.0]), torch.tensor([[0.0, 1.0]])]
    assert mask_change(initial, final) == pytest.approx(2 / 3)  # index 2 and [0, 1] are new; 3 kept
    assert mask_change(initial, initial) == 0.0


def test_a_search_that_cannot_move_reports_no_mask_change_despite_the_ramp(tiny_data):
    # lr 0: the scores never move; the ramp draws wider masks early, which must not count as change
    cfg = _cfg(sparsity=0.9, epochs=3, ramp_epochs=10, finetune="none")
    t = find_ticket(TicketConfig(**{**cfg.__dict__, "lr": 0.0}), tiny_data)
    assert t.artifacts["ramp_kept_per_epoch"][0] == pytest.approx(0.5)
    assert t.artifacts["mask_change_fraction"] == 0.0
    moved = find_ticket(cfg, tiny_data)
    # against the initial scores' own mask at the target sparsity (rebuilt as the method draws it), not the ramp's
    torch.manual_seed(cfg.seed)
    model = create_model("conv4", num_classes=10, in_channels=3, width=0.125)
    mpt_init_(model, 0.1)
    sm = attach(model, 0.9, floor_fraction=MptOptions().min_kept_per_layer)
    sm.draw_masks(exact=True)
    final = [moved.masks[f"{la.name}.weight"] for la in sm.layers]
    expect = mask_change([la.drawn_mask() for la in sm.layers], final)
    assert moved.artifacts["mask_change_fraction"] == pytest.approx(expect) and expect > 0.0


def test_boundary_rule_is_the_shared_search_at_the_scaled_lr(tiny_data):
    # global scope, no floor-bound layer: one τ, so every layer gets the same factor; with no weight decay the
    # boundary rule at lr η is exactly the shared search at lr η·factor
    rule = find_ticket(_cfg(power=2.0, power_lr="boundary", weight_decay=0.0, finetune="none"), tiny_data)
    scales = set(rule.artifacts["score_lr_scale"].values())
    (tau,) = set(rule.artifacts["boundary_abs_score_at_init"].values())
    assert scales == {score_lr_scale(2.0, tau)} and scales != {1.0}
    cfg = _cfg(power=2.0, power_lr="shared", weight_decay=0.0, finetune="none")
    shared = find_ticket(TicketConfig(**{**cfg.__dict__, "lr": 0.1 * scales.pop()}), tiny_data)
    assert _losses(rule) == pytest.approx(_losses(shared), rel=1e-6)
    assert all(torch.equal(rule.masks[k], shared.masks[k]) for k in rule.masks)
    plain = find_ticket(_cfg(power=2.0, power_lr="shared", weight_decay=0.0, finetune="none"), tiny_data)
    assert _losses(plain) != _losses(rule)
    assert MptOptions().power_lr == "boundary"
