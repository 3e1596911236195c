"""Which embedded model is the better start for a user model? UserLM-8b (arXiv 2510.06552) finds base models
better than instruct ones. Trains SmolLM2-135M-Instruct and Gemma-3-270M base (optional packages) with one
recipe on one data and budget, side by side in one run, and prints for each: held-out perplexity on real human
turns before and after training, and the human-likeness of its simulated user on the smoke scenarios, scored by
one classifier. The two tokenizers differ (49k vs 262k tokens), so perplexity is per word of the turns' text
(`perplexity_of`, end tokens apart), on whole conversations (max_words=0)."""

import argparse
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODELS = ("embedded:smollm2-135m-instruct", "embedded:gemma3-270m")


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
    parser.add_argument("--perplexity-examples", type=int, default=48)
    parser.add_argument("--samples", type=int, default=5, help="conversations per smoke scenario")
    parser.add_argument("--classifier", help="AI-voice classifier dir (default: the data's own, trained on first use)")
    args = parser.parse_args()
    work = Path(args.work)
    data = work / "data"
    if not (data / "manifest.json").exists():
        prepare(PrepareConfig(sources=["sharegpt"], out=str(data)))
    rows = []
    for model in MODELS:
        name = model.split(":")[1]
        adapter = work / f"adapter-{name}"
        cfg = load_config(TrainConfig, ROOT / "configs" / "embedded-cpu.yaml",
                          [f"base_model={model}", f"data_dir={data}", f"output_dir={adapter}",
                           f"max_steps={args.steps}", "eval_steps=100000"])
        manifest = read_adapter_manifest(adapter).to_dict() if (adapter / "manifest.json").exists() \
            else train(cfg, resume=adapter.exists())
        ppl = perplexity_of(str(adapter), str(data), "test", limit=args.perplexity_examples, max_words=0)  # per word
        run = work / f"run-{name}"
        simulate(SimulationConfig(scenarios=str(ROOT / "scenarios" / "smoke"), user=str(adapter), assistant=MODELS[0],
                                  out=str(run), samples=args.samples), resume=(run / "transcripts.jsonl").exists())
        metrics = evaluate_run(str(run), reference=str(data), classifier=args.classifier,
                               evaluators="ai_voice,behaviour")["metrics"]
        rows.append((name, ppl["base"]["perplexity"], ppl["perplexity"], metrics["human_likeness"]["run"]["value"],
                     metrics["turn_length_w1"]["run"]["value"], manifest["train_runtime_s"]))
    print(f"{'model':<24}{'word ppl before':>16}{'word ppl after':>16}{'human_likeness':>16}{'turn_length_w1':>16}{'train s':>9}")
    for row in rows:
        print(f"{row[0]:<24}{row[1]:>16.2f}{row[2]:>16.2f}{row[3]:>16.3f}{row[4]:>16.1f}{row[5]:>9.0f}")
    print(f"per-word perplexity after training, gemma / smollm2: {rows[1][2] / rows[0][2]:.2f}")


if __name__ == "__main__":
    main()
