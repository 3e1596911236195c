"""`userlm demo`: the whole job on the embedded defaults, offline, on a CPU. Every stage is reused by its
hash when it already finished and resumed when it was interrupted."""

from __future__ import annotations

import json
import time
from pathlib import Path

from userlm.io import sha256_file, sha256_json

SMOKE = Path(__file__).resolve().parents[1] / "scenarios" / "smoke"


def _stage(console, name: str, started: float) -> None:
    console.rule(f"[bold]{name}[/bold] (t = {time.time() - started:.0f} s)")


def cached_stage(console, out: Path, run, done_file: str = "manifest.json") -> Path:
    """Run `run()` unless `out` already holds its finished output (named by its config's hash); an interrupted
    stage resumes inside `run` (training checkpoints, appended transcripts)."""
    if (out / done_file).exists():
        console.print(f"reusing {out}")
    else:
        run()
    return out


def run_demo(workdir: str = "work/demo", quick: bool = False, console=None) -> dict:
    from evaluators.classifier import ClassifierConfig, train_classifier
    from evaluators.report import write_report
    from evaluators.run import evaluate_run
    from simulator.run import SimulationConfig, simulate
    from trainer.train import TrainConfig, train
    from userlm.config import load_config
    from userlm.data.prepare import PrepareConfig, prepare
    from userlm.records import read_adapter_manifest
    from workflows.intents import IntentsConfig, write_intents

    work = Path(workdir)
    started = time.time()
    data_dir = work / "data"

    _stage(console, "1/6 data: real ShareGPT conversations -> user-model examples", started)
    data_cfg = PrepareConfig(sources=["sharegpt"], out=str(data_dir))
    manifest_path = data_dir / "manifest.json"
    if manifest_path.exists() and json.loads(manifest_path.read_text())["config"] == data_cfg.__dict__:
        console.print(f"reusing {data_dir}")
    else:
        prepare(data_cfg)
    data_manifest = json.loads(manifest_path.read_text())
    console.print(f"{data_manifest['counts']['train']['human_targets']:,} human target turns for training")

    overrides = [f"data_dir={data_dir}", "eval_steps=100000", "intent=mixed"]
    if quick:
        overrides += ["max_steps=6", "max_eval_examples=16", "save_steps=3", "max_length=128"]
    train_cfg = load_config(TrainConfig, Path(__file__).resolve().parents[1] / "configs" / "embedded-cpu.yaml", overrides)

    _stage(console, "2/6 intents: the embedded assistant writes what each person wanted", started)
    # Only what the demo trains on (the trainer's own seeded sample, and of it the share that gets its intent)
    # and a slice of the test split.
    trained = train_cfg.max_steps * train_cfg.per_device_train_batch_size * train_cfg.gradient_accumulation_steps \
        if train_cfg.max_steps > 0 else train_cfg.max_train_examples
    intents = write_intents(IntentsConfig(data_dir=str(data_dir), splits=["train", "test"], seed=train_cfg.seed,
                                          share=train_cfg.intent_share, batch_size=32,
                                          split_limits={"train": trained, "test": 8 if quick else 32}))
    console.print(f"{intents['examples']} intents ({intents['from_cache']} cached): {intents['usable']} usable, "
                  f"flagged {intents['flagged'] or 'none'}")

    _stage(console, "3/6 AI-voice classifier on real human vs AI turns", started)
    # Trained on the train split of the same prepared data whose test split is the real-human reference.
    clf_cfg = ClassifierConfig(data=[str(data_dir)], max_per_class_per_source=300 if quick else 800,
                               stock_turns=8 if quick else 32, adversary_turns=8 if quick else 32,
                               held_out_generators=not quick)
    clf_dir = work / f"classifier-{sha256_json({**clf_cfg.__dict__, 'data': data_manifest['content_hash']})[:10]}"
    clf_cfg.out = str(clf_dir)
    cached_stage(console, clf_dir, lambda: train_classifier(clf_cfg, console))
    clf_manifest = json.loads((clf_dir / "manifest.json").read_text())
    auroc = clf_manifest["test_auroc"]
    console.print(f"classifier on held-out turns: AUROC {auroc}, length-matched "
                  f"{clf_manifest['test_auroc_length_matched']}, word count alone "
                  f"{clf_manifest['test']['overall']['word_count_baseline']}")

    _stage(console, "4/6 train a user-model adapter (LoRA on SmolLM2-135M, intents in half the examples)", started)
    intents_hash = sha256_file(data_dir / "intents.jsonl")
    key = sha256_json({"config": train_cfg.__dict__, "data": data_manifest["content_hash"], "intents": intents_hash})[:10]
    adapter = work / f"adapter-{key}"
    train_cfg.output_dir = str(adapter)
    cached_stage(console, adapter, lambda: train(train_cfg, resume=adapter.exists()))
    adapter_manifest = read_adapter_manifest(adapter)

    _stage(console, "5/6 simulate: trained user model, untrained base, prompted baseline vs the stock assistant", started)
    users = {"trained-user-model": str(adapter), "untrained-base": "base:embedded:smollm2-135m-instruct",
             "prompted-baseline": "prompted:embedded:smollm2-135m-instruct"}
    sim_overrides = ["samples=2", "max_turns=2"] if quick else ["samples=5"]
    runs = {}
    for label, user in users.items():
        run_dir = work / "runs" / (f"{label}-{key}" if label == "trained-user-model" else label)
        cfg = load_config(SimulationConfig, None, [f"scenarios={SMOKE}", f"user={user}", f"out={run_dir}", *sim_overrides])
        console.print(f"[bold]{label}[/bold]: {user}")
        simulate(cfg, resume=(run_dir / "transcripts.jsonl").exists(), console=console)
        runs[label] = run_dir

    _stage(console, "6/6 evaluate against real held-out humans, and report", started)
    for label, run_dir in runs.items():
        names = "ai_voice,behaviour,diversity,intent" + (",perplexity" if label == "trained-user-model" else "")
        evaluate_run(str(run_dir), reference=str(data_dir), classifier=str(clf_dir), evaluators=names)
    md, html = write_report([str(r) for r in runs.values()], str(work / "report"), console=console)
    summary = {
        "data_dir": str(data_dir), "intents": intents, "classifier": str(clf_dir), "classifier_test_auroc": auroc,
        "classifier_test_auroc_length_matched": clf_manifest["test_auroc_length_matched"],
        "classifier_word_count_auroc": clf_manifest["test"]["overall"]["word_count_baseline"],
        "adapter": str(adapter), "adapter_final_eval_loss": adapter_manifest.final_eval_loss,
        "runs": {k: str(v) for k, v in runs.items()},
        "metrics": {k: str(v / "metrics.json") for k, v in runs.items()},
        "report_md": str(md), "report_html": str(html), "seconds": round(time.time() - started, 1),
    }
    from userlm.io import atomic_write_json

    atomic_write_json(work / "demo.json", summary)
    console.rule("artifacts")
    for name, value in summary.items():
        if name not in ("metrics", "intents"):
            console.print(f"{name}: {value}")
    return summary
