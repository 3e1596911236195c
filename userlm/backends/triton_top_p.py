"""`sample_wide` (sampling.py) as one fused Triton kernel for CUDA: the static engine's rows whose top-p nucleus is
wider than the 128 most likely tokens (issue 25 item 1). Hand-written because torch has no top-p sampler (the
torch path is a compiled 8-round search, then a vocabulary cumsum and a searchsorted: ~0.5 ms a step at
32 x 152k on an H200) and flashinfer's sampling kernels are a large CUDA-only wheel; Triton ships with torch's
CUDA wheel.

One program a row (so a row's token depends only on its own probabilities, top_p and uniform; a fixed grid and
no host sync, so it runs inside a CUDA graph), a few passes over the row:
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

BLOCK, WARPS = 1024, 16  # tokens a program reads at a time, and its warps
WAYS = 16  # candidates a search round (a power of two: Triton's tensor shapes)


def _kernel():
    """The jitted kernel (`top_p_kernel.py`, imported on first use: importing this module needs no Triton)."""
    from userlm.backends.top_p_kernel import top_p_kernel

    return top_p_kernel


def top_p_floor_and_tokens(probs, top_ps, uniforms, block: int = 0, warps: int = 0, stop: int = 0, ways: int = 0):
    """(floor, tokens) per row: `nucleus_floor`'s bit pattern (int32) and `sample_wide`'s token (int64). `block`,
    `warps`, `ways`: the kernel's block, warps and candidates a round (0: BLOCK, WARPS, WAYS); `stop` k > 0 (benchmarks): the first k phases only."""
    import torch

    probs = probs.contiguous()
    rows, vocab = probs.shape
    tokens = torch.empty(rows, dtype=torch.long, device=probs.device)
    floor = torch.empty(rows, dtype=torch.int32, device=probs.device)
    block = block or BLOCK
    scratch = torch.empty(rows, vocab, dtype=torch.float32, device=probs.device)  # the rounds' survivors
    nblocks = 1 << max(-(-vocab // block) - 1, 0).bit_length()  # a power of two >= the row's blocks
    sums = torch.empty(rows, nblocks, dtype=torch.float64, device=probs.device)  # each block's nucleus mass
    if rows:
        _kernel()[(rows,)](probs, scratch, sums, top_ps.float().contiguous(), uniforms.float().contiguous(), tokens,
                           floor, vocab, probs.stride(0), BLOCK=block, WAYS=ways or WAYS, NBLOCKS=nblocks,
                           num_warps=warps or WARPS, STOP=stop)
    return floor, tokens


def sample_wide_triton(probs, top_ps, uniforms):
    """`sample_wide(probs, top_ps, uniforms)` in one kernel launch (CUDA, or Triton's interpreter on the CPU)."""
    return top_p_floor_and_tokens(probs, top_ps, uniforms)[1]


def available() -> str | None:
    """None where Triton is installed, else why not (one line; Triton is not imported here)."""
    import importlib.util

    return None if importlib.util.find_spec("triton") else "Triton is not installed"
