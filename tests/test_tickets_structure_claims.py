"""The Efficient-MPT claims table (benchmarks/bench_kernel_structure.py): verdicts from hand-made figures.

The benchmark measures; these functions only read its figures, so the rules that turn figures into
"reproduced / not reproduced" are tested here on cases whose answer is known.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_kernel_structure.py"


@pytest.fixture(scope="module")
def bench():
    sys.path.insert(0, str(BENCH.parent))
    try:
        spec = importlib.util.spec_from_file_location("bench_kernel_structure", BENCH)
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(BENCH.parent))


def _pp(sparsity: float, alpha: float, accs: tuple[float, float], lr: float = 0.1, rule: str = "shared") -> list[dict]:
    return [
        {
            "model": "m",
            "sparsity": sparsity,
            "p_pruned": sparsity,
            "p_kept": round(1 - sparsity, 3),
            "alpha": alpha,
            "lr": lr,
            "power_lr": rule,
            "seed": seed,
            "accuracy": acc,
            "mask_change": 0.2 if rule == "boundary" or alpha == 1 else 0.01,
        }
        for seed, acc in enumerate(accs)
    ]


def test_accuracy_difference_must_beat_the_floor_and_the_seeds_range(bench):
    assert bench.compare_accuracy([90, 92], [85, 86]) == (pytest.approx(5.5), 2, "higher")
    assert bench.compare_accuracy([90, 90.5], [90, 90])[2] == "equal"  # under the 1-point floor
    assert bench.compare_accuracy([80, 95], [84, 84])[2] == "equal"  # +3.5 but the seeds spread 15
    assert bench.compare_accuracy([70, 71], [84, 84])[2] == "lower"


def test_the_two_readings_of_pruning_ratio_swap_which_sparsities_are_below_half(bench):
    # α = 2 at its own lr: +5 at sparsity 0.2, equal at 0.8; at the shared lr it is worse everywhere
    rows = _pp(0.2, 1.0, (90, 90)) + _pp(0.2, 2.0, (95, 95), rule="boundary") + _pp(0.2, 2.0, (60, 61))
    rows += _pp(0.8, 1.0, (80, 80)) + _pp(0.8, 2.0, (80, 80.5), rule="boundary") + _pp(0.8, 2.0, (50, 52))
    pruned_below = bench.power_claim(rows, "pruned", below=True)  # p = 0.2 is sparsity 0.2: +5
    pruned_above = bench.power_claim(rows, "pruned", below=False)  # p = 0.8 is sparsity 0.8: equal
    kept_below = bench.power_claim(rows, "kept", below=True)  # p = 0.2 kept is sparsity 0.8: equal
    kept_above = bench.power_claim(rows, "kept", below=False)  # p = 0.8 kept is sparsity 0.2: +5, not worse
    assert pruned_below["verdict"] == "reproduced" and pruned_above["verdict"] == "reproduced"
    assert kept_below["verdict"] == "not reproduced" and kept_above["verdict"] == "reproduced"
    assert (
        pruned_below["measurement"]
        == "m p=0.2 [α=1 at lr 0.1]: α=2 +5.0 at boundary rule (rule +5.0, shared lr 0.1 -29.5); "
        "best: higher, noise 1.0"
    )
    shared = bench.shared_lr_claim(rows)
    assert shared["verdict"].startswith("reproduced at a shared lr only (2 of 2 cells worse")
    assert "half as much of the mask in 2 of 2" in shared["verdict"]


def test_finetune_claim_names_the_first_budget_that_flips_a_sign(bench):
    def ft(which, lr, ep, accs, flips):
        return [
            {"finetune": which, "finetune_lr": lr, "finetune_epochs": ep, "seed": s, "accuracy": a, "sign_flips": flips}
            for s, a in enumerate(accs)
        ]

    rows = ft("none", 0.0, 0, (90, 91), 0)
    for which, gain in (("first", 0.0), ("last", 3.0), ("all", 2.0)):
        rows += ft(which, 1e-3, 3, (90, 91), 0) + ft(which, 0.1, 3, (90 + gain / 2, 91 + gain / 2), 5)
        rows += ft(which, 1.0, 3, (90 + gain, 91 + gain), 50)
    out = bench.finetune_claim(rows)
    assert out["measurement"].startswith("without fine-tuning 90.5 %; at the report's lr 1e-3 × 3 epochs: 0 sign flips")
    assert "last: first flips at lr 0.1 × 3 ep; best +3.0 pts at lr 1 × 3 ep (higher" in out["measurement"]
    assert out["verdict"] == "reproduced"
    flat = [dict(r, accuracy=90 + r["seed"]) for r in rows]  # nothing helps
    assert bench.finetune_claim(flat)["verdict"].startswith("not reproduced")


def test_realization_targets_are_judged_at_batch_32_on_per_group_classes(bench):
    def row(structure, s, ar, speedup32):
        return {
            "structure": structure,
            "sparsity": s,
            "AR": ar,
            "mac_reduction": ar,
            "speedup_b32": speedup32,
            "speedup_lo_b32": speedup32 * 0.9,
            "speedup_hi_b32": speedup32 * 1.1,
            "realization_b32": speedup32 / ar,
            "realization_macs_b32": speedup32 / ar,
        }

    rows = [row("group groups=uniform", 0.9, 4.0, 3.8), row("group groups=uniform", 0.95, 4.5, 3.2)]
    rows += [row("group groups=auto", 0.9, 6.0, 5.5), row("group groups=auto", 0.95, 7.0, 4.9)]  # 0.92, 0.70
    out = bench.realization_claim(rows)
    assert out["verdict"] == (
        "not reached with the default groups=auto at batch 32; 90%: reached by uniform, auto; "
        "95%: not reached (best 0.71 uniform at AR 4.50)"
    )
    assert "uniform 90% b32: AR 4.00, speedup 3.80 [3.42, 4.18], realization 0.95" in out["measurement"]
    rows[3] = row("group groups=auto", 0.95, 7.0, 6.0)
    assert bench.realization_claim(rows)["verdict"] == "reached"
    rows[2] = row("group groups=auto", 0.9, 3.5, 3.5)  # realized, but AR below 4: the 90 % target is missed
    assert bench.realization_claim(rows)["verdict"].endswith("90%: reached by uniform; 95%: reached by auto")


def test_claims_block_replaces_only_its_markers(bench):
    block = bench.render_claims([bench.NOT_TESTABLE], "meta line")
    doc = "# title\n\nprose\n\n" + block + "\n\nafter\n"
    new = bench.replace_between_markers(doc, bench.render_claims([bench.NOT_TESTABLE], "other meta"))
    assert new.startswith("# title\n\nprose\n\n") and new.endswith("\n\nafter\n") and "other meta" in new
    assert "meta line" not in new and new.count(bench.CLAIMS_BEGIN) == 1
    assert bench.replace_between_markers("# t\n", block) == "# t\n\n" + block + "\n"
    assert "| not testable at this scale |" in block
    rows = bench.claims({})  # nothing measured: every row says so instead of inventing a verdict
    assert [r["verdict"] for r in rows[:-1]] == ["not measured"] * (len(rows) - 1)
