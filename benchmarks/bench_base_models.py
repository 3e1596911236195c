"""Which embedded model is the better start for a user model? UserLM-8b (arXiv 2510.06552) finds base models
better than instruct ones. Trains SmolLM2-135M-Instruct and Gemma-3-270M base (optional packages) with one
recipe on one data and budget, side by side in one run, and prints for each: held-out perplexity on real human
turns before and after training, and the human-likeness of its simulated user on the smoke scenarios, scored by
one classifier. The two tokenizers differ (49k vs 262k tokens), so perplexity is per word of the turns' text
(`perplexity_of`, end tokens apart), on whole conversations (max_words=0). Each run is also judged against people
(the `people` evaluator, like-for-like held-out conversations of the data): discriminability with its people
control, distribution_mmd (embedding x style); `--models` runs one model alone (e.g. `--models gemma3-270m`)."""

import argparse
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODELS = ("embedded:smollm2-135m-instruct", "embedded:gemma3-270m")
EVALUATORS = "people,ai_voice,behaviour"
# (column, metric): the printed table; the first three are issue 22's headline, the rest the shortcut columns.
COLUMNS = (("discriminability", "discriminability"), ("disc. people", "discriminability_people"),
           ("distribution_mmd", "distribution_mmd"), ("embedding_mmd", "embedding_mmd"), ("human_likeness", "human_likeness"),
           ("turn_length_w1", "turn_length_w1"), ("truncated", "truncated_share"), ("distinct_2", "distinct_2"))


def pick_models(names: str | None) -> list[str]:
    """`--models a,b` (short names or embedded:NAME) -> the MODELS entries, in MODELS' order."""
    if not names:
        return list(MODELS)
    wanted = {n.strip().removeprefix("embedded:") for n in names.split(",") if n.strip()}
    unknown = wanted - {m.split(":")[1] for m in MODELS}
    if unknown:
        raise SystemExit(f"error: unknown model(s) {', '.join(sorted(unknown))} (known: {', '.join(MODELS)})")
    return [m for m in MODELS if m.split(":")[1] in wanted]


def cells(metrics: dict) -> list[str]:
    """The table's cells of one run's metrics (value [95% CI]; n/a where a metric is missing)."""
    from evaluators.tables import fmt

    return [fmt(metrics.get(name, {}).get("run")) for _, name in COLUMNS]


def main():

    from evaluators.perplexity import perplexity_of
    from evaluators.run import evaluate_run
    from simulator.run import SimulationConfig, simulate
    from trainer.train import TrainConfig, train
    from userlm.config import load_config
    from userlm.data.prepare import PrepareConfig, prepare
    from userlm.records import read_adapter_manifest

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--work", default="work/bench-base-models")
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--perplexity-examples", type=int, default=48,
                        help="held-out conversations for perplexity (0: skip it; Gemma's 262k-token logits over whole "
                             "conversations took > 16 min on 2 cores)")
    parser.add_argument("--samples", type=int, default=5, help="conversations per smoke scenario")
    parser.add_argument("--classifier", help="AI-voice classifier dir (default: the data's own, trained on first use)")
    parser.add_argument("--models", help=f"comma-separated subset of {', '.join(MODELS)} (default: both)")
    args = parser.parse_args()
    work = Path(args.work)
    data = work / "data"
    if not (data / "manifest.json").exists():
        prepare(PrepareConfig(sources=["sharegpt"], out=str(data)))
    rows = []
    for model in pick_models(args.models):
        name = model.split(":")[1]
        adapter = work / f"adapter-{name}"
        cfg = load_config(TrainConfig, ROOT / "configs" / "embedded-cpu.yaml",
                          [f"base_model={model}", f"data_dir={data}", f"output_dir={adapter}",
                           f"max_steps={args.steps}", "eval_steps=100000"])
        manifest = read_adapter_manifest(adapter).to_dict() if (adapter / "manifest.json").exists() \
            else train(cfg, resume=adapter.exists())
        ppl = perplexity_of(str(adapter), str(data), "test", limit=args.perplexity_examples, max_words=0) \
            if args.perplexity_examples else {"base": {"perplexity": float("nan")}, "perplexity": float("nan")}  # per word
        run = work / f"run-{name}"
        simulate(SimulationConfig(scenarios=str(ROOT / "scenarios" / "smoke"), user=str(adapter), assistant=MODELS[0],
                                  out=str(run), samples=args.samples), resume=(run / "transcripts.jsonl").exists())
        metrics = evaluate_run(str(run), reference=str(data), classifier=args.classifier,
                               evaluators=EVALUATORS)["metrics"]
        rows.append((name, ppl["base"]["perplexity"], ppl["perplexity"], manifest["train_runtime_s"], cells(metrics)))
    print(f"{'model':<24}{'word ppl before':>16}{'word ppl after':>16}{'train s':>9}")
    for row in rows:
        print(f"{row[0]:<24}{row[1]:>16.2f}{row[2]:>16.2f}{row[3]:>9.0f}")
    print("| model | " + " | ".join(c for c, _ in COLUMNS) + " |")
    for row in rows:
        print(f"| {row[0]} | " + " | ".join(row[4]) + " |")
    if len(rows) == 2:
        print(f"per-word perplexity after training, gemma / smollm2: {rows[1][2] / rows[0][2]:.2f}")


if __name__ == "__main__":
    from userlm.threads import machine_line

    print(machine_line(), flush=True)
    main()
