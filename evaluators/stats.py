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
    draws = np.asarray([d for d in draws if d is not None and np.isfinite(d)], dtype=float)
    alpha = (1 - level) / 2
    if not len(draws):
        low = high = np.nan
    elif set_based:
        from scipy.stats import norm

        half = norm.ppf(1 - alpha) * draws.std(ddof=1)
        low, high = value - half, value + half
    else:
        low, high = np.quantile(draws, [alpha, 1 - alpha])
    return {"value": value, "ci_low": float(low), "ci_high": float(high), "n": len(units)}


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
    draws = np.asarray([d for d in draws if d is not None and np.isfinite(d)], dtype=float)
    alpha = (1 - level) / 2
    if not len(draws) or not np.isfinite(delta):
        low = high = np.nan
    elif set_based:
        from scipy.stats import norm

        half = norm.ppf(1 - alpha) * draws.std(ddof=1)
        low, high = delta - half, delta + half
    else:
        low, high = np.quantile(draws, [alpha, 1 - alpha])
    return {"delta": delta, "ci_low": float(low), "ci_high": float(high), "n": len(base)}
