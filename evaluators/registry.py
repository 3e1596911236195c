"""The named evaluators of `userlm evaluate`: each scores a group of metrics (declared in evaluators/metrics.py)
on the run's units and, where it has them, on the real humans'."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from evaluators import metrics as M
from evaluators.reference import real_humans
from evaluators.stats import NA, bootstrap_ci
from userlm.io import UserError


@dataclass
class Context:
    units: list[dict]
    reference: list[dict] | None
    run_info: dict
    classifier_dir: str | None = None
    encoder: str = "embedded:minilm"
    reference_dir: str | None = None
    user_model: str | None = None
    base_model: str | None = None
    perplexity_examples: int = 48
    termination_conversations: int = 32
    console: object = None


@dataclass
class Evaluation:
    """An evaluator's metrics ({metric: {"run": ci, "reference"?: ci}}), and what it adds to the report beside
    them (the classifier's card, per-turn P(AI) for the plots)."""
    metrics: dict
    report: dict = field(default_factory=dict)


def scored(ctx: Context, names: list[str], inputs: M.Inputs | None = None) -> dict:
    """Each metric's statistic on the run, and on the real humans where the metric scores them; metrics measured
    against the real humans are left out without them."""
    inputs = inputs or M.Inputs(reference=ctx.reference or [])
    out = {}
    for name in names:
        metric = M.METRICS[name]
        if metric.needs_reference and not ctx.reference:
            continue
        statistic = metric.statistic(inputs)
        out[name] = {"run": bootstrap_ci(ctx.units, statistic, set_based=metric.set_based, bounded=metric.bounded)}
        if ctx.reference and metric.reference_row:
            out[name]["reference"] = bootstrap_ci(ctx.reference, statistic, set_based=metric.set_based,
                                                   bounded=metric.bounded)
    return out


def all_texts(ctx: Context) -> list[str]:
    return M.distinct_turns(ctx.units, ctx.reference or [])


def ai_voice(ctx: Context) -> Evaluation:
    from evaluators.classifier import load_classifier
    from evaluators.classifier_guard import check_held_out

    clf = load_classifier(ctx.classifier_dir, ctx.console, data_dir=ctx.reference_dir)
    check_held_out(clf.manifest, ctx.run_info, f"the classifier {ctx.classifier_dir or 'in the cache'}")
    texts = all_texts(ctx)
    p = dict(zip(texts, clf.p_ai(texts)))
    leaked = clf.trained_on(M.all_turns(ctx.reference or []))
    if leaked:  # scored turns the classifier was trained on say nothing about held-out people: refused
        raise UserError(f"{ctx.reference_dir}: {leaked} reference turns were in the training rows of the classifier "
                        f"{clf.version}; use the data dir it was trained on, or train one on this data")
    test = clf.manifest["test"]
    card = {"version": clf.version, "features": clf.manifest["features"], "test_auroc": clf.manifest["test_auroc"],
            "test_auroc_length_matched": clf.manifest["test_auroc_length_matched"],
            "word_count_auroc": test["overall"]["word_count_baseline"], "reference_turns_in_training": leaked,
            "generators": clf.manifest.get("generators", []), "test": test}
    inputs = M.Inputs(p_ai=p, reference=ctx.reference or [])
    metrics = scored(ctx, ["human_likeness", "ai_voice_rate"], inputs)
    return Evaluation(metrics, {  # P(AI) of every turn (1.0 where degenerate), kept for the report's plots
        "classifier": card, "p_ai_run": [round(v, 4) for v in M.turn_p_ai(inputs, ctx.units)],
        "p_ai_reference": [round(v, 4) for v in M.turn_p_ai(inputs, ctx.reference or [])]})


def behaviour(ctx: Context) -> Evaluation:
    out = scored(ctx, ["role_adherence", "termination_rate", "echo_rate", "mean_user_turns", "mean_turn_words", "truncated_share",
                       "distinct_1", "distinct_2", "turn_length_w1", "conversation_length_w1"])
    if ctx.reference and all(u["ended_by_user"] is None for u in ctx.reference):
        out["termination_rate"]["reference"]["note"] = "n/a: the reference source records no conversation ends"
    if ctx.run_info.get("mode") == "replay" and "termination_rate" in out:  # every replay runs to the real end
        na = dict(NA, note="n/a in a replay: the user's ends are scored point by point in end_f1")
        out["termination_rate"] = {side: dict(na) for side in out["termination_rate"]}
    return Evaluation(out)


def diversity(ctx: Context) -> Evaluation:
    from evaluators.cache import embed

    texts = all_texts(ctx)
    inputs = M.Inputs(vectors=dict(zip(texts, embed(texts, ctx.encoder))), reference=ctx.reference or [])
    out = scored(ctx, ["diversity_all", "vendi_all", "diversity_first", "diversity_ratio_to_human"], inputs)
    if "diversity_ratio_to_human" in out:  # the real humans' ratio to themselves, by definition
        out["diversity_ratio_to_human"]["reference"] = {"value": 1.0, "ci_low": 1.0, "ci_high": 1.0, "n": 0}
    return Evaluation(out)


def perplexity(ctx: Context) -> Evaluation:
    from evaluators.perplexity import perplexity_unit_sets
    from userlm.data.prepare import read_split

    if not ctx.reference_dir:
        return Evaluation({})
    with_intent = bool((ctx.run_info.get("user_adapter_manifest") or {}).get("trained_with_intent"))
    sets, _, _ = perplexity_unit_sets(ctx.user_model or ctx.run_info["config"]["user"], ctx.reference_dir,
                                      read_split(ctx.reference_dir, "test"), ctx.perplexity_examples,
                                      base_model=ctx.base_model, with_intent=with_intent)
    # per word, resampled by dedup unit (evaluators/word_perplexity.py)
    return Evaluation({name: {"run": bootstrap_ci(groups, stat)} for name, (stat, groups) in sets.items()})


def intent(ctx: Context) -> Evaluation:
    """Intent adherence and decomposition of the run, beside real held-out people with their written intents."""
    import numpy as np

    from evaluators.cache import embed
    from evaluators.intent import mean_of, scenario_intents, score_units

    def embedder(texts):
        return embed(texts, ctx.encoder)

    if not any(u.get("intent") for u in ctx.units):
        return Evaluation({})
    reference = real_humans(ctx.reference_dir, len(ctx.units), with_intents_only=True) if ctx.reference_dir else []
    # One pool of intents for the hard negatives of the run and the people alike (the everyday scenarios' too,
    # so that a run over a few scenarios still has constraints to draw from).
    pool = [u["intent"] for u in ctx.units + reference if u.get("intent")] + scenario_intents()
    score_units(ctx.units, embedder, pool)
    score_units(reference, embedder, pool)
    out = {}
    for name in ("intent_adherence", "intent_topic", "intent_checklist", "intent_decomposition"):
        out[name] = {"run": bootstrap_ci(ctx.units, mean_of(name))}
        if reference:
            out[name]["reference"] = bootstrap_ci(reference, mean_of(name))
        for row, units in (("run", ctx.units), ("reference", reference)):
            if row in out[name]:  # n: the conversations scored (an intent without constraints has no checklist)
                out[name][row]["n"] = int(sum(np.isfinite(u.get(name, np.nan)) for u in units))
                if not out[name][row]["n"]:
                    out[name][row]["note"] = "n/a: no intent with constraints (and hard negatives) to test"
    return Evaluation(out)


def termination(ctx: Context) -> Evaluation:
    """End-of-conversation precision/recall/F1 on held-out real conversations with recorded ends (n/a without)."""
    from evaluators.perplexity import perplexity_examples, perplexity_setup
    from evaluators.termination import termination_report

    if not ctx.reference_dir or ctx.run_info.get("mode") == "replay":  # a replay run's own points: `people`
        return Evaluation({})
    model, system, _ = perplexity_setup(ctx.user_model or ctx.run_info["config"]["user"])
    report = termination_report(model, system, perplexity_examples(ctx.reference_dir, "test"),
                                limit=ctx.termination_conversations)
    if report is None:  # shown as n/a: the data cannot say where people stopped (OASST)
        if ctx.console:
            ctx.console.print("termination: n/a (the reference data records no real end of conversation)")
        empty = dict(NA, note="no real ends in the reference")
        return Evaluation({name: {"run": dict(empty)}
                           for name in ("end_f1", "end_f1_always", "end_precision", "end_recall",
                                        "end_base_rate")})
    return Evaluation({name: {"run": ci} for name, ci in report.items()})


def people(ctx: Context) -> Evaluation:
    """The run against people like for like: discriminability, distribution_mmd and embedding_mmd with controls, end F1
    from a replay run's points (evaluators/against_people.py)."""
    from evaluators.against_people import evaluate
    from evaluators.cache import embed

    metrics, card = evaluate(ctx.units, ctx.reference_dir, embed=lambda texts: embed(texts, ctx.encoder))
    return Evaluation(metrics, {"against_people": card})


EVALUATORS: dict[str, Callable[[Context], Evaluation]] = {
    "people": people, "ai_voice": ai_voice, "behaviour": behaviour, "diversity": diversity, "perplexity": perplexity,
    "termination": termination, "intent": intent,
}


def register(name: str, fn: Callable[[Context], Evaluation]) -> None:
    """Plug in an evaluator: fn(Context) -> Evaluation({metric: {"run": ci, "reference"?: ci}})."""
    EVALUATORS[name] = fn
