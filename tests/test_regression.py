"""Regression detection: synthetic samples with known shifts (none, 2%, 10%) and hand-checked decisions.

Rounds: `add_rounds` models what a shared machine does to k interleaved rounds: a machine factor per round shared
by the case and its dense reference (the run's level, and its drift within the run), plus independent noise per
window. benchmarks/bench_regression_gate.py measures the same gate on real runs.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from test_report import make_run_dir

from ticketbench.bench.cli import main
from ticketbench.bench.configs import CompareConfig
from ticketbench.bench.regression import compare_runs, gate
from ticketbench.bench.runref import RunRef, load_ref
from ticketbench.bench.stats import energy_ratio_lower_bound, latency_test, round_test, verdict_for

pytest.importorskip("scipy")


def lognormal(seed: int, median_ms: float, n: int = 200, sigma: float = 0.03) -> np.ndarray:
    return np.random.default_rng(seed).lognormal(np.log(median_ms), sigma, n)


CFG = CompareConfig()
FLOOR = 0.05  # the per-iteration test's machinery at a 5% floor (runs without rounds get the time floor, 20%)


def decide(shift: float, seed: int, n: int = 200, sigma: float = 0.03) -> str:
    """Latency verdict for baseline median 1 ms vs current median 1 + shift at alpha 0.01 and a 5% floor."""
    change, p = latency_test(lognormal(2 * seed, 1.0, n, sigma), lognormal(2 * seed + 1, 1.0 + shift, n, sigma))
    return verdict_for(p < CFG.alpha, change, FLOOR)


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
    t = _compare(tmp_path, latency_scale=1.30)
    lat = t[t["metric"] == "latency_ms_p50"]
    assert len(lat) == 10 and (lat["verdict"] == "regression").all()
    assert lat["change"].between(0.26, 0.34).all() and set(lat["floor"]) == {CFG.time_floor}  # times: 20%
    assert set(_compare(tmp_path, latency_scale=1.10).query("metric == 'latency_ms_p50'")["verdict"]) == {
        "significant-below-floor"
    }  # 10% is real, and within what a time drifts between runs
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


@pytest.mark.e2e
def test_cli_compare_exit_codes_and_outputs(tmp_path, capsys):
    base = make_run_dir(tmp_path / "b", "B", seed=1)
    same = make_run_dir(tmp_path / "s", "S", seed=2)
    slow = make_run_dir(tmp_path / "x", "X", seed=3, latency_scale=1.30)
    assert main(["compare", str(base), str(same)]) == 0
    assert (same / "compare.md").read_text().startswith("# ticketbench compare")
    assert (
        main(["compare", str(base), str(slow), "--md", str(tmp_path / "o.md"), "--html", str(tmp_path / "o.html")]) == 1
    )
    cap = capsys.readouterr()
    assert "regression(s) flagged" in cap.err and "mann-whitney" in cap.out
    md = (tmp_path / "o.md").read_text()
    assert md.startswith("# ticketbench compare\n\n**REGRESSION: ")
    assert md.count("| latency\\_ms\\_p50 |") == 20  # 10 rows flagged, listed again among all findings
    assert '<tr class="bad">' in (tmp_path / "o.html").read_text()
    floors = ["--time-floor", "0.4", "--energy-floor", "0.4"]
    assert main(["compare", str(base), str(slow), *floors]) == 0  # 30% more time and energy: under 40% floors
    assert main(["compare", str(base), str(tmp_path / "nope")]) == 2


@pytest.mark.e2e
def test_compare_by_run_id_from_the_store(tmp_path, monkeypatch):
    pytest.importorskip("sqlalchemy")
    from ticketbench.bench.store import ResultsStore

    db = f"sqlite:///{tmp_path / 'db.sqlite'}"
    store = ResultsStore(db)
    store.ingest(make_run_dir(tmp_path / "b", "B", seed=1))
    store.ingest(make_run_dir(tmp_path / "x", "X", seed=3, latency_scale=1.30))
    monkeypatch.chdir(tmp_path)
    assert main(["compare", "B", "X", "--db", db, "--md", "o.md"]) == 1
    assert "REGRESSION" in (tmp_path / "o.md").read_text()
    assert main(["compare", "B", "nope", "--db", db]) == 2


# -- rounds: the unit of the test ----------------------------------------------------------------------
def add_rounds(
    root, seed: int, *, k: int = 5, level: float = 1.0, round_sigma: float = 0.03, noise: float = 0.01, slower=None
):
    """samples/*-rounds.csv for every ok row of a make_run_dir run. Each round's machine factor (the run's
    `level` × lognormal(round_sigma)) hits the case and its dense reference alike; `noise` is per window;
    `slower` = {case_id: factor} makes a case genuinely slower (its reference is not)."""
    rng = np.random.default_rng(seed)
    df = pd.read_csv(root / "results.csv")
    dense = {r.batch_size: r.latency_ms_p50 for r in df.itertuples() if r.method == "dense" and r.status == "ok"}
    for r in df[df["status"] == "ok"].itertuples():
        machine = level * rng.lognormal(0.0, round_sigma, k)
        case = r.latency_ms_p50 * (slower or {}).get(r.case_id, 1.0) * machine * rng.lognormal(0.0, noise, k)
        ref = dense[r.batch_size] * machine * rng.lognormal(0.0, noise, k)
        lines = [
            f"{i},{c:.6f},{'' if r.method == 'dense' else f'{d:.6f}'},20" for i, (c, d) in enumerate(zip(case, ref))
        ]
        text = "round,latency_ms_median,reference_ms_median,iterations\n" + "\n".join(lines) + "\n"
        (root / r.samples_file.replace("-latency.csv", "-rounds.csv")).write_text(text)
    return root


def _rounds_pair(tmp_path, seed: int, cur_level: float = 1.0, base_sigma: float = 0.03, slower=None):
    base = add_rounds(make_run_dir(tmp_path / f"b{seed}", "B", seed=2 * seed), 2 * seed, round_sigma=base_sigma)
    cur = add_rounds(make_run_dir(tmp_path / f"c{seed}", "C", seed=2 * seed + 1), 2 * seed + 1, level=cur_level,
                     slower=slower)  # fmt: skip
    return load_ref(str(base)), load_ref(str(cur))


def _latency(comp) -> pd.DataFrame:
    t = comp.table()
    return t[t["metric"] == "latency_ms_p50"].assign(dense=lambda d: d["case_id"] == "c-dense")


def test_round_test_is_a_ratio_test_on_rounds():
    base = np.array([1.0, 1.02, 0.98, 1.01, 0.99])
    change, p = round_test(base, base * 1.2)
    assert change == pytest.approx(0.2) and p < 1e-4
    assert round_test(base, base * 0.8)[1] > 0.99  # faster: one-sided
    assert round_test(base, base)[1] == pytest.approx(0.5)
    assert round_test(np.ones(3), np.ones(3) * 1.1) == (pytest.approx(0.1), 0.0)  # no spread at all: exact


@pytest.mark.e2e
def test_machine_drift_between_identical_runs_never_flags_a_ticket(tmp_path):
    """The whole current run on a machine 15% slower or faster (another tenant): every ticket's per-round ratio to
    the dense reference is unchanged, so no ticket row is flagged; the drift shows only on the dense time."""
    flagged = 0
    for seed, level in enumerate([0.85, 0.9, 1.0, 1.1, 1.15] * 4):
        lat = _latency(compare_runs(*_rounds_pair(tmp_path, seed, cur_level=level), CFG))
        assert set(lat[~lat["dense"]]["test"]) == {"welch-rounds/dense"} and set(lat[lat["dense"]]["test"]) == {
            "welch-rounds"
        }
        flagged += int((lat[~lat["dense"]]["verdict"] == "regression").sum())
    assert flagged == 0


@pytest.mark.e2e
def test_a_ticket_made_fifteen_percent_slower_is_flagged_despite_drift(tmp_path):
    for seed, level in enumerate([0.9, 1.0, 1.1, 0.95, 1.05] * 2):
        lat = _latency(compare_runs(*_rounds_pair(tmp_path, seed, cur_level=level, slower={"c-mag80": 1.15}), CFG))
        hit = lat[lat["verdict"] == "regression"]
        assert set(hit[~hit["dense"]]["case_id"]) == {"c-mag80"} and len(hit[~hit["dense"]]) == 2  # both batches
        assert hit[hit["case_id"] == "c-mag80"]["change"].between(0.08, 0.22).all()


def test_floor_is_the_larger_of_the_configured_floor_and_the_baselines_spread(tmp_path):
    quiet = _latency(compare_runs(*_rounds_pair(tmp_path, 1, base_sigma=0.005), CFG))
    configured = np.where(quiet["dense"], CFG.time_floor, CFG.latency_floor)  # a time's floor is the time floor
    assert np.allclose(quiet["floor"], np.maximum(configured, 3 * quiet["spread"]))
    assert (quiet["floor"] == configured).all()  # 3 × a 1-2% spread: the configured floors win
    noisy = _latency(compare_runs(*_rounds_pair(tmp_path, 2, base_sigma=0.10), CFG))
    dense = noisy[noisy["dense"]]
    # a time must clear the dense reference's spread over the whole baseline run (~10%), not only its own rounds
    assert (dense["floor"] > 0.15).all() and (dense["floor"] == 3 * dense["spread"]).all()
    tickets = noisy[~noisy["dense"]]  # ratios: the shared machine factor cancels, so their spread stays small
    assert (tickets["floor"] < 0.15).all()


@pytest.mark.e2e
def test_a_global_slowdown_fires_on_the_dense_time_unless_the_baseline_wandered_as_much(tmp_path):
    timed = CompareConfig(gate_times=True)  # a dedicated device: times are gated
    slow = _latency(compare_runs(*_rounds_pair(tmp_path, 3, cur_level=1.25, base_sigma=0.01), timed))
    assert set(slow[slow["dense"]]["verdict"]) == {"regression"}
    by_default = _latency(compare_runs(*_rounds_pair(tmp_path, 3, cur_level=1.25, base_sigma=0.01), CFG))
    assert set(by_default[by_default["dense"]]["verdict"]) == {"time-not-gated"}  # reported with its change
    # the baseline's own reference wandered by ~15% within its run: a 25% shift of the time is within what it does
    wandering = pd.concat(
        [_latency(compare_runs(*_rounds_pair(tmp_path, s, cur_level=1.25, base_sigma=0.15), timed)) for s in range(10)]
    )
    assert (wandering[wandering["dense"]]["verdict"] == "regression").sum() <= 2  # of 20 dense rows


def test_normalize_none_tests_times(tmp_path):
    lat = _latency(compare_runs(*_rounds_pair(tmp_path, 5), CompareConfig(normalize="none")))
    assert set(lat["test"]) == {"welch-rounds"}


# -- the gate: it must not pass on nothing -----------------------------------------------------------------
def _gate_main(tmp_path, capsys, base, cur, *extra) -> tuple[int, str]:
    code = main(["compare", str(base), str(cur), "--md", str(tmp_path / "g.md"), *extra])
    err = capsys.readouterr().err.strip().splitlines()
    return code, err[-1] if err else ""


def test_gate_fails_when_current_lost_cases_unless_allowed(tmp_path, capsys):
    base = make_run_dir(tmp_path / "b", "B", seed=1)
    cur = make_run_dir(tmp_path / "c", "C", seed=2)
    df = pd.read_csv(cur / "results.csv")
    df[df["case_id"] != "c-mag80"].to_csv(cur / "results.csv", index=False)
    code, reason = _gate_main(tmp_path, capsys, base, cur)
    assert (
        code == 1 and reason.startswith("CURRENT lost 2 of 10 baseline row(s) (first: c-mag80") and "\n" not in reason
    )
    assert _gate_main(tmp_path, capsys, base, cur, "--allow-missing")[0] == 0


@pytest.mark.parametrize(
    "content",
    [
        "",  # empty file
        ",".join(["run_id", "case_id", "device", "backend", "precision", "batch_size", "status"]) + "\n",  # header
        "garbage\n\x00\x01 not, a, csv\n,,,,,,,,\n",
        b"\x89PNG\r\n\x1a\n\xff\xfe binary",
    ],
    ids=["empty", "header-only", "garbage-text", "binary"],
)
def test_gate_fails_when_nothing_is_comparable(tmp_path, capsys, content):
    base = make_run_dir(tmp_path / "b", "B", seed=1)
    cur = tmp_path / "c"
    cur.mkdir()
    target = cur / "results.csv"
    target.write_bytes(content) if isinstance(content, bytes) else target.write_text(content)
    code, reason = _gate_main(tmp_path, capsys, base, cur, "--allow-missing")
    # a CI gate must fail: a results.csv the reader refuses is bad input (exit 2, one line naming the file);
    # one it reads but that holds no comparable row is "nothing comparable" (exit 1)
    assert (code, reason.startswith("nothing comparable: ")) == (1, True) or (
        code == 2 and reason.startswith("error: ") and "results.csv" in reason
    ), (code, reason)


def test_gate_fails_on_a_run_of_another_suite(tmp_path, capsys):
    base = make_run_dir(tmp_path / "b", "B", seed=1)
    other = make_run_dir(tmp_path / "o", "O", seed=2)
    df = pd.read_csv(other / "results.csv")
    df.assign(case_id="other-" + df["case_id"]).to_csv(other / "results.csv", index=False)
    code, reason = _gate_main(tmp_path, capsys, base, other, "--allow-missing")
    assert code == 1 and reason.startswith("nothing comparable: none of the baseline's 10 row(s)")


def test_gate_passes_identical_runs_and_prints_both_floors(tmp_path, capsys):
    base, cur = (add_rounds(make_run_dir(tmp_path / n, n, seed=i), i) for i, n in enumerate("BC"))
    assert main(["compare", str(base), str(cur)]) == 0
    out = capsys.readouterr().out
    assert "latency floor = max(10% for a ratio, 20% for a time, 3 × baseline between-round spread)" in out
    comp = compare_runs(load_ref(str(base)), load_ref(str(cur)))
    assert gate(comp, load_ref(str(base)), load_ref(str(cur))) == (0, "no significant regression above the floors")


def test_compare_markdown_escapes_case_names(tmp_path):
    from ticketbench.reports.compare import comparison_markdown

    evil = "<img src=x onerror=alert(1)>*[x](javascript:y)*|`z`"
    table = pd.DataFrame(
        [dict(case_id=evil, device="cpu", batch_size=1, metric="status", verdict="failed", test="status")]
    )
    md = comparison_markdown(table, "<b>B</b>", "C_1")
    assert "<img" not in md and "<b>" not in md and "&lt;img src=x onerror=alert(1)&gt;" in md
    assert "\\*\\[x\\](javascript:y)\\*\\|\\`z\\`" in md  # no emphasis, link, cell break or code span survives
    assert "&lt;b&gt;B&lt;/b&gt;" in md and "C\\_1" in md


# -- trends: a step only when it persists ------------------------------------------------------------------
def _series(levels, sigma=0.02, seed=0):
    return np.asarray(levels, dtype=float) * np.random.default_rng(seed).lognormal(0.0, sigma, len(levels))


def test_a_step_that_holds_is_found_where_it_starts():
    from ticketbench.bench.trend import persistent_steps

    (step,) = persistent_steps(_series([1.0] * 8 + [1.2] * 6))
    assert step["index"] == 8 and step["nights"] == 6 and step["change"] == pytest.approx(0.2, abs=0.04)


@pytest.mark.parametrize(
    "levels",
    [[1.0] * 6 + [1.5] + [1.0] * 6, [1.0] * 9 + [1.3], [1.0] * 12, [0.5] * 3 + [2.0] + [0.5] * 3],
    ids=["one-bad-night", "last-night-only", "flat", "spike"],
)
def test_one_bad_night_is_not_a_step(levels):
    from ticketbench.bench.trend import persistent_steps

    assert persistent_steps(_series(levels)) == []


def test_a_new_level_counts_once_it_held_two_nights():
    from ticketbench.bench.trend import persistent_steps

    assert persistent_steps(_series([1.0] * 8 + [1.3] * 2))[0]["nights"] == 2


def test_trend_steps_and_the_nightly_summary_mark_only_persistent_steps():
    from ticketbench.bench.trend import trend_steps
    from ticketbench.reports.nightly import night_html, night_markdown

    nights = [f"n{i:02d}" for i in range(12)]
    slow = _series([1.0] * 6 + [1.25] * 6, seed=1)
    spiky = _series([2.0] * 5 + [3.0] + [2.0] * 6, seed=2)
    acc = [95.0] * 7 + [90.0] * 5
    long = pd.concat(
        [
            pd.DataFrame({"night": nights, "case_id": "c-slow", "value": slow, "metric": "latency_ms_p50"}),
            pd.DataFrame({"night": nights, "case_id": "<i>c-spiky</i>", "value": spiky, "metric": "latency_ms_p50"}),
            pd.DataFrame({"night": nights, "case_id": "c-slow", "value": acc, "metric": "accuracy_top1"}),
        ]
    ).assign(farm_device="dev", suite="quick", batch_size=1)
    steps = trend_steps(long)
    assert list(zip(steps["case_id"], steps["metric"], steps["night"], steps["worse"])) == [
        ("c-slow", "accuracy_top1", "n07", True),
        ("c-slow", "latency_ms_p50", "n06", True),
    ]
    outcomes = pd.DataFrame([{"device": "dev", "suite": "quick", "status": "ok"}])
    md = night_markdown("n11", outcomes, pd.DataFrame(), steps)
    assert "## Steps that persisted" in md and md.count("| c-slow |") == 2 and "<i>" not in md
    html = night_html("n11", outcomes, pd.DataFrame(), {}, steps)
    assert html.count('<tr class="bad">') == 2


def test_no_gate_times_reports_a_time_drift_without_flagging_it(tmp_path):
    base, cur = _rounds_pair(tmp_path, 3, cur_level=1.4, base_sigma=0.01)  # the machine, not the code, is slower
    lat = _latency(compare_runs(base, cur, CompareConfig(gate_times=False)))
    assert set(lat[lat["dense"]]["verdict"]) == {"time-not-gated"}
    assert not lat["verdict"].eq("regression").any()
    slower = _latency(
        compare_runs(*_rounds_pair(tmp_path, 4, slower={"c-mag80": 1.3}), CompareConfig(gate_times=False))
    )
    assert set(slower[slower["verdict"] == "regression"]["case_id"]) == {"c-mag80"}  # ratios still gate


# -- history: earlier runs measure how far identical runs wander ------------------------------------------------
def _run(tmp_path, name: str, seed: int, **rounds):
    return load_ref(str(add_rounds(make_run_dir(tmp_path / name, name, seed=seed), seed, **rounds)))


def test_history_keeps_one_odd_baseline_run_from_setting_the_level(tmp_path):
    """Measured on this VM: one of six identical runs timed the Early-Bird ticket 17% faster relative to dense
    than the other five. Taken alone as the baseline, every ordinary run after it looks 20% slower."""
    odd = _run(tmp_path, "odd", 1, slower={"c-eb50": 0.83})  # the baseline that happened to be fast
    history = [_run(tmp_path, f"h{i}", 10 + i) for i in range(3)]
    cur = _run(tmp_path, "cur", 2)
    alone = _latency(compare_runs(odd, cur, CFG))
    assert set(alone[alone["verdict"] == "regression"]["case_id"]) == {"c-eb50"}
    with_history = _latency(compare_runs(odd, cur, CFG, history))
    assert not with_history["verdict"].eq("regression").any()
    eb = with_history[with_history["case_id"] == "c-eb50"]
    assert (eb["baseline_runs"] == 4).all() and (eb["spread"] > 0.05).all()  # the odd run's level shows as spread
    assert eb["change"].abs().max() < 0.05  # the level is the pooled median: the three ordinary runs set it


def test_history_still_flags_a_genuine_slowdown_and_leaves_the_rest_alone(tmp_path):
    history = [_run(tmp_path, f"h{i}", 20 + i) for i in range(3)]
    base = _run(tmp_path, "base", 3)
    cur = _run(tmp_path, "cur", 4, slower={"c-mag80": 1.3})
    lat = _latency(compare_runs(base, cur, CFG, history))
    assert set(lat[lat["verdict"] == "regression"]["case_id"]) == {"c-mag80"}
    assert (lat["baseline_runs"] == 4).all()
    assert set(compare_runs(base, cur, CFG).table()["baseline_runs"].dropna()) == {1}


def test_cli_compare_history_prints_the_runs_and_checks_them_as_inputs(tmp_path, capsys):
    runs = [add_rounds(make_run_dir(tmp_path / n, n, seed=s), s) for n, s in (("b", 1), ("c", 2), ("h1", 3))]
    base, cur, hist = (str(r) for r in runs)
    assert main(["compare", base, cur, "--history", hist, "--md", str(tmp_path / "o.md")]) == 0
    out = capsys.readouterr().out
    assert "or between its 2 runs" in out and "baseline_runs" in out
    assert "(+ 1 earlier run(s) for latency)" in (tmp_path / "o.md").read_text()
    assert main(["compare", base, cur, "--history", str(tmp_path / "nope")]) == 2
    assert main(["compare", base, cur, "--history", hist, "--md", str(runs[2] / "results.csv")]) == 2


# -- threads and disturbance: what a row is, and how far it can be trusted ------------------------------------------
def _set_columns(root, **columns):
    """Write results.csv columns of a synthetic run (e.g. threads=2, disturbed=True) on every row."""
    df = pd.read_csv(root / "results.csv")
    df.assign(**columns).to_csv(root / "results.csv", index=False)
    return root


def _thread_runs(tmp_path, counts, slower=None):
    return [
        _set_columns(add_rounds(make_run_dir(tmp_path / f"t{i}", f"T{i}", seed=i), i, slower=slower), threads=n)
        for i, n in enumerate(counts)
    ]


def test_rows_measured_with_other_thread_counts_are_never_timed_against_each_other(tmp_path, capsys):
    """Issue 24: the thread policy chose 1 thread for one run and 2 for the next; the Early-Bird ticket's ratio to dense
    moved from 0.19 to 0.30 and compare called a 99% regression. Here CURRENT is 40% slower, and on 2 threads."""
    one, two = _thread_runs(tmp_path, [1, 2], slower={"c-eb50": 1.4})
    comp = compare_runs(load_ref(str(one)), load_ref(str(two)), CFG)
    lat = _latency(comp)
    assert set(lat["verdict"]) == {"threads-differ"} and set(lat["test"]) == {"threads 1 vs 2"}
    assert not comp.regressions
    assert set(comp.table()["verdict"]) == {"threads-differ"}  # the whole row: the ticket itself differs too
    (note,) = comp.notes
    assert "T0 and T1 were measured with different thread counts (1 vs 2 thread(s), 10 row(s))" in note
    code, reason = gate(comp, load_ref(str(one)), load_ref(str(two)))
    assert code == 2 and reason.startswith("not comparable: T0 and T1") and "regression" not in reason
    assert main(["compare", str(one), str(two), "--md", str(tmp_path / "o.md")]) == 2
    cap = capsys.readouterr()
    assert cap.out.count("measured with different thread counts") == 1 and "regression(s) flagged" not in cap.err
    assert "pin --threads" in (tmp_path / "o.md").read_text()


def test_identical_runs_at_the_same_thread_count_pass_within_each_pair(tmp_path, capsys):
    a1, a2, b1, b2 = _thread_runs(tmp_path, [1, 1, 2, 2])
    assert main(["compare", str(a1), str(a2)]) == 0 and main(["compare", str(b1), str(b2)]) == 0
    assert "thread counts" not in capsys.readouterr().out
    assert main(["compare", str(a2), str(b1)]) == 2


def test_a_history_run_of_another_thread_count_is_left_out_of_the_baseline(tmp_path):
    base, cur, odd = _thread_runs(tmp_path, [2, 2, 1])
    comp = compare_runs(load_ref(str(base)), load_ref(str(cur)), CFG, [load_ref(str(odd))])
    assert set(_latency(comp)["baseline_runs"]) == {1}  # its rounds did not join
    assert len(comp.notes) == 1 and comp.notes[0].startswith("history run T2 and T1") and "left out" in comp.notes[0]
    assert gate(comp, load_ref(str(base)), load_ref(str(cur)))[0] == 0


def test_runs_from_before_the_threads_column_take_the_count_run_json_recorded(tmp_path):
    base, cur = (add_rounds(make_run_dir(tmp_path / n, n, seed=i), i) for i, n in enumerate("BC"))
    for root, n in ((base, 1), (cur, 2)):
        meta = json.loads((root / "run.json").read_text())
        meta["host"]["threads"] = {"threads": n, "physical_cores": 2, "busy_cores": None, "source": "physical cores"}
        (root / "run.json").write_text(json.dumps(meta))
    comp = compare_runs(load_ref(str(base)), load_ref(str(cur)), CFG)
    assert set(_latency(comp)["verdict"]) == {"threads-differ"}


def test_a_disturbed_row_is_reported_not_gated(tmp_path, capsys):
    """Measured on the quick suite (2 threads, 2 cores): identical runs, one taken while other processes used 1.3
    cores, read the Early-Bird b1 ticket at 4.00x and 2.82x of dense, a 42% change that a floor of twice the usual
    would still have called a regression. A disturbed row's time and energy are reported, never gated by default."""
    base = load_ref(str(add_rounds(make_run_dir(tmp_path / "b", "B", seed=1), 1)))
    slow = add_rounds(make_run_dir(tmp_path / "c", "C", seed=2), 2, slower={"c-mag80": 1.4})
    quiet = _latency(compare_runs(base, load_ref(str(slow)), CFG))
    assert set(quiet[quiet["verdict"] == "regression"]["case_id"]) == {"c-mag80"}
    assert not quiet["disturbed"].any()
    _set_columns(slow, disturbed=True, disturbance_note="other processes used 1.20 of 2 cores beside 2 thread(s)")
    comp = compare_runs(base, load_ref(str(slow)), CFG)
    loud = _latency(comp)
    mag = loud[loud["case_id"] == "c-mag80"]
    assert mag["disturbed"].all() and set(mag["verdict"]) == {"disturbed-not-gated"}
    assert mag["change"].between(0.3, 0.5).all()  # still reported, with its change
    code, reason = gate(comp, base, load_ref(str(slow)))
    assert code == 0 and "2 finding(s) over the floor on disturbed rows, not gated (--gate-disturbed)" in reason
    gated = _latency(compare_runs(base, load_ref(str(slow)), CompareConfig(gate_disturbed=True)))
    assert set(gated[gated["verdict"] == "regression"]["case_id"]) == {"c-mag80"}
    acc = add_rounds(make_run_dir(tmp_path / "a", "A", seed=3, accuracy_shift=-3.0), 3)
    _set_columns(acc, disturbed=True)  # a disturbed machine does not change what the model computes
    assert set(compare_runs(base, load_ref(str(acc)), CFG).table().query("metric == 'accuracy_top1'")["verdict"]) == {
        "regression"
    }
    assert "row(s) disturbed in either run" in comparison_markdown_of(base, load_ref(str(slow)))
    assert main(["compare", str(tmp_path / "b"), str(slow), "--md", str(tmp_path / "o.md")]) == 0
    assert main(["compare", str(tmp_path / "b"), str(slow), "--gate-disturbed", "--md", str(tmp_path / "o.md")]) == 1
    assert "disturbed rows reported, not gated (--gate-disturbed)" in capsys.readouterr().out


def comparison_markdown_of(base, cur) -> str:
    from ticketbench.reports.compare import comparison_markdown

    comp = compare_runs(base, cur, CFG)
    return comparison_markdown(comp.table(), comp.baseline, comp.current, comp.notes)
