"""Micro-benchmark (CUDA): the decode step's GEMMs at the 7B shape (Qwen2.5-7B: q/k/v fused with bias, o, gate/up
fused, down, lm_head; bf16, 128 rows), each captured in a CUDA graph: cuBLAS's own choice (what the engine runs)
against the same GEMM after PyTorch's TunableOp tried cuBLASLt's other algorithms for that shape
(`torch.cuda.tunable`), the operands swapped (`W @ x.T`: cuBLAS's heuristics see a tall product) and, with
`--inductor`, inductor's max-autotune choice (its Triton templates, decompose-k and cuBLAS timed against each
other; its table goes to stderr), side by side in one process; the weights' bytes over the time as GB/s beside
the copy bandwidth. Each timing runs `--copies` distinct weights one after another, so that they are read from
memory, not from L2 (50 MB on an H200). Usage: python benchmarks/bench_decode_gemm.py [--rows 128] [--layers 28]"""

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
    parser.add_argument("--reps", type=int, default=20)
    parser.add_argument("--copies", type=int, default=8, help="distinct weights a timing cycles through")
    parser.add_argument("--inductor", default="", help="comma list of shapes also timed with torch.compile's "
                        "max-autotune (e.g. down,o_proj); each takes a minute or so to tune")
    args = parser.parse_args()
    from bench_simulation import copy_bandwidth_gbs

    from userlm.threads import machine_line

    print(machine_line(), flush=True)
    bandwidth = copy_bandwidth_gbs(torch.device("cuda"))
    print(f"device: {torch.cuda.get_device_name()}, torch {torch.__version__}, copy bandwidth {bandwidth:.0f} GB/s",
          flush=True)
    x = torch.randn(args.rows, 18944, device="cuda", dtype=torch.bfloat16)
    step = {"default": 0.0, "tuned": 0.0, "swapped": 0.0}
    tune = set(args.inductor.split(",")) - {""}

    def per_gemm(fn):  # ms of one GEMM, over the copies
        return timed(fn, args.reps) / args.copies

    for name, (n, k, bias) in SHAPES.items():
        copies = 1 if name == "lm_head" else args.copies
        ws = [torch.randn(n, k, device="cuda", dtype=torch.bfloat16) * 0.02 for _ in range(copies)]
        b = torch.randn(n, device="cuda", dtype=torch.bfloat16) if bias else None
        xi = x[:, :k].contiguous()
        scale = args.copies / copies

        def linear(xi=xi, ws=ws, b=b):
            return [F.linear(xi, w, b) for w in ws]

        def swapped(xi=xi, ws=ws, b=b):  # out.T = W @ x.T (+ b as a column)
            return [torch.addmm(b[:, None], w, xi.T) if b is not None else w @ xi.T for w in ws]

        torch.cuda.tunable.enable(False)
        default = per_gemm(linear) * scale
        flipped = per_gemm(swapped) * scale
        torch.cuda.tunable.enable(True)
        torch.cuda.tunable.tuning_enable(True)
        linear()  # tunes this shape (outside the capture)
        torch.cuda.synchronize()
        torch.cuda.tunable.tuning_enable(False)
        tuned = per_gemm(linear) * scale
        torch.cuda.tunable.enable(False)
        count = 1 if name == "lm_head" else args.layers
        step["default"] += default * count
        step["tuned"] += tuned * count
        step["swapped"] += min(default, flipped) * count
        gb = n * k * 2 / 1e9
        line = (f"{name} {args.rows}x{k} @ {k}x{n}: default {default * 1000:.1f} us ({gb / default * 1000:.0f} GB/s), "
                f"TunableOp {tuned * 1000:.1f} us ({default / tuned:.2f}x), swapped {flipped * 1000:.1f} us "
                f"({default / flipped:.2f}x)")
        if name in tune:
            import time

            started = time.perf_counter()
            compiled = torch.compile(linear, mode="max-autotune-no-cudagraphs", dynamic=False)
            compiled()
            tuning = time.perf_counter() - started
            auto = per_gemm(compiled) * scale
            line += f", inductor max-autotune {auto * 1000:.1f} us ({default / auto:.2f}x; tuned in {tuning:.0f} s)"
        print(line, flush=True)
    print(f"a step's GEMMs ({args.layers} layers + lm_head): default {step['default']:.3f} ms, TunableOp "
          f"{step['tuned']:.3f} ms ({step['default'] / step['tuned']:.2f}x), the faster of default and swapped "
          f"{step['swapped']:.3f} ms ({step['default'] / step['swapped']:.2f}x)", flush=True)
    print("TunableOp's choices: " + "; ".join(str(r) for r in torch.cuda.tunable.get_results()), flush=True)


if __name__ == "__main__":
    main()
