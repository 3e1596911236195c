"""Micro-benchmark (CUDA): the static engine's live-row decode attention (`live_attention.py`: compiled
`flex_attention` over each row's own positions, grouped query heads folded into the kernel's queries) at the 7B
shape (4 key/value heads of 128, 7 query heads each), one layer, captured in a CUDA graph: inductor's flex-decoding
kernel with its own options against other `kernel_options` (splits of the key/value range, key block, warps,
stages), side by side in one process; the live keys/values read over the time as GB/s beside copy bandwidth, and
each variant's output against the default's. Usage: python benchmarks/bench_flex_decode.py [--rows 128]
[--mean-length 200] [--width 1024]"""

from __future__ import annotations

import argparse

from bench_top_p import timed  # benchmarks/ is the script's directory

OPTIONS = {"default": {}, "SPLIT_KV 2": {"SPLIT_KV": 2}, "SPLIT_KV 4": {"SPLIT_KV": 4},
           "BLOCK_N 32": {"BLOCK_N": 32}, "BLOCK_N 128": {"BLOCK_N": 128}, "4 warps": {"num_warps": 4},
           "8 warps": {"num_warps": 8}, "3 stages": {"num_stages": 3}, "SPLIT_KV 2, BLOCK_N 32": {"SPLIT_KV": 2, "BLOCK_N": 32}}
# decode_attention.py's kernels (`--kernels`): (chunk, block_n, warps, stages)
KERNELS = [(256, 64, 4, 2), (128, 64, 4, 2), (64, 64, 4, 2), (64, 32, 4, 2), (128, 32, 4, 2), (64, 64, 2, 2),
           (128, 128, 4, 2), (512, 64, 4, 2), (256, 128, 4, 2), (256, 64, 8, 2), (256, 32, 4, 2), (256, 64, 4, 3)]


def main():
    import torch
    from torch.nn.attention.flex_attention import flex_attention

    from userlm.backends.live_attention import LiveAttention

    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=128)
    parser.add_argument("--mean-length", type=int, default=200, help="live positions a row, on average (uniform +-75%%)")
    parser.add_argument("--width", type=int, default=1024, help="the slot buffer's positions")
    parser.add_argument("--layers", type=int, default=28)
    parser.add_argument("--reps", type=int, default=50)
    parser.add_argument("--kernels", action="store_true", help="flex's default, then decode_attention.py's kernels")
    args = parser.parse_args()
    from bench_simulation import copy_bandwidth_gbs

    from userlm.threads import machine_line

    print(machine_line(), flush=True)
    bandwidth = copy_bandwidth_gbs(torch.device("cuda"))
    kv_heads, group, dim = 4, 7, 128
    g = torch.Generator(device="cuda").manual_seed(0)
    spread = int(args.mean_length * 0.75)
    positions = torch.randint(args.mean_length - spread, args.mean_length + spread, (args.rows, 1), generator=g,
                              device="cuda")
    live = LiveAttention(args.rows, torch.device("cuda"), compiled=True)
    live.prepare(args.rows, positions, group, args.width)
    q = torch.randn(args.rows, kv_heads, group, dim, device="cuda", dtype=torch.bfloat16, generator=g)
    k, v = (torch.randn(args.rows, kv_heads, args.width, dim, device="cuda", dtype=torch.bfloat16, generator=g)
            for _ in range(2))
    read = float((positions + 1).sum()) * kv_heads * dim * 2 * 2  # keys and values, bf16
    print(f"device: {torch.cuda.get_device_name()}, torch {torch.__version__}, copy bandwidth {bandwidth:.0f} GB/s; "
          f"{args.rows} rows, {float(positions.float().mean()) + 1:.0f} live positions a row on average, width "
          f"{args.width}: {read / 1e6:.1f} MB of keys/values a layer ({read / bandwidth / 1e3:.1f} us at copy bandwidth)",
          flush=True)
    want = None
    from userlm.backends.decode_attention import decode_attention

    variants = [("default", {})] + [(f"triton {c}", c) for c in KERNELS] if args.kernels else list(OPTIONS.items())
    for name, options in variants:
        fn = torch.compile(flex_attention, dynamic=False)
        try:
            run = lambda: fn(q, k, v, block_mask=live.block_mask, scale=dim ** -0.5, kernel_options=options)  # noqa: B023, E731
            if name.startswith("triton"):
                run = lambda: decode_attention(q, k, v, live.lengths, dim ** -0.5, *options)  # noqa: B023, E731
            ms = timed(run, args.reps)
            out = run()
        except Exception as e:  # noqa: BLE001 - an option the kernel does not take: say so and go on
            print(f"{name}: failed ({type(e).__name__}: {str(e).splitlines()[0][:120] if str(e) else ''})", flush=True)
            continue
        want = out if want is None else want
        print(f"{name}: {ms * 1000:.1f} us a layer ({read / ms / 1e6:.0f} GB/s; x{args.layers} layers "
              f"{ms * args.layers:.3f} ms), max |diff| to default {float((out - want).abs().max()):.1e}", flush=True)
        torch._dynamo.reset()


if __name__ == "__main__":
    main()
