"""Micro-benchmark (CUDA): a prefill pass's MLP activation, act(gate) * up over the gate/up product [tokens, 2 x
inter] (bf16), as the static engine's compiled block runs it (`fused_residual.post_attention`, compiled with dynamic
shapes for prefill) against the same compiled for one fixed shape, eager torch, and `silu_mul.py`'s Triton kernel;
each at the token counts of a 7B/128 turn's passes, with bytes moved over time beside the copy bandwidth.
Usage: python benchmarks/bench_prefill_act.py [--tokens 7105,9700,14656] [--inter 18944]"""

from __future__ import annotations

import argparse


def act_split(gate_up, inter: int):
    import torch.nn.functional as F

    gate, up = gate_up.split([inter, inter], dim=-1)
    return F.silu(gate) * up


def main():
    import functools

    import torch
    from bench_sampling import timed  # benchmarks/: the script's dir
    from bench_simulation import copy_bandwidth_gbs

    from userlm.backends.silu_mul import silu_mul
    from userlm.threads import machine_line

    print(machine_line(), flush=True)  # first, as every benchmark (tests/test_benchmark_machine.py)
    parser = argparse.ArgumentParser()
    parser.add_argument("--tokens", default="7105,9700,14656")
    parser.add_argument("--inter", type=int, default=18944)
    args = parser.parse_args()
    inter = args.inter
    gbs = copy_bandwidth_gbs(torch.device("cuda"))
    print(f"{torch.cuda.get_device_name()}: copy bandwidth {gbs:.0f} GB/s; torch {torch.__version__}", flush=True)
    dynamic = torch.compile(functools.partial(act_split, inter=inter), dynamic=True)
    variants = {"compiled, dynamic shapes (as prefill)": dynamic,
                "eager": functools.partial(act_split, inter=inter),
                "silu_mul.py (Triton)": silu_mul}
    for tokens in map(int, args.tokens.split(",")):
        gate_up = torch.randn(tokens, 2 * inter, device="cuda").to(torch.bfloat16)
        static = torch.compile(functools.partial(act_split, inter=inter), dynamic=False)
        want = dynamic(gate_up)
        moved = gate_up.numel() * 2 + want.numel() * 2
        for name, fn in {**variants, "compiled, this shape only": static}.items():
            t = timed(lambda fn=fn: fn(gate_up))  # ms
            err = (fn(gate_up).float() - want.float()).abs().max().item()
            print(f"  {tokens:6d} tokens  {name:40s} {t * 1000:8.1f} us  {moved / t / 1e6:6.0f} GB/s  "
                  f"max |diff| to compiled {err:.3g}", flush=True)


if __name__ == "__main__":
    main()
