"""Micro-benchmark (CUDA): the decode step's per-layer products at the 7B shape (bf16, 128 rows) by cuBLAS, as the
engine ran them (F.linear with q/k/v's bias, o_proj, gate/up then the activation, down as addmm onto the residual),
against `skinny_gemm.skinny_linear` with the same epilogue, over a sweep of its configs (tile, K split, warps,
stages), side by side in one process, each captured in a CUDA graph and cycling through `--copies` distinct weights
so that they come from memory. Prints each shape's best configs, the error of both against a float32 product, and a
step's sum (28 layers) both ways. Usage: python benchmarks/bench_skinny_gemm.py [--rows 128] [--quick]"""

from __future__ import annotations

import argparse

from bench_top_p import timed  # benchmarks/ is the script's directory

# name -> (N, K, epilogue): what the 7B decode step runs a layer (Qwen2.5-7B)
SHAPES = {"qkv": (3584 + 2 * 512, 3584, "bias"), "o_proj": (3584, 3584, ""), "gate/up+act": (18944, 3584, "glu"),
          "down+residual": (3584, 18944, "residual")}
SMEM = 200 * 1024  # bytes of shared memory a config's stages may take (an H200 has 227 KB a block)


def configs(n: int, k: int, glu: bool, rows: int, quick: bool, widths=(64, 128)) -> list:
    """Tile widths x K splits (filling the SMs once, twice, three times) x BK x warps, the most stages that fit."""
    bm = max(16, 1 << max(rows - 1, 0).bit_length())
    out = []
    for bn in widths:
        tiles = -(-n // bn)
        splits = sorted({s for s in (max(1, round(132 * j / tiles)) for j in (1, 2, 3)) if k // s >= 256})
        for split in splits[:1] if quick else splits:
            for bk in (64, 128):
                stage = bk * 2 * (bn * (2 if glu else 1) + bm)
                stages = min(6, SMEM // stage)
                if stages < 2 or (glu and bn > 128):
                    continue
                for warps in (4,) if quick or bn == 64 else (8,):  # the faster at each width (sweep of 2026-12-01)
                    out.append((bn, bk, split, warps, stages))
    return out


def main():
    import torch
    import torch.nn.functional as F

    from userlm.backends.skinny_gemm import skinny_linear

    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=128)
    parser.add_argument("--layers", type=int, default=28)
    parser.add_argument("--reps", type=int, default=20)
    parser.add_argument("--copies", type=int, default=8, help="distinct weights a timing cycles through")
    parser.add_argument("--quick", action="store_true", help="fewer configs (one split a tile width, 4 warps)")
    parser.add_argument("--top", type=int, default=4, help="configs listed a shape")
    parser.add_argument("--widths", default="64,128,256", help="tile widths (BN) swept: the weights' rows a program")
    parser.add_argument("--loads", default="pointers,tma", help="how tiles are read: pointers (cp.async), tma")
    parser.add_argument("--shapes", default=",".join(SHAPES), help="comma list of " + ", ".join(SHAPES))
    args = parser.parse_args()
    from bench_simulation import copy_bandwidth_gbs

    from userlm.threads import machine_line

    print(machine_line(), flush=True)
    bandwidth = copy_bandwidth_gbs(torch.device("cuda"))
    print(f"device: {torch.cuda.get_device_name()}, copy bandwidth {bandwidth:.0f} GB/s, {args.rows} rows", flush=True)
    torch.manual_seed(0)
    step = {"cuBLAS": 0.0, "skinny": 0.0}
    act = torch.compile(lambda gate, up: F.silu(gate) * up, dynamic=False)
    widths = tuple(int(w) for w in args.widths.split(","))
    for name, (n, k, epilogue) in SHAPES.items():
        if name not in args.shapes.split(","):
            continue
        glu = epilogue == "glu"
        x = torch.randn(args.rows, k, device="cuda", dtype=torch.bfloat16)
        ws = [torch.randn((2 if glu else 1) * n, k, device="cuda", dtype=torch.bfloat16) * k ** -0.5
              for _ in range(args.copies)]
        bias = torch.randn(n, device="cuda", dtype=torch.bfloat16) if epilogue == "bias" else None
        residual = torch.randn(args.rows, n, device="cuda", dtype=torch.bfloat16) if epilogue == "residual" else None

        def cublas(w, x=x, bias=bias, residual=residual, glu=glu, n=n):
            if glu:  # the activation one compiled kernel, as in the engine
                return act(*F.linear(x, w).split(n, dim=-1))
            if residual is not None:
                return torch.addmm(residual, x, w.t())
            return F.linear(x, w, bias)

        def reference(w, x=x, bias=bias, residual=residual, glu=glu, n=n):
            y = x.float() @ w.float().t() + (bias.float() if bias is not None else 0)
            if glu:
                return F.silu(y[:, :n]) * y[:, n:]
            return y + (residual.float() if residual is not None else 0)

        ref = reference(ws[0])
        scale = ref.abs().max().item()

        def error(out):
            return (out.float() - ref).abs().max().item() / scale

        base = timed(lambda: [cublas(w) for w in ws], args.reps) / args.copies
        results = []
        sweep = [(cfg, tma) for cfg in configs(n, k, glu, args.rows, args.quick, widths)
                 for tma in (False, True) if ("tma" if tma else "pointers") in args.loads.split(",")]
        for cfg, tma in sweep:
            try:
                run = lambda cfg=cfg, tma=tma: [skinny_linear(x, w, bias, residual, glu, cfg, tma) for w in ws]  # noqa: E731
                ms = timed(run, args.reps) / args.copies
                results.append((ms, cfg + (("tma",) if tma else ()),
                                error(skinny_linear(x, ws[0], bias, residual, glu, cfg, tma))))
            except Exception as e:  # a config the compiler or the GPU refuses (shared memory, registers)
                print(f"    {name} {cfg}: {type(e).__name__}: {str(e)[:120]}", flush=True)
        results.sort()
        gb = (2 if glu else 1) * n * k * 2 / 1e9
        print(f"{name} {args.rows}x{k} @ {k}x{(2 if glu else 1) * n}: cuBLAS {base * 1000:.1f} us "
              f"({gb / base * 1000:.0f} GB/s, error {error(cublas(ws[0])):.1e}); {len(results)} skinny configs "
              f"(BN, BK, SPLIT, warps, stages[, tma]), the best:", flush=True)
        for ms, cfg, err in results[:args.top]:
            print(f"    {cfg}: {ms * 1000:.1f} us ({gb / ms * 1000:.0f} GB/s, {base / ms:.2f}x cuBLAS, error {err:.1e})",
                  flush=True)
        step["cuBLAS"] += base * args.layers
        step["skinny"] += (results[0][0] if results else base) * args.layers
        if results:
            cfg, tma = results[0][1][:5], len(results[0][1]) > 5
            again = skinny_linear(x, ws[0], bias, residual, glu, cfg, tma)
            same = torch.equal(again, skinny_linear(x, ws[0], bias, residual, glu, cfg, tma))
            print(f"    best config twice: {'the same bits' if same else 'DIFFERENT bits'}", flush=True)
    print(f"a step's four products ({args.layers} layers): cuBLAS {step['cuBLAS']:.3f} ms, skinny (each shape's best) "
          f"{step['skinny']:.3f} ms ({step['cuBLAS'] / step['skinny']:.2f}x)", flush=True)


if __name__ == "__main__":
    main()
