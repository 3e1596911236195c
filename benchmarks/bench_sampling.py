"""Sampling alone, on the GPU, at the decode step's shapes (rows x 152,064 vocabulary, bf16 logits): `sample_head`
replayed as a CUDA graph (what the static engine adds to its decode graph), then for rows whose nucleus is wider
than 128 tokens the full sort that drew them before 2026-11-30 (`sample_sorted`) against `sample_wide` (no sort;
eager bisection and compiled 15-way search, as the engine runs it under `compile_decode`). Flat logits (a
random-weight model's: every row is wide) and peaked ones (a trained model's: the nucleus fits the head)."""

import functools
import time

import torch

from userlm.backends.sampling import nucleus_floor, sample_head, sample_next, sample_sorted, sample_wide


def timed(fn, n=30):
    fn()
    torch.cuda.synchronize()
    started = time.perf_counter()
    for _ in range(n):
        fn()
    torch.cuda.synchronize()
    return 1000 * (time.perf_counter() - started) / n


def measure(rows: int, name: str, scale: float, g, compiled) -> None:
    logits = (torch.randn(rows, 152064, device="cuda", generator=g) * scale).bfloat16()
    temps = torch.full((rows,), 1.0, device="cuda")
    top_ps = torch.full((rows,), 0.9, device="cuda")
    u = torch.rand(rows, device="cuda", generator=g)
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        sample_head(logits.float(), temps, top_ps, u)
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = sample_head(logits.float(), temps, top_ps, u)
    head = timed(lambda: (graph.replay(), out[0].tolist(), out[1].tolist()))
    wide = bool(out[1].any())
    probs = out[3]
    old = timed(lambda: sample_sorted(probs, out[2], top_ps, u).tolist())
    eager = timed(lambda: sample_wide(probs, top_ps, u).tolist())
    fused = timed(lambda: compiled(probs, top_ps, u).tolist())
    same = torch.equal(sample_wide(probs, top_ps, u), compiled(probs, top_ps, u))
    agree = torch.equal(torch.where(out[1], sample_wide(probs, top_ps, u), out[0]), sample_next(logits.float(), temps, top_ps, u))
    print(f"{rows} rows, {name} logits (rows wider than 128: {int(out[1].sum())}): head as a graph {head:.2f} ms; "
          f"wide rows: full sort (before) {old:.2f} ms, sample_wide eager {eager:.2f} ms, compiled {fused:.2f} ms "
          f"(= eager's tokens: {same}); engine's halves = sample_next: {agree}; any wide: {wide}", flush=True)


def main():
    g = torch.Generator(device="cuda").manual_seed(0)
    compiled = functools.partial(sample_wide, floor=torch.compile(functools.partial(nucleus_floor, ways=15),
                                                                  dynamic=False))
    for rows in (32, 128):
        for name, scale in (("flat", 0.6), ("peaked", 12.0)):
            measure(rows, name, scale, g, compiled)


if __name__ == "__main__":
    from userlm.threads import machine_line

    print(machine_line(), flush=True)
    main()
