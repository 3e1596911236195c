"""No generator that a table ranks may be in the AI-voice classifier's training data.

By default the classifier's AI class is data only (ShareGPT's ChatGPT turns, OASST's assistant turns): no model
this project simulates wrote any of it. Turns of a model (`--stock-turns`, `--adversary-turns`) are an opt-in,
and the manifest records that model under `generators`. Evaluating a run refuses such a classifier when the
run's user was written by one of them: the user model itself, the model behind `prompted:`/`base:`, or the base
model of a trained adapter (a fine-tune of a generator is that generator's kin, and its untrained and prompted
rows were the ones the old default classifier learned as AI)."""

from __future__ import annotations

from userlm.io import UserError

RULE = ("refuse to score a run whose user model, its prompted/base model or its adapter's base model wrote "
        "training turns of the classifier (manifest 'generators'); by default no model's turns are trained on")


def model_key(ref: str) -> str:
    """'prompted:embedded:smollm2-135m-instruct', 'HuggingFaceTB/SmolLM2-135M-Instruct' -> a comparable name."""
    ref = str(ref).strip().rstrip("/")
    for prefix in ("prompted:", "base:"):
        if ref.startswith(prefix):
            ref = ref[len(prefix):]
    return ref.split(":")[-1].split("/")[-1].lower()


def training_generators(cfg) -> list[str]:
    """The models whose outputs a classifier config puts in the training data."""
    return [cfg.stock_model] if (cfg.stock_turns or cfg.adversary_turns) else []


def run_generators(run_info: dict) -> set[str]:
    """The models behind a run's user turns (as model_key names)."""
    out = set()
    config = run_info.get("config") or {}
    if config.get("user"):
        out.add(model_key(config["user"]))
    adapter = run_info.get("user_adapter_manifest") or {}
    if adapter.get("base_model"):
        out.add(model_key(adapter["base_model"]))
    return out


def check_held_out(manifest: dict, run_info: dict, where: str = "the classifier") -> None:
    """UserError when a model behind the run's user turns wrote part of the classifier's training data."""
    trained = {model_key(g): g for g in manifest.get("generators", [])}
    shared = sorted(set(trained) & run_generators(run_info))
    if shared:
        raise UserError(
            f"{where} was trained on turns written by {', '.join(trained[k] for k in shared)}, the model behind this "
            "run's user: it would rank its own training data; use a classifier trained without it "
            "(`userlm evaluate train-classifier --stock-turns 0 --adversary-turns 0`, the default)")
