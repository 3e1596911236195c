"""`userlm evaluate RUN_DIR`: every named evaluator over a run's user turns, the same over real humans. The
evaluators (numpy and up) are imported when a run is evaluated, so that `--help` reads `EvaluateConfig` alone."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from userlm.config import check_fields, option
from userlm.io import UserError


@dataclass
class EvaluateConfig:
    """`userlm evaluate run`: the arguments of `evaluate_run`."""

    run_dir: str = option(help="a finished simulation run directory")
    reference: str | None = option(None, "prepared data dir with real held-out human turns")
    classifier: str | None = option(None, "AI-voice classifier dir (default: the cached default)")
    user_model: str | None = option(None, "user model for perplexity (default: the run's user model)")
    base_model: str | None = option(None, "base model for perplexity beside it")
    evaluators: str | None = option(None, "comma-separated names (default: all)")
    perplexity_examples: int = option(48, "held-out conversations the perplexity evaluator scores (a seeded sample)",
                                      min=1)

    def __post_init__(self):
        check_fields(self)


def evaluator_names(evaluators: str | None) -> list[str]:
    from evaluators.registry import EVALUATORS

    names = [n.strip() for n in evaluators.split(",")] if evaluators else list(EVALUATORS)
    unknown = [n for n in names if n not in EVALUATORS]
    if unknown:
        raise UserError(f"unknown evaluator(s): {', '.join(unknown)} (known: {', '.join(EVALUATORS)})")
    return names


def evaluate_run(run_dir: str, reference: str | None = None, classifier: str | None = None,
                 user_model: str | None = None, base_model: str | None = None, evaluators: str | None = None,
                 perplexity_examples: int = 48, console=None) -> dict:
    from evaluators import metrics as M
    from evaluators.against_people import people_reference
    from evaluators.comparability import check_no_overlap
    from evaluators.reference import transcript_units
    from evaluators.registry import EVALUATORS, Context, Evaluation
    from evaluators.stops import stop_reasons
    from evaluators.tables import print_metrics, write_metrics
    from userlm.provenance import library_versions
    from userlm.records import load_run

    run_dir = Path(run_dir)
    run_info, records = load_run(run_dir)  # a finished run only; errors name file, line and field
    units = transcript_units(records, run_info)
    if not units:
        raise UserError(f"{run_dir}: transcripts.jsonl holds no conversation")
    names = evaluator_names(evaluators)
    # Like for like (evaluators/like_for_like.py): a replay run's own people, else as many real conversations as
    # simulated ones at the same turn positions and word budget (Vendi, distinct-n and lengths depend on size).
    if reference:  # conversations the user model was trained on are no held-out people: refused
        check_no_overlap(user_model or run_info["config"]["user"], reference, "test")
    people, _ = people_reference(units, reference)
    ctx = Context(units=units, reference=people,
                  run_info=run_info, classifier_dir=classifier, reference_dir=reference, user_model=user_model,
                  base_model=base_model, perplexity_examples=perplexity_examples, console=console)
    results, extras = {}, {}
    for name in names:
        started = time.time()
        evaluation = EVALUATORS[name](ctx)
        if isinstance(evaluation, dict):  # an evaluator plugged in with metrics only
            evaluation = Evaluation(evaluation)
        results.update(evaluation.metrics)
        extras.update(evaluation.report)
        if console:
            console.print(f"[dim]evaluator {name}: {time.time() - started:.1f} s[/dim]")
    report = {
        "run_dir": str(run_dir), "label": run_dir.name + (" (replay)" if run_info.get("mode") == "replay" else ""), "user_model": run_info["config"]["user"],
        "user_kind": run_info.get("user_kind"), "assistant_model": run_info["config"]["assistant"],
        "user_adapter_manifest_sha256": run_info.get("user_model", {}).get("manifest_sha256"),
        "conversations": len(units), "reference_dir": reference, "evaluators": names, "classifier": None,
        "metrics": results, "run_config": run_info["config"], "versions": library_versions(),
        "evaluated_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    report.update(extras)  # the classifier's card in its place; per-turn P(AI) after the rest
    report["provenance"] = _provenance(run_info, report, user_model=user_model,
                                       base_model=base_model)
    report["turn_words_run"] = [M.words(t) for t in M.all_turns(units)]
    report["turn_words_reference"] = [M.words(t) for t in M.all_turns(ctx.reference or [])]
    report["conversation_turns_reference"] = [len(u["user_turns"]) for u in ctx.reference or []]
    report["stop_reasons"] = stop_reasons(records)  # how each conversation stopped (evaluators/stops.py)
    if run_info.get("guardrails"):
        report["guardrails"] = run_info["guardrails"]
    write_metrics(report, run_dir)
    if console:
        print_metrics([report], console)
    return report


def _provenance(run_info: dict, report: dict, **options) -> dict:
    """metrics.json's provenance block: this evaluation's own config, the run's sampling, seeds and chat
    templates (from its run.json), and the identities of the models, classifier and reference data."""
    from userlm.data.prepare import load_manifest
    from userlm.provenance import provenance

    run = run_info.get("provenance") or {}
    reference = report["reference_dir"]
    config = {"run_dir": report["run_dir"], "reference": reference, "evaluators": report["evaluators"], **options,
              "run_config_sha256": run.get("config_sha256")}
    card = report.get("classifier") or {}
    models = {"user": run_info.get("user_model"), "assistant": run_info.get("assistant_model"),
              "user_adapter_manifest_sha256": report["user_adapter_manifest_sha256"],
              "classifier": {k: card.get(k) for k in ("version", "features", "test_auroc")} if card else None,
              "reference_content_hash": load_manifest(reference)["content_hash"] if reference else None}
    return provenance(config, models=models, seeds=run.get("seeds") or {"seed": run_info["config"].get("seed")},
                      sampling=run.get("sampling"), chat_templates=run.get("chat_template_sha256"))

