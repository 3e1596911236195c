"""QLoRA training throughput by variant, side by side in one process (issue 25 item 2): the model is loaded
(and quantized) once, and each variant trains a fresh LoRA adapter on it through `userlm train`'s own pieces
(TrainConfig, _sft_args, _lora_config, tokenize_split, trainer_class) for W warm-up steps then N timed
optimizer steps, same data, order and seed. Prints, per variant: steady-state real (non-pad) tokens/s over the
timed steps, the ratio to the first variant, peak GPU memory, the share of real tokens in the batches, and the
loss at every step.

One process, because loading and quantizing the 7B shape costs more than a variant's steps. A variant that
patches the model instance for good (Liger) must come last: the script refuses another after it. The baseline
may be named twice to see the run-to-run spread.

  python3 benchmarks/bench_qlora.py --config configs/qwen2.5-7b-qlora.yaml --model M --data D \\
      --variants baseline,sorted,sorted+mb4x8,sorted+mb4x8+dropout0+liger --warmup 2 --steps 3 --out r.json
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import tempfile
import time

PARTS = {  # a variant is parts joined by "+": each part's TrainConfig overrides over the config's recipe
    "baseline": {"batching": "padded"},  # as issue 25 measured it (the config itself ships step_sorted)
    "padded": {"batching": "padded"},
    "padding_free": {"batching": "padding_free"},
    "sorted": {"batching": "step_sorted"},
    "dropout0": {"lora_dropout": 0.0},
    "sac": {"selective_checkpointing": True},
    "liger": {"use_liger_kernel": True},
}  # and mbBxA: per_device_train_batch_size B, gradient_accumulation_steps A (keep B x A for the same steps)


def overrides(name: str) -> dict:
    """A variant's TrainConfig overrides, e.g. sorted+mb4x8+dropout0 (padded unless a part says otherwise)."""
    import re

    out = {"batching": "padded"}
    for part in name.split("#")[0].split("+"):
        mb = re.fullmatch(r"mb(\d+)x(\d+)", part)
        if mb:
            out.update(per_device_train_batch_size=int(mb[1]), gradient_accumulation_steps=int(mb[2]))
        elif part in PARTS:
            out.update(PARTS[part])
        else:
            raise ValueError(f"unknown part '{part}' of variant '{name}'; known: {', '.join(PARTS)}, mbBxA")
    return out


FOR_GOOD = ("use_liger_kernel",)  # patches the model instance (its norms' and MLPs' forward) for good


def cuda():
    import torch

    return torch.cuda.is_available()


def sync():
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def train_rows(cfg, tokenizer, cache: dict):
    """What `userlm train` trains on for max_steps (trainer/train.py _train): a seeded sample of conversations,
    then of their rows. Keyed by what changes it."""
    import random

    from userlm.data.prepare import read_split

    needed = cfg.max_steps * cfg.per_device_train_batch_size * cfg.gradient_accumulation_steps
    key = (needed, cfg.max_length, cfg.context, cfg.seed)
    if key not in cache:
        from trainer.train import example_systems, tokenize_split

        examples = read_split(cfg.data_dir, "train")
        if needed < len(examples):
            examples = random.Random(cfg.seed).sample(examples, needed)
        cache[key] = tokenize_split(tokenizer, examples, cfg, example_systems(examples, cfg, {}), limit=needed)[0]
    return cache[key]


def run_variant(name: str, cfg, model, tokenizer, rows, warmup: int) -> tuple[dict, object]:
    """Train cfg.max_steps steps on `model`; return (the variant's numbers, the model without the adapter)."""
    import torch
    from transformers import TrainerCallback, set_seed

    from trainer.speed import trainer_class
    from trainer.train import _lora_config, _sft_args

    counts = {"real": 0, "total": 0}
    steps = []  # (time at the step's end, real tokens, tokens with padding)

    class Timer(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            sync()
            steps.append((time.perf_counter(), counts["real"], counts["total"]))
            counts.update(real=0, total=0)

    class Timed(trainer_class(cfg)):
        def training_step(self, model, inputs, *rest, **kw):
            mask = inputs.get("attention_mask")  # padding-free batches have none: every token is real
            counts["total"] += inputs["input_ids"].numel()
            counts["real"] += int(mask.sum()) if mask is not None else inputs["input_ids"].numel()
            return super().training_step(model, inputs, *rest, **kw)

    set_seed(cfg.seed)  # the adapter's initialization draws from the global generator
    if cfg.gradient_checkpointing:
        model.config.use_cache = False
    if cuda():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    trainer = Timed(model=model, args=_sft_args(cfg, False), train_dataset=rows, processing_class=tokenizer,
                    peft_config=_lora_config(cfg), callbacks=[Timer()])
    started = time.perf_counter()
    trainer.train()
    wall = time.perf_counter() - started
    peak = torch.cuda.max_memory_allocated() / 2**30 if cuda() else None
    losses = [e["loss"] for e in trainer.state.log_history if "loss" in e]
    timed = steps[warmup:]
    seconds = timed[-1][0] - steps[warmup - 1][0] if warmup else timed[-1][0] - started
    real = sum(s[1] for s in timed)
    result = {"variant": name, "overrides": overrides(name), "steps": len(steps), "warmup": warmup,
              "timed_seconds": round(seconds, 3), "timed_real_tokens": real,
              "tok_per_s": round(real / seconds, 1), "real_share": round(real / max(1, sum(s[2] for s in timed)), 4),
              "peak_gpu_memory_gb": round(peak, 3) if peak is not None else None, "wall_seconds": round(wall, 1),
              "step_seconds": [round(b[0] - a[0], 3) for a, b in zip(steps, steps[1:])], "losses": losses}
    base = trainer.model.unload()  # the LoRA layers out again: the next variant gets the bare model
    base.__dict__.pop("forward", None)  # TRL's fused LM head, put back on at the next trainer
    base.__dict__.pop("gradient_checkpointing_enable", None)  # TRL's selective-checkpointing wrapper
    if hasattr(base, "disable_input_require_grads") and getattr(base, "_require_grads_hook", None) is not None:
        base.disable_input_require_grads()
    del trainer
    gc.collect()
    return result, base


def table(results: list[dict]) -> str:
    ref = results[0]["tok_per_s"]
    lines = ["| variant | steady tok/s | x first | peak GPU GB | real share | loss per step |",
             "| --- | --- | --- | --- | --- | --- |"]
    for r in results:
        peak = f"{r['peak_gpu_memory_gb']:.2f}" if r["peak_gpu_memory_gb"] is not None else "-"
        lines.append(f"| {r['variant']} | {r['tok_per_s']:,.0f} | {r['tok_per_s'] / ref:.2f} | {peak} | "
                     f"{r['real_share']:.2f} | {' '.join(f'{x:.4f}' for x in r['losses'])} |")
    return "\n".join(lines)


def main():
    from trainer.train import TrainConfig, check_config
    from userlm.config import load_config
    from userlm.models import load_causal_lm, resolve_quantization
    from userlm.provenance import library_versions

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/qwen2.5-7b-qlora.yaml")
    parser.add_argument("--model", required=True, help="base model (a local path on the GPU machine)")
    parser.add_argument("--data", required=True, help="prepared data directory")
    parser.add_argument("--variants", default="baseline,sorted,sorted+mb4x8,sorted+mb4x8+dropout0,sorted+mb4x8+dropout0+liger",
                        help="comma-separated, run in this order, the first the reference; parts joined by +: "
                             f"{', '.join(PARTS)}, mbBxA")
    parser.add_argument("--warmup", type=int, default=2, help="optimizer steps before timing")
    parser.add_argument("--steps", type=int, default=4, help="optimizer steps timed")
    parser.add_argument("--set", action="append", default=[], help="key=value over the config, for every variant")
    parser.add_argument("--out", help="JSON file for the full results")
    args = parser.parse_args()
    names = args.variants.split(",")
    for i, name in enumerate(names):
        try:
            overrides(name)
        except ValueError as e:
            parser.error(str(e))
        if i < len(names) - 1 and any(overrides(name).get(k) for k in FOR_GOOD):
            parser.error(f"variant '{name}' patches the model for good: put it last")
    tmp = tempfile.mkdtemp(prefix="bench-qlora-")
    base = load_config(TrainConfig, args.config, [
        f"base_model={args.model}", f"data_dir={args.data}", f"max_steps={args.warmup + args.steps}",
        "logging_steps=1", "save_steps=1000000", "eval_steps=1000000", "report_to=none", "max_eval_examples=1",
        *args.set])
    check_config(base)
    quantization = resolve_quantization(base.quantization)
    print(json.dumps({"versions": library_versions(), "quantization": quantization, "config": args.config,
                      "overrides": args.set, "warmup": args.warmup, "steps": args.steps}), flush=True)
    if cuda():
        import torch

        print("gpu:", torch.cuda.get_device_name(), flush=True)
    started = time.perf_counter()
    model, tokenizer = load_causal_lm(base.base_model, quantization=quantization, dtype=base.dtype, trainable=True)
    print(f"model loaded in {time.perf_counter() - started:.1f} s", flush=True)
    cache, results = {}, []
    for i, name in enumerate(names):
        label = name if names[:i].count(name) == 0 else f"{name}#{names[:i].count(name) + 1}"
        cfg = dataclasses.replace(base, output_dir=f"{tmp}/{i}", **overrides(name))
        check_config(cfg)
        result, model = run_variant(label, cfg, model, tokenizer, train_rows(cfg, tokenizer, cache), args.warmup)
        results.append(result)
        print(json.dumps(result), flush=True)
        if args.out:  # after every variant: a run stopped at its time limit keeps what it measured
            with open(args.out, "w") as f:
                json.dump({"args": vars(args), "results": results}, f, indent=1)
    print(f"\n{args.warmup} warm-up + {args.steps} timed optimizer steps a variant; tokens/s counts real tokens\n")
    print(table(results))


if __name__ == "__main__":
    from userlm.threads import machine_line

    print(machine_line(), flush=True)
    main()
