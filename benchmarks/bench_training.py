"""Training throughput by batching, measured side by side in one run on the embedded model: padded random
batches, length-grouped batches, and padding-free (TRL's flattened batches). For each: real (non-pad) tokens
per second from `userlm train`'s manifest, and the share of non-pad tokens in the batches TRL's own data
loader builds for those steps."""

import argparse
import random
import tempfile


def nonpad_share(cfg, batches: int) -> float:
    import dataclasses

    from trl import SFTTrainer

    from trainer.train import _lora_config, _sft_args, tokenize_split
    from userlm.data.prepare import read_split
    from userlm.models import load_causal_lm

    cfg = dataclasses.replace(cfg, output_dir=cfg.output_dir + "-batches")  # not the run's own directory
    model, tokenizer = load_causal_lm(cfg.base_model, quantization="none", trainable=True)
    examples = random.Random(cfg.seed).sample(read_split(cfg.data_dir, "train"), batches * cfg.per_device_train_batch_size)
    trainer = SFTTrainer(model=model, args=_sft_args(cfg, False), train_dataset=tokenize_split(tokenizer, examples, cfg)[0],
                         processing_class=tokenizer, peft_config=_lora_config(cfg))
    real = total = 0
    for batch in trainer.get_train_dataloader():
        mask = batch.get("attention_mask")
        real += int(mask.sum()) if mask is not None else batch["input_ids"].numel()
        total += batch["input_ids"].numel()
    return real / total


def main():
    from trainer.train import TrainConfig, train
    from userlm.data.prepare import PrepareConfig, prepare

    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=4, help="training steps timed per batching")
    parser.add_argument("--share-batches", type=int, default=64, help="batches the non-pad share is measured on")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--max-length", type=int, default=1024)
    args = parser.parse_args()
    tmp = tempfile.mkdtemp(prefix="bench-train-")
    prepare(PrepareConfig(sources=["sharegpt"], out=f"{tmp}/data", max_trees_per_source=2000, seed=1))
    print(f"SmolLM2-135M + LoRA r16, fp32 on the CPU; {args.steps} timed steps of {args.batch} examples, "
          f"max_length {args.max_length}; non-pad share over {args.share_batches} batches")
    rates = {}
    for batching in ("padded", "length_grouped", "padding_free"):
        cfg = TrainConfig(data_dir=f"{tmp}/data", output_dir=f"{tmp}/{batching}", batching=batching, max_steps=args.steps,
                          per_device_train_batch_size=args.batch, max_length=args.max_length, max_eval_examples=0,
                          eval_steps=10**6, save_steps=10**6, logging_steps=10**6, warmup_steps=0)
        share = nonpad_share(cfg, args.share_batches)
        manifest = train(cfg)
        rates[batching] = manifest["train_tokens_per_second"]
        print(f"{batching}: {manifest['train_tokens_per_second']:,.0f} real tok/s, {manifest['train_runtime_s']:.1f} s, "
              f"non-pad share {share:.2f}, final loss {manifest['final_train_loss']:.4f}", flush=True)
    for batching in ("length_grouped", "padding_free"):
        print(f"{batching} / padded: {rates[batching] / rates['padded']:.2f}x")


if __name__ == "__main__":
    from userlm.threads import machine_line

    print(machine_line(), flush=True)
    main()
