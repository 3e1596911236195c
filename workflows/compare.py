"""`userlm compare BASELINE CANDIDATE`: is the candidate adapter worse at being human? Exit 0 no regression,
1 regression, 2 error (any failure, one line). Both sides are simulated on the same scenarios, samples and seeds (cached by the
adapter manifest hash, scenario hash, seed and backend config) and compared with paired bootstrap CIs."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from userlm.config import check_fields, option, to_dict
from userlm.io import UserError, atomic_write_json, atomic_write_text, cache_dir, read_json, sha256_json

# The evaluators (numpy and up) are imported where they are used, so that `--help` reads CompareConfig alone.
if TYPE_CHECKING:
    from evaluators import metrics as M

DEFAULT_THRESHOLDS = Path(__file__).resolve().parents[1] / "configs" / "compare-thresholds.yaml"


@dataclass
class CompareConfig:
    """`userlm compare`: the arguments of `compare`. Its `--set` is `sim_overrides`, the simulation config of
    both sides (so this command has `--config` for its own fields, and no `--set` for them)."""

    baseline: str = option(help="a finished run, or an adapter dir (simulated and cached)")
    candidate: str = option(help="a finished run, or an adapter dir (simulated and cached)")
    scenarios: str = option(help="scenario YAML file or folder both sides are simulated on")
    thresholds: str | None = option(None, "YAML of per-metric thresholds (default: built in)")
    out: str = option("results/compare", "where compare.json and compare.md go")
    reference: str | None = option(None, "prepared data dir: real humans for turn_length_w1 and the table, and "
                                         "the classifier trained on its train split")
    classifier: str | None = option(None, "AI-voice classifier dir (default: the one for --reference's data)")
    samples: int | None = option(None, "conversations per scenario (default: the scenario files')")
    seed: int = option(0, "simulation seed")
    sim_overrides: list[str] = option(factory=list, flag="set", metavar="KEY=VALUE",
                                      help="simulation config override of both sides (repeatable; "
                                           "sim_overrides: [KEY=VALUE, ...] in a --config file)")

    def __post_init__(self):
        check_fields(self)


def load_thresholds(path: str | None) -> dict:
    """{metric: {"max_regression": x}}; each metric's direction is the one in evaluators.metrics.METRICS (a
    `direction` given in the file must agree with it)."""
    from evaluators import metrics as M

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
        check_comparable(source, metric)
        if not isinstance(spec, dict) or not isinstance(spec.get("max_regression"), (int, float)):
            raise UserError(f"{source}: {metric} needs a numeric max_regression")
        if spec.get("direction", M.direction_word(metric)) != M.direction_word(metric):
            raise UserError(f"{source}: {metric}: {M.direction_word(metric)} is better (evaluators/metrics.py), "
                            f"not {spec['direction']}")
        spec["direction"] = M.direction_word(metric)
    return data


def check_comparable(source: Path, metric: str) -> None:
    from evaluators import metrics as M

    known = f"(compare pairs: {', '.join(M.COMPARABLE)})"
    if metric not in M.METRICS:
        raise UserError(f"{source}: unknown metric '{metric}' {known}")
    if M.METRICS[metric].statistic is None:
        raise UserError(f"{source}: {metric} is scored by a model on real data, not on the runs' conversations {known}")
    if M.METRICS[metric].direction == 0:
        raise UserError(f"{source}: {metric} has no better direction, so it cannot regress "
                        f"({M.METRICS[metric].description})")


def ensure_run(side: str, scenarios: str, sim_overrides: list[str], samples: int | None, seed: int, console) -> Path:
    """A finished run for `side`: the directory itself if it is a run, else a cached simulation of the adapter."""
    from simulator.run import SimulationConfig, plan, run_identity, simulate
    from userlm.config import load_config
    from userlm.records import load_run, read_adapter_manifest
    from workflows.stages import cached_stage

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
    out = cache_dir() / "runs" / sha256_json({"adapter_manifest": sha256_json(manifest.to_dict()), **ident})[:20]
    cfg.out = str(out)
    finished = lambda d: (d / "run.json").exists() and "finished_at" in read_json(d / "run.json", "run.json")
    return cached_stage(out, lambda: simulate(cfg, resume=(out / "transcripts.jsonl").exists(), console=console),
                        console, finished, what=f"cached simulation of {side}")


def paired_units(runs: list[Path]) -> tuple[list[dict], list[dict]]:
    """The two runs' conversations with the same scenario and sample, in the same order."""
    from evaluators.reference import transcript_units
    from userlm.records import load_transcripts

    records = [{(r["scenario_id"], r["sample"]): r for r in load_transcripts(run)} for run in runs]
    keys = sorted(set(records[0]) & set(records[1]))
    if not keys:
        raise UserError("baseline and candidate share no (scenario, sample) conversation to pair")
    base, cand = (transcript_units([recs[k] for k in keys]) for recs in records)
    return base, cand


def metric_row(metric: str, spec: dict, skipped: str | None, base: list, cand: list, real: list,
               inputs: M.Inputs) -> dict:
    """The metric on both runs and the paired CI of its delta, judged against the allowed regression."""
    from evaluators import metrics as M
    from evaluators.stats import paired_bootstrap_delta

    row = {"metric": metric, "direction": spec["direction"], "max_regression": spec["max_regression"]}
    if skipped:
        return {**row, "verdict": "skipped", "note": skipped}
    declared = M.METRICS[metric]
    fn = declared.statistic(inputs)
    ci = paired_bootstrap_delta(base, cand, fn, set_based=declared.set_based)
    if not math.isfinite(ci["delta"]):
        return {**row, "verdict": "skipped", "note": "not defined on these runs"}
    sign = 1 if spec["direction"] == "higher" else -1
    worst, best = sorted((sign * ci["ci_low"], sign * ci["ci_high"]))  # in "positive = better" units
    verdict = "regressed" if best < -spec["max_regression"] else "improved" if worst > 0 else "same"
    row.update({"baseline": fn(base), "candidate": fn(cand), **ci, "verdict": verdict})
    if real and declared.reference_row:  # the real-human row evaluate and report show, no other
        row["real_humans"] = fn(real)
    return row


def compare(baseline: str, candidate: str, scenarios: str, out: str, thresholds: str | None = None,
            samples: int | None = None, seed: int = 0, sim_overrides: list[str] | None = None,
            classifier: str | None = None, reference: str | None = None, console=None) -> dict:
    from evaluators import metrics as M
    from evaluators.cache import embed
    from evaluators.classifier import load_classifier
    from evaluators.classifier_guard import check_held_out
    from evaluators.reference import reference_units

    limits = load_thresholds(thresholds)
    skipped = {m: "needs --reference (real humans to measure the distance to)"
               for m in limits if M.METRICS[m].needs_reference and not reference}
    if skipped and thresholds:
        raise UserError(f"{thresholds}: {', '.join(skipped)} {next(iter(skipped.values()))}")
    real = reference_units(reference, limit=300) if reference else []
    runs = [ensure_run(s, scenarios, sim_overrides or [], samples, seed, console) for s in (baseline, candidate)]
    base, cand = paired_units(runs)
    texts = M.distinct_turns(base, cand, real)
    clf = load_classifier(classifier, console, data_dir=reference)
    for run in runs:  # no generator may be ranked by a classifier trained on its turns
        check_held_out(clf.manifest, read_json(Path(run) / "run.json", "run.json"), f"the classifier for {run}")
    embeds = any(M.METRICS[m].embeds for m in limits)  # MiniLM only when needed
    inputs = M.Inputs(p_ai=dict(zip(texts, clf.p_ai(texts))), vectors=dict(zip(texts, embed(texts))) if embeds else {},
                      reference=real)
    rows = [metric_row(m, spec, skipped.get(m), base, cand, real, inputs) for m, spec in limits.items()]
    regressed = [r["metric"] for r in rows if r["verdict"] == "regressed"]
    result = {"baseline": baseline, "candidate": candidate, "baseline_run": str(runs[0]), "candidate_run": str(runs[1]),
              "paired_conversations": len(base), "scenarios": scenarios, "seed": seed, "reference": reference,
              "classifier": {"version": clf.version, "test_auroc": clf.manifest["test_auroc"],
                             "test_auroc_length_matched": clf.manifest["test_auroc_length_matched"]},
              "rows": rows, "regressed": regressed, "exit_code": 1 if regressed else 0}
    write_compare(result, Path(out), console)
    return result


def write_compare(result: dict, out_dir: Path, console=None) -> None:
    """compare.json, compare.md and the console table."""
    atomic_write_json(out_dir / "compare.json", result)
    rows, regressed, pairs = result["rows"], result["regressed"], result["paired_conversations"]
    cells = [_cells(r) for r in rows]
    lines = ["| metric | baseline | candidate | delta [95% CI] | real humans | allowed | verdict |", "|" + "---|" * 7]
    lines += ["| " + " | ".join(c) + " |" for c in cells]
    verdict = f"REGRESSION in {', '.join(regressed)}" if regressed else "no regression"
    atomic_write_text(out_dir / "compare.md", f"# {result['candidate']} vs {result['baseline']}\n\n{pairs} paired "
                      f"conversations. Verdict: {verdict}.\n\n" + "\n".join(lines) + "\n")
    if console:
        from rich.table import Table

        table = Table(title=f"candidate vs baseline ({pairs} paired conversations): {verdict}")
        for col in ("metric", "baseline", "candidate", "delta [95% CI]", "real humans", "allowed", "verdict"):
            table.add_column(col, justify="left" if col == "metric" else "right")
        color = {"regressed": "red", "improved": "green", "same": "white", "skipped": "yellow"}
        for r, c in zip(rows, cells):
            table.add_row(*c[:-1], f"[{color[r['verdict']]}]{r['verdict']}[/]")
        console.print(table)


def _cells(r: dict) -> list[str]:
    num = lambda key: f"{r[key]:.3f}" if isinstance(r.get(key), (int, float)) and math.isfinite(r[key]) else "n/a"
    delta = f"{r['delta']:+.3f} [{r['ci_low']:+.3f}, {r['ci_high']:+.3f}]" if "delta" in r else r.get("note", "")
    return [f"{r['metric']} ({r['direction']} is better)", num("baseline"), num("candidate"), delta, num("real_humans"),
            str(r["max_regression"]), r["verdict"]]


def compare_main(cfg: CompareConfig, console) -> int:
    """Exit 0 no regression, 1 regression, 2 any failure (one line on stderr), never a traceback's exit 1."""
    import sys

    try:
        result = compare(**to_dict(cfg), console=console)
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
