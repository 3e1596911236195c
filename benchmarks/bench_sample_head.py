"""Micro-benchmark (CUDA): the static engine's sampling head (`sample_head`: temperature, softmax, the 128 most likely
tokens, the draw over them), captured in a CUDA graph as the decode step runs it, at 32 and 128 rows x 151,936 bf16
logits: eager (as before 2026-11-30: the cast, division and softmax as separate passes, `torch.topk` of the float32
probabilities) against `torch.compile` of the whole head (the cast, division and softmax one kernel) and the top
128 chosen by the bf16 logits (`head_topk`), side by side in one process; then the head's parts alone. Each
variant's tokens, wide flags and probabilities are compared with the eager head's of before on the same inputs.
Usage: python benchmarks/bench_sample_head.py [--rows 32,128]"""

from __future__ import annotations

import argparse
import functools

from bench_top_p import timed  # benchmarks/ is the script's directory


def main():
    import torch

    from userlm.backends.sampling import _pick, _tempered, sample_head

    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", default="32,128")
    parser.add_argument("--vocab", type=int, default=151936)
    parser.add_argument("--reps", type=int, default=50)
    args = parser.parse_args()
    from userlm.threads import machine_line

    print(machine_line(), flush=True)
    print(f"device: {torch.cuda.get_device_name()}, torch {torch.__version__}", flush=True)
    g = torch.Generator(device="cuda").manual_seed(0)
    variants = {}
    for label, compiled in (("eager", False), ("compiled", True)):
        for by_logits in (False, True):
            fn = functools.partial(sample_head, by_logits=by_logits)
            variants[f"{label}, top 128 by {'bf16 logits' if by_logits else 'probabilities'}"] = \
                torch.compile(fn, dynamic=False) if compiled else fn
    tempered = torch.compile(_tempered, dynamic=False)
    for rows in (int(r) for r in args.rows.split(",")):
        for name, scale in (("flat", 0.6), ("peaked", 12.0), ("bf16-tied flat", 3.0)):
            logits = (torch.randn(rows, args.vocab, device="cuda", generator=g) * scale).bfloat16()
            temps = torch.rand(rows, device="cuda", generator=g) * 0.6 + 0.7
            temps[::7] = 0.0  # greedy rows
            top_ps = torch.full((rows,), 0.9, device="cuda")
            u = torch.rand(rows, device="cuda", generator=g)
            want = sample_head(logits, temps, top_ps, u, by_logits=False)  # before: eager, by the probabilities
            line = [f"{rows} rows, {name} logits (wide rows {int(want[1].sum())}), ms:"]
            for label, fn in variants.items():
                ms = timed(lambda: fn(logits, temps, top_ps, u), args.reps)  # noqa: B023 - called inside the loop
                got = fn(logits, temps, top_ps, u)
                same_tokens = int((got[0] == want[0]).sum())
                same_wide = int((got[1] == want[1]).sum())
                line.append(f"{label} {ms:.3f} (tokens equal {same_tokens}/{rows}, wide {same_wide}/{rows}, "
                            f"probs max |diff| {float((got[3] - want[3]).abs().max()):.1e})")
            print("\n    ".join(line), flush=True)
        # the head's parts alone, on the last logits: where its time goes
        probs = _tempered(logits, temps)[1]
        top, order = probs.topk(128, dim=-1)
        greedy = temps <= 0
        parts = {"cast, temperature, softmax (eager)": lambda: _tempered(logits, temps),
                 "the same compiled": lambda: tempered(logits, temps),
                 "torch.topk(128) of float32 probs": lambda: probs.topk(128, dim=-1),
                 "torch.topk(128) of the bf16 logits": lambda: logits.topk(128, dim=-1),
                 "the draw over the head (_pick)": lambda: _pick(top, order, greedy, top_ps, u)}
        print(f"{rows} rows, the head's parts alone (ms): " + "; ".join(
            f"{k} {timed(fn, args.reps):.3f}" for k, fn in parts.items()), flush=True)


if __name__ == "__main__":
    main()
