"""Lottery tickets: per-round pruning fraction, no revival, exact rewinding to init and to step k."""

from __future__ import annotations

import pytest
import torch

from ticketbench.models.data import load_dataset
from ticketbench.models.masks import apply_masks
from ticketbench.models.tickets import TicketConfig, TicketContext, find_ticket
from ticketbench.models.tickets.lth import StepSnapshot, prune_remaining, round_sparsities
from ticketbench.models.train import train


def test_round_schedule_prunes_20_percent_of_remaining():
    assert round_sparsities(0.5) == pytest.approx([0.2, 0.36, 0.488, 0.5])  # 1 − 0.8^r, last clipped
    assert round_sparsities(0.36) == pytest.approx([0.2, 0.36])
    assert round_sparsities(0.9, one_shot=True) == [0.9]
    assert round_sparsities(0.0) == []
    assert round_sparsities(0.75, rate=0.5) == pytest.approx([0.5, 0.75])


def test_prune_remaining_is_global_and_never_revives():
    w = {"a": torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0]), "b": torch.tensor([-6.0, 0.5, 7.0, 8.0, 9.0])}
    m1 = prune_remaining(w, {k: torch.ones(5) for k in w}, 0.2)  # remove 2 of 10: |0.5| and |1|
    assert m1["a"].tolist() == [0, 1, 1, 1, 1] and m1["b"].tolist() == [1, 0, 1, 1, 1]
    w["a"][0] = 100.0  # a pruned weight that grew must stay pruned
    m2 = prune_remaining(w, m1, 0.4)  # 4 of 10 removed in all: 2 more, the smallest survivors |2| and |3|
    assert m2["a"].tolist() == [0, 0, 0, 1, 1] and m2["b"].tolist() == [1, 0, 1, 1, 1]


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def _cfg(sparsity=0.5, epochs=1, **opts) -> TicketConfig:
    o = {"model_kwargs": {"width": 4}, **opts}
    return TicketConfig("small_cnn", "digits", "lth", sparsity, epochs, 0, 0.05, 128, options=o)


def test_rounds_reach_each_cumulative_sparsity_and_masks_hold(digits):
    t = find_ticket(_cfg(0.5), digits)
    n = sum(m.numel() for m in t.masks.values())
    got = [r["mask_sparsity"] for r in t.artifacts["rounds"]]
    assert got == pytest.approx([round(s * n) / n for s in (0.2, 0.36, 0.488, 0.5)])
    params = dict(t.model.named_parameters())
    for name, mask in t.masks.items():
        assert torch.all(params[name][mask == 0] == 0), name  # re-applied after every step
    one = find_ticket(_cfg(0.5, one_shot=True), digits)
    assert len(one.artifacts["rounds"]) == 1 and one.weight_sparsity == pytest.approx(round(0.5 * n) / n)


def test_rewind_to_init_restores_exact_initial_weights(digits):
    cfg = _cfg(0.36, final_epochs=0)
    ctx = TicketContext()
    init = ctx.fresh_model(cfg, digits).state_dict()
    t = find_ticket(cfg, digits, ctx)
    for k, v in t.model.state_dict().items():
        expect = init[k] * t.masks[k] if k in t.masks else init[k]
        assert torch.equal(v, expect), k


class _Stop(Exception):
    pass


def test_rewind_to_step_k_restores_exact_step_k_weights(digits):
    cfg = _cfg(0.2, final_epochs=0, rewind_step=3)
    ctx = TicketContext()
    # Independent reference: train the same fresh model and stop right after optimizer step 3.
    ref = ctx.fresh_model(cfg, digits)
    steps = {"n": 0}

    def stop_at_3(_m):
        steps["n"] += 1
        if steps["n"] == 3:
            raise _Stop

    with pytest.raises(_Stop):
        train(ref, digits, cfg.train_config(), after_step=[stop_at_3])
    snap = StepSnapshot(3)
    model = ctx.fresh_model(cfg, digits)
    train(model, digits, cfg.train_config(), after_step=[snap])
    for k, v in ref.state_dict().items():
        assert torch.equal(snap.state[k], v), k
    t = find_ticket(cfg, digits, ctx)
    expect = {k: v.clone() for k, v in ref.state_dict().items()}
    ref.load_state_dict(expect)
    apply_masks(ref, t.masks)
    for k, v in t.model.state_dict().items():
        assert torch.equal(v, ref.state_dict()[k]), k
    assert t.provenance["rewind_step"] == 3


def test_rewind_step_beyond_training_is_an_error(digits):
    with pytest.raises(ValueError, match="beyond"):
        find_ticket(_cfg(0.2, rewind_step=10_000), digits)
