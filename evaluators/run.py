"""`userlm evaluate RUN_DIR`: every named evaluator over a run's user turns, the same over real humans."""

from __future__ import annotations

import csv
import io
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from evaluators import metrics as M
from evaluators.reference import reference_units, transcript_units
from evaluators.stats import bootstrap_ci
from userlm.io import UserError, atomic_write_json, atomic_write_text

METRICS = M.METRICS  # defined once, in evaluators/metrics.py


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
    extra: dict = field(default_factory=dict)


def _both(ctx: Context, name: str, statistic: Callable, set_based: bool = False) -> dict:
    out = {"run": bootstrap_ci(ctx.units, statistic, set_based=set_based)}
    if ctx.reference:
        out["reference"] = bootstrap_ci(ctx.reference, statistic, set_based=set_based)
    return {name: out}


def ai_voice(ctx: Context) -> dict:
    from evaluators.classifier import load_classifier

    clf = load_classifier(ctx.classifier_dir, ctx.console, data_dir=ctx.reference_dir)
    texts = sorted({t for u in ctx.units + (ctx.reference or []) for t in u["user_turns"]})
    p = dict(zip(texts, clf.p_ai(texts)))
    ctx.extra["p_ai"] = p
    leaked = clf.trained_on(M.all_turns(ctx.reference or []))
    if leaked and ctx.console:
        ctx.console.print(f"[red]warning: {leaked} reference turns were in the classifier's training rows[/red]")
    test = clf.manifest["test"]
    ctx.extra["classifier"] = {"version": clf.version, "features": clf.manifest["features"],
                               "test_auroc": clf.manifest["test_auroc"],
                               "test_auroc_length_matched": clf.manifest["test_auroc_length_matched"],
                               "word_count_auroc": test["overall"]["word_count_baseline"],
                               "reference_turns_in_training": leaked, "test": test}
    likeness = lambda us: 1 - float(np.mean([p[t] for t in M.all_turns(us)])) if M.all_turns(us) else np.nan
    rate = lambda us: float(np.mean([p[t] > 0.5 for t in M.all_turns(us)])) if M.all_turns(us) else np.nan
    return {**_both(ctx, "human_likeness", likeness), **_both(ctx, "ai_voice_rate", rate)}


def behaviour(ctx: Context) -> dict:
    out = {}
    for name, fn in (("role_adherence", M.role_adherence), ("termination_rate", M.termination_rate),
                     ("mean_user_turns", M.mean_user_turns), ("mean_turn_words", M.mean_turn_words)):
        out.update(_both(ctx, name, fn))
    if ctx.reference and all(u["ended_by_user"] is None for u in ctx.reference):
        out["termination_rate"]["reference"]["note"] = "n/a: the reference source records no conversation ends"
    out["truncated_share"] = {"run": bootstrap_ci(ctx.units, M.truncated_share)}
    for n in (1, 2):
        out.update(_both(ctx, f"distinct_{n}", lambda us, n=n: M.distinct_n(us, n), set_based=True))
    if ctx.reference:
        real_words = [M.words(t) for t in M.all_turns(ctx.reference)]
        real_lengths = [len(u["user_turns"]) for u in ctx.reference]
        out["turn_length_w1"] = {"run": bootstrap_ci(
            ctx.units, lambda us: M.wasserstein([M.words(t) for t in M.all_turns(us)], real_words))}
        out["conversation_length_w1"] = {"run": bootstrap_ci(
            ctx.units, lambda us: M.wasserstein([len(u["user_turns"]) for u in us], real_lengths))}
    return out


def diversity(ctx: Context) -> dict:
    from evaluators.cache import embed

    texts = sorted({t for u in ctx.units + (ctx.reference or []) for t in u["user_turns"]})
    vec = dict(zip(texts, embed(texts, ctx.encoder)))
    stack = lambda turns: np.stack([vec[t] for t in turns]) if turns else np.zeros((0, 384))
    div_all = lambda us: M.mean_pairwise_cosine_distance(stack(M.all_turns(us)))
    vendi_all = lambda us: M.vendi_score(stack(M.all_turns(us)))

    def div_first(us):
        by_scenario = {}
        for u in us:
            if u["user_turns"]:
                by_scenario.setdefault(u["scenario_id"], []).append(u["user_turns"][0])
        values = [M.mean_pairwise_cosine_distance(stack(v)) for v in by_scenario.values() if len(v) > 1]
        return float(np.mean(values)) if values else np.nan

    out = {**_both(ctx, "diversity_all", div_all, set_based=True), **_both(ctx, "vendi_all", vendi_all, set_based=True),
           "diversity_first": {"run": bootstrap_ci(ctx.units, div_first, set_based=True)}}
    if ctx.reference:
        human = div_all(ctx.reference)
        out["diversity_ratio_to_human"] = {"run": bootstrap_ci(ctx.units, lambda us: div_all(us) / human, set_based=True),
                                           "reference": {"value": 1.0, "ci_low": 1.0, "ci_high": 1.0, "n": 0}}
    return out


def perplexity_units(model_ref: str, system: str | list[str], examples: list[dict], max_length: int = 384,
                     batch_tokens: int | None = None) -> list[tuple]:
    """Per example (sum NLL, tokens) of the human turns (and end marker) in the user model's flipped format,
    under one system prompt or one per example. The backend batches them (`batch_tokens` padded tokens a
    batch at most; None = its own choice for the device)."""
    from userlm.backends import get_backend
    from userlm.chat import encode_for_training

    backend = get_backend("hf", model_ref, quantization="none", max_batch=16)
    systems = [system] * len(examples) if isinstance(system, str) else system
    encoded = []
    for ex, ex_system in zip(examples, systems):
        enc = encode_for_training(backend.tokenizer, ex, speaker="user", system=ex_system, max_length=max_length)
        if any(label != -100 for label in enc["labels"]):
            encoded.append((enc["input_ids"], enc["labels"]))
    if not encoded:
        return []
    return [(-s, count) for s, count in backend.masked_loglikelihood(encoded, batch_tokens=batch_tokens)]


def _ppl(units) -> float:
    return math.exp(sum(u[0] for u in units) / max(1, sum(u[1] for u in units)))


def perplexity_setup(model: str) -> tuple[str, str, str | None]:
    """(model to load, system prompt it was trained or told with, its base model when it is an adapter)."""
    from userlm.users import parse_user

    user = parse_user(model, "hf")
    system = user.system_prompt.format(intent="") if user.kind == "prompted" else user.system_prompt
    return user.model, system, user.manifest.base_model if user.manifest else None


def perplexity_examples(data_dir: str, split: str = "test", limit: int = 0) -> list[dict]:
    """Real held-out conversations (examples sampled with seed 0 when `limit` is set)."""
    import random

    from userlm.data.prepare import read_split

    examples = read_split(data_dir, split)
    return random.Random(0).sample(examples, min(limit, len(examples))) if limit else examples


def perplexity_of(model: str, data_dir: str, split: str = "test", limit: int = 0, max_length: int = 384,
                  base_model: str | None = None) -> dict:
    """`userlm evaluate perplexity`: the same code as the `perplexity` evaluator, on a split of prepared data.
    Only the targets count (the human turns and the end marker, in the user-model format)."""
    from userlm.chat import USER_MODEL_SYSTEM

    examples = perplexity_examples(data_dir, split, limit)
    if not examples:
        raise UserError(f"{data_dir}: the {split} split holds no example")
    ref, system, base = perplexity_setup(model)
    units = perplexity_units(ref, system, examples, max_length)
    result = {"model": model, "perplexity": _ppl(units), "tokens": sum(u[1] for u in units), "examples": len(units),
              "split": split, "data_dir": str(data_dir)}
    base = base_model or base
    if base:
        base_units = perplexity_units(base, USER_MODEL_SYSTEM, examples, max_length)
        result["base"] = {"model": base, "perplexity": _ppl(base_units), "tokens": sum(u[1] for u in base_units)}
    with_intents = intent_perplexities(ref, system, data_dir, split, limit, max_length)
    if with_intents:  # the split's examples that have written intents, with and without them
        result["intent"] = {"examples": len(with_intents["perplexity_with_intent"]),
                            **{name: _ppl(units) for name, units in with_intents.items()}}
    return result


def intent_perplexities(model: str, system: str, data_dir: str, split: str = "test", limit: int = 0,
                        max_length: int = 384) -> dict:
    """Perplexity with and without the written intent in the system prompt, on the same examples (those of
    the split that `userlm data intents` gave a usable intent): does the model use its intent?"""
    from userlm.chat import user_model_system
    from userlm.data.intents import load_intents

    intents = load_intents(data_dir, required=False)
    examples = [ex for ex in perplexity_examples(data_dir, split) if ex["id"] in intents]
    if limit:
        examples = examples[:limit]
    if not examples:
        return {}
    with_intent = [user_model_system(system, intents[ex["id"]]) for ex in examples]
    return {"perplexity_with_intent": perplexity_units(model, with_intent, examples, max_length),
            "perplexity_without_intent": perplexity_units(model, system, examples, max_length)}


def perplexity(ctx: Context) -> dict:
    from userlm.chat import USER_MODEL_SYSTEM

    if not ctx.reference_dir:
        return {}
    model, system, base = perplexity_setup(ctx.user_model or ctx.run_info["config"]["user"])
    examples = perplexity_examples(ctx.reference_dir, "test", ctx.perplexity_examples)
    out = {"perplexity_real_user_turns": {"run": bootstrap_ci(perplexity_units(model, system, examples), _ppl)}}
    base = ctx.base_model or base
    if base:
        out["perplexity_base_model"] = {"run": bootstrap_ci(perplexity_units(base, USER_MODEL_SYSTEM, examples), _ppl)}
    if (ctx.run_info.get("user_adapter_manifest") or {}).get("trained_with_intent"):
        for name, units in intent_perplexities(model, system, ctx.reference_dir, "test",
                                               ctx.perplexity_examples).items():
            out[name] = {"run": bootstrap_ci(units, _ppl)}
    return out


def intent(ctx: Context) -> dict:
    """Intent adherence and decomposition of the run, beside real held-out people with their written intents."""
    from evaluators.cache import embed
    from evaluators.intent import mean_of, score_units

    def embedder(texts):
        return embed(texts, ctx.encoder)

    if not any(u.get("intent") for u in ctx.units):
        return {}
    score_units(ctx.units, embedder)
    reference = reference_units(ctx.reference_dir, limit=max(30, len(ctx.units)), with_intents_only=True) \
        if ctx.reference_dir else []
    score_units(reference, embedder)
    out = {}
    for name in ("intent_adherence", "intent_decomposition"):
        out[name] = {"run": bootstrap_ci(ctx.units, mean_of(name))}
        if reference:
            out[name]["reference"] = bootstrap_ci(reference, mean_of(name))
    return out


def termination(ctx: Context) -> dict:
    """End-of-conversation precision/recall/F1 on held-out real conversations with recorded ends (n/a without)."""
    from evaluators.termination import termination_report

    if not ctx.reference_dir:
        return {}
    model, system, _ = perplexity_setup(ctx.user_model or ctx.run_info["config"]["user"])
    report = termination_report(model, system, perplexity_examples(ctx.reference_dir, "test"),
                                limit=ctx.termination_conversations)
    if report is None:  # shown as n/a: the data cannot say where people stopped (OASST)
        if ctx.console:
            ctx.console.print("termination: n/a (the reference data records no real end of conversation)")
        empty = {"value": None, "ci_low": None, "ci_high": None, "n": 0, "note": "no real ends in the reference"}
        return {name: {"run": dict(empty)} for name in ("end_f1", "end_precision", "end_recall", "end_base_rate")}
    return {name: {"run": ci} for name, ci in report.items()}


EVALUATORS: dict[str, Callable[[Context], dict]] = {
    "ai_voice": ai_voice, "behaviour": behaviour, "diversity": diversity, "perplexity": perplexity,
    "termination": termination, "intent": intent,
}


def register(name: str, fn: Callable[[Context], dict]) -> None:
    """Plug in an evaluator: fn(Context) -> {metric: {"run": ci, "reference"?: ci}}."""
    EVALUATORS[name] = fn


def evaluate_run(run_dir: str, reference: str | None = None, classifier: str | None = None,
                 user_model: str | None = None, base_model: str | None = None, evaluators: str | None = None,
                 console=None, reference_limit: int | None = None) -> dict:
    from userlm.provenance import library_versions
    from userlm.records import load_run

    run_dir = Path(run_dir)
    run_info, records = load_run(run_dir)  # a finished run only; errors name file, line and field
    units = transcript_units(records)
    if not units:
        raise UserError(f"{run_dir}: transcripts.jsonl holds no conversation")
    names = [n.strip() for n in evaluators.split(",")] if evaluators else list(EVALUATORS)
    unknown = [n for n in names if n not in EVALUATORS]
    if unknown:
        raise UserError(f"unknown evaluator(s): {', '.join(unknown)} (known: {', '.join(EVALUATORS)})")
    # As many real conversations as simulated ones (at least 30): Vendi and distinct-n grow or shrink with
    # the number of turns, so the human row is only comparable at a matching size.
    limit = reference_limit or max(30, len(units))
    ctx = Context(units=units, reference=reference_units(reference, limit=limit) if reference else None,
                  run_info=run_info, classifier_dir=classifier, reference_dir=reference, user_model=user_model,
                  base_model=base_model, console=console)
    results: dict = {}
    for name in names:
        started = time.time()
        results.update(EVALUATORS[name](ctx))
        if console:
            console.print(f"[dim]evaluator {name}: {time.time() - started:.1f} s[/dim]")
    report = {
        "run_dir": str(run_dir), "label": run_dir.name, "user_model": run_info["config"]["user"],
        "user_kind": run_info.get("user_kind"), "assistant_model": run_info["config"]["assistant"],
        "user_adapter_manifest_sha256": run_info.get("user_model", {}).get("manifest_sha256"),
        "conversations": len(units), "reference_dir": reference, "evaluators": names,
        "classifier": ctx.extra.get("classifier"), "metrics": results, "run_config": run_info["config"],
        "versions": library_versions(), "evaluated_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    p_ai = ctx.extra.get("p_ai")
    if p_ai is not None:  # kept for the report's P(AI) plots
        report["p_ai_run"] = [round(float(p_ai[t]), 4) for t in M.all_turns(units)]
        report["p_ai_reference"] = [round(float(p_ai[t]), 4) for t in M.all_turns(ctx.reference or [])]
    report["turn_words_run"] = [M.words(t) for t in M.all_turns(units)]
    report["turn_words_reference"] = [M.words(t) for t in M.all_turns(ctx.reference or [])]
    write_metrics(report, run_dir)
    if console:
        print_metrics([report], console)
    return report


def fmt(ci: dict | None) -> str:
    if not ci or ci.get("value") is None or (isinstance(ci["value"], float) and math.isnan(ci["value"])):
        return "n/a"
    v, lo, hi = ci["value"], ci.get("ci_low"), ci.get("ci_high")
    digits = 1 if abs(v) >= 10 else 3
    if lo is None or hi is None or lo == hi or (isinstance(lo, float) and math.isnan(lo)):
        return f"{v:.{digits}f}"
    return f"{v:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"


def table_rows(reports: list[dict]) -> tuple[list[str], list[list[str]]]:
    """Columns: metrics present; rows: real humans (reference, from the first report having one), then runs."""
    names = [m for m in METRICS if any(m in r["metrics"] for r in reports)]
    rows = []
    ref = next((r for r in reports if any("reference" in v for v in r["metrics"].values())), None)
    if ref:
        rows.append(["real humans (reference)", *(fmt(ref["metrics"].get(m, {}).get("reference")) for m in names)])
    for r in reports:
        rows.append([r["label"], *(fmt(r["metrics"].get(m, {}).get("run")) for m in names)])
    return names, rows


def markdown_table(reports: list[dict]) -> str:
    names, rows = table_rows(reports)
    lines = ["| run | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def print_metrics(reports: list[dict], console) -> None:
    from rich.table import Table

    names, rows = table_rows(reports)
    table = Table(title="How human is the simulated user? (95% bootstrap CI)")
    table.add_column("metric")
    for row in rows:
        table.add_column(row[0], justify="right")
    for i, name in enumerate(names):
        arrow = {1: " ↑", -1: " ↓", 0: ""}[METRICS[name][0]]
        table.add_row(name + arrow, *(row[i + 1] for row in rows))
    console.print(table)


def write_metrics(report: dict, run_dir: Path) -> None:
    atomic_write_json(run_dir / "metrics.json", report)
    atomic_write_text(run_dir / "metrics.md", f"# {report['label']}\n\n{markdown_table([report])}\n"
                      + "".join(f"- `{m}`: {METRICS[m][1]}\n" for m in METRICS if m in report["metrics"]))
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["row", "metric", "value", "ci_low", "ci_high", "n"])
    for metric, sides in report["metrics"].items():
        for side, ci in sides.items():
            writer.writerow([report["label"] if side == "run" else "real humans", metric, ci["value"], ci.get("ci_low"),
                             ci.get("ci_high"), ci.get("n")])
    atomic_write_text(run_dir / "metrics.csv", buf.getvalue())
