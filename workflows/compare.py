"""`userlm compare BASELINE CANDIDATE`: is the candidate adapter worse at being human? Exit 0 no regression,
1 regression, 2 error (any failure, one line). Both sides are simulated on the same scenarios, samples and seeds (cached by the
adapter manifest hash, scenario hash, seed and backend config) and compared with paired bootstrap CIs."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from userlm.config import check_fields, option, parse_overrides, to_dict
from userlm.io import UserError, cache_dir, read_json, sha256_json
from userlm.scenarios import MAX_SAMPLES
from userlm.yamlio import YAMLError, load_yaml

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
    samples: int | None = option(None, "conversations per scenario (default: the scenarios')", min=1, max=MAX_SAMPLES)
    seed: int = option(0, "simulation seed")
    seeds: int = option(1, "A/A check: also simulate the baseline adapter with this many seeds (seed, seed+1, "
                           "...) and gate every ordered pair of them: the share that exits 1 is the false-alarm "
                           "rate of these settings (1: no check)", min=1, max=100)
    sim_overrides: list[str] = option(factory=list, flag="set", metavar="KEY=VALUE",
                                      help="simulation config override of both sides (repeatable; "
                                           "sim_overrides: [KEY=VALUE, ...] in a --config file)")

    def __post_init__(self):
        from simulator.run import SimulationConfig
        check_fields(self)
        parse_overrides(SimulationConfig, self.sim_overrides)  # checked even where no side is simulated


def load_gate(path: str | None) -> tuple[dict, dict]:
    """(settings, {metric: spec}) from a thresholds file: `primary`, `fallback_primary`, `alpha`, `power` and
    `metrics: {name: {margin: x}}` (workflows/gate.py), or the older flat {name: {max_regression: x}}."""
    from workflows.gate import DEFAULT_GATE

    source = Path(path) if path else DEFAULT_THRESHOLDS
    if path and not source.is_file():
        raise UserError(f"{source}: thresholds file not found")
    try:
        data = load_yaml(source.read_text()) if source.exists() else None
    except YAMLError as e:
        raise UserError(f"{source}: invalid YAML ({str(e).splitlines()[0]})") from None
    if data is None:  # installed without the configs folder
        data = {"metrics": {"human_likeness": {"margin": 0.03}}}
    if not isinstance(data, dict):
        raise UserError(f"{source}: expected a mapping (primary, alpha, metrics: {{name: {{margin: ...}}}})")
    flat = "metrics" not in data
    settings = {k: data.get(k, v) for k, v in DEFAULT_GATE.items()} if not flat else {**DEFAULT_GATE, "primary": None}
    for key in ("alpha", "power"):
        if not isinstance(settings[key], (int, float)) or not 0 < settings[key] < 1:
            raise UserError(f"{source}: {key} must be a number between 0 and 1")
    metrics = data if flat else data["metrics"]
    if not isinstance(metrics, dict):
        raise UserError(f"{source}: metrics: expected a mapping of metric -> {{margin: ...}}")
    return settings, {m: _metric_spec(source, m, spec, m == settings["primary"]) for m, spec in metrics.items()}


def _metric_spec(source: Path, metric: str, spec, primary: bool) -> dict:
    from evaluators import metrics as M

    if not isinstance(spec, dict):
        raise UserError(f"{source}: {metric} needs a numeric margin")
    margin = spec.get("margin", spec.get("max_regression"))
    if not isinstance(margin, (int, float)) or margin < 0:
        raise UserError(f"{source}: {metric} needs a numeric margin >= 0")
    if primary and metric not in M.METRICS:  # written by evaluate into metrics.json (not a statistic here yet)
        return {"direction": spec.get("direction", "lower"), "max_regression": margin, "margin": margin}
    check_comparable(source, metric, primary)
    if spec.get("direction", M.direction_word(metric)) != M.direction_word(metric):
        raise UserError(f"{source}: {metric}: {M.direction_word(metric)} is better (evaluators/metrics.py), "
                        f"not {spec['direction']}")
    return {"direction": M.direction_word(metric), "max_regression": margin, "margin": margin}


def load_thresholds(path: str | None) -> dict:
    """{metric: {"margin", "max_regression" (the same), "direction"}}; each metric's direction is the one in
    evaluators.metrics.METRICS (a `direction` given in the file must agree with it)."""
    return load_gate(path)[1]


def check_comparable(source: Path, metric: str, primary: bool = False) -> None:
    from evaluators import metrics as M

    known = f"(compare pairs: {', '.join(M.COMPARABLE)})"
    if metric not in M.METRICS:
        raise UserError(f"{source}: unknown metric '{metric}' {known}")
    if M.METRICS[metric].statistic is None and not primary:
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


def refuse_incomparable_runs(runs: list[Path]) -> None:
    """One line (exit 2) when the runs differ in anything but the user model (evaluators/comparability.py)."""
    from evaluators.comparability import refuse_incomparable

    problems = refuse_incomparable([(str(r), read_json(r / "run.json", "run.json")) for r in runs])
    if problems:
        raise UserError(problems[0])


def paired_units(runs: list[Path]) -> tuple[list[dict], list[dict]]:
    """The two runs' conversations paired, in the same order: replay runs share their contexts exactly and pair
    by conversation_id; self-play runs by (scenario, sample)."""
    from evaluators.reference import transcript_units
    from userlm.records import load_transcripts

    loaded = [load_transcripts(run) for run in runs]
    replay = all(r.get("conversation_id") is not None for recs in loaded for r in recs)
    key = (lambda r: r["conversation_id"]) if replay else (lambda r: (r["scenario_id"], r["sample"]))
    records = [{key(r): r for r in recs} for recs in loaded]
    keys = sorted(set(records[0]) & set(records[1]), key=str)
    if not keys:
        raise UserError(f"baseline and candidate share no {'conversation_id' if replay else '(scenario, sample)'} "
                        "conversation to pair")
    infos = [read_json(run / "run.json", "run.json") if (run / "run.json").exists() else None for run in runs]
    base, cand = (transcript_units([recs[k] for k in keys], info) for recs, info in zip(records, infos))
    return base, cand


def unpaired_note(runs: list[Path], paired: int) -> str | None:
    """One line where a run holds conversations the other lacks: each side's values are then on the paired ones
    only, so they differ from what `evaluate` reports for that run alone (it scores all of them)."""
    from userlm.records import load_transcripts

    counts = [len(load_transcripts(run)) for run in runs]
    if max(counts) == paired:
        return None
    return (f"each side is scored on the {paired} paired conversations (the runs hold {counts[0]} and {counts[1]}), "
            "so its values differ from `evaluate` of that run alone")


def metric_row(metric: str, spec: dict, skipped: str | None, base: list, cand: list, real: list,
               inputs: M.Inputs) -> dict:
    """The metric on both runs and its paired delta's interval (evaluators/stats.py); the gate judges it."""
    from evaluators import metrics as M
    from evaluators.stats import paired_delta

    margin = spec.get("margin", spec.get("max_regression"))
    row = {"metric": metric, "direction": spec["direction"], "max_regression": margin, "margin": margin}
    if skipped:
        return {**row, "verdict": "skipped", "note": skipped}
    declared = M.METRICS[metric]
    fn = declared.statistic(inputs)
    ci = paired_delta(base, cand, fn, bounded=declared.bounded)
    if not math.isfinite(ci["delta"]):
        return {**row, "verdict": "skipped", "note": "not defined on these runs"}
    row.update({"baseline": fn(base), "candidate": fn(cand), **ci, "bounded": declared.bounded, "verdict": "tested"})
    if real and declared.reference_row:  # the real-human row evaluate and report show, no other
        row["real_humans"] = fn(real)
    return row


def prepare_against_people(base: list, cand: list, reference_dir: str | None, embed=None) -> None:
    """Units scored against people (discriminability) carry their out-of-fold scores: evaluators/against_people.py
    prepares them where that module is present; with `embed`, also the embeddings and style rows the distances
    (distribution_mmd, embedding_mmd) read."""
    import importlib.util

    if importlib.util.find_spec("evaluators.against_people") is not None:
        from evaluators import against_people

        for units in (base, cand):
            against_people.prepare(units, reference_dir, embed)


def gate_runs(runs: list[Path], settings: dict, limits: dict, skipped: dict, clf, say,
              reference_dir: str | None = None) -> dict:
    """The gate's rows and verdict for two finished runs (workflows/gate.py). The real-human row is evaluate's
    (evaluators/against_people.py people_reference: the same people, like for like with the baseline's units)."""
    from evaluators import metrics as M
    from evaluators.against_people import people_reference
    from evaluators.cache import embed
    from workflows.gate import decide, evaluated_row

    base, cand = paired_units(runs)
    real = (people_reference(base, reference_dir)[0] or []) if reference_dir else []
    primary = settings["primary"]
    rows, note = [], None
    stats = {m: s for m, s in limits.items() if m in M.METRICS and M.METRICS[m].statistic is not None}
    embeds = any(M.METRICS[m].embeds for m in stats)  # MiniLM only when needed
    primary_paired = primary in M.METRICS and M.METRICS[primary].statistic is not None  # else read off metrics.json
    if primary_paired or {m.name for m in M.AGAINST_PEOPLE} & set(stats):
        prepare_against_people(base, cand, reference_dir, embed if embeds else None)
    if primary and not primary_paired:
        row = evaluated_row(primary, limits[primary], runs) if primary in limits else None
        rows += [row] if row else []
    texts = M.distinct_turns(base, cand, real)
    inputs = M.Inputs(p_ai=dict(zip(texts, clf.p_ai(texts))), vectors=dict(zip(texts, embed(texts))) if embeds else {},
                      reference=real)
    rows += [metric_row(m, spec, skipped.get(m), base, cand, real, inputs) for m, spec in stats.items()]
    if primary and not any(r["metric"] == primary and r["verdict"] != "skipped" for r in rows):
        note = (f"primary metric {primary}: not defined on these runs (needs people's turns in the same contexts: "
                f"a replay run, or --reference); {settings['fallback_primary']} is primary")
        say(note)
        primary = settings["fallback_primary"]
    decide(rows, primary, settings["alpha"], settings["power"])
    regressed = [r["metric"] for r in rows if r["verdict"] == "regressed"]
    unpaired = unpaired_note(runs, len(base))
    return {"rows": rows, "regressed": regressed, "primary": primary, "paired_conversations": len(base),
            **({"unpaired_note": unpaired} if unpaired else {}),
            **({"primary_note": note} if primary != settings["primary"] else {})}


def compare(baseline: str, candidate: str, scenarios: str, out: str, thresholds: str | None = None,
            samples: int | None = None, seed: int = 0, sim_overrides: list[str] | None = None,
            classifier: str | None = None, reference: str | None = None, seeds: int = 1, console=None) -> dict:
    from evaluators import metrics as M
    from evaluators.classifier import load_classifier
    from evaluators.classifier_guard import check_held_out
    from userlm.data.prepare import load_manifest
    from workflows.compare_output import false_alarms, write_compare

    settings, limits = load_gate(thresholds)
    skipped = {m: "needs --reference (real humans to measure the distance to)"
               for m in limits if m in M.METRICS and M.METRICS[m].needs_reference and not reference}
    if skipped and thresholds:
        raise UserError(f"{thresholds}: {', '.join(skipped)} {next(iter(skipped.values()))}")
    if seeds > 1 and not (Path(baseline) / "adapter_config.json").exists():
        raise UserError(f"{baseline}: --seeds needs an adapter dir as the baseline (it is simulated with other seeds)")
    say = (lambda line: console.print(line)) if console else print
    if reference:  # a bad data dir is an error before any simulation, not after
        load_manifest(reference)
    runs = [ensure_run(s, scenarios, sim_overrides or [], samples, seed, console) for s in (baseline, candidate)]
    refuse_incomparable_runs(runs)
    clf = load_classifier(classifier, console, data_dir=reference)
    for run in runs:  # no generator may be ranked by a classifier trained on its turns
        check_held_out(clf.manifest, read_json(Path(run) / "run.json", "run.json"), f"the classifier for {run}")
    gated = gate_runs(runs, settings, limits, skipped, clf, say, reference)
    result = {"baseline": baseline, "candidate": candidate, "baseline_run": str(runs[0]), "candidate_run": str(runs[1]),
              "scenarios": scenarios, "seed": seed, "reference": reference, "alpha": settings["alpha"],
              "power": settings["power"], "classifier": {"version": clf.version, "test_auroc": clf.manifest["test_auroc"],
              "test_auroc_length_matched": clf.manifest["test_auroc_length_matched"]}, **gated,
              "exit_code": 1 if gated["regressed"] else 0}
    if seeds > 1:
        aa_runs = [runs[0] if k == 0 else ensure_run(baseline, scenarios, sim_overrides or [], samples, seed + k, console)
                   for k in range(seeds)]
        result["a_a"] = false_alarms(aa_runs, lambda pair: gate_runs(pair, settings, limits, skipped, clf,
                                                                     lambda line: None, reference))
    write_compare(result, Path(out), console)
    return result


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
