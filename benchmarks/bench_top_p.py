"""Micro-benchmark (CUDA): `sample_wide` as the static engine runs it (nucleus search compiled, 15 ways, then the
vocabulary cumsum) against the Triton kernel (`userlm/backends/triton_top_p.py`), on flat rows (random-weight-like
logits: every row wider than the head) at 32 and 128 rows x 151,936; and exactness: the kernel's floors and tokens
against `sample_wide`'s (float64 sums on CUDA, as the engine runs it) and against float32 sums (torch's order
vs the kernel's: how often they would differ). Usage: python benchmarks/bench_top_p.py [--rows 32,128]"""

from __future__ import annotations

import argparse
import functools


def timed(fn, reps: int) -> float:
    """Mean ms of fn() over reps, captured in a CUDA graph (as the engine runs it), after warm-up."""
    import torch

    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        fn()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    graph.replay()
    start.record()
    for _ in range(reps):
        graph.replay()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / reps


def main():
    import torch

    from userlm.backends.sampling import nucleus_floor, sample_wide
    from userlm.backends.triton_top_p import top_p_floor_and_tokens

    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", default="32,128")
    parser.add_argument("--vocab", type=int, default=151936)
    parser.add_argument("--reps", type=int, default=50)
    parser.add_argument("--draws", type=int, default=5, help="exactness: batches of random rows a setting")
    args = parser.parse_args()
    torch.manual_seed(0)
    compiled = functools.partial(sample_wide, floor=torch.compile(functools.partial(nucleus_floor, ways=15),
                                                                  dynamic=False))
    print(f"device: {torch.cuda.get_device_name()}, torch {torch.__version__}", flush=True)
    for rows in (int(r) for r in args.rows.split(",")):
        probs = torch.softmax(torch.randn(rows, args.vocab, device="cuda") * 2.0, -1)
        top_ps = torch.full((rows,), 0.95, device="cuda")
        uniforms = torch.rand(rows, device="cuda")
        t_torch = timed(lambda: compiled(probs, top_ps, uniforms), args.reps)
        t32 = timed(lambda: compiled(probs, top_ps, uniforms, double=False), args.reps)
        print(f"{rows} x {args.vocab}: sample_wide compiled with float32 sums (before 2026-11-30) {t32:.3f} ms",
              flush=True)
        for block, warps, ways in ((1024, 16, 16), (512, 8, 16), (1024, 16, 8)):
            t_triton = timed(lambda: top_p_floor_and_tokens(probs, top_ps, uniforms, block, warps, ways=ways), args.reps)
            print(f"{rows} x {args.vocab} flat rows, top_p 0.95: sample_wide (compiled search + cumsum) "
                  f"{t_torch:.3f} ms, Triton kernel (BLOCK {block}, {warps} warps, {ways} ways) {t_triton:.3f} ms "
                  f"({t_torch / t_triton:.1f}x)", flush=True)
        phases = [timed(lambda: top_p_floor_and_tokens(probs, top_ps, uniforms, stop=k), args.reps) for k in (1, 2, 3, 4)]
        print(f"{rows} rows, the kernel's phases (ms, cumulative): range + total {phases[0]:.3f}, + round one "
              f"{phases[1]:.3f}, + round two (compaction) {phases[2]:.3f}, + later rounds {phases[3]:.3f}, + the draw "
              f"{timed(lambda: top_p_floor_and_tokens(probs, top_ps, uniforms), args.reps):.3f}", flush=True)
    n = floors = tokens = floors32 = tokens32 = 0
    for rows in (int(r) for r in args.rows.split(",")):
        for scale in (0.5, 2.0, 8.0):
            for top_p in (0.5, 0.9, 0.95, 1.0):
                for _ in range(args.draws):
                    probs = torch.softmax(torch.randn(rows, args.vocab, device="cuda") * scale, -1)
                    top_ps = torch.full((rows,), top_p, device="cuda")
                    uniforms = torch.rand(rows, device="cuda")
                    floor, token = top_p_floor_and_tokens(probs, top_ps, uniforms)
                    n += rows
                    floors += int((floor == nucleus_floor(probs, top_ps, 15)).sum())
                    tokens += int((token == compiled(probs, top_ps, uniforms)).sum())
                    floors32 += int((floor == nucleus_floor(probs, top_ps, 15, double=False)).sum())
                    tokens32 += int((token == sample_wide(probs, top_ps, uniforms, double=False)).sum())
    print(f"exactness over {n} random rows (scales 0.5/2/8, top_p 0.5/0.9/0.95/1.0): floors equal {floors}, tokens "
          f"equal {tokens} (sample_wide, float64 sums); against float32 sums: floors {floors32}, tokens {tokens32}",
          flush=True)


if __name__ == "__main__":
    main()
