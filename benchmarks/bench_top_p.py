"""Micro-benchmark (CUDA): `sample_wide` as the static engine runs it (nucleus search compiled, 15 ways, then the
vocabulary cumsum) against the Triton kernel (`userlm/backends/triton_top_p.py`), on flat rows (random-weight-like
logits: every row wider than the head) at 32 and 128 rows x 151,936; and exactness: the kernel's floors and tokens
against `sample_wide`'s (float64 sums on CUDA, as the engine runs it), for the split kernels (each row over
several programs; without compaction, compacting the survivors at round 2 or 3) and the row kernel (one program a
row), beside an earlier row kernel (`--before FILE`), with each one's phases.
With --softmax: only the rejection kernel computing the probabilities from bf16 logits against the compiled softmax
then the kernel, as the static engine draws every row (`softmax_in_kernel`).
Usage: python benchmarks/bench_top_p.py [--rows 32,64,128] [--exact-rows 32,128] [--before FILE] [--row-only]
[--softmax]"""

from __future__ import annotations

import argparse
import contextlib
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


def before_module(path: str):
    """An earlier version of top_p_kernel.py (its helpers from today's top_p_split.py)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("top_p_kernel_before", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@contextlib.contextmanager
def swapped(owner, name: str, value):
    """`owner.name` is `value` inside (None: left as it is)."""
    saved = getattr(owner, name)
    setattr(owner, name, saved if value is None else value)
    try:
        yield
    finally:
        setattr(owner, name, saved)


def kernel_swapped(kernel):
    """`row_floor_and_tokens` runs `kernel` inside (None: today's)."""
    from userlm.backends import triton_top_p

    return swapped(triton_top_p, "_kernel", None if kernel is None else (lambda: kernel))


def rejection_swapped(kernel):
    """`rejection_tokens` runs `kernel` inside (None: today's)."""
    from userlm.backends import top_p_kernel

    return swapped(top_p_kernel, "rejection_kernel", kernel)


def softmax_in_kernel(rows_list, vocab: int, reps: int, shapes) -> None:
    """The engine's draw of every row by rejection from bf16 logits, side by side: the compiled softmax
    (`rejection_inputs`, as `compile_head` runs it) then the kernel on its float32 probabilities, against the
    kernel computing them from the logits (`softmax_in_kernel`); and how many tokens agree (random rows)."""
    import torch

    from userlm.backends.sampling import rejection_inputs
    from userlm.backends.triton_top_p import rejection_tokens

    inputs = torch.compile(rejection_inputs, dynamic=False)
    for rows in rows_list:
        logits = (torch.randn(rows, vocab, device="cuda") * 2.0).bfloat16()
        temps, top_ps = torch.full((rows,), 1.0, device="cuda"), torch.full((rows,), 0.95, device="cuda")
        uniforms = torch.rand(rows, device="cuda")

        def separate(b, w):
            _, probs, tps = inputs(logits, temps, top_ps)
            return rejection_tokens(probs, tps, uniforms, block=b, warps=w)

        for b, w in shapes:
            before = timed(lambda: separate(b, w), reps)  # noqa: B023
            after = timed(lambda: rejection_tokens(logits, top_ps, uniforms, block=b, warps=w, temperatures=temps), reps)  # noqa: B023
            print(f"{rows} rows x {vocab} bf16 logits, {b}x{w}: softmax + rejection kernel {before:.3f} ms, the kernel "
                  f"from logits {after:.3f} ms ({before / after:.2f}x)", flush=True)
        same = n = 0
        for scale in (0.5, 2.0, 8.0):
            for temp in (0.0, 0.7, 1.0):
                logits = (torch.randn(rows, vocab, device="cuda") * scale).bfloat16()
                temps.fill_(temp)
                _, probs, tps = rejection_inputs(logits, temps, top_ps)
                same += int((rejection_tokens(probs, tps, uniforms) ==
                             rejection_tokens(logits, top_ps, uniforms, temperatures=temps)).sum())
                n += rows
        print(f"{rows} rows: the same token from logits as from torch's softmax on {same} of {n} rows "
              f"(scales 0.5/2/8, temperatures 0/0.7/1, top_p 0.95)", flush=True)


def main():
    import torch

    from userlm.backends.sampling import nucleus_floor, sample_rejection, sample_wide
    from userlm.backends.triton_top_p import (
        COMPACT,
        rejection_tokens,
        row_floor_and_tokens,
        split_floor_and_tokens,
    )

    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", default="32,64,128")
    parser.add_argument("--exact-rows", default="32,128")
    parser.add_argument("--vocab", type=int, default=151936)
    parser.add_argument("--reps", type=int, default=30)
    parser.add_argument("--draws", type=int, default=2, help="exactness: batches of random rows a setting")
    parser.add_argument("--before", help="an earlier row kernel's file (`git show REV:userlm/backends/"
                                         "top_p_kernel.py > FILE`): timed beside the current one, phases too")
    parser.add_argument("--row-only", action="store_true", help="the row kernel(s) only, no split kernels or torch")
    parser.add_argument("--rejection-shapes", default="8192x32,1024x16,4096x32,16384x32,8192x16",
                        help="the rejection kernel's block x warps, timed and checked (the first: today's default)")
    parser.add_argument("--row-ways", default="16", help="the row kernel's candidates a round, timed and checked "
                                                         "(--before's kernel: at 16 only)")
    parser.add_argument("--softmax", action="store_true", help="only the rejection kernel from logits against "
                                                                   "the softmax then the kernel (`softmax_in_kernel`)")
    args = parser.parse_args()
    from userlm.threads import machine_line

    print(machine_line(), flush=True)  # first, as every benchmark (tests/test_benchmark_machine.py)
    torch.manual_seed(0)
    shapes = [tuple(int(x) for x in s.split("x")) for s in args.rejection_shapes.split(",")]
    if args.softmax:
        return softmax_in_kernel([int(r) for r in args.rows.split(",")], args.vocab, args.reps, shapes)
    compiled = functools.partial(sample_wide, floor=torch.compile(functools.partial(nucleus_floor, ways=15),
                                                                  dynamic=False))
    print(f"device: {torch.cuda.get_device_name()}, torch {torch.__version__}", flush=True)
    before = before_module(args.before) if args.before else None
    row_kernels = {"row kernel": None} | ({"row kernel before": before.top_p_kernel} if before else {})
    rejection_kernels = {"rejection kernel": None} | (
        {"rejection kernel before": before.rejection_kernel}  # (one taking today's arguments: temp_ptr, LOGITS)
        if before and "LOGITS" in getattr(getattr(before, "rejection_kernel", None), "arg_names", ()) else {})
    ways = [int(w) for w in args.row_ways.split(",")]
    for rows in (int(r) for r in args.rows.split(",")):
        probs = torch.softmax(torch.randn(rows, args.vocab, device="cuda") * 2.0, -1)
        top_ps = torch.full((rows,), 0.95, device="cuda")
        uniforms = torch.rand(rows, device="cuda")
        whole = {}  # (kernel, ways): its whole time, the last phase
        for (name, kernel), w in [(kv, w) for kv in row_kernels.items() for w in ways if kv[1] is None or w == 16]:
            with kernel_swapped(kernel):
                ms = [timed(lambda: row_floor_and_tokens(probs, top_ps, uniforms, stop=k, ways=w), args.reps)  # noqa: B023
                      for k in (1, 2, 3, 4, 0)]
            whole[name, w] = ms[4]
            print(f"{rows} rows, {name}, {w} ways (ms, cumulative): range {ms[0]:.3f}, + round one {ms[1]:.3f}, + round two "
                  f"{ms[2]:.3f}, + later rounds {ms[3]:.3f}, + the draw {ms[4]:.3f}", flush=True)
        for name, kernel in rejection_kernels.items():
            with rejection_swapped(kernel):
                times = [timed(lambda: rejection_tokens(probs, top_ps, uniforms, block=b, warps=w), args.reps)  # noqa: B023
                         for b, w in shapes]
            print(f"{rows} rows, {name} (`sample_rejection`; ms, block x warps): " + ", ".join(
                f"{b}x{w} {t:.3f}" for (b, w), t in zip(shapes, times, strict=True)), flush=True)
        if args.row_only:
            continue
        t_torch = timed(lambda: compiled(probs, top_ps, uniforms), args.reps)
        t_row = whole.get(("row kernel", 16)) or timed(lambda: row_floor_and_tokens(probs, top_ps, uniforms), args.reps)
        print(f"{rows} x {args.vocab} flat rows, top_p 0.95 (ms): sample_wide compiled, float64 sums {t_torch:.3f}; "
              f"row kernel (one program a row) {t_row:.3f}", flush=True)
        t_full = timed(lambda: split_floor_and_tokens(probs, top_ps, uniforms, compact=0), args.reps)
        line = f"{rows} rows: split kernels without compaction (every round over the row) {t_full:.3f} ms"
        for compact in (2, 3):
            t = timed(lambda: split_floor_and_tokens(probs, top_ps, uniforms, compact=compact), args.reps)
            line += (f"; compacted at round {compact} {t:.3f} ms ({t_full / t:.2f}x uncompacted, {t_row / t:.2f}x the "
                     f"row kernel, {t_torch / t:.1f}x torch)")
        print(line, flush=True)
        phases = [timed(lambda: split_floor_and_tokens(probs, top_ps, uniforms, stop=k), args.reps) for k in (1, 2, 3, 4)]
        print(f"{rows} rows, the split kernels' phases (ms, cumulative, default shape, compacted at round "
              f"{COMPACT}): range {phases[0]:.3f}, + round one {phases[1]:.3f}, + all rounds {phases[2]:.3f}, "
              f"+ masses {phases[3]:.3f}, + pick {timed(lambda: split_floor_and_tokens(probs, top_ps, uniforms), args.reps):.3f}",
              flush=True)
    n, equal = 0, {}
    for rows in (int(r) for r in args.exact_rows.split(",")):
        for scale in (0.5, 2.0, 8.0):
            for top_p in (0.5, 0.9, 0.95, 1.0):
                for _ in range(args.draws):
                    probs = torch.softmax(torch.randn(rows, args.vocab, device="cuda") * scale, -1)
                    top_ps = torch.full((rows,), top_p, device="cuda")
                    uniforms = torch.rand(rows, device="cuda")
                    want_floor, want = nucleus_floor(probs, top_ps, 15), compiled(probs, top_ps, uniforms)
                    want_rejection = sample_rejection(probs, top_ps, uniforms, double=True)
                    for b, w in shapes:
                        key = f"rejection {b}x{w}", "tokens"
                        equal[key] = equal.get(key, 0) + int((rejection_tokens(
                            probs, top_ps, uniforms, block=b, warps=w) == want_rejection).sum())
                    n += rows
                    for name, fn in (("split", split_floor_and_tokens), ("split-c3", functools.partial(
                            split_floor_and_tokens, compact=3)), ("row", row_floor_and_tokens),
                            *((("row-before", row_floor_and_tokens),) if args.before else ()),
                            *((f"row-{w}-ways", functools.partial(row_floor_and_tokens, ways=w)) for w in ways if w != 16)):
                        with kernel_swapped(row_kernels.get("row kernel before") if name == "row-before" else None):
                            floor, token = fn(probs, top_ps, uniforms)
                        equal[name, "floors"] = equal.get((name, "floors"), 0) + int((floor == want_floor).sum())
                        equal[name, "tokens"] = equal.get((name, "tokens"), 0) + int((token == want).sum())
    print(f"exactness over {n} random rows (scales 0.5/2/8, top_p 0.5/0.9/0.95/1.0) against nucleus_floor / "
          f"sample_wide (float64 sums): " + ", ".join(f"{k[0]} {k[1]} equal {v}" for k, v in equal.items()), flush=True)


if __name__ == "__main__":
    main()
