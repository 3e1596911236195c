"""Bootstrap confidence intervals over units (conversations, or reference examples)."""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

N_BOOTSTRAP = 1000


def bootstrap_ci(units: Sequence, statistic: Callable[[list], float], n: int = N_BOOTSTRAP, seed: int = 0,
                 level: float = 0.95, set_based: bool = False) -> dict:
    """{"value", "ci_low", "ci_high", "n"}: the statistic on all units, and a percentile bootstrap CI from
    resampling the units with replacement.

    `set_based` metrics (distinct-n, pairwise diversity, Vendi) drop when a resample repeats a unit, so the
    percentile interval would sit below the estimate. For them each resample keeps its distinct units and
    the interval is the estimate +- z * the bootstrap standard error."""
    units = list(units)
    if not units:
        return {"value": None, "ci_low": None, "ci_high": None, "n": 0}
    value = float(statistic(units))
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(n):
        idx = rng.integers(0, len(units), len(units))
        draws.append(statistic([units[i] for i in (np.unique(idx) if set_based else idx)]))
    low, high = _interval(value, draws, level, set_based)
    return {"value": value, "ci_low": low, "ci_high": high, "n": len(units)}


def _interval(estimate: float, draws: list, level: float, set_based: bool) -> tuple[float, float]:
    """Percentile interval of the finite draws; for set-based statistics estimate +- z * their standard error."""
    draws = np.asarray([d for d in draws if d is not None and np.isfinite(d)], dtype=float)
    alpha = (1 - level) / 2
    if not len(draws):
        return np.nan, np.nan
    if set_based:
        from scipy.stats import norm

        half = norm.ppf(1 - alpha) * draws.std(ddof=1)
        return float(estimate - half), float(estimate + half)
    low, high = np.quantile(draws, [alpha, 1 - alpha])
    return float(low), float(high)


def paired_bootstrap_delta(base: Sequence, cand: Sequence, statistic: Callable[[list], float], n: int = N_BOOTSTRAP,
                           seed: int = 0, level: float = 0.95, set_based: bool = False) -> dict:
    """CI of statistic(cand) - statistic(base), resampling the same pair indices on both sides (pairs are
    conversations with the same scenario, sample and seed). `set_based` as in `bootstrap_ci`: each resample
    keeps its distinct pairs and the interval is delta +- z * the bootstrap standard error."""
    if len(base) != len(cand) or not base:
        raise ValueError("paired bootstrap needs two equally long, non-empty sequences")
    delta = float(statistic(list(cand)) - statistic(list(base)))
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(n):
        idx = rng.integers(0, len(base), len(base))
        if set_based:
            idx = np.unique(idx)
        draws.append(statistic([cand[i] for i in idx]) - statistic([base[i] for i in idx]))
    low, high = _interval(delta, draws, level, set_based) if np.isfinite(delta) else (np.nan, np.nan)
    return {"delta": delta, "ci_low": low, "ci_high": high, "n": len(base)}
