"""The LM head's two CPU paths, each side by side with what it replaced, in one run on the embedded SmolLM2-135M:
decode: the output projection of N rows whole vs in vocabulary blocks (userlm/backends/cpu_head.py), time and
whether the logits are bit-identical; train: the demo's training steps with TRL's fused head projecting every
position vs only the labelled ones (trainer/speed.py labelled_positions_only), step seconds and the losses.
Usage: python benchmarks/bench_lm_head.py [--part decode,train] [--data PREPARED_DATA_DIR] [--steps 8]"""

import argparse
import contextlib
import tempfile
import time


def decode_part(rows_list, repeats: int) -> None:
    import torch

    from userlm.backends.cpu_head import chunk_output_head
    from userlm.models import DEFAULT_ASSISTANT, load_causal_lm

    model, _ = load_causal_lm(DEFAULT_ASSISTANT)
    head = model.get_output_embeddings()
    whole = head.forward
    chunk_output_head(model)
    blocks = head.forward
    print("rows | whole ms | blocks ms | ratio | identical")
    with torch.inference_mode():
        for rows in rows_list:
            hidden = torch.randn(rows, 1, head.in_features)
            times = {"whole": [], "blocks": []}
            for _ in range(repeats):  # alternating, so drift hits both
                for name, forward in (("whole", whole), ("blocks", blocks)):
                    started = time.perf_counter()
                    forward(hidden)
                    times[name].append(time.perf_counter() - started)
            med = {k: sorted(v)[len(v) // 2] * 1e3 for k, v in times.items()}
            same = torch.equal(whole(hidden), blocks(hidden))
            print(f"{rows} | {med['whole']:.2f} | {med['blocks']:.2f} | {med['whole'] / med['blocks']:.2f}x | {same}")


def train_part(data: str, steps: int) -> None:
    import transformers

    import trainer.train as train_module
    from trainer.speed import labelled_positions_only
    from trainer.train import TrainConfig, train
    from userlm.config import load_config

    step_seconds = []
    original = transformers.Trainer.training_step

    def timed(self, *args, **kwargs):
        started = time.perf_counter()
        result = original(self, *args, **kwargs)
        step_seconds.append(time.perf_counter() - started)
        return result

    transformers.Trainer.training_step = timed
    print("head | steps 3.. seconds | final train loss | eval loss")
    with tempfile.TemporaryDirectory() as tmp:
        for run, name in enumerate(["every position", "labelled only"] * 2):
            train_module.labelled_positions_only = contextlib.nullcontext if name == "every position" \
                else labelled_positions_only
            cfg = load_config(TrainConfig, "configs/embedded-cpu.yaml", [
                f"data_dir={data}", f"output_dir={tmp}/{run}", f"max_steps={steps}", "max_eval_examples=8",
                "eval_steps=100000", "save_steps=100000", "intent=none"])
            step_seconds.clear()
            manifest = train(cfg)
            print(f"{name} | {sum(step_seconds[2:]):.2f} | {manifest['final_train_loss']:.6f} | "
                  f"{manifest['final_eval_loss']:.6f}", flush=True)
    train_module.labelled_positions_only = labelled_positions_only


def main():
    from userlm.threads import machine_line

    parser = argparse.ArgumentParser()
    parser.add_argument("--part", default="decode,train")
    parser.add_argument("--data", help="a prepared data dir (train part), e.g. a demo's work/demo/data")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--rows", default="1,4,10,16,32,64")
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    print(machine_line(), flush=True)
    if "decode" in args.part:
        decode_part([int(r) for r in args.rows.split(",")], args.repeats)
    if "train" in args.part:
        if not args.data:
            parser.error("--part train needs --data")
        train_part(args.data, args.steps)


if __name__ == "__main__":
    main()
