"""How a run's conversations stopped (issue 24): each stop reason counted (metrics.json `stop_reasons`), with the
user-side guardrails' firings from run.json (`guardrails`), as a markdown section for metrics.md and report.md.

Self-play reasons (simulator/loop.py): user_ended (the user wrote the end marker), max_turns (the scenario's cap),
empty_turn, repeated_turn, degenerate_turn; a --replay conversation is `replayed` (it runs to the real end; where
the model chose to end is in its points and end_f1). Read here, a user that ended with its very first turn, before
writing anything, `ended_before_speaking`: no person does that (a conversation a person ends has their message in
it), so it is a failure of the user, counted apart and not as a choice to end (termination_rate leaves it out)."""

from __future__ import annotations

from collections import Counter

MEANING = {"user_ended": "the user ended", "max_turns": "the turn cap", "empty_turn": "an empty user turn",
           "repeated_turn": "a repeated user turn", "degenerate_turn": "a degenerate user turn",
           "replayed": "replayed to the real end", "ended_before_speaking": "the user ended before its first turn"}


def stop_reason(record: dict) -> str:
    """A transcript record's stop reason, `ended_before_speaking` for an end with no user turn (read from the
    turns, so runs written before this existed read the same way)."""
    reason = str(record.get("stop_reason"))
    if reason == "user_ended" and "turns" in record and not any(t.get("role") == "user" for t in record["turns"]):
        return "ended_before_speaking"
    return reason


def stop_reasons(records: list[dict]) -> dict[str, int]:
    """{reason: conversations}, most frequent first (ties by name)."""
    counts = Counter(stop_reason(r) for r in records)
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def _cell(reasons: dict[str, int], reason: str) -> str:
    n, total = reasons.get(reason, 0), sum(reasons.values())
    return f"{n} ({100 * n / total:.0f}%)" if total else "0"


def stops_markdown(reports: list[dict]) -> str:
    """A section: one row per run, one column per stop reason, and the guardrails that fired."""
    reports = [r for r in reports if r.get("stop_reasons")]
    if not reports:
        return ""
    reasons = sorted({k for r in reports for k in r["stop_reasons"]},
                     key=lambda k: (-sum(r["stop_reasons"].get(k, 0) for r in reports), k))
    head = "| run | conversations | " + " | ".join(f"{k} ({MEANING.get(k, k)})" for k in reasons) + " |\n"
    lines = [head, "|" + "---|" * (len(reasons) + 2) + "\n"]
    lines += [f"| {r['label']} | {sum(r['stop_reasons'].values())} | "
              + " | ".join(_cell(r["stop_reasons"], k) for k in reasons) + " |\n" for r in reports]
    out = "## How conversations stopped\n\n" + "".join(lines)
    fired = [(r["label"], r["guardrails"]) for r in reports if r.get("guardrails")]
    for label, g in fired:
        counts = ", ".join(f"{k} {v}" for k, v in g.get("fired", {}).items()) or "none fired"
        options = ", ".join(f"{k}={v}" for k, v in g.get("options", {}).items())
        out += f"\n- {label}: user guardrails {options}: {counts}"
    return out + ("\n" if fired else "")
