"""Issue 24's measurements on replayed held-out conversations (every point of each, so every real end is a
decision): end F1 against the always-end baseline, turn lengths against people's, echo rate, discriminability,
for several users side by side, and each user-side guardrail on and off for one of them. One replay loop (users
of one model share its backend), then `evaluate` (people, behaviour) of each run; both resume.

    python benchmarks/bench_user_behaviour.py --data DATA_DIR --work DIR \\
        --user windows=ADAPTER --user head=OLD_ADAPTER --user prompted=prompted:embedded:smollm2-135m-instruct \\
        --guardrails-of windows --limit 16

Prints a markdown table (value [95% CI] per metric) and the machine's matmul GFLOPS."""

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# Each guardrail alone, at the values measured (simulator/guardrails.py; UserLM-8b's four).
GUARDRAILS = {"min_turns=2": {"min_turns": 2}, "no_assistant_opening": {"no_assistant_opening": 1},
              "echo_words=8": {"echo_words": 8}, "max_words=100": {"max_words": 100}}
COLUMNS = ("end_f1", "end_f1_always", "end_precision", "end_recall", "end_base_rate", "termination_rate",
           "mean_turn_words", "turn_length_w1", "truncated_share", "echo_rate", "discriminability",
           "discriminability_people")


def fmt(cell: dict | None) -> str:
    if not cell or cell.get("value") is None:
        return "n/a"
    if cell.get("ci_low") is None:
        return f"{cell['value']:.3f}"
    return f"{cell['value']:.3f} [{cell['ci_low']:.3f}, {cell['ci_high']:.3f}]"


def main():
    from evaluators.run import evaluate_run
    from simulator.replay import replay_together
    from simulator.run import SimulationConfig
    from userlm.config import load_config
    from userlm.threads import matmul_gflops

    parser = argparse.ArgumentParser()
    parser.add_argument("--data", required=True)
    parser.add_argument("--work", required=True)
    parser.add_argument("--user", action="append", required=True, help="LABEL=MODEL (repeatable)")
    parser.add_argument("--guardrails-of", help="LABEL of the user whose guardrails are measured one by one")
    parser.add_argument("--end-policy", help="an end_policy.json: each user also with it (the model's ends dropped, "
                        "and kept)")
    parser.add_argument("--limit", type=int, default=16)
    parser.add_argument("--context-tokens", type=int, default=512)
    args = parser.parse_args()
    users = dict(u.split("=", 1) for u in args.user)
    runs = {label: ({}, model, []) for label, model in users.items()}
    if args.guardrails_of:
        runs.update({f"{args.guardrails_of} + {name}": (g, users[args.guardrails_of], [])
                     for name, g in GUARDRAILS.items()})
    for label, model in users.items() if args.end_policy else ():
        runs.update({f"{label} + end policy {m}": ({}, model, [f"end_policy={args.end_policy}", f"end_policy_lm_ends={m}"])
                     for m in ("drop", "keep")})
    work = Path(args.work)
    dirs = {label: work / label.replace(" + ", "+").replace("=", "-").replace(" ", "-") for label in runs}
    started = time.perf_counter()
    replay_together([load_config(SimulationConfig, None, [
        f"replay={args.data}", "with_intent=true", f"user={model}", f"limit={args.limit}",
        f"context_tokens={args.context_tokens}", f"out={dirs[label]}", f"user_guardrails={json.dumps(g)}", *extra])
        for label, (g, model, extra) in runs.items()], resume=True)
    replayed = time.perf_counter() - started
    rows = []
    for label, run_dir in dirs.items():
        if not (run_dir / "metrics.json").exists():
            evaluate_run(str(run_dir), reference=args.data, evaluators="people,behaviour")
        metrics = json.loads((run_dir / "metrics.json").read_text())["metrics"]
        fired = json.loads((run_dir / "run.json").read_text()).get("guardrails", {}).get("fired", {})
        rows.append([label] + [fmt(metrics.get(c, {}).get("run")) for c in COLUMNS]
                    + [", ".join(f"{k} {v}" for k, v in fired.items()) or "-"])
        people = {c: metrics.get(c, {}).get("reference") for c in COLUMNS}
    rows.append(["real people (same points)"] + [fmt(people[c]) for c in COLUMNS] + ["-"])
    print(f"| user | {' | '.join(COLUMNS)} | guardrails fired |")
    print("|" + "---|" * (len(COLUMNS) + 2))
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print(f"\nreplay {replayed:.0f} s, total {time.perf_counter() - started:.0f} s; machine: "
          f"{matmul_gflops():.0f} GFLOPS (fp32 2048x2048 torch matmul, 2 threads)")


if __name__ == "__main__":
    from userlm.threads import machine_line

    print(machine_line(), flush=True)
    main()
