"""False alarms of `userlm compare`'s gate at its default settings (configs/compare-thresholds.yaml).

Two ways, both A/A (the candidate is the baseline, so every exit 1 is a false alarm):
  --adapter DIR --scenarios S --seeds N   the real thing: `compare DIR DIR --seeds N` (the adapter simulated
                                          with N seeds, every ordered pair gated); needs the embedded models
  (default)                               the gate on real people: two independent samples of n conversations
                                          from 1,500 ShareGPT conversations as "baseline" and "candidate", the
                                          default gate's secondaries on them (stand-in P(AI) and embeddings as in
                                          tests/coverage_sim.py), `reps` times per n
  --split-run RUN --classifier DIR        what fits in minutes on a finished run of one adapter: `reps` random
                                          splits of its samples into disjoint baseline/candidate halves paired
                                          by scenario, gated with the real classifier and MiniLM (the splits
                                          share conversations: a rate, not independent trials)
Prints a markdown table of the share that exits 1, with the minimum detectable drop at each n."""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def gate_pair(base: list, cand: list, gated: dict, inputs, settings: dict, mdes: dict) -> bool:
    """One A/A comparison through compare's gate: True when it exits 1; each metric's detectable drop is kept."""
    from workflows.compare import metric_row
    from workflows.gate import decide

    rows = decide([metric_row(m, s, None, base, cand, [], inputs) for m, s in gated.items()],
                  settings["fallback_primary"], settings["alpha"], settings["power"])
    for r in rows:
        if math.isfinite(r.get("min_detectable_drop", math.nan)):
            mdes[r["metric"]].append(r["min_detectable_drop"])
    return any(r["verdict"] == "regressed" for r in rows)


def population_a_a(sizes: list[int], reps: int, seed: int = 0) -> str:
    import coverage_sim as C
    import numpy as np

    from workflows.compare import load_gate

    settings, limits = load_gate(None)
    units = C.population()
    inputs = C.stand_in_inputs(units)
    gated = {m: s for m, s in limits.items() if m in C.GATED}
    rng = np.random.default_rng(seed)
    lines = ["| n | A/A comparisons | exit 1 | rate | median minimum detectable drop |", "|---|---|---|---|---|"]
    for n in sizes:
        alarms, mdes = 0, {m: [] for m in gated}
        for _ in range(reps):
            idx = rng.choice(len(units), 2 * n, replace=False)
            base, cand = [units[i] for i in idx[:n]], [units[i] for i in idx[n:]]
            alarms += gate_pair(base, cand, gated, inputs, settings, mdes)
        mde = ", ".join(f"{m} {np.median(v):.3f}" for m, v in mdes.items() if v)
        lines.append(f"| {n} | {reps} | {alarms} | {alarms / reps:.1%} | {mde} |")
    return "\n".join(lines)


def split_run_a_a(run: str, classifier: str, reps: int, seed: int = 0) -> str:
    import numpy as np

    from evaluators import metrics as M
    from evaluators.cache import embed
    from evaluators.classifier import load_classifier
    from evaluators.reference import transcript_units
    from userlm.records import load_run
    from workflows.compare import load_gate

    settings, limits = load_gate(None)
    units = transcript_units(load_run(Path(run))[1])
    texts = M.distinct_turns(units)
    inputs = M.Inputs(p_ai=dict(zip(texts, load_classifier(classifier, None).p_ai(texts))),
                      vectors=dict(zip(texts, embed(texts))))
    gated = {m: s for m, s in limits.items() if m in M.METRICS and M.METRICS[m].statistic is not None}
    by_scenario = {}
    for u in units:
        by_scenario.setdefault(u["scenario_id"], []).append(u)
    half = min(len(v) for v in by_scenario.values()) // 2
    rng = np.random.default_rng(seed)
    alarms, mdes = 0, {m: [] for m in gated}
    for _ in range(reps):
        base, cand = [], []
        for group in by_scenario.values():
            order = rng.permutation(len(group))
            base += [group[i] for i in order[:half]]
            cand += [group[i] for i in order[half:2 * half]]
        alarms += gate_pair(base, cand, gated, inputs, settings, mdes)
    mde = ", ".join(f"{m} {np.median(v):.3f}" for m, v in mdes.items() if v)
    return (f"| run | pairs | splits | exit 1 | rate | median minimum detectable drop |\n|---|---|---|---|---|---|\n"
            f"| {run} | {half * len(by_scenario)} | {reps} | {alarms} | {alarms / reps:.1%} | {mde} |")


def adapter_a_a(adapter: str, scenarios: str, seeds: int, samples: int | None, out: str,
                classifier: str | None, reference: str | None = None) -> str:
    from rich.console import Console

    from workflows.compare import compare

    result = compare(adapter, adapter, scenarios=scenarios, out=out, samples=samples, seeds=seeds,
                     classifier=classifier, reference=reference, console=Console(stderr=True))
    aa = result["a_a"]
    return (f"| adapter | primary | seeds | comparisons | exit 1 | rate |\n|---|---|---|---|---|---|\n"
            f"| {adapter} | {result['primary']} | {seeds} | {aa['comparisons']} | {aa['exit_1']} | {aa['rate']:.1%} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--adapter")
    ap.add_argument("--split-run")
    ap.add_argument("--classifier")
    ap.add_argument("--reference", help="prepared data dir: real people, so that discriminability is the primary")
    ap.add_argument("--scenarios", default=str(Path(__file__).resolve().parents[1] / "scenarios" / "smoke"))
    ap.add_argument("--seeds", type=int, default=4)
    ap.add_argument("--samples", type=int)
    ap.add_argument("--out", default="results/bench-false-alarms")
    ap.add_argument("--sizes", default="4,10,30")
    ap.add_argument("--reps", type=int, default=200)
    args = ap.parse_args()
    started = time.time()
    if args.split_run:
        print(split_run_a_a(args.split_run, args.classifier, args.reps))
    elif args.adapter:
        print(adapter_a_a(args.adapter, args.scenarios, args.seeds, args.samples, args.out, args.classifier,
                          args.reference))
    else:
        print(population_a_a([int(n) for n in args.sizes.split(",")], args.reps))
    print(f"\n{time.time() - started:.0f} s")


if __name__ == "__main__":
    from userlm.threads import machine_line

    print(machine_line(), flush=True)
    main()
