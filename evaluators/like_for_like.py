"""Like for like: the people a run is compared with are cut the way the run was.

A replay run (run.json "mode": "replay") carries its own people: each record's `points` pair the model's
turn with the person's turn in the same context. An ordinary self-play run does not, so its people are
held-out real conversations chosen alike: as many conversations as the run has, the user turns at the same
positions (conversation i of the run against real conversation i, restricted to the positions both have),
and each person's turn cut to the run's token budget (the word count the run's own capped turns reached: the
median words of its turns that hit max_new_tokens, or where none did, that budget in the run's own words per
token; `word_budget`). Word counts stand in for tokens so
that no tokenizer has to load; a capped turn and a cut person's turn both stop mid-sentence at about the same
length. Everything here is pure Python over units (evaluators/reference.py's shape)."""

from __future__ import annotations

import statistics


def is_replay(units: list[dict]) -> bool:
    return any(u.get("points") is not None for u in units)


def intents_only(units: list[dict]) -> bool:
    """A replay whose conversations all carry a written intent (`--with-intent`): its people are drawn from the
    conversations with one, so other people compared with them are drawn so too."""
    return is_replay(units) and all(u.get("intent") for u in units)


def canonical(units: list[dict]) -> list[dict]:
    """The run's conversations (the same dicts) in one order, whatever order they were read in: by scenario, then
    sample (numerically). Everything here pairs by position (unit i with real conversation i, halves even/odd) and
    the discriminator's folds follow the order, so `evaluate` (a run's file order) and `compare` (its pairing order)
    read the same number off the same run only in one such order."""
    def key(u: dict):
        head, _, tail = str(u.get("id", "")).rpartition("#")
        return (head, not tail.isdigit(), int(tail) if tail.isdigit() else 0, tail)
    return sorted(units, key=key)


def replay_pairs(unit: dict) -> tuple[list[str], list[str]]:
    """(model's turns, people's turns) at the points where both wrote a turn, in order."""
    pairs = [(p["generated"], p["real"]) for p in unit.get("points") or []
             if isinstance(p.get("generated"), str) and isinstance(p.get("real"), str)]
    return [g for g, _ in pairs], [r for _, r in pairs]


def word_budget(units: list[dict]) -> int | None:
    """Words a capped turn of the run reaches: the median over its truncated turns; where none was capped, the
    user's token budget (u["token_budget"], from run.json) times the run's own words per generated token. A run
    that never reached its cap still could not have written a longer turn, so people's longer turns (pasted
    documents: 301 words against the cap's ~120 in the demo) are cut for it too. None without either."""
    capped = [len(t.split()) for u in units for t, cut in zip(u["user_turns"], u.get("truncated", [])) if cut]
    if capped:
        return int(statistics.median(capped))
    budgets = {u.get("token_budget") for u in units}
    counted = [(len(t.split()), n) for u in units for t, n in zip(u["user_turns"], u.get("tokens", []))
               if isinstance(n, int) and n > 0]
    if len(budgets) != 1 or None in budgets or not counted:
        return None
    return max(1, round(budgets.pop() * sum(w for w, _ in counted) / sum(n for _, n in counted)))


def cut(text: str, budget: int | None) -> str:
    words = text.split()
    return text if budget is None or len(words) <= budget else " ".join(words[:budget])


def matched_people(units: list[dict], pool: list[list[str]], budget: int | None) -> list[tuple[list, list]]:
    """For each run unit i: (its turns, pool[i]'s turns) at the positions both have, people's cut to budget."""
    out = []
    for unit, people in zip(units, pool):
        k = min(len(unit["user_turns"]), len(people))
        out.append((list(unit["user_turns"][:k]), [cut(t, budget) for t in people[:k]]))
    return out


def attach_sides(units: list[dict], pool: list[list[str]] | None = None) -> dict:
    """Puts "model_turns" and "people_turns" (equally long, position by position) on each run unit, in place:
    from the points of a replay run, else against `pool` (real conversations' user turns) chosen alike.
    Returns what was done: {"source": "replay" | "reference" | None, "budget_words", "note"}."""
    budget = word_budget(units)
    if is_replay(units):
        for u in units:
            model, people = replay_pairs(u)
            u["model_turns"], u["people_turns"] = model, [cut(t, budget) for t in people]
        return {"source": "replay", "budget_words": budget,
                "note": "people's turns in the same contexts" + (f", cut to {budget} words" if budget else "")}
    if not pool:
        for u in units:
            u["model_turns"], u["people_turns"] = [], []
        return {"source": None, "budget_words": None, "note": "n/a: a self-play run needs --reference for people"}
    for u in units[len(pool):]:  # more conversations than the reference holds: these stay out (counted)
        u["model_turns"], u["people_turns"] = [], []
    for u, (model, people) in zip(units, matched_people(units, pool, budget)):
        u["model_turns"], u["people_turns"] = model, people
    return {"source": "reference", "budget_words": budget, "unmatched": max(0, len(units) - len(pool)),
            "note": f"{min(len(units), len(pool))} real conversations, same turn positions, people's turns "
                    + (f"cut to {budget} words (what the run's token budget holds)" if budget is not None
                       else "not cut (the run's token budget is not known)")}


def people_units(units: list[dict]) -> list[dict]:
    """The people's side of the run's comparison as reference units (for every metric's reference row)."""
    # ended_by_user: None, as for the run's units (a replay's ends are end_f1's; self-play people are cut alike)
    return [{"id": u["id"], "scenario_id": "real", "intent": u.get("intent", ""), "user_turns": list(u["people_turns"]),
             "ended_by_user": None, "assistant_before": u.get("people_before")}  # their contexts (echo_rate)
            for u in units]


def pairs_of(sides_a: list[list[str]], sides_b: list[list[str]]) -> list[dict]:
    """Control units: conversation i of A (labelled as the "model" side) beside conversation i of B, at the
    positions both have."""
    out = []
    for i, (a, b) in enumerate(zip(sides_a, sides_b)):
        k = min(len(a), len(b))
        if k:
            out.append({"id": f"control#{i}", "model_turns": list(a[:k]), "people_turns": list(b[:k])})
    return out


def halves(sides: list[list[str]]) -> list[dict]:
    """Two disjoint halves of the given conversations, paired even with odd (neighbours: in a self-play run the
    same scenario with another seed), as control units."""
    return pairs_of(sides[0::2], sides[1::2])
