"""Does a simulated user pursue its scenario's intent, constraints included, and how much of it does it say at once?

An intent is one sentence: a task and its constraints ("You want to plan a week of cheap vegetarian meals for
about 40 dollars, without mushrooms"). `clauses` splits it at commas, semicolons and constraint words (with,
without, using, ...): the first clause is the task, the rest are the constraints.

`intent_adherence` (hard negatives): the candidates of every conversation are its own intent and K others that
keep its task but carry the constraints of the K intents nearest to it by MiniLM embedding (the same task with
other constraints); the score is the share of those K its user turns are less similar to than to its own intent
(MiniLM cosine; ties count half). A user on the right topic that ignores the constraints scores about 0.5
(chance); one that says its constraints scores well above. The same K for every row; an intent without
constraints, or without K other constraint sets in the pool, is n/a (counted in `n`).

`intent_topic` (the old `intent_adherence`): the same share over the other intents in play as they are: it
measures topic, and a user that ignores every constraint scores 1 there.

`intent_checklist`: the share of the intent's constraints the user turns say (half or more of a constraint's
content words, compared on their first 5 letters). `intent_decomposition`: the share the first user turn already
says. People reveal bit by bit (UserLM-8b, arXiv 2510.06552): their decomposition is below their checklist;
a user that pastes its intent first scores decomposition = checklist.
"""

from __future__ import annotations

import re

import numpy as np

K_NEGATIVES = 8
_STOP = set("""a an the and or but if then to of in on at for from by with without about into over under
is are was were be been being do does did have has had can could will would should may might must you your
yours want wants wanted need needs get gets how what which who whom whose when where why that this these those
it its they them their there here some any all each more most less very just also not no so than too goal""".split())
_SPLIT = re.compile(r"[,;:]\s+|\.\s+|\s(?=(?:with|without|using|including|but|except|while|so that|not|no|under|"
                    r"for|who|from|within|avoiding|focusing on|focus on|mentioning|and focus)\s)", re.I)


def content_words(text: str) -> set[str]:
    return {w[:5] for w in re.findall(r"[^\W\d_]{3,}|\d+", text.lower()) if w not in _STOP}


def clauses(intent: str) -> tuple[str, list[str]]:
    """(task, constraints) of an intent sentence. A clause of one content word joins the next ("ready" + "in under
    30 minutes"); the task takes clauses until it has 3 content words ("get a short" + "polite email ...")."""
    text = intent.strip()
    cuts = [0, *(m.end() if m.group().strip() else m.start() + 1 for m in _SPLIT.finditer(text)), len(text)]
    spans = [(a, b) for a, b in zip(cuts, cuts[1:]) if content_words(text[a:b])]
    merged: list[list[int]] = []
    for a, b in spans:  # merged spans keep the intent's own words and separators between them
        if merged and (len(content_words(text[slice(*merged[-1])])) < 2
                       or (len(merged) == 1 and len(content_words(text[slice(*merged[0])])) < 3)):
            merged[-1][1] = b
        else:
            merged.append([a, b])
    merged = [text[a:b].strip(" ,;:.") for a, b in merged]
    if not merged:
        return intent.strip(), []
    return merged[0], list(dict.fromkeys(merged[1:]))


def said(constraint: str, text: str) -> bool:
    wanted = content_words(constraint)
    return bool(wanted) and len(wanted & content_words(text)) >= 0.5 * len(wanted)


def checklist(intent: str, text: str) -> float:
    constraints = clauses(intent)[1]
    return float(np.mean([said(c, text) for c in constraints])) if constraints else np.nan


def compose(task: str, constraints: list[str]) -> str:
    """An intent from its clauses; own and negative candidates are written alike, so the form tells nothing."""
    return ", ".join([task, *constraints])


def hard_negatives(intents: list[str], pool: list[str], embed, k: int = K_NEGATIVES) -> dict[str, list[str] | None]:
    """For each intent: [its own candidate, then k with its task and the constraints of the k pool intents nearest
    to it (disjoint constraint sets only)], or None where the pool has fewer than k."""
    pool = sorted(set(pool) | set(intents))
    vectors = embed(pool)
    index = {p: i for i, p in enumerate(pool)}
    parsed = {p: clauses(p) for p in pool}
    out = {}
    for intent in set(intents):
        task, own = parsed[intent]
        if not own:
            out[intent] = None
            continue
        order = np.argsort(-(vectors @ vectors[index[intent]]), kind="stable")
        negatives, seen = [], {tuple(own)}
        for j in order:
            other = parsed[pool[j]][1]
            if other and tuple(other) not in seen and not set(map(str.lower, other)) & set(map(str.lower, own)):
                seen.add(tuple(other))
                negatives.append(compose(task, other))
            if len(negatives) == k:
                break
        out[intent] = [compose(task, own), *negatives] if len(negatives) == k else None
    return out


def score_units(units: list[dict], embed, pool: list[str] | None = None, k: int = K_NEGATIVES) -> None:
    """Adds intent_adherence, intent_topic, intent_checklist and intent_decomposition to every unit that has an
    intent and user turns. `embed(texts)` returns unit-normalised vectors; `pool` is the intents the hard
    negatives take constraints from (default: these units' intents); score people and runs with one pool."""
    scored = [u for u in units if u.get("intent") and u["user_turns"]]
    if not scored:
        return
    intents = sorted({u["intent"] for u in scored})
    negatives = hard_negatives(intents, list(pool or []) + intents, embed, k)
    tasks = {i: clauses(i)[0] for i in intents}
    candidates = sorted(set(intents) | {n for ns in negatives.values() if ns for n in ns} | set(tasks.values()))
    said_texts = ["\n".join(u["user_turns"]) for u in scored]
    vectors = embed(candidates + said_texts)
    at = {c: i for i, c in enumerate(candidates)}
    cand = vectors[: len(candidates)]
    sims = vectors[len(candidates):] @ cand.T  # [units, candidates]
    for row, unit, text in zip(sims, scored, said_texts):
        own = row[at[unit["intent"]]]
        others = np.asarray([row[at[i]] for i in intents if i != unit["intent"]])
        unit["intent_topic"] = float(np.mean(own > others)) if len(others) else np.nan
        hard = negatives[unit["intent"]]
        if hard:
            # Each candidate's lift: how much closer the user turns are to it than the bare task is. A user that
            # says the task alone lifts no candidate; one that says its constraints lifts its own.
            task = cand[at[tasks[unit["intent"]]]]
            lift = np.asarray([row[at[c]] - task @ cand[at[c]] for c in hard])
            mine, neg = lift[0], lift[1:]
            unit["intent_adherence"] = float(np.mean((mine > neg) + 0.5 * (mine == neg)))
        else:
            unit["intent_adherence"] = np.nan
        unit["intent_checklist"] = checklist(unit["intent"], text)
        unit["intent_decomposition"] = checklist(unit["intent"], unit["user_turns"][0])


def scenario_intents() -> list[str]:
    """The intents of the project's everyday scenarios (part of every hard-negative pool)."""
    from evaluators.classifier_config import SCENARIOS
    from userlm.scenarios import load_scenarios

    return [s.intent for s in load_scenarios(str(SCENARIOS)) if s.intent] if SCENARIOS.exists() else []


def mean_of(key: str):
    """The statistic for bootstrap_ci: the mean of a per-unit score over the units that have it."""
    def statistic(units: list[dict]) -> float:
        values = [u[key] for u in units if np.isfinite(u.get(key, np.nan))]
        return float(np.mean(values)) if values else np.nan
    return statistic
