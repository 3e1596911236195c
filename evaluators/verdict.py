"""Which run is closest to people, on which headline metric, by how much: the sentences under the terminal's
table, on top of report.md and report.html."""

from __future__ import annotations

import math

from evaluators.metrics import METRICS

# Until metrics are flagged `Metric.headline`: the short table shows these (where present).
FALLBACK_HEADLINE = ("human_likeness", "turn_length_w1", "role_adherence", "termination_rate")
PEOPLE = "real people"


def _value(ci: dict | None) -> float | None:
    v = (ci or {}).get("value")
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)


def headline_names(reports: list[dict]) -> list[str]:
    present = [m for m in METRICS if any(m in r["metrics"] for r in reports)]
    flagged = [m for m in present if METRICS[m].headline]
    return flagged or [m for m in FALLBACK_HEADLINE if m in present]


def reference_ci(reports: list[dict], metric: str) -> dict | None:
    """The real people's value of a metric: from the first report that scored them on it."""
    return next((r["metrics"][metric]["reference"] for r in reports
                 if "reference" in r["metrics"].get(metric, {})), None)


def distance(metric: str, ci: dict | None, ref: dict | None) -> float | None:
    """How far a run is from people on a metric (smaller is closer): |run - people| where people were scored,
    else the metric's own direction (a distance to people, an AUROC, an F1). None: no better direction."""
    v, r = _value(ci), _value(ref)
    if v is None:
        return None
    if r is not None:
        return abs(v - r)
    direction = METRICS[metric].direction
    return None if direction == 0 else -v * direction


def _num(v: float) -> str:
    return f"{v:.1f}" if abs(v) >= 10 else f"{v:.3f}"


def _overlap(a: dict, b: dict) -> bool:
    lo_a, hi_a, lo_b, hi_b = (a.get("ci_low"), a.get("ci_high"), b.get("ci_low"), b.get("ci_high"))
    if None in (lo_a, hi_a, lo_b, hi_b):
        return True  # no interval: no evidence they differ
    return not (hi_a < lo_b or hi_b < lo_a)


def metric_verdict(reports: list[dict], metric: str) -> dict | None:
    """The runs ranked by distance to people on one metric, with the sentence that says it."""
    ref = reference_ci(reports, metric)
    scored = sorted(((distance(metric, r["metrics"].get(metric, {}).get("run"), ref), r) for r in reports),
                    key=lambda x: (x[0] is None, x[0] if x[0] is not None else 0))
    scored = [(d, r) for d, r in scored if d is not None]
    if not scored:
        return None
    best_d, best = scored[0]
    best_ci = best["metrics"][metric]["run"]
    people = f"people {_num(_value(ref))}, " if _value(ref) is not None else ""
    text = f"{metric}: {people}{best['label']} {_num(_value(best_ci))}"
    tied = [r["label"] for d, r in scored if d - best_d <= 1e-12]
    if len(tied) > 1:
        return {"metric": metric, "best": None, "gap": 0.0, "clear": False,
                "text": f"{metric}: {people}tie between {', '.join(tied)} at {_num(_value(best_ci))}"}
    if len(scored) > 1:
        next_d, nxt = scored[1]
        next_ci = nxt["metrics"][metric]["run"]
        gap = next_d - best_d
        clear = not _overlap(best_ci, next_ci)
        text += (f", next {nxt['label']} {_num(_value(next_ci))} ({_num(gap)} further from people; "
                 f"{'95% CIs apart' if clear else 'CIs overlap: not a clear difference'})")
        return {"metric": metric, "best": best["label"], "gap": gap, "clear": clear, "text": text}
    if _value(ref) is not None:
        text += f" ({_num(best_d)} from people)"
    return {"metric": metric, "best": best["label"], "gap": None, "clear": None, "text": text}


def verdict(reports: list[dict], names: list[str] | None = None) -> tuple[str, list[str]]:
    """One summary line (who is closest to people on how many headline metrics) and one line per metric."""
    names = names if names is not None else headline_names(reports)
    per = [v for v in (metric_verdict(reports, m) for m in names) if v]
    if not per:
        return "No headline metric to compare with people.", []
    if len(reports) == 1:
        return f"{reports[0]['label']} against {PEOPLE} on {len(per)} headline metric(s):", [v["text"] for v in per]
    wins: dict[str, list[str]] = {}
    for v in per:
        if v["best"] is None:
            continue
        wins.setdefault(v["best"], []).append(v["metric"] + ("" if v["clear"] else "*"))
    order = sorted(wins, key=lambda k: -len(wins[k]))
    parts = [f"{label} on {len(wins[label])} of {len(per)} ({', '.join(wins[label])})" for label in order]
    ties = [v["metric"] for v in per if v["best"] is None]
    summary = "Closest to people: " + "; ".join(parts + ([f"tied on {', '.join(ties)}"] if ties else []))
    if any(not v["clear"] and v["best"] is not None for v in per):
        summary += " (* CIs overlap with the next run)"
    return summary, [v["text"] for v in per]
