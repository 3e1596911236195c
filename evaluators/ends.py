"""End decisions scored against where real people stopped (UserLM-8b's end-of-conversation F1,
arXiv 2510.06552). A unit (conversation) carries u["ends"] = [(the user model ended, the person ended), ...],
one pair per decision point (after each AI turn), and u["end_ordinals"] = each point's place among the
conversation's decisions (1 = the first AI turn after the user spoke); the statistics pool them, so one bootstrap
over conversations serves all, and compare pairs them. Sources: a replay run's points (decision true,
person_ended not null), or evaluators/termination.py's own predictions on held-out real conversations."""

from __future__ import annotations

import numpy as np

NO_ENDS = "n/a: the source records no real ends (person_ended is null at every point)"


def ends_from_points(points: list[dict] | None) -> list[tuple[bool, bool]]:
    return [(bool(p["ended"]), bool(p["person_ended"])) for p in points or []
            if p.get("decision") and p.get("person_ended") is not None]


def attach_ends(units: list[dict]) -> int:
    """u["ends"] and u["end_ordinals"] from each replay unit's points, in place; returns the number of scored
    decision points."""
    for u in units:
        decisions = [p for p in u.get("points") or () if p.get("decision")]
        scored = [(k, p) for k, p in enumerate(decisions, 1) if p.get("person_ended") is not None]
        u["ends"], u["end_ordinals"] = ends_from_points([p for _, p in scored]), [k for k, _ in scored]
    return sum(len(u["ends"]) for u in units)


def _counts(units, always: bool = False):
    pairs = [(True if always else p, t) for u in units for p, t in u.get("ends") or ()]
    tp = sum(p and t for p, t in pairs)
    fp = sum(p and not t for p, t in pairs)
    fn = sum(t and not p for p, t in pairs)
    return tp, fp, fn, len(pairs)


def precision(units):
    tp, fp, _, _ = _counts(units)
    return tp / (tp + fp) if tp + fp else np.nan


def recall(units):
    tp, _, fn, _ = _counts(units)
    return tp / (tp + fn) if tp + fn else np.nan


def f1(units, always: bool = False):
    tp, fp, fn, n = _counts(units, always)
    return 2 * tp / (2 * tp + fp + fn) if n and tp + fp + fn else np.nan


def f1_always(units):
    """The always-end baseline: it ends at every point, so precision = the base rate, recall = 1."""
    return f1(units, always=True)


def base_rate(units):
    tp, _, fn, n = _counts(units)
    return (tp + fn) / n if n else np.nan


POSITION_RULES = range(1, 9)


def f1_position(units):
    """The position baseline: the best F1 of "end at each of the first K decisions, go on after", K = 1..8, chosen
    on these same points (optimistic). On ShareGPT's held-out decisions such a rule (K = 2) reads 0.336 where
    always-end reads 0.256: a user that beats only always-end may have learned no more than the turn position."""
    pairs = [(k, t) for u in units for k, (_, t) in zip(u.get("end_ordinals") or (), u.get("ends") or ())]
    if not pairs:
        return np.nan
    ends = sum(t for _, t in pairs)
    scores = [2 * sum(t for k, t in pairs if k <= top) / (sum(k <= top for k, _ in pairs) + ends)
              for top in POSITION_RULES]
    return max(scores) if ends else np.nan
