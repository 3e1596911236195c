"""`userlm demo`: the whole job on the embedded defaults, offline, on a CPU. Every stage is reused by its
hash when it already finished and resumed when it was interrupted."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from userlm.config import check_fields, option
from userlm.io import atomic_write_json, sha256_json
from userlm.records import read_adapter_manifest
from workflows.stages import cached_stage

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ROOT / "scenarios" / "smoke"


@dataclass
class DemoConfig:
    """`userlm demo`: the arguments of `run_demo`."""

    workdir: str = option("work/demo", "where every stage's output goes")
    quick: bool = option(False, "a few-minute variant")
    replay_conversations: int = option(8, "replay stage: test conversations with a written intent replayed per "
                                          "user (one per tree; the quick variant takes 2)")
    replay_points: int = option(3, "replay stage: points per conversation at most, the first ones (quick: 2)")

    def __post_init__(self):
        check_fields(self)


def data_stage(work: Path, console) -> dict:
    """Real ShareGPT conversations -> user-model examples; the prepared data's manifest."""
    from userlm.data.prepare import PrepareConfig, load_manifest, prepare

    cfg = PrepareConfig(sources=["sharegpt"], out=str(work / "data"))
    manifest = work / "data" / "manifest.json"
    same_config = lambda d: manifest.exists() and json.loads(manifest.read_text())["config"] == cfg.__dict__
    cached_stage(work / "data", lambda: prepare(cfg), console, same_config)
    data_manifest = load_manifest(work / "data")
    console.print(f"{data_manifest['counts']['train']['human_targets']:,} human target turns for training")
    return data_manifest


def train_config(data_dir: Path, quick: bool):
    from trainer.train import TrainConfig
    from userlm.config import load_config

    overrides = [f"data_dir={data_dir}", "eval_steps=100000", "intent=mixed"]
    if quick:
        overrides += ["max_steps=6", "max_eval_examples=16", "save_steps=3", "max_length=128"]
    return load_config(TrainConfig, ROOT / "configs" / "embedded-cpu.yaml", overrides)


def intents_stage(data_dir: Path, train_cfg, quick: bool, console) -> dict:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from workflows.intents import IntentsConfig, write_intents

    # Only what the demo trains on (the trainer's own seeded sample, and of it the share that gets its intent)
    # and a slice of the test split.
    trained = train_cfg.max_steps * train_cfg.per_device_train_batch_size * train_cfg.gradient_accumulation_steps \
        if train_cfg.max_steps > 0 else train_cfg.max_train_examples
    with Progress(TextColumn("[bold]intents[/bold]"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, transient=True) as bar:  # a few minutes on 2 cores: show that it moves
        task = bar.add_task("", total=None)
        intents = write_intents(IntentsConfig(data_dir=str(data_dir), splits=["train", "test"], seed=train_cfg.seed,
                                              share=train_cfg.intent_share, batch_size=32,
                                              split_limits={"train": trained, "test": 8 if quick else 32}),
                                progress=lambda n, total: bar.update(task, completed=n, total=total))
    console.print(f"{intents['examples']} intents ({intents['from_cache']} cached): {intents['usable']} usable, "
                  f"flagged {intents['flagged'] or 'none'}")
    return intents


def classifier_stage(work: Path, data_manifest: dict, quick: bool, console) -> tuple[Path, dict]:
    """Trained on the train split of the same prepared data whose test split is the real-human reference."""
    from evaluators.classifier import ClassifierConfig, train_classifier

    # Data-only AI turns (the default): the demo ranks SmolLM2 users, so no SmolLM2 turn is trained on.
    cfg = ClassifierConfig(data=[str(work / "data")], max_per_class_per_source=300 if quick else 800)
    clf_dir = work / f"classifier-{sha256_json({**cfg.__dict__, 'data': data_manifest['content_hash']})[:10]}"
    cfg.out = str(clf_dir)
    cached_stage(clf_dir, lambda: train_classifier(cfg, console), console)
    manifest = json.loads((clf_dir / "manifest.json").read_text())
    console.print(f"classifier on held-out turns: AUROC {manifest['test_auroc']}, length-matched "
                  f"{manifest['test_auroc_length_matched']}, word count alone "
                  f"{manifest['test']['overall']['word_count_baseline']}")
    return clf_dir, manifest


def adapter_stage(work: Path, train_cfg, data_manifest: dict, console) -> tuple[Path, str]:
    """The adapter's directory and key: the hash of its config, data and intents."""
    from trainer.train import train
    from userlm.data.intents import load_intents

    # what training reads of the intents (the file's line order is the order intents finished in)
    intents_hash = sha256_json(sorted(load_intents(work / "data").items()))
    key = sha256_json({"config": train_cfg.__dict__, "data": data_manifest["content_hash"], "intents": intents_hash})[:10]
    adapter = work / f"adapter-{key}"
    train_cfg.output_dir = str(adapter)
    cached_stage(adapter, lambda: train(train_cfg, resume=adapter.exists()), console)
    return adapter, key


def demo_users(adapter: Path) -> dict[str, str]:
    return {"trained-user-model": str(adapter), "untrained-base": "base:embedded:smollm2-135m-instruct",
            "prompted-baseline": "prompted:embedded:smollm2-135m-instruct"}


def simulate_stage(work: Path, adapter: Path, key: str, quick: bool, console) -> dict[str, Path]:
    """Trained user model, untrained base and prompted baseline against the stock assistant, in one loop (one
    backend serves the assistant and both untrained users); `simulate` resumes a run and says when it is done."""
    from simulator.run import SimulationConfig, simulate_together
    from userlm.config import load_config

    users = demo_users(adapter)
    # The scenarios allow 8 user turns; the demo caps self-play at 3 to fit the 2-core CPU's time budget (its
    # conversations that stop at the cap are counted as such in the report; replay lets a user end anywhere).
    sim_overrides = ["samples=2", "max_turns=2"] if quick else ["samples=5", "max_turns=3"]
    runs = {label: work / "runs" / (f"{label}-{key}" if label == "trained-user-model" else label) for label in users}
    for label, user in users.items():
        console.print(f"[bold]{label}[/bold]: {user} -> {runs[label]}")
    simulate_together([load_config(SimulationConfig, None, [f"scenarios={SMOKE}", f"user={users[label]}",
                                                            f"out={run_dir}", *sim_overrides])
                       for label, run_dir in runs.items()], resume=True, console=console)
    return runs


def replay_stage(work: Path, adapter: Path, key: str, conversations: int, points: int, console) -> dict[str, Path]:
    """The three users replay the test conversations that have a written intent (docs/replay.md), in one loop
    (the untrained and prompted users share one backend); named by the adapter's key, which holds the data's and
    the intents' hashes, so changed contexts get fresh runs."""
    from simulator.replay import replay_together
    from simulator.run import SimulationConfig
    from userlm.config import load_config

    runs = {label: work / "replays" / f"{label}-{key}" for label in demo_users(adapter)}
    # Prefill dominates on the 2-core CPU (~10 tokens/s generated at 2048-token histories, docs/replay.md): the
    # demo cuts histories to 512 tokens (the cut points are counted in each run.json).
    replay_together([load_config(SimulationConfig, None, [f"replay={work / 'data'}", "with_intent=true", f"user={user}",
                                                          f"limit={conversations}", f"max_turns={points}", "context_tokens=512",
                                                          f"out={runs[label]}"])
                     for label, user in demo_users(adapter).items()], resume=True, console=console)
    return runs


# Held-out conversations whose human turns the trained user's perplexity scores, 5 passes each (model and base,
# with and without intents): 40 rather than `evaluate`'s 48 keeps the demo within 15 minutes on a 150-GFLOPS CPU.
PERPLEXITY_EXAMPLES = 40


def evaluate_stage(work: Path, runs: dict[str, Path], replays: dict[str, Path], clf_dir: Path,
                   console) -> tuple[Path, Path]:
    """Self-play runs against as many real conversations cut alike; replays against the people of their own
    contexts (discriminability, end F1 on the real ends), one report for all."""
    from evaluators.report import write_report
    from evaluators.run import evaluate_run

    jobs = [(f"{label} (self-play)", run_dir, "people,ai_voice,behaviour,diversity,intent"
             + (",perplexity" if label == "trained-user-model" else "")) for label, run_dir in runs.items()]
    jobs += [(f"{label} (replay)", run_dir, "people,ai_voice,behaviour") for label, run_dir in replays.items()]
    for label, run_dir, names in jobs:
        console.print(f"evaluating {label}: {names.replace(',', ', ')}")
        evaluate_run(str(run_dir), reference=str(work / "data"), classifier=str(clf_dir), evaluators=names,
                     perplexity_examples=PERPLEXITY_EXAMPLES)
    return write_report([str(r) for _, r, _ in jobs], str(work / "report"), console=console)


def _durations(starts: dict[str, float], end: float) -> dict[str, float]:
    times = [*starts.values(), end]
    return {name: round(b - a, 1) for name, a, b in zip(starts, times, times[1:])}


def run_demo(workdir: str = "work/demo", quick: bool = False, replay_conversations: int = 8, replay_points: int = 3,
             console=None) -> dict:
    import torch

    from userlm.threads import matmul_gflops

    work, started, stage_starts = Path(workdir), time.time(), {}
    # Timings are only comparable across machines beside the machine's speed (the slower CPU kind: ~150).
    gflops = round(matmul_gflops())
    console.print(f"this machine: {gflops} GFLOPS (fp32 2048x2048 torch matmul, {torch.get_num_threads()} threads)")

    def stage(name: str) -> None:  # short rule titles: a long one is cut to the terminal's width, time and all
        stage_starts[name.split(":")[0]] = time.time()
        console.rule(f"[bold]{name}[/bold] (t = {time.time() - started:.0f} s)")

    stage("1/7 data: ShareGPT conversations -> user-model examples")
    data_manifest = data_stage(work, console)
    train_cfg = train_config(work / "data", quick)
    stage("2/7 intents: the assistant writes what each person wanted")
    intents = intents_stage(work / "data", train_cfg, quick, console)
    stage("3/7 classifier: AI voice on real human vs AI turns")
    clf_dir, clf_manifest = classifier_stage(work, data_manifest, quick, console)
    stage("4/7 train: LoRA user model on SmolLM2-135M, half with intents")
    adapter, key = adapter_stage(work, train_cfg, data_manifest, console)
    stage("5/7 simulate: trained, untrained, prompted users vs assistant")
    runs = simulate_stage(work, adapter, key, quick, console)
    stage("6/7 replay: the three users in real held-out conversations")
    replays = replay_stage(work, adapter, key, 2 if quick else replay_conversations, 2 if quick else replay_points,
                           console)
    stage("7/7 evaluate against real held-out humans; report")
    md, html = evaluate_stage(work, runs, replays, clf_dir, console)
    summary = {
        "data_dir": str(work / "data"), "intents": intents, "classifier": str(clf_dir),
        "classifier_test_auroc": clf_manifest["test_auroc"],
        "classifier_test_auroc_length_matched": clf_manifest["test_auroc_length_matched"],
        "classifier_word_count_auroc": clf_manifest["test"]["overall"]["word_count_baseline"],
        "adapter": str(adapter), "adapter_final_eval_loss": read_adapter_manifest(adapter).final_eval_loss,
        "runs": {k: str(v) for k, v in runs.items()}, "replays": {k: str(v) for k, v in replays.items()},
        "metrics": {k: str(v / "metrics.json") for k, v in runs.items()},
        "replay_metrics": {k: str(v / "metrics.json") for k, v in replays.items()},
        "report_md": str(md), "report_html": str(html), "seconds": round(time.time() - started, 1), "matmul_gflops": gflops,
        "stage_seconds": _durations(stage_starts, time.time()),
    }
    atomic_write_json(work / "demo.json", summary)
    console.rule("artifacts")
    for name, value in summary.items():
        if name not in ("metrics", "intents"):
            console.print(f"{name}: {value}")
    return summary
