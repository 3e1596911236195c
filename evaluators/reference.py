"""Real humans as units: held-out prepared conversations turned into the same shape as simulated ones."""

from __future__ import annotations

import random

from evaluators.echo import assistant_before, people_before
from evaluators.stops import stop_reason
from userlm.data.intents import load_intents
from userlm.data.prepare import read_split


def reference_units(data_dir: str, split: str = "test", limit: int = 300, seed: int = 0,
                    with_intents_only: bool = False) -> list[dict]:
    """One thread per tree (branching trees do not weigh more than linear ones), a seeded sample of `limit`.
    Each unit carries the conversation's written intent where `userlm data intents` wrote one;
    `with_intents_only` keeps only those (the reference for the intent metrics)."""
    intents = load_intents(data_dir, required=False)
    by_tree = {}
    for ex in read_split(data_dir, split):
        if not with_intents_only or ex["id"] in intents:
            by_tree.setdefault(ex["tree_id"], ex)
    examples = list(by_tree.values())
    examples = random.Random(seed).sample(examples, min(limit, len(examples)))
    # ended_by_user is None where the source does not record where people stopped (OASST): termination n/a.
    return [{"id": ex["id"], "scenario_id": "real", "intent": intents.get(ex["id"], ""),
             "user_turns": [m["content"] for m in ex["messages"] if m["role"] == "user"],
             "assistant_before": assistant_before(ex["messages"], text="content"),
             "ended_by_user": bool(ex["ends_conversation"]) if ex.get("end_recorded") else None} for ex in examples]


def real_humans(data_dir: str, conversations: int, with_intents_only: bool = False) -> list[dict]:
    """The one definition of "real humans" that `evaluate`, `report` (through evaluate's metrics.json) and
    `compare` print: the test split of `data_dir`, as many conversations as the run(s) hold, at least 30."""
    return reference_units(data_dir, "test", limit=max(30, conversations), with_intents_only=with_intents_only)


def user_token_budget(run_info: dict | None, scenario_id: str) -> int | None:
    """The user's max_new_tokens in a run (run.json provenance: per scenario in self-play, one in a replay)."""
    sampling = ((run_info or {}).get("provenance") or {}).get("sampling") or {}
    budget = (sampling.get(scenario_id) or sampling).get("user", {}).get("max_new_tokens")
    return budget if isinstance(budget, int) and not isinstance(budget, bool) else None


def transcript_units(records: list[dict], run_info: dict | None = None) -> list[dict]:
    """A replay run's records (CONTRACT: "points") also carry their points and the replayed conversation's id.
    With the run's run.json, each unit also knows the user's token budget (evaluators/like_for_like.py)."""
    return [{"id": f"{r['scenario_id']}#{r['sample']}", "scenario_id": r["scenario_id"],
             "intent": r.get("scenario_intent", ""),
             "user_turns": [t["text"] for t in r["turns"] if t["role"] == "user"],
             "truncated": [bool(t.get("truncated", False)) for t in r["turns"] if t["role"] == "user"],
             "tokens": [t.get("tokens") for t in r["turns"] if t["role"] == "user"],
             "token_budget": user_token_budget(run_info, r["scenario_id"]),
             # a replay runs to the real end: its ends are the points' (end_f1), not the conversation's
             # an end before any user turn is not a conversation the user chose to end (evaluators/stops.py)
             "stop_reason": (reason := stop_reason(r)),
             "ended_by_user": None if "points" in r or reason == "ended_before_speaking" else reason == "user_ended",
             "assistant_before": assistant_before(r["turns"]),
             **({"points": r["points"], "conversation_id": r.get("conversation_id"),
                 "people_before": people_before(r)} if "points" in r else {})}
            for r in records]
