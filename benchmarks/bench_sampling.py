"""Sampling alone, on the GPU, at the decode step's shapes (rows x 152,064 vocabulary, bf16 logits): `sample_next`
(eager, with its host sync), `sample_head` replayed as a CUDA graph (what the static engine adds to its decode
graph) and `sample_sorted` (its fallback for a batch whose nucleus is wider than 128 tokens). Flat logits
(a random-weight model's: every step sorts) and peaked ones (a trained model's: the nucleus fits the head)."""

import time

import torch

from userlm.backends.sampling import sample_head, sample_next, sample_sorted


def timed(fn, n=50):
    fn()
    torch.cuda.synchronize()
    started = time.perf_counter()
    for _ in range(n):
        fn()
    torch.cuda.synchronize()
    return 1000 * (time.perf_counter() - started) / n


def measure(rows: int, name: str, scale: float, g) -> None:
    logits = (torch.randn(rows, 152064, device="cuda", generator=g) * scale).bfloat16()
    temps = torch.full((rows,), 1.0, device="cuda")
    top_ps = torch.full((rows,), 0.9, device="cuda")
    u = torch.rand(rows, device="cuda", generator=g)
    eager = timed(lambda: sample_next(logits.float(), temps, top_ps, u).tolist())
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        sample_head(logits.float(), temps, top_ps, u)
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = sample_head(logits.float(), temps, top_ps, u)
    head = timed(lambda: (graph.replay(), out[0].tolist(), bool(out[1])))
    wide = bool(out[1])
    fallback = timed(lambda: sample_sorted(out[3], out[2], top_ps, u).tolist())
    got = sample_sorted(out[3], out[2], top_ps, u) if wide else out[0]
    same = torch.equal(got, sample_next(logits.float(), temps, top_ps, u))
    print(f"{rows} rows, {name} logits (nucleus wider than 128: {wide}): sample_next {eager:.2f} ms; "
          f"head as a graph {head:.2f} ms; full sort fallback {fallback:.2f} ms; same tokens: {same}", flush=True)


def main():
    g = torch.Generator(device="cuda").manual_seed(0)
    for rows in (32, 128):
        for name, scale in (("flat", 0.6), ("peaked", 12.0)):
            measure(rows, name, scale, g)

if __name__ == "__main__":
    from userlm.threads import machine_line

    print(machine_line(), flush=True)
    main()
