"""Confidence intervals over units (conversations, or reference examples), and the paired deltas `compare` tests.

Three kinds of interval, chosen per metric (evaluators/metrics.py `Metric.set_based` / `Metric.bounded`):
- means of per-conversation or per-turn values: percentile bootstrap over units (`bootstrap_ci`), or in
  `interval`/`paired_delta` the delete-one(-cluster) jackknife standard error with a t quantile on
  clusters - 1 degrees of freedom, which keeps its coverage at 4 conversations where a percentile bootstrap
  does not (tests/test_coverage.py measures both on real ShareGPT conversations);
- set statistics (distinct-n, diversity, Vendi): the jackknife, which never repeats a unit (a bootstrap
  resample does, and repeats lower these statistics);
- proportions and other values bounded by [0, 1]: a Wilson score interval on the effective number of
  observations (p(1-p) / jackknife variance, so conversations that share turns count once), never zero-width
  at 0 or 1; a delta of two of them is Newcombe's MOVER interval (the sides' Wilson intervals combined).

`clusters` (one key per unit) makes the jackknife leave out a whole cluster at a time (a scenario whose
conversations share it, a dedup group); by default every unit is its own cluster.
Holm's step-down procedure and the minimum detectable effect serve the gate (workflows/gate.py).
statsmodels has Holm but is not in the stack; the jackknife and Wilson are a few lines each, so they are
written here rather than pulling in a package for them."""

from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np

N_BOOTSTRAP = 1000

NA = {"value": None, "ci_low": None, "ci_high": None, "n": 0}  # a cell with no value (copy it: dict(NA, note=...))


def quantile(q: float, df: float) -> float:
    """The q quantile of Student's t with df degrees of freedom (the normal's where df is None or infinite)."""
    from scipy.stats import norm, t

    return float(norm.ppf(q)) if df is None or math.isinf(df) else float(t.ppf(q, df)) if df >= 1 else math.inf


def cdf(x: float, df: float) -> float:
    from scipy.stats import norm, t

    return float(norm.cdf(x)) if df is None or math.isinf(df) else float(t.cdf(x, df)) if df >= 1 else 0.5


def jackknife(units: Sequence, statistic: Callable[[list], float], clusters: Sequence | None = None) -> tuple:
    """(value, standard error, degrees of freedom): the statistic on all units and the delete-one-cluster
    jackknife standard error (nan, 0 df with fewer than two clusters, or leave-outs that are undefined)."""
    units = list(units)
    value = float(statistic(units))
    keys = list(range(len(units))) if clusters is None else list(clusters)
    groups = list(dict.fromkeys(keys))
    if len(groups) < 2:
        return value, math.nan, 0
    loo = np.asarray([statistic([u for u, k in zip(units, keys) if k != g]) for g in groups], dtype=float)
    if not np.all(np.isfinite(loo)):
        return value, math.nan, 0
    g = len(groups)
    return value, float(math.sqrt((g - 1) / g * ((loo - loo.mean()) ** 2).sum())), g - 1


def wilson(p: float, n: float, z: float) -> tuple[float, float]:
    """Wilson score interval of a proportion p observed on n (possibly effective, fractional) observations."""
    if not (n > 0 and math.isfinite(p)):
        return math.nan, math.nan
    p = min(max(p, 0.0), 1.0)
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def effective_n(p: float, se: float, n_units: int) -> float:
    """Observations a [0, 1] value is worth: p(1-p)/se^2 (binomial variance over the jackknife's), or the number
    of units where that is undefined (p at 0 or 1: no turn differs, so each conversation counts once)."""
    if 0 < p < 1 and se > 0 and math.isfinite(se):
        return p * (1 - p) / se ** 2
    return float(n_units)


def interval(units: Sequence, statistic: Callable[[list], float], bounded: bool = False,
             clusters: Sequence | None = None, level: float = 0.95) -> dict:
    """{"value", "ci_low", "ci_high", "n", "se", "df"}: jackknife-t interval, or Wilson for `bounded` values."""
    units = list(units)
    if not units:
        return dict(NA)
    value, se, df = jackknife(units, statistic, clusters)
    upper = 1 - (1 - level) / 2
    if not math.isfinite(value):
        low = high = math.nan
    elif bounded:
        at_edge = not (0 < value < 1) or not (se > 0)
        z = quantile(upper, math.inf if at_edge else df)
        low, high = wilson(value, effective_n(value, se, df + 1 if df else len(units)), z)
        if not at_edge and df:  # never narrower than the jackknife-t interval (clipped to [0, 1]): a rare event in
            # one conversation makes p(1-p)/se^2 overstate the observations (coverage 0.917 at 15, tests/test_coverage.py)
            low, high = max(0.0, min(low, value - z * se)), min(1.0, max(high, value + z * se))
    else:
        half = quantile(upper, df) * se if df else math.nan
        low, high = value - half, value + half
    return {"value": value, "ci_low": low, "ci_high": high, "n": len(units), "se": se, "df": df}


def paired_delta(base: Sequence, cand: Sequence, statistic: Callable[[list], float], bounded: bool = False,
                 clusters: Sequence | None = None, level: float = 0.95) -> dict:
    """statistic(cand) - statistic(base) for paired units (base[i] and cand[i] are one pair), with its interval
    and the standard error on each side ("se_low", "se_high": how far a quantile of the delta's distribution
    reaches below and above it), on "df" degrees of freedom.

    Unbounded values: the jackknife of the delta leaves out pair i (or cluster) from both sides at once.
    Bounded ones: Newcombe's MOVER from the two Wilson intervals (it ignores the pairs' correlation, which
    only widens it where the sides go together; self-play pairs diverge after their first token)."""
    if len(base) != len(cand) or not base:
        raise ValueError("a paired delta needs two equally long, non-empty sequences")
    base, cand = list(base), list(cand)
    n, upper = len(base), 1 - (1 - level) / 2
    if bounded:
        b, c = (interval(side, statistic, True, clusters, level) for side in (base, cand))
        delta = c["value"] - b["value"]
        low = delta - math.hypot(c["value"] - c["ci_low"], b["ci_high"] - b["value"])
        high = delta + math.hypot(c["ci_high"] - c["value"], b["value"] - b["ci_low"])
        df = min(b["df"], c["df"]) or None  # None: the normal's quantiles (JSON has no infinity)
        q = quantile(upper, df)
        return {"delta": delta, "ci_low": low, "ci_high": high, "n": n, "se_low": (delta - low) / q,
                "se_high": (high - delta) / q, "df": df}
    pairs = list(zip(base, cand))
    diff = lambda ps: statistic([c for _, c in ps]) - statistic([b for b, _ in ps])
    delta, se, df = jackknife(pairs, diff, clusters)
    half = quantile(upper, df) * se if df else math.nan
    # The sides' own spread, for the minimum detectable drop: the pairs' differences are all 0 when a run is
    # compared with itself, though a different candidate's would not be.
    unpaired = math.hypot(jackknife(base, statistic, clusters)[1], jackknife(cand, statistic, clusters)[1])
    return {"delta": delta, "ci_low": delta - half, "ci_high": delta + half, "n": n, "se_low": se, "se_high": se,
            "df": df, "se_unpaired": unpaired}


def holm(pvalues: Sequence[float], alpha: float) -> list[bool]:
    """Holm's step-down: which hypotheses are rejected with family-wise error <= alpha."""
    order = sorted(range(len(pvalues)), key=lambda i: pvalues[i])
    rejected = [False] * len(pvalues)
    for step, i in enumerate(order):
        if not pvalues[i] <= alpha / (len(pvalues) - step):
            break
        rejected[i] = True
    return rejected


def minimum_detectable(se: float, df: float, alpha: float, power: float, margin: float) -> float:
    """The smallest drop (in the metric's units, beyond nothing) that a one-sided test at level alpha detects
    with the given power: margin + (t_{1-alpha} + t_{power}) * se."""
    if not (se >= 0 and math.isfinite(se)):
        return math.nan
    return margin + (quantile(1 - alpha, df) + quantile(power, df)) * se


def bootstrap_ci(units: Sequence, statistic: Callable[[list], float], n: int = N_BOOTSTRAP, seed: int = 0,
                 level: float = 0.95, set_based: bool = False, bounded: bool = False) -> dict:
    """{"value", "ci_low", "ci_high", "n"}: the statistic on all units, and a percentile bootstrap CI from
    resampling the units with replacement. Set statistics get the jackknife interval and bounded ones the
    Wilson interval (`interval`): a resample that repeats units lowers a set statistic, and a proportion's
    percentile interval is zero-width at 0 or 1."""
    units = list(units)
    if not units:
        return dict(NA)
    if set_based or bounded:
        ci = interval(units, statistic, bounded=bounded, level=level)
        return {k: ci[k] for k in ("value", "ci_low", "ci_high", "n")}
    value = float(statistic(units))
    rng = np.random.default_rng(seed)
    draws = np.asarray([statistic([units[i] for i in rng.integers(0, len(units), len(units))]) for _ in range(n)],
                       dtype=float)
    draws = draws[np.isfinite(draws)]
    alpha = (1 - level) / 2
    low, high = np.quantile(draws, [alpha, 1 - alpha]) if len(draws) else (np.nan, np.nan)
    return {"value": value, "ci_low": float(low), "ci_high": float(high), "n": len(units)}


def paired_bootstrap_delta(base: Sequence, cand: Sequence, statistic: Callable[[list], float], n: int = N_BOOTSTRAP,
                           seed: int = 0, level: float = 0.95, set_based: bool = False) -> dict:
    """Percentile bootstrap CI of statistic(cand) - statistic(base) resampling pair indices on both sides; set
    statistics get the jackknife (`paired_delta`)."""
    if len(base) != len(cand) or not base:
        raise ValueError("paired bootstrap needs two equally long, non-empty sequences")
    if set_based:
        d = paired_delta(base, cand, statistic, level=level)
        return {k: d[k] for k in ("delta", "ci_low", "ci_high", "n")}
    delta = float(statistic(list(cand)) - statistic(list(base)))
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(n):
        idx = rng.integers(0, len(base), len(base))
        draws.append(statistic([cand[i] for i in idx]) - statistic([base[i] for i in idx]))
    draws = np.asarray(draws, dtype=float)
    draws = draws[np.isfinite(draws)]
    alpha = (1 - level) / 2
    low, high = np.quantile(draws, [alpha, 1 - alpha]) if len(draws) and np.isfinite(delta) else (np.nan, np.nan)
    return {"delta": delta, "ci_low": float(low), "ci_high": float(high), "n": len(base)}
