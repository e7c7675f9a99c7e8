"""Regression detection: synthetic samples with known shifts (none, 2%, 10%) and hand-checked decisions."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from test_report import make_run_dir

from ticketbench.bench.cli import main
from ticketbench.bench.regression import (
    CompareConfig,
    RunRef,
    compare_runs,
    energy_ratio_lower_bound,
    latency_test,
    load_ref,
    verdict_for,
)

pytest.importorskip("scipy")


def lognormal(seed: int, median_ms: float, n: int = 200, sigma: float = 0.03) -> np.ndarray:
    return np.random.default_rng(seed).lognormal(np.log(median_ms), sigma, n)


CFG = CompareConfig()


def decide(shift: float, seed: int, n: int = 200, sigma: float = 0.03) -> str:
    """Latency verdict for baseline median 1 ms vs current median 1 + shift, under the default floors."""
    change, p = latency_test(lognormal(2 * seed, 1.0, n, sigma), lognormal(2 * seed + 1, 1.0 + shift, n, sigma))
    return verdict_for(p < CFG.alpha, change, CFG.latency_floor)


def test_mann_whitney_direction_and_median_change_by_hand():
    base = np.array([1.0, 1.1, 1.2, 1.3, 1.4, 1.5, 1.6, 1.7])
    change, p = latency_test(base, base + 1.0)  # every current sample slower
    assert change == pytest.approx(2.35 / 1.35 - 1)
    assert p == pytest.approx(1 / 12870)  # U = 64: the one ordering of 16 values out of C(16, 8), exact test
    change, p = latency_test(base, base - 0.5)  # faster: one-sided test says nothing is worse
    assert p > 0.9


def test_no_false_alarm_on_noise_over_many_seeds():
    verdicts = [decide(0.0, s) for s in range(100)]
    assert "regression" not in verdicts
    # the significance test alone rejects about alpha of the null cases, not more
    assert sum(v != "not-significant" for v in verdicts) <= 5


def test_two_percent_shift_is_significant_but_under_the_floor():
    verdicts = [decide(0.02, s) for s in range(20)]
    assert "regression" not in verdicts
    assert verdicts.count("significant-below-floor") >= 18  # 2% is real with n=200, σ=3%: detected, not flagged


def test_ten_percent_shift_is_flagged():
    assert [decide(0.10, s) for s in range(20)] == ["regression"] * 20


def test_large_but_noisy_shift_with_few_samples_is_not_flagged():
    # a 10% median shift among 5 samples of 30% noise is not evidence
    verdicts = [decide(0.10, s, n=5, sigma=0.30) for s in range(20)]
    assert verdicts.count("regression") <= 2


def test_energy_bootstrap_lower_bound_by_construction():
    rng = np.random.default_rng(0)
    w = rng.normal(5.0, 0.05, 400)
    ms = lognormal(1, 1.0)
    cfg = CompareConfig(n_boot=500)
    same, p_same = energy_ratio_lower_bound(w, ms, rng.normal(5.0, 0.05, 400), lognormal(2, 1.0), cfg)
    up, p_up = energy_ratio_lower_bound(w, ms, rng.normal(6.0, 0.05, 400), lognormal(3, 1.0), cfg)  # +20% power
    assert same < 1.0 < up
    assert up == pytest.approx(1.2, abs=0.02)
    assert p_up == 0.0 and p_same > 0.01


def _compare(tmp_path, **current) -> pd.DataFrame:
    base = load_ref(str(make_run_dir(tmp_path / "base", "B", seed=1)))
    cur = load_ref(str(make_run_dir(tmp_path / "cur", "C", seed=2, **current)))
    return compare_runs(base, cur, CompareConfig(n_boot=300)).table()


def test_run_dirs_without_change_give_no_regression(tmp_path):
    t = _compare(tmp_path)
    assert not t["verdict"].isin(["regression", "failed"]).any()
    assert set(t["metric"]) == {"latency_ms_p50", "energy_mj_per_inference", "accuracy_top1"}
    assert set(t["test"]) == {"mann-whitney", "bootstrap", "exact"}


def test_run_dirs_with_slower_latency_flag_every_latency_row(tmp_path):
    t = _compare(tmp_path, latency_scale=1.10)
    lat = t[t["metric"] == "latency_ms_p50"]
    assert len(lat) == 10 and (lat["verdict"] == "regression").all()
    assert lat["change"].between(0.07, 0.13).all()
    # 10% more time at equal power = 10% more energy: significant but within the 10% energy floor on some rows
    assert not t[(t["metric"] == "accuracy_top1")]["verdict"].eq("regression").any()


def test_energy_regression_needs_the_wider_floor(tmp_path):
    t = _compare(tmp_path, power_scale=1.25)
    en = t[t["metric"] == "energy_mj_per_inference"]
    assert (en["verdict"] == "regression").all()
    t = _compare(tmp_path, power_scale=1.06)  # 6%: over the latency floor, under the energy floor
    en = t[t["metric"] == "energy_mj_per_inference"]
    assert set(en["verdict"]) == {"significant-below-floor"}


def test_accuracy_floor_is_absolute_points(tmp_path):
    t = _compare(tmp_path, accuracy_shift=-1.5)
    assert set(t[t["metric"] == "accuracy_top1"]["verdict"]) == {"regression"}
    t = _compare(tmp_path, accuracy_shift=-0.5)
    assert set(t[t["metric"] == "accuracy_top1"]["verdict"]) == {"ok"}


def test_failed_case_is_a_regression_and_missing_samples_are_untested(tmp_path):
    base = load_ref(str(make_run_dir(tmp_path / "b", "B")))
    cur = load_ref(str(make_run_dir(tmp_path / "c", "C", seed=3, failed=("c-mag80",))))
    t = compare_runs(base, cur).table()
    assert set(t[t["verdict"] == "failed"]["case_id"]) == {"c-mag80"}
    no_samples = RunRef("C", cur.df, None)  # e.g. a DB run whose directory is on another machine
    t = compare_runs(base, no_samples).table()
    assert set(t[t["metric"] == "latency_ms_p50"]["verdict"]) <= {"untested"}


def test_cli_compare_exit_codes_and_outputs(tmp_path, capsys):
    base = make_run_dir(tmp_path / "b", "B", seed=1)
    same = make_run_dir(tmp_path / "s", "S", seed=2)
    slow = make_run_dir(tmp_path / "x", "X", seed=3, latency_scale=1.10)
    assert main(["compare", str(base), str(same)]) == 0
    assert (same / "compare.md").read_text().startswith("# ticketbench compare")
    assert (
        main(["compare", str(base), str(slow), "--md", str(tmp_path / "o.md"), "--html", str(tmp_path / "o.html")]) == 1
    )
    out = capsys.readouterr().out
    assert "regression(s) flagged" in out and "mann-whitney" in out
    md = (tmp_path / "o.md").read_text()
    assert md.startswith("# ticketbench compare\n\n**REGRESSION: ")
    assert md.count("| latency_ms_p50 |") == 20  # 10 rows flagged, listed again among all findings
    assert '<tr class="bad">' in (tmp_path / "o.html").read_text()
    assert main(["compare", str(base), str(slow), "--threshold", "0.2"]) == 0  # 10% is under a 20% floor
    assert main(["compare", str(base), str(tmp_path / "nope")]) == 2


def test_compare_by_run_id_from_the_store(tmp_path, monkeypatch):
    pytest.importorskip("sqlalchemy")
    from ticketbench.bench.store import ResultsStore

    db = f"sqlite:///{tmp_path / 'db.sqlite'}"
    store = ResultsStore(db)
    store.ingest(make_run_dir(tmp_path / "b", "B", seed=1))
    store.ingest(make_run_dir(tmp_path / "x", "X", seed=3, latency_scale=1.10))
    monkeypatch.chdir(tmp_path)
    assert main(["compare", "B", "X", "--db", db, "--md", "o.md"]) == 1
    assert "REGRESSION" in (tmp_path / "o.md").read_text()
    assert main(["compare", "B", "nope", "--db", db]) == 2
