"""The `people` evaluator: the run's user turns against people's, like for like (evaluators/like_for_like.py):
discriminability (evaluators/discriminability.py), distribution_mmd and embedding_mmd (evaluators/distance.py)
with their controls, and end F1 from a replay run's decision points (evaluators/ends.py).

Controls, on the same pipeline at the same size:
  - discriminability_people / distribution_mmd_people / embedding_mmd_people: the people the run is compared with against as many other
    held-out real conversations, cut alike (same positions, same word budget); without a reference dir, two
    disjoint halves of the run's people. Under the null their CI should hold 0.5 (MMD: 0).
  - discriminability_self: two disjoint halves of the run's own conversations (neighbours: in a self-play run,
    the same scenario with another seed).

Public API: `prepare(units, reference_dir, ...)` scores a run's units in place (so that compare's paired
bootstrap reads the metrics' statistics unchanged) and returns the controls; `people_reference(units,
reference_dir)` is the like-for-like reference `evaluate` scores every metric's human row on."""

from __future__ import annotations

from evaluators import discriminability as D
from evaluators import distance, ends
from evaluators import like_for_like as L
from evaluators.reference import reference_units
from evaluators.stats import NA, bootstrap_ci


def reference_pool(units: list[dict], reference_dir: str | None, size: int) -> list[list[str]]:
    """User turns of up to `size` held-out real conversations (a seeded sample, one per tree), leaving out the
    conversations a replay run replays."""
    return [r["user_turns"] for r in reference_pool_units(units, reference_dir, size)]


def reference_pool_units(units: list[dict], reference_dir: str | None, size: int) -> list[dict]:
    """Drawn the way the run's contexts were: a replay whose conversations all have a written intent (`--with-intent`
    replays only those) against other conversations with one. Conversations whose intent was written and passed the
    checks are not a random sample of people (a flagged intent drops its conversation): on the demo's 8 replayed
    conversations the people-vs-people control read 0.694 [0.538, 0.911] against all others, 0.459 [0.284, 0.735]
    against others with intents."""
    if not reference_dir:
        return []
    replayed = {u.get("conversation_id") for u in units}
    real = reference_units(reference_dir, limit=size + len(replayed), with_intents_only=L.intents_only(units))
    return [r for r in real if r["id"] not in replayed][:size]


def people_reference(units: list[dict], reference_dir: str | None) -> tuple[list[dict] | None, dict]:
    """The run's units get their model and people sides (in place); returns the people's side as reference
    units (None for a self-play run without a reference dir) and what was matched."""
    units = L.canonical(units)  # pairing by position: one order for evaluate and compare (like_for_like.py)
    # One draw of 2N serves the run's people (the first N) and the control's other people (the next N).
    pool = [] if L.is_replay(units) else reference_pool_units(units, reference_dir, 2 * len(units))[:len(units)]
    info = L.attach_sides(units, [r["user_turns"] for r in pool])
    for u, r in zip(units, pool):  # the matched people's contexts (echo_rate), position by position
        u["people_before"] = r["assistant_before"][:len(u["people_turns"])]
    return (L.people_units(units) if info["source"] else None), info


def prepare(units: list[dict], reference_dir: str | None = None, embed=None, seed: int = 0) -> dict:
    """Out-of-fold discriminator scores (u["disc"]), embeddings and style rows (u["emb"], u["style"], when `embed(texts) -> vectors` is
    given) and end decisions (u["ends"]) on the run's units, in place; returns {"info", "controls": {"people":
    units, "self": units}} with the controls scored alike."""
    units = L.canonical(units)
    info = people_reference(units, reference_dir)[1]
    budget = L.word_budget(units)
    people = [u["people_turns"] for u in units]
    others = [[L.cut(t, budget) for t in turns] for turns in
              reference_pool(units, reference_dir, 2 * len(units))[len(units) if not L.is_replay(units) else 0:]
              [:len(units)]]
    controls = {"people": L.pairs_of(people, others) if len(others) >= len(people) else L.halves(people),
                "self": L.halves([u["model_turns"] for u in units])}
    info["people_control"] = ("other real conversations cut alike" + (
        " (with written intents, like the replayed ones)" if L.intents_only(units) else "")) \
        if len(others) >= len(people) else "two halves of the run's people"
    info["discriminator"] = D.score(units, seed)
    for control in controls.values():
        D.score(control, seed)
    if embed is not None:
        for group in (units, *controls.values()):
            distance.attach_embeddings(group, embed)
    info["end_points"] = ends.attach_ends(units)
    return {"info": info, "controls": controls}


def _ci(units: list[dict], statistic, set_based: bool = False, note: str | None = None) -> dict:
    ci = bootstrap_ci(units, statistic, set_based=set_based)
    if ci["value"] is None or ci["value"] != ci["value"]:  # nan: not defined on these units
        ci = dict(NA, note=note or "n/a: fewer than 2 conversations with turns of both sides")
    return ci


def evaluate(units: list[dict], reference_dir: str | None, embed=None, seed: int = 0) -> tuple[dict, dict]:
    """({metric: {"run": ci}}, the report's "against_people" card) for a run's units."""
    units = L.canonical(units)  # the same value (and interval) whatever order the caller read them in
    if not L.is_replay(units) and not reference_dir:
        note = "n/a: a self-play run is compared with people only with --reference"
        return {"discriminability": {"run": dict(NA, note=note)}}, {"note": note}
    prepared = prepare(units, reference_dir, embed, seed)
    controls = prepared["controls"]
    out = {"discriminability": {"run": _ci(units, D.auroc)},
           "discriminability_people": {"run": _ci(controls["people"], D.auroc)},
           "discriminability_self": {"run": _ci(controls["self"], D.auroc)}}
    if embed is not None:
        for name, fn in (("distribution_mmd", distance.distribution_mmd), ("embedding_mmd", distance.embedding_mmd)):
            out[name] = {"run": _ci(units, fn, set_based=True)}
            out[f"{name}_people"] = {"run": _ci(controls["people"], fn, set_based=True)}
    if L.is_replay(units):
        if prepared["info"]["end_points"]:
            for name, fn in (("end_f1", ends.f1), ("end_f1_always", ends.f1_always),
                             ("end_f1_position", ends.f1_position), ("end_precision", ends.precision), ("end_recall", ends.recall),
                             ("end_base_rate", ends.base_rate)):
                out[name] = {"run": _ci(units, fn, note="n/a: no end decided on these points")}
        else:
            out["end_f1"] = {"run": dict(NA, note=ends.NO_ENDS)}
    card = {**prepared["info"], "features": {"tfidf": ["word 1-2-grams", "char_wb 1-4-grams (case kept)"],
                                             "style": D.STYLE_NAMES}}
    return out, card
