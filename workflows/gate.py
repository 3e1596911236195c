"""The regression gate of `userlm compare`: one primary metric and named secondary ones, each a one-sided
non-inferiority test with a margin, the family's error held at `alpha` (configs/compare-thresholds.yaml).

For each metric, with delta = candidate - baseline in "positive = better" units and margin m >= 0:
  H0: delta >= -m (no worse than the margin) against H1: delta < -m (a regression beyond the margin).
The primary metric is tested at alpha/2 and the secondaries with Holm's step-down at alpha/2 (alpha alone
for a family of one), so a candidate as good as the baseline exits 1 with probability <= alpha whatever the
number of metrics. Verdicts: "regressed" (H0 rejected), "non-inferior" (the interval at the test's level lies
above -m: shown not worse than the margin), "inconclusive" (neither: the run was too small to tell).
Every metric gets its minimum detectable drop: margin + (t_{1-a} + t_{power}) * se, at its level a
(for a secondary, the strictest step of Holm, alpha/2 / k), so an exit 0 says how large a drop it rules out;
se is the paired delta's, or the unpaired one's where that is 0 (a run compared with itself has paired
differences of 0, a different candidate would not)."""

from __future__ import annotations

import math
from pathlib import Path

from evaluators.stats import cdf, holm, minimum_detectable, quantile
from userlm.io import read_json

DEFAULT_GATE = {"primary": "discriminability", "fallback_primary": "human_likeness", "alpha": 0.05, "power": 0.8}


def one_sided(row: dict, sign: int) -> tuple[float, float]:
    """(p-value of H0 "no worse than the margin", the delta's standard error on the bad side)."""
    delta = sign * row["delta"]
    se = row["se_low"] if sign > 0 else row["se_high"]
    margin = row["margin"]
    if not (math.isfinite(delta) and math.isfinite(se)):  # no interval (too few conversations): never a regression
        return math.nan, math.nan
    if se == 0:  # every leave-one-out delta the same
        return (0.0 if delta < -margin else 1.0), 0.0
    return cdf((delta + margin) / se, row["df"]), se


def levels(rows: list[dict], primary: str | None, alpha: float) -> dict:
    """The level each tested metric's family gets: {"primary": a, "secondary": a}."""
    tested = [r for r in rows if r["verdict"] != "skipped"]
    has_primary = any(r["metric"] == primary for r in tested)
    secondaries = [r for r in tested if r["metric"] != primary]
    split = 2 if has_primary and secondaries else 1
    return {"primary": alpha / split, "secondary": alpha / split, "k": len(secondaries)}


def decide(rows: list[dict], primary: str | None, alpha: float = 0.05, power: float = 0.8) -> list[dict]:
    """Fills each tested row's p_value, level, verdict and min_detectable_drop (in place, and returns rows)."""
    at = levels(rows, primary, alpha)
    tested = [r for r in rows if r["verdict"] != "skipped"]
    for r in tested:
        sign = 1 if r["direction"] == "higher" else -1
        r["p_value"], se = one_sided(r, sign)
        is_primary = r["metric"] == primary
        r["role"] = "primary" if is_primary else "secondary"
        r["level"] = at["primary"] if is_primary else at["secondary"] / max(at["k"], 1)  # Holm's strictest step
        planning = se if not se == 0 else r.get("se_unpaired") or 0.0
        r["min_detectable_drop"] = minimum_detectable(planning, r["df"], r["level"], power, r["margin"])
        bound = sign * r["delta"] - quantile(1 - r["level"], r["df"]) * se if math.isfinite(se) else -math.inf
        r["verdict"] = "non-inferior" if bound > -r["margin"] else "inconclusive"
    secondary = [r for r in tested if r["role"] == "secondary"]
    rejected = holm([r["p_value"] if math.isfinite(r["p_value"]) else 1.0 for r in secondary], at["secondary"])
    for r, out in zip(secondary, rejected):
        if out:
            r["verdict"] = "regressed"
    for r in tested:
        if r["role"] == "primary" and r["p_value"] <= r["level"]:  # False for nan
            r["verdict"] = "regressed"
    return rows


def detectable_line(rows: list[dict], power: float) -> str:
    """One line: the smallest drop each tested metric could have been caught at, primary first."""
    def drop(r):  # a [0, 1] value cannot drop by more than 1
        return "none possible" if r.get("bounded") and r["min_detectable_drop"] > 1 else f"{r['min_detectable_drop']:.3g}"
    parts = [f"{r['metric']} {drop(r)}" for r in sorted(rows, key=lambda r: r.get("role") != "primary")
             if math.isfinite(r.get("min_detectable_drop", math.nan))]
    return (f"Smallest drop this run detects with {power:.0%} power (margin included): " + ", ".join(parts)
            if parts else "No metric could be tested: no minimum detectable drop.")


def evaluated_row(metric: str, spec: dict, runs: list[Path]) -> dict | None:
    """A metric scored by `evaluate` (metrics.json beside each run), its delta's standard error from the two
    intervals (independent sides); None where a run has no such value."""
    values = []
    for run in runs:
        path = run / "metrics.json"
        entry = (read_json(path, "metrics.json").get("metrics", {}).get(metric, {}).get("run") if path.exists() else None)
        if not entry or not all(isinstance(entry.get(k), (int, float)) for k in ("value", "ci_low", "ci_high")):
            return None
        values.append(entry)
    z = quantile(0.975, math.inf)
    se = math.hypot(*((v["ci_high"] - v["ci_low"]) / (2 * z) for v in values))
    delta = values[1]["value"] - values[0]["value"]
    return {"metric": metric, "direction": spec["direction"], "max_regression": spec["margin"],
            "margin": spec["margin"], "baseline": values[0]["value"], "candidate": values[1]["value"],
            "delta": delta, "ci_low": delta - z * se, "ci_high": delta + z * se, "n": values[0].get("n"),
            "se_low": se, "se_high": se, "df": None, "verdict": "tested"}
