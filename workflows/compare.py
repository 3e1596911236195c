"""`userlm compare BASELINE CANDIDATE`: is the candidate adapter worse at being human? Exit 0 no regression,
1 regression, 2 error (any failure, one line). Both sides are simulated on the same scenarios, samples and seeds (cached by the
adapter manifest hash, scenario hash, seed and backend config) and compared with paired bootstrap CIs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml

from evaluators import metrics as M
from evaluators.reference import reference_units, transcript_units
from evaluators.stats import paired_bootstrap_delta
from userlm.io import UserError, atomic_write_json, atomic_write_text, cache_dir, read_json, sha256_json

DEFAULT_THRESHOLDS = Path(__file__).resolve().parents[1] / "configs" / "compare-thresholds.yaml"


SET_BASED = {"distinct_2", "diversity_all"}  # resampled as `bootstrap_ci` does (no repeated conversations)
NEEDS_REFERENCE = {"turn_length_w1"}
REFUSED = {"mean_turn_words": "raw word counts have no better direction; use turn_length_w1 (distance to real "
                              "humans, needs --reference)"}


def load_thresholds(path: str | None) -> dict:
    """{metric: {"max_regression": x}}; each metric's direction is the one in evaluators.metrics.METRICS (a
    `direction` given in the file must agree with it)."""
    source = Path(path) if path else DEFAULT_THRESHOLDS
    if path and not source.is_file():
        raise UserError(f"{source}: thresholds file not found")
    try:
        data = yaml.safe_load(source.read_text()) if source.exists() else None
    except yaml.YAMLError as e:
        raise UserError(f"{source}: invalid YAML ({str(e).splitlines()[0]})") from None
    if data is None:  # installed without the configs folder
        data = {"human_likeness": {"max_regression": 0.03}}
    if not isinstance(data, dict):
        raise UserError(f"{source}: expected a mapping of metric -> {{max_regression: ...}}")
    for metric, spec in data.items():
        if metric in REFUSED:
            raise UserError(f"{source}: {metric}: {REFUSED[metric]}")
        if metric not in STATISTICS:
            raise UserError(f"{source}: unknown metric '{metric}' (known: {', '.join(STATISTICS)})")
        if not isinstance(spec, dict) or not isinstance(spec.get("max_regression"), (int, float)):
            raise UserError(f"{source}: {metric} needs a numeric max_regression")
        if spec.get("direction", M.direction_word(metric)) != M.direction_word(metric):
            raise UserError(f"{source}: {metric}: {M.direction_word(metric)} is better (evaluators/metrics.py), "
                            f"not {spec['direction']}")
        spec["direction"] = M.direction_word(metric)
    return data


def _statistics(p_ai: dict, vectors: dict, real_words: list | None = None) -> dict:
    turns = M.all_turns
    return {
        "human_likeness": lambda us: 1 - float(np.mean([p_ai[t] for t in turns(us)])) if turns(us) else np.nan,
        "ai_voice_rate": lambda us: float(np.mean([p_ai[t] > 0.5 for t in turns(us)])) if turns(us) else np.nan,
        "role_adherence": M.role_adherence,
        "termination_rate": M.termination_rate,
        "truncated_share": M.truncated_share,
        "distinct_2": lambda us: M.distinct_n(us, 2),
        "diversity_all": lambda us: M.mean_pairwise_cosine_distance(np.stack([vectors[t] for t in turns(us)]))
        if len(turns(us)) > 1 else np.nan,
        "turn_length_w1": lambda us: M.wasserstein([M.words(t) for t in turns(us)], real_words or []),
    }


STATISTICS = _statistics({}, {})


def ensure_run(side: str, scenarios: str, sim_overrides: list[str], samples: int | None, seed: int, console) -> Path:
    """A finished run for `side`: the directory itself if it is a run, else a cached simulation of the adapter."""
    from simulator.run import SimulationConfig, plan, run_identity, simulate
    from userlm.config import load_config
    from userlm.records import load_run, read_adapter_manifest

    path = Path(side)
    if (path / "run.json").exists() and (path / "transcripts.jsonl").exists():
        load_run(path)  # a finished run, or a one-line error
        return path
    if not (path / "adapter_config.json").exists():
        raise UserError(f"{side}: neither an adapter directory (from `userlm train`) nor a simulation run")
    manifest = read_adapter_manifest(path)
    overrides = [*sim_overrides, f"user={side}", f"scenarios={scenarios}", f"seed={seed}"]
    if samples is not None:
        overrides.append(f"samples={samples}")
    cfg = load_config(SimulationConfig, None, overrides)
    scenario_list, _ = plan(cfg)
    ident = run_identity(cfg, scenario_list)
    ident["config"].pop("user")  # the adapter is named by its manifest hash, not its path
    key = sha256_json({"adapter_manifest": sha256_json(manifest.to_dict()), **ident})
    cfg.out = str(cache_dir() / "runs" / key[:20])
    done = Path(cfg.out) / "run.json"
    if done.exists() and "finished_at" in read_json(done, "run.json"):
        console.print(f"reusing cached simulation of {side}: {cfg.out}")
        return Path(cfg.out)
    simulate(cfg, resume=Path(cfg.out, "transcripts.jsonl").exists(), console=console)
    return Path(cfg.out)


def compare(baseline: str, candidate: str, scenarios: str, out: str, thresholds: str | None = None,
            samples: int | None = None, seed: int = 0, sim_overrides: list[str] | None = None,
            classifier: str | None = None, reference: str | None = None, console=None) -> dict:
    from evaluators.cache import embed
    from evaluators.classifier import load_classifier
    from userlm.records import load_transcripts

    limits = load_thresholds(thresholds)
    skipped = {m: "needs --reference (real humans to measure the distance to)"
               for m in limits if m in NEEDS_REFERENCE and not reference}
    if skipped and thresholds:
        raise UserError(f"{thresholds}: {', '.join(skipped)} {next(iter(skipped.values()))}")
    real = reference_units(reference, limit=300) if reference else []
    runs = [ensure_run(s, scenarios, sim_overrides or [], samples, seed, console) for s in (baseline, candidate)]
    records = [{(r["scenario_id"], r["sample"]): r for r in load_transcripts(run)} for run in runs]
    keys = sorted(set(records[0]) & set(records[1]))
    if not keys:
        raise UserError("baseline and candidate share no (scenario, sample) conversation to pair")
    base_units, cand_units = (transcript_units([recs[k] for k in keys]) for recs in records)
    texts = sorted({t for u in base_units + cand_units + real for t in u["user_turns"]})
    clf = load_classifier(classifier, console, data_dir=reference)
    vectors = dict(zip(texts, embed(texts))) if "diversity_all" in limits else {}  # MiniLM only when needed
    stats = _statistics(dict(zip(texts, clf.p_ai(texts))), vectors, [M.words(t) for t in M.all_turns(real)])
    rows, regressed = [], []
    for metric, spec in limits.items():
        if metric in skipped:
            rows.append({"metric": metric, "direction": spec["direction"], "max_regression": spec["max_regression"],
                         "verdict": "skipped", "note": skipped[metric]})
            continue
        fn = stats[metric]
        ci = paired_bootstrap_delta(base_units, cand_units, fn, set_based=metric in SET_BASED)
        if not np.isfinite(ci["delta"]):
            rows.append({"metric": metric, "direction": spec["direction"], "max_regression": spec["max_regression"],
                         "verdict": "skipped", "note": "not defined on these runs"})
            continue
        sign = 1 if spec["direction"] == "higher" else -1
        worst, best = sorted((sign * ci["ci_low"], sign * ci["ci_high"]))  # in "positive = better" units
        allowed = spec["max_regression"]
        verdict = "regressed" if best < -allowed else "improved" if worst > 0 else "same"
        if verdict == "regressed":
            regressed.append(metric)
        row = {"metric": metric, "direction": spec["direction"], "max_regression": allowed,
               "baseline": fn(base_units), "candidate": fn(cand_units), **ci, "verdict": verdict}
        if real and metric not in NEEDS_REFERENCE:
            row["real_humans"] = fn(real)
        rows.append(row)
    result = {"baseline": baseline, "candidate": candidate, "baseline_run": str(runs[0]), "candidate_run": str(runs[1]),
              "paired_conversations": len(keys), "scenarios": scenarios, "seed": seed, "reference": reference,
              "classifier": {"version": clf.version, "test_auroc": clf.manifest["test_auroc"],
                             "test_auroc_length_matched": clf.manifest["test_auroc_length_matched"]},
              "rows": rows, "regressed": regressed, "exit_code": 1 if regressed else 0}
    out_dir = Path(out)
    atomic_write_json(out_dir / "compare.json", result)
    cells = [_cells(r) for r in rows]
    lines = ["| metric | baseline | candidate | delta [95% CI] | real humans | allowed | verdict |", "|" + "---|" * 7]
    lines += ["| " + " | ".join(c) + " |" for c in cells]
    verdict = f"REGRESSION in {', '.join(regressed)}" if regressed else "no regression"
    atomic_write_text(out_dir / "compare.md", f"# {candidate} vs {baseline}\n\n{len(keys)} paired conversations. "
                      f"Verdict: {verdict}.\n\n" + "\n".join(lines) + "\n")
    if console:
        from rich.table import Table

        table = Table(title=f"candidate vs baseline ({len(keys)} paired conversations): {verdict}")
        for col in ("metric", "baseline", "candidate", "delta [95% CI]", "real humans", "allowed", "verdict"):
            table.add_column(col, justify="left" if col == "metric" else "right")
        color = {"regressed": "red", "improved": "green", "same": "white", "skipped": "yellow"}
        for r, c in zip(rows, cells):
            table.add_row(*c[:-1], f"[{color[r['verdict']]}]{r['verdict']}[/]")
        console.print(table)
    return result


def _cells(r: dict) -> list[str]:
    num = lambda key: f"{r[key]:.3f}" if isinstance(r.get(key), (int, float)) and np.isfinite(r[key]) else "n/a"
    delta = f"{r['delta']:+.3f} [{r['ci_low']:+.3f}, {r['ci_high']:+.3f}]" if "delta" in r else r.get("note", "")
    return [f"{r['metric']} ({r['direction']} is better)", num("baseline"), num("candidate"), delta, num("real_humans"),
            str(r["max_regression"]), r["verdict"]]


def compare_main(args, console) -> int:
    """Exit 0 no regression, 1 regression, 2 any failure (one line on stderr), never a traceback's exit 1."""
    import sys

    try:
        result = compare(args.baseline, args.candidate, args.scenarios, args.out, args.thresholds, args.samples,
                         args.seed, args.set, classifier=getattr(args, "classifier", None),
                         reference=args.reference, console=console)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        raise
    except Exception as e:  # noqa: BLE001 - any crash is an error (2), not a regression (1)
        first = str(e).splitlines()[0] if str(e) else ""
        print(f"error: compare failed: {type(e).__name__}: {first}", file=sys.stderr)
        return 2
    return result["exit_code"]
