"""The statistical tests and floors of `bench compare` (bench/regression.py says which applies to which metric):
a one-sided Welch t-test on per-round statistics, Mann-Whitney on iterations for runs from before rounds, a bootstrap
lower bound of the energy ratio, the latency floor, and the verdict a test and its floor give."""

from __future__ import annotations

import numpy as np

from ticketbench.bench.configs import CompareConfig


def latency_test(base: np.ndarray, cur: np.ndarray) -> tuple[float, float]:
    """(relative change of the median, one-sided Mann-Whitney p-value for "current is slower")."""
    from scipy.stats import mannwhitneyu

    change = float(np.median(cur) / np.median(base) - 1.0)
    p = float(mannwhitneyu(cur, base, alternative="greater").pvalue)
    return change, p


def round_test(base: np.ndarray, cur: np.ndarray) -> tuple[float, float]:
    """(relative change of the median per-round statistic, one-sided Welch t-test p-value on their logs for
    "current is larger"). Logs make it a test of the ratio; Welch does not assume both runs equally noisy."""
    from scipy.stats import ttest_ind

    base, cur = np.asarray(base, dtype=float), np.asarray(cur, dtype=float)
    change = float(np.median(cur) / np.median(base) - 1.0)
    lb, lc = np.log(base), np.log(cur)
    if lb.std() == 0 and lc.std() == 0:  # identical rounds (synthetic): the difference is exact
        return change, 0.0 if lc.mean() > lb.mean() else 1.0
    return change, float(ttest_ind(lc, lb, equal_var=False, alternative="greater").pvalue)


def latency_floor(cfg: CompareConfig, spread: float | None, time: bool = False) -> float:
    """max(configured floor, spread_multiple × the baseline's between-round spread); the configured floor is the
    time floor when the statistic is a time (never below the ratio floor): a time also moves with the machine."""
    configured = max(cfg.latency_floor, cfg.time_floor) if time else cfg.latency_floor
    return max(configured, cfg.spread_multiple * (spread or 0.0))


def energy_ratio_lower_bound(
    base_w: np.ndarray, base_ms: np.ndarray, cur_w: np.ndarray, cur_ms: np.ndarray, cfg: CompareConfig
) -> tuple[float, float]:
    """(one-sided lower confidence bound of the energy ratio current/baseline at 1 − alpha, bootstrap p-value).

    Energy per inference ∝ mean power (W) × mean latency (ms); each of the four sample sets is resampled.
    The p-value is the fraction of bootstrap ratios ≤ 1 (how often the current run is not more costly).
    """
    rng = np.random.default_rng(cfg.seed)

    def boot_mean(x: np.ndarray) -> np.ndarray:
        return x[rng.integers(0, x.size, size=(cfg.n_boot, x.size))].mean(axis=1)

    ratio = (boot_mean(cur_w) * boot_mean(cur_ms)) / (boot_mean(base_w) * boot_mean(base_ms))
    return float(np.quantile(ratio, cfg.alpha)), float((ratio <= 1.0).mean())


def verdict_for(significant: bool, change: float, floor: float) -> str:
    if not significant:
        return "not-significant"
    return "regression" if change > floor else "significant-below-floor"
