"""Micro-benchmark (CUDA): the decode step's GEMMs at the 7B shape (Qwen2.5-7B: q/k/v fused with bias, o, gate/up
fused, down, lm_head; bf16, 128 rows), each captured in a CUDA graph: cuBLAS's own choice (what the engine runs)
against the same GEMM after PyTorch's TunableOp tried cuBLASLt's other algorithms for that shape
(`torch.cuda.tunable`), side by side in one process; the weights' bytes over the time as GB/s beside the copy
bandwidth. Usage: python benchmarks/bench_decode_gemm.py [--rows 128] [--layers 28]"""

from __future__ import annotations

import argparse

from bench_top_p import timed  # benchmarks/ is the script's directory

SHAPES = {"qkv (bias)": (3584 + 2 * 512, 3584, True), "o_proj": (3584, 3584, False),
          "gate/up": (2 * 18944, 3584, False), "down": (3584, 18944, False), "lm_head": (152064, 3584, False)}


def main():
    import torch
    import torch.nn.functional as F

    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=128)
    parser.add_argument("--layers", type=int, default=28, help="a step's count of each per-layer GEMM")
    parser.add_argument("--reps", type=int, default=50)
    args = parser.parse_args()
    from bench_simulation import copy_bandwidth_gbs

    from userlm.threads import machine_line

    print(machine_line(), flush=True)
    bandwidth = copy_bandwidth_gbs(torch.device("cuda"))
    print(f"device: {torch.cuda.get_device_name()}, torch {torch.__version__}, copy bandwidth {bandwidth:.0f} GB/s",
          flush=True)
    x = torch.randn(args.rows, 18944, device="cuda", dtype=torch.bfloat16)
    step = {"default": 0.0, "tuned": 0.0}
    for name, (n, k, bias) in SHAPES.items():
        w = torch.randn(n, k, device="cuda", dtype=torch.bfloat16) * 0.02
        b = torch.randn(n, device="cuda", dtype=torch.bfloat16) if bias else None
        xi = x[:, :k].contiguous()
        torch.cuda.tunable.enable(False)
        default = timed(lambda: F.linear(xi, w, b), args.reps)  # noqa: B023 - called inside the loop
        torch.cuda.tunable.enable(True)
        torch.cuda.tunable.tuning_enable(True)
        F.linear(xi, w, b)  # tunes this shape (outside the capture)
        torch.cuda.synchronize()
        torch.cuda.tunable.tuning_enable(False)
        tuned = timed(lambda: F.linear(xi, w, b), args.reps)  # noqa: B023
        torch.cuda.tunable.enable(False)
        count = 1 if name == "lm_head" else args.layers
        step["default"] += default * count
        step["tuned"] += tuned * count
        gb = w.numel() * 2 / 1e9
        print(f"{name} {args.rows}x{k} @ {k}x{n}: default {default * 1000:.1f} us ({gb / default * 1000:.0f} GB/s), "
              f"TunableOp {tuned * 1000:.1f} us ({gb / tuned * 1000:.0f} GB/s), {default / tuned:.2f}x", flush=True)
    print(f"a step's GEMMs ({args.layers} layers + lm_head): default {step['default']:.3f} ms, TunableOp "
          f"{step['tuned']:.3f} ms ({step['default'] / step['tuned']:.2f}x)", flush=True)
    print("TunableOp's choices: " + "; ".join(str(r) for r in torch.cuda.tunable.get_results()), flush=True)


if __name__ == "__main__":
    main()
