"""Does a simulated user pursue its scenario's intent, and how much of it does it say at once?

`intent_adherence`: for each conversation, the share of the other intents in play that its user turns are
less similar to than to its own (MiniLM cosine). 0.5 is chance whatever the number of intents, so a run over
2 scenarios and real humans over 40 held-out conversations read on one scale. UserLM-8b (arXiv 2510.06552)
reports the same idea as an accuracy over a fixed candidate set.

`intent_decomposition`: the share of the intent's content words that the first user turn already says.
Real people reveal their intent bit by bit (the paper: 1.68 for humans vs 7.68 for prompted GPT-4o on its
own scale); a user that pastes its whole intent first scores near 1.
"""

from __future__ import annotations

import re

import numpy as np

_STOP = set("""a an the and or but if then to of in on at for from by with without about into over under
is are was were be been being do does did have has had can could will would should may might must you your
yours want wants wanted need needs get gets how what which who whom whose when where why that this these those
it its they them their there here some any all each more most less very just also not no so than too""".split())


def content_words(text: str) -> set[str]:
    return {w for w in re.findall(r"[^\W\d_]{3,}", text.lower()) if w not in _STOP}


def decomposition(intent: str, first_turn: str) -> float:
    wanted = content_words(intent)
    return len(wanted & content_words(first_turn)) / len(wanted) if wanted else np.nan


def score_units(units: list[dict], embed) -> None:
    """Adds `intent_adherence` and `intent_decomposition` to every unit that has an intent and user turns.
    `embed(texts)` returns unit-normalised vectors."""
    scored = [u for u in units if u.get("intent") and u["user_turns"]]
    intents = sorted({u["intent"] for u in scored})
    if not scored:
        return
    said = ["\n".join(u["user_turns"]) for u in scored]
    vectors = embed(intents + said)
    intent_vec, said_vec = vectors[: len(intents)], vectors[len(intents):]
    sims = said_vec @ intent_vec.T  # [units, intents]
    for row, unit in zip(sims, scored):
        own = intents.index(unit["intent"])
        others = np.delete(row, own)
        unit["intent_adherence"] = float(np.mean(row[own] > others)) if len(others) else np.nan
        unit["intent_decomposition"] = decomposition(unit["intent"], unit["user_turns"][0])


def mean_of(key: str):
    """The statistic for bootstrap_ci: the mean of a per-unit score over the units that have it."""
    def statistic(units: list[dict]) -> float:
        values = [u[key] for u in units if np.isfinite(u.get(key, np.nan))]
        return float(np.mean(values)) if values else np.nan
    return statistic
