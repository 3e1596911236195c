"""`userlm train`: one dataclass config -> TRL SFTTrainer + peft LoRA (QLoRA where CUDA and bitsandbytes are)."""

from __future__ import annotations

import dataclasses
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from trainer.curves import LOSS_CURVE, final_eval_loss, plot_loss_curve, report_to_list
from trainer.end_weight import check_end_weight, with_end_weight
from trainer.speed import check_speed_options, labelled_positions_only, speed_args, trainer_class
from userlm import END_OF_CONVERSATION
from userlm.chat import USER_MODEL_SYSTEM, encode_for_training, user_model_system
from userlm.config import DType, Quantization, check_fields, option, to_dict
from userlm.data.dedup import TRAINING_HASHES, write_hashes
from userlm.data.intents import gets_intent, load_intents
from userlm.data.prepare import load_manifest, read_split
from userlm.distributed import rank, wait_for_everyone, world_size
from userlm.io import IN_PROGRESS, UserError, atomic_write_json, sha256_file, userlm_kind
from userlm.models import ADAPTER_MANIFEST, identity, load_causal_lm, resolve_quantization
from userlm.provenance import git_commit, library_versions, provenance, template_sha256
from userlm.quiet import output_is_terminal

ADAPTER_KIND = "userlm-adapter"


@dataclass
class TrainConfig:
    base_model: str = option("embedded:smollm2-135m-instruct", "model to train an adapter on (any model reference)")
    data_dir: str = option("work/data", "prepared data directory (`userlm data prepare`)")
    output_dir: str = option("work/adapters/user-model", "where the adapter, tokenizer and manifest.json go")
    # "assistant" is a negative control that should sound like an assistant (used to test regression checks).
    target_role: Literal["user", "assistant"] = option(
        "user", "train on the human turns (user), or on the AI turns instead (assistant: a negative control)")
    system_prompt: str = option(USER_MODEL_SYSTEM, "system prompt of the user-model format")
    intent: Literal["none", "always", "mixed"] = option(
        "none", "condition on each conversation's written intent (`userlm data intents`) in the system prompt: "
                "none, always (every example that has one), or mixed (a seeded share, so one adapter works both ways)")
    intent_share: float = option(0.5, "with intent=mixed: the share of examples given their intent", min=0, max=1)
    quantization: Quantization = option("auto", "auto = NF4 (QLoRA) when CUDA + bitsandbytes are present, else none")
    dtype: DType = option("auto", "auto = bfloat16 on CUDA, float32 on CPU")
    lora_r: int = option(16, "LoRA rank", min=1)
    lora_alpha: int = option(32, "LoRA alpha", min=1)
    lora_dropout: float = option(0.05, "LoRA dropout", min=0, max=1)
    lora_target_modules: str = option("all-linear", "all-linear, or a comma-separated list of module names")
    max_length: int = option(512, "tokens per example at most", min=1)
    context: Literal["windows", "head"] = option(
        "windows", "a conversation longer than max_length: windows (every human turn and end decision trained once, "
                   "with the history before it cut as replay cuts prompts) or head (its first max_length tokens)")
    end_share: float | None = option(
        None, "context=windows with a sample (max_steps or max_train_examples): the share of the sampled windows that "
              "end a conversation (null: as the sample falls, about 1 in 8 on ShareGPT)", min=0, max=1)
    end_loss_weight: float = option(
        1.0, "multiply the training loss of the end marker's tokens by this (1: plain SFT; trainer/end_weight.py)", min=0)
    per_device_train_batch_size: int = option(4, "training batch size per device", min=1)
    per_device_eval_batch_size: int = option(8, "evaluation batch size per device", min=1)
    gradient_accumulation_steps: int = option(1, "batches per optimizer step", min=1)
    learning_rate: float = option(2e-4, "peak learning rate", min=0)
    lr_scheduler_type: str = option("cosine", "a transformers scheduler name (cosine, linear, constant, ...)")
    warmup_steps: float = option(0.03, "warmup steps; below 1: a fraction of the training steps", min=0)
    weight_decay: float = option(0.0, "weight decay", min=0)
    num_train_epochs: float = option(1.0, "epochs (max_steps wins when set)", min=0)
    max_steps: int = option(-1, "optimizer steps at most (-1: run num_train_epochs)", min=-1)
    max_train_examples: int | None = option(None, "a seeded sample of this many training examples (null: all)", min=1)
    max_eval_examples: int | None = option(200, "validation examples at most (null: all)", min=1)
    eval_steps: int = option(50, "evaluate every this many steps", min=1)
    save_steps: int = option(50, "checkpoint every this many steps (what --resume continues from)", min=1)
    logging_steps: int = option(10, "log every this many steps", min=1)
    batching: Literal["length_grouped", "padding_free", "padded", "step_sorted"] = option(
        "length_grouped", "how batches are formed: length_grouped, padding_free, padded, or step_sorted (padded's "
                          "optimizer steps, each step's examples sorted by length into its micro-batches: less padding)")
    gradient_checkpointing: bool = option(False, "recompute activations to save memory")
    selective_checkpointing: bool = option(False, "with gradient_checkpointing: keep attention outputs, recompute the rest")
    use_liger_kernel: bool = option(False, "Liger's Triton kernels for norms, rotary and SwiGLU (CUDA, liger-kernel)")
    seed: int = option(0, "seed of sampling, shuffling and the intent share")
    end_policy: Literal["none", "learned", "sampled"] = option(
        "none", "learned: also fit an end policy on data_dir's recorded ends into OUTPUT_DIR/end_policy.json (ends "
        "where six features' p(end) >= a threshold); sampled: the user ends at people's end rate a user turn, drawn "
        "from the conversation's seed (docs/user-behaviour.md)")
    report_to: str = option("none", "training curves through a transformers logging integration: tensorboard (logs under OUTPUT_DIR/checkpoints/runs), wandb, ... (comma-separated; none: off)")

    def __post_init__(self):
        check_fields(self)


def _peak_gpu_memory_gb() -> float | None:
    import torch

    return round(torch.cuda.max_memory_allocated() / 2**30, 3) if torch.cuda.is_available() else None


def example_systems(examples: list[dict], cfg: TrainConfig, intents: dict[str, str]) -> list[str]:
    """Each example's system prompt: with its intent where cfg.intent says so, built by the same function
    the simulator uses for a scenario's intent."""
    systems = []
    for ex in examples:
        use = cfg.intent == "always" or (cfg.intent == "mixed" and gets_intent(ex["id"], cfg.seed, cfg.intent_share))
        systems.append(user_model_system(cfg.system_prompt, intents.get(ex["id"], "") if use else ""))
    return systems


def tokenize_split(tokenizer, examples: list[dict], cfg: TrainConfig, systems: list[str] | None = None,
                   limit: int | None = None, end_share: float | None = None):
    """Examples -> (a datasets.Dataset of input_ids/labels, how many of its rows train the end marker): one row
    an example (context=head) or one a window (trainer/windows.py), a seeded sample of `limit` rows where more,
    dropping rows left with no target token."""
    import datasets

    from trainer.windows import encode_windows

    rows = []
    for i, ex in enumerate(examples):
        kw = dict(speaker=cfg.target_role, system=systems[i] if systems else cfg.system_prompt, max_length=cfg.max_length)
        rows += encode_windows(tokenizer, ex, **kw) if cfg.context == "windows" else [
            {**encode_for_training(tokenizer, ex, **kw), "ends_conversation": None}]
    rows = [r for r in rows if any(label != -100 for label in r["labels"])]
    if not rows:
        raise UserError(f"{cfg.data_dir}: no example has a target token within max_length={cfg.max_length}")
    if limit is not None and limit < len(rows):
        rng = random.Random(cfg.seed)
        if end_share is None:
            rows = rng.sample(rows, limit)
        else:  # the ends and the rest sampled apart, in the share asked (as far as there are ends)
            ends = [r for r in rows if r["ends_conversation"]]
            rest = [r for r in rows if not r["ends_conversation"]]
            n_ends = min(len(ends), round(limit * end_share))
            rows = rng.sample(ends, n_ends) + rng.sample(rest, min(len(rest), limit - n_ends))
            rng.shuffle(rows)
    ends = sum(bool(r.pop("ends_conversation")) for r in rows) if cfg.context == "windows" else None
    return datasets.Dataset.from_list(rows), ends


def _sft_args(cfg: TrainConfig, has_eval: bool):
    import torch
    from trl import SFTConfig

    fields = {f.name for f in dataclasses.fields(SFTConfig)}
    args = dict(
        output_dir=str(Path(cfg.output_dir) / "checkpoints"), per_device_train_batch_size=cfg.per_device_train_batch_size,
        per_device_eval_batch_size=cfg.per_device_eval_batch_size,
        gradient_accumulation_steps=cfg.gradient_accumulation_steps, learning_rate=cfg.learning_rate,
        lr_scheduler_type=cfg.lr_scheduler_type, warmup_steps=cfg.warmup_steps, weight_decay=cfg.weight_decay,
        num_train_epochs=cfg.num_train_epochs, max_steps=cfg.max_steps, logging_steps=cfg.logging_steps,
        save_strategy="steps", save_steps=cfg.save_steps, save_total_limit=2,
        eval_strategy="steps" if has_eval else "no", eval_steps=cfg.eval_steps, seed=cfg.seed, data_seed=cfg.seed,
        report_to=report_to_list(cfg.report_to),
        # Sequences are truncated in tokenize_split; TRL refuses max_length with padding-free batches.
        max_length=None if cfg.batching == "padding_free" else cfg.max_length,
        bf16=torch.cuda.is_available(), use_cpu=not torch.cuda.is_available(),  # use_cpu: gloo DDP under accelerate
        gradient_checkpointing=cfg.gradient_checkpointing,
        # Non-reentrant checkpointing and no unused-parameter search: what DDP over LoRA adapters needs.
        gradient_checkpointing_kwargs={"use_reentrant": False}, ddp_find_unused_parameters=False,
        padding_free=cfg.batching == "padding_free", dataset_num_proc=None,
        disable_tqdm=not output_is_terminal(),  # a log gets a line per logging step, not a redrawn bar
    )
    if cfg.batching == "length_grouped":
        # transformers 5 names it train_sampling_strategy; older releases group_by_length.
        if "train_sampling_strategy" in fields:
            args["train_sampling_strategy"] = "group_by_length"
        else:
            args["group_by_length"] = True
    args.update(speed_args(cfg))
    if "activation_checkpointing" in fields:  # transformers 5's name; the old one warns (same setting)
        for old in ("gradient_checkpointing", "gradient_checkpointing_kwargs"):
            args[old.replace("gradient", "activation")] = args.pop(old)
    return SFTConfig(**{k: v for k, v in args.items() if k in fields})


def _lora_config(cfg: TrainConfig):
    from peft import LoraConfig

    modules = cfg.lora_target_modules
    return LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout, task_type="CAUSAL_LM",
                      target_modules=modules if modules == "all-linear" else [m.strip() for m in modules.split(",")])


def check_config(cfg: TrainConfig) -> None:
    """Every option a one-line error before anything is loaded, not after the model is."""
    from transformers import SchedulerType

    from userlm.models import resolve

    check_fields(cfg)  # Literal values and bounds (again: a field may have been set after construction)
    allowed = tuple(t.value for t in SchedulerType)
    if cfg.lr_scheduler_type not in allowed:
        raise UserError(f"lr_scheduler_type must be one of {', '.join(allowed)}; got '{cfg.lr_scheduler_type}'")
    if not cfg.learning_rate > 0 or not 0 <= cfg.lora_dropout < 1 or cfg.warmup_steps < 0:
        raise UserError("need learning_rate > 0, 0 <= lora_dropout < 1 and warmup_steps >= 0")
    if cfg.end_share is not None and (cfg.context != "windows" or (cfg.max_steps <= 0 and not cfg.max_train_examples)):
        raise UserError("end_share needs context=windows and a sample of them (max_steps or max_train_examples)")
    check_speed_options(cfg)
    check_end_weight(cfg)
    resolve(cfg.base_model)
    report_to_list(cfg.report_to)


def train(cfg: TrainConfig, resume: bool = False) -> dict:
    """Train, save adapter + tokenizer + manifest.json into cfg.output_dir; return the manifest. Process 0
    holds the output directory's lock (one writer at a time)."""
    from contextlib import nullcontext

    from userlm.locks import locked

    check_config(cfg)
    with locked(cfg.output_dir, "output_dir") if rank() == 0 else nullcontext():
        return _train(cfg, resume)


def _check_output_dir(out: Path, resume: bool) -> None:
    """A new or empty directory, or with --resume one `userlm train` wrote (finished or interrupted)."""
    if out.exists() and not out.is_dir():
        raise UserError(f"{out}: exists and is not a directory; choose another output_dir")
    if not out.exists() or all(p.name == IN_PROGRESS for p in out.iterdir()):
        return  # new, empty, or left by a run that stopped before training began
    if not resume:
        raise UserError(f"{out} already exists; pass --resume to continue it, or choose another output_dir")
    kind = userlm_kind(out)
    if kind != ADAPTER_KIND:
        raise UserError(f"{out}: --resume continues only an adapter directory written by `userlm train`; this one "
                        f"holds {kind or 'files userlm did not write'}: choose another output_dir")


def _train(cfg: TrainConfig, resume: bool) -> dict:
    out = Path(cfg.output_dir)
    checkpoints = out / "checkpoints"
    has_checkpoint = checkpoints.exists() and any(checkpoints.glob("checkpoint-*"))
    _check_output_dir(out, resume)
    wait_for_everyone()  # under `accelerate launch` every process checks before any writes there
    if rank() == 0:  # marks the directory as ours (for --resume) before anything else is written there
        atomic_write_json(out / IN_PROGRESS, {"kind": ADAPTER_KIND, "state": "training"})
    data_manifest = load_manifest(cfg.data_dir)
    quantization = resolve_quantization(cfg.quantization)
    started = time.time()
    model, tokenizer = load_causal_lm(cfg.base_model, quantization=quantization, dtype=cfg.dtype, trainable=True)
    train_examples = read_split(cfg.data_dir, "train")
    needed = cfg.max_train_examples
    if cfg.max_steps > 0:  # tokenize only what max_steps can consume
        budget = cfg.max_steps * cfg.per_device_train_batch_size * cfg.gradient_accumulation_steps * world_size()
        needed = min(needed or budget, budget)
    if needed is not None and needed < len(train_examples):
        train_examples = random.Random(cfg.seed).sample(train_examples, needed)
    eval_examples = read_split(cfg.data_dir, "validation")[: cfg.max_eval_examples]
    intents = load_intents(cfg.data_dir) if cfg.intent != "none" else {}
    train_systems = example_systems(train_examples, cfg, intents)
    with_intent = sum(s != cfg.system_prompt for s in train_systems)
    if cfg.intent != "none" and not with_intent:
        raise UserError(f"{cfg.data_dir}: intent={cfg.intent} but no training example has a usable intent; "
                        f"run `userlm data intents {cfg.data_dir}` for the train split")
    train_ds, end_rows = tokenize_split(tokenizer, train_examples, cfg, train_systems, limit=needed,
                                       end_share=cfg.end_share)
    eval_ds = tokenize_split(tokenizer, eval_examples, cfg, example_systems(eval_examples, cfg, intents),
                             limit=cfg.max_eval_examples)[0] if eval_examples else None
    if cfg.gradient_checkpointing:
        model.config.use_cache = False
    trainer = with_end_weight(trainer_class(cfg), cfg.end_loss_weight)(
        model=model, args=_sft_args(cfg, eval_ds is not None), train_dataset=train_ds,
        eval_dataset=eval_ds, processing_class=tokenizer, peft_config=_lora_config(cfg))
    with labelled_positions_only():
        result = trainer.train(resume_from_checkpoint=True if (resume and has_checkpoint) else None)
        eval_loss = final_eval_loss(trainer) if eval_ds is not None else None
    if not trainer.is_world_process_zero():
        return {}
    trainer.model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    curve = plot_loss_curve(trainer.state.log_history, out / LOSS_CURVE, f"{cfg.base_model} -> {out.name}")
    hashed = write_hashes(out / TRAINING_HASHES, train_examples)  # evaluate refuses held-out data that shares them
    target_tokens = sum(sum(label != -100 for label in row) for row in train_ds["labels"])
    epoch_tokens = sum(len(row) for row in train_ds["input_ids"])
    seen = result.global_step * cfg.per_device_train_batch_size * cfg.gradient_accumulation_steps * world_size()
    tokens_trained = round(epoch_tokens * seen / len(train_ds))  # non-pad tokens the optimizer saw
    base_identity = identity(cfg.base_model)
    manifest = {
        "kind": ADAPTER_KIND, "base_model": cfg.base_model, "base_identity": base_identity,
        "data_dir": cfg.data_dir, "data_content_hash": data_manifest["content_hash"], "config": to_dict(cfg),
        "quantization": quantization, "target_role": cfg.target_role, "system_prompt": cfg.system_prompt,
        "trained_with_intent": cfg.intent != "none", "intent_mode": cfg.intent,
        "train_examples_with_intent": with_intent, "end_marker": END_OF_CONVERSATION,
        "train_examples": len(train_ds), "train_target_tokens": target_tokens, "train_rows_with_end": end_rows,
        "end_tokens_weighted": getattr(trainer, "end_tokens_weighted", None),
        "training_turn_hashes": {"file": TRAINING_HASHES, "count": hashed},
        "final_train_loss": result.training_loss, "final_eval_loss": eval_loss,
        "final_eval_perplexity": math.exp(eval_loss) if eval_loss is not None else None,
        "loss_curve": curve.name if curve else None, "global_step": result.global_step, "processes": world_size(),
        "distributed_type": str(trainer.accelerator.distributed_type).rsplit(".", 1)[-1], "train_runtime_s": result.metrics.get("train_runtime"),
        "train_tokens": tokens_trained,
        "train_tokens_per_second": round(tokens_trained / result.metrics["train_runtime"], 1),
        "peak_gpu_memory_gb": _peak_gpu_memory_gb(), "model_memory_gb": round(model.get_memory_footprint() / 2**30, 3),
        "versions": library_versions(), "git_commit": git_commit(),
        "provenance": provenance(to_dict(cfg), models={
            "base": base_identity, "data_content_hash": data_manifest["content_hash"],
            "adapter_weights_sha256": sha256_file(out / "adapter_model.safetensors")},
            seeds={"seed": cfg.seed, "data_seed": cfg.seed, "example_sample": cfg.seed, "intent_share": cfg.seed},
            sampling=None,
            chat_templates={"user_model": template_sha256(tokenizer)}),
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "wall_seconds": round(time.time() - started, 1),
    }
    if cfg.end_policy != "none":
        from userlm.end_policy import fit_for_adapter
        manifest["end_policy"] = fit_for_adapter(cfg.data_dir, out, "sample" if cfg.end_policy == "sampled" else "threshold")
    atomic_write_json(out / ADAPTER_MANIFEST, manifest)  # written last: its presence marks a finished adapter
    (out / IN_PROGRESS).unlink(missing_ok=True)
    return manifest

