"""`sample_wide` (sampling.py) as one fused Triton kernel for CUDA: the static engine's rows whose top-p nucleus is
wider than the 128 most likely tokens (issue 25 item 1). Hand-written because torch has no top-p sampler (the
torch path is a compiled 8-round search, then a vocabulary cumsum and a searchsorted: ~0.5 ms a step at
32 x 152k on an H200) and flashinfer's sampling kernels are a large CUDA-only wheel; Triton ships with torch's
CUDA wheel.

Two forms, the same floor and token: up to SPLIT_ROWS rows, each row split over vocab / 8,192 programs (the
search's rounds as per-chunk sums, from round two over each chunk's compacted survivors only, `top_p_split.py`, so
a small batch fills the GPU); above, the first kernel, one
program a row (`top_p_kernel.py`). A row's token depends only on its own probabilities, top_p and uniform; fixed
grids and no host sync, so both run inside a CUDA graph. The row kernel's passes over the row:
1. the largest and smallest float32 bit patterns and the row's total mass;
2. the same integer search as `nucleus_floor`: the smallest bit pattern x whose strictly larger probabilities
   sum below top_p, `WAYS` candidates a round (each round's masked sums in one pass); from the second round on,
   only the tokens inside the round's interval (lo, hi] are read, compacted into a scratch row (the mass above
   hi is carried), so the rounds after the second touch a small fraction of the vocabulary;
3. the nucleus' mass and last token, then a running block cumsum in vocabulary order to the first token whose
   cumulative mass exceeds u * mass (`searchsorted(..., right=True)`), clamped to the nucleus' last token.
Sums accumulate in float64, as `sample_wide` does on CUDA: the sums then agree with torch's to ~1e-16 whatever
the order, so the floor and the token are the same as `sample_wide`'s except where a sum falls within that of
top_p or of a cdf step (never seen in the tests). With float32 sums (torch's order against ours) the tokens of
flat 152k-token rows differed on ~1% of rows: a boundary token's probability (~7e-6) is ~30 float32 ulps of 1."""

from __future__ import annotations

BLOCK, WARPS = 1024, 16  # tokens a program reads at a time, and its warps (the row kernel)
WAYS = 16  # candidates a search round (a power of two: Triton's tensor shapes)
SPLIT = (8192, 512, 8, 16)  # the split kernels: tokens a program (a chunk), tokens at a time, warps, ways
COMPACT = 2  # the split kernels' round that compacts each chunk's survivors (the rounds after read only those)
# "auto" takes the split kernels up to this many rows, the row kernel above. On an H200 at 151,936 tokens (2026-11-30,
# call 4) the split kernels, compacted, took 0.241 / 0.467 / 0.926 ms at 32 / 64 / 128 rows, the row kernel 0.687 /
# 0.721 / 0.849 (one wave of programs up to 132 rows): the crossover, interpolated linearly, is ~113 rows (not
# measured between 64 and 128; 96 leaves a margin). The row kernel's lane compaction (later that day: 0.611 at 32
# rows, 0.771 at 128) moves it to ~100 by the same interpolation; not re-measured, 96 kept
SPLIT_ROWS = 96
# the rejection kernel's tokens a program reads at a time and warps: at 128 / 32 flat rows x 151,936 on an H200
# (2026-12-01, bench_top_p.py) 1024 x 16 took 0.244 / 0.172 ms, 2048 x 16 0.159 / 0.111, 4096 x 32 0.109 / 0.082,
# 8192 x 32 0.084 / 0.068 (fewer loop trips, more loads in flight a program; the same tokens at every shape)
REJECTION_BLOCK, REJECTION_WARPS = 8192, 32


def _kernel():
    """The jitted kernel (`top_p_kernel.py`, imported on first use: importing this module needs no Triton)."""
    from userlm.backends.top_p_kernel import top_p_kernel

    return top_p_kernel


def _pow2(n: int) -> int:
    return 1 << max(n - 1, 0).bit_length()


def split_floor_and_tokens(probs, top_ps, uniforms, chunk: int = 0, block: int = 0, warps: int = 0, ways: int = 0,
                           stop: int = 0, compact: int = -1):
    """`top_p_floor_and_tokens` with each row split over vocab / `chunk` programs (`top_p_split.py`): a fixed
    number of launches (search_rounds(ways) + 3), fixed grids, no host sync. `compact`: the round (>= 2) whose
    programs write their chunk's tokens inside the search interval to a scratch row, the later rounds reading only
    those (0: none, every round reads the whole row; -1: COMPACT). `stop` k > 0 (benchmarks): the first k phases
    only (1 the range, 2 + round one, 3 + every round, 4 + the masses)."""
    import torch

    from userlm.backends import top_p_split as K
    from userlm.backends.sampling import search_rounds

    probs = probs.contiguous()
    rows, vocab = probs.shape
    chunk, block, warps, ways = (a or d for a, d in zip((chunk, block, warps, ways), SPLIT, strict=True))
    chunks = -(-vocab // chunk)
    cp, nblocks, dev = _pow2(chunks), _pow2(chunks * chunk // block), probs.device
    tokens = torch.empty(rows, dtype=torch.long, device=dev)
    floor = torch.empty(rows, dtype=torch.int32, device=dev)
    if not rows:
        return floor, tokens
    top_ps, uniforms = top_ps.float().contiguous(), uniforms.float().contiguous()
    mx, mn, last = (torch.empty(rows, cp, dtype=torch.int32, device=dev) for _ in range(3))
    tot = torch.empty(rows, cp, dtype=torch.float64, device=dev)
    part = torch.empty(2, rows, cp, ways, dtype=torch.float64, device=dev)  # per-chunk sums, by round parity
    lo, hi = (torch.empty(2, rows, dtype=torch.int32, device=dev) for _ in range(2))  # the row's state, by parity
    blocks = torch.empty(rows, nblocks, dtype=torch.float64, device=dev)  # each block's nucleus mass
    compact = COMPACT if compact < 0 else compact
    scratch = torch.empty(rows, chunks * chunk if compact else 1, dtype=torch.float32, device=dev)  # the survivors
    count = torch.empty(rows, cp, dtype=torch.int32, device=dev)  # each chunk's survivors
    carry = torch.empty(rows, cp, dtype=torch.float64, device=dev)  # each chunk's mass above its survivors
    grid, shape = (rows, chunks), {"CHUNK": chunk, "CHUNKS": cp, "BLOCK": block, "num_warps": warps}
    K.range_kernel[grid](probs, mx, mn, tot, vocab, probs.stride(0), **shape)
    rounds = search_rounds(ways) if stop != 2 else 1
    for k in range(1, rounds + 1) if stop != 1 else ():
        mode = 0 if not compact or k < compact else 1 if k == compact else 2
        K.round_kernel[grid](probs, mx, mn, part, lo, hi, top_ps, scratch, count, carry, vocab, probs.stride(0), rows,
                             chunks, k, WAYS=ways, FIRST=k == 1, MODE=mode, **shape)
    if stop in (0, 4):
        K.mass_kernel[grid](probs, tot, part, lo, hi, top_ps, blocks, last, floor, vocab, probs.stride(0), rows,
                            chunks, rounds + 1, NBLOCKS=nblocks, WAYS=ways, **shape)
    if stop == 0:
        K.pick_kernel[(rows,)](probs, blocks, last, floor, uniforms, tokens, vocab, probs.stride(0), chunks,
                               NBLOCKS=nblocks, CHUNKS=cp, BLOCK=block, num_warps=warps)
    return floor, tokens


def row_floor_and_tokens(probs, top_ps, uniforms, block: int = 0, warps: int = 0, stop: int = 0, ways: int = 0):
    """`top_p_floor_and_tokens` with one program a row (`top_p_kernel.py`, the first kernel). `block`, `warps`,
    `ways`: its block, warps and candidates a round (0: BLOCK, WARPS, WAYS); `stop` k > 0 (benchmarks): the first
    k phases only."""
    import torch

    probs = probs.contiguous()
    rows, vocab = probs.shape
    tokens = torch.empty(rows, dtype=torch.long, device=probs.device)
    floor = torch.empty(rows, dtype=torch.int32, device=probs.device)
    block = block or BLOCK
    scratch = torch.empty(rows, -(-vocab // block) * block, dtype=torch.float32, device=probs.device)  # survivors
    nblocks = _pow2(-(-vocab // block))  # a power of two >= the row's blocks
    sums = torch.empty(rows, nblocks, dtype=torch.float64, device=probs.device)  # each block's nucleus mass
    if rows:
        _kernel()[(rows,)](probs, scratch, sums, top_ps.float().contiguous(), uniforms.float().contiguous(), tokens,
                           floor, vocab, probs.stride(0), BLOCK=block, WAYS=ways or WAYS, NBLOCKS=nblocks,
                           num_warps=warps or WARPS, STOP=stop)
    return floor, tokens


def rejection_tokens(probs, top_ps, uniforms, block: int = 0, warps: int = 0, temperatures=None):
    """`sample_rejection`'s tokens (int64) by one Triton program a row (`top_p_kernel.rejection_kernel`; the static
    engine's default on CUDA: another draw than `sample_wide`'s). With `temperatures`, `probs` are the rows' logits
    (any float dtype) and the kernel computes `sampling.rejection_inputs`' probabilities itself, pass by pass (the
    same draw up to the softmax's last bits; a greedy row, temperature <= 0, gets its most likely token)."""
    import torch

    from userlm.backends.sampling import REJECTION_ROUNDS
    from userlm.backends.top_p_kernel import rejection_kernel

    if probs.stride(-1) != 1:
        probs = probs.contiguous()
    rows, vocab = probs.shape
    block = block or REJECTION_BLOCK
    nblocks = _pow2(-(-vocab // block))
    tokens = torch.empty(rows, dtype=torch.long, device=probs.device)
    sums = torch.empty(rows, nblocks, dtype=torch.float64, device=probs.device)  # each block's mass above the pivot
    logits = temperatures is not None
    temps = temperatures.float().contiguous() if logits else top_ps  # (not read without logits)
    if rows:
        rejection_kernel[(rows,)](probs, sums, top_ps.float().contiguous(), uniforms.float().contiguous(), tokens,
                                  vocab, probs.stride(0), temps, BLOCK=block, NBLOCKS=nblocks,
                                  ROUNDS=REJECTION_ROUNDS, LOGITS=logits, num_warps=warps or REJECTION_WARPS)
    return tokens


def top_p_floor_and_tokens(probs, top_ps, uniforms, kernel: str = "auto"):
    """(floor, tokens) per row: `nucleus_floor`'s bit pattern (int32) and `sample_wide`'s token (int64), by the
    split kernels ("split"; "split-full": without compaction, every round over the whole row), the
    one-program-a-row kernel ("row"), or ("auto") the split ones up to SPLIT_ROWS rows (the same floor and token
    either way)."""
    if kernel == "split-full":
        return split_floor_and_tokens(probs, top_ps, uniforms, compact=0)
    split = kernel == "split" or (kernel == "auto" and probs.shape[0] <= SPLIT_ROWS)
    fn = split_floor_and_tokens if split else row_floor_and_tokens
    return fn(probs, top_ps, uniforms)


def sample_wide_triton(probs, top_ps, uniforms, kernel: str = "auto"):
    """`sample_wide(probs, top_ps, uniforms)` by Triton kernels (CUDA, or Triton's interpreter on the CPU); kernel
    "rejection": `sample_rejection`'s instead."""
    if kernel == "rejection":
        return rejection_tokens(probs, top_ps, uniforms)
    return top_p_floor_and_tokens(probs, top_ps, uniforms, kernel)[1]


def available() -> str | None:
    """None where Triton is installed, else why not (one line; Triton is not imported here)."""
    import importlib.util

    return None if importlib.util.find_spec("triton") else "Triton is not installed"
