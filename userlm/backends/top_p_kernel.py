"""The Triton kernel of `triton_top_p.py` (imported from there on first use only: this module imports Triton).
Set TRITON_INTERPRET=1 before its first import for Triton's interpreter (CPU tensors; the tests use it)."""

import triton
import triton.language as tl

from userlm.backends.top_p_split import pick_in_row


@triton.jit
def _update(lo, hi, base, cand, acc, top_p):
    """One round's verdicts: candidates whose mass above is below top_p lower hi; the others raise lo."""
    inside = acc < top_p
    new_hi = tl.min(tl.where(inside, cand, hi), 0)
    new_lo = tl.max(tl.where(inside, lo, cand), 0)
    at = tl.max(tl.where(inside & (cand == new_hi), acc, -1.0), 0)  # the mass above the new hi
    return new_lo, new_hi, tl.where(at >= 0, at, base)


@triton.jit
def top_p_kernel(probs_ptr, scratch_ptr, block_ptr, top_p_ptr, u_ptr, out_ptr, floor_ptr, V, stride,
                 BLOCK: tl.constexpr, WAYS: tl.constexpr, NBLOCKS: tl.constexpr, STOP: tl.constexpr = 0):
    row = tl.program_id(0).to(tl.int64)
    src = probs_ptr + row * stride
    scratch = scratch_ptr + row * V
    top_p = tl.load(top_p_ptr + row).to(tl.float64)
    u = tl.load(u_ptr + row).to(tl.float64)
    offs = tl.arange(0, BLOCK)
    ks = tl.arange(0, WAYS) + 1
    # 1. bit pattern range and total mass
    mx = tl.full([BLOCK], -1, tl.int32)
    mn = tl.full([BLOCK], 2147483647, tl.int32)
    tot = tl.zeros([BLOCK], tl.float64)
    for start in range(0, V, BLOCK):
        idx = start + offs
        m = idx < V
        p = tl.load(src + idx, mask=m, other=0.0)
        b = p.to(tl.int32, bitcast=True)
        mx = tl.maximum(mx, tl.where(m, b, -1))
        mn = tl.minimum(mn, tl.where(m, b, 2147483647))
        tot += p.to(tl.float64)
    hi = tl.max(mx, 0)  # nothing lies above the most likely: below any top_p > 0
    lo = tl.min(mn, 0) - 1  # everything lies above: the total, >= top_p (else the floor is 0, below)
    total = tl.sum(tot, 0)
    base = tl.sum(tot, 0) * 0.0  # the mass above hi (a float64 scalar)
    if STOP == 1:  # benchmarks: the phases before this one only (their time)
        tl.store(floor_ptr + row, hi)
        return
    # 2. round one over the whole row
    step = tl.maximum((hi - lo) // (WAYS + 1), 1)
    cand = tl.minimum(lo + step * ks, hi)
    sums = tl.zeros([BLOCK, WAYS], tl.float64)  # each lane's own sums, reduced once a round
    for start in range(0, V, BLOCK):
        idx = start + offs
        p = tl.load(src + idx, mask=idx < V, other=0.0)
        b = p.to(tl.int32, bitcast=True)
        sums += tl.where(b[:, None] > cand[None, :], p.to(tl.float64)[:, None], 0.0)
    lo, hi, base = _update(lo, hi, base, cand, tl.sum(sums, 0), top_p)
    if STOP == 2:  # benchmarks: the phases before this one only (their time)
        tl.store(floor_ptr + row, hi)
        return
    # round two: the tokens in (lo, hi] copied into scratch (in vocabulary order) as their sums are taken
    n = V * 0
    if hi - lo > 1:
        step = tl.maximum((hi - lo) // (WAYS + 1), 1)
        cand = tl.minimum(lo + step * ks, hi)
        sums = tl.zeros([BLOCK, WAYS], tl.float64)
        for start in range(0, V, BLOCK):
            idx = start + offs
            p = tl.load(src + idx, mask=idx < V, other=0.0)
            b = p.to(tl.int32, bitcast=True)
            keep = (idx < V) & (b > lo) & (b <= hi)
            sums += tl.where(keep[:, None] & (b[:, None] > cand[None, :]), p.to(tl.float64)[:, None], 0.0)
            ones = keep.to(tl.int32)
            tl.store(scratch + n + tl.cumsum(ones, 0) - 1, p, mask=keep)
            n += tl.sum(ones, 0)
        tl.debug_barrier()
        lo, hi, base = _update(lo, hi, base, cand, base + tl.sum(sums, 0), top_p)
    if STOP == 3:  # benchmarks: the phases before this one only (their time)
        tl.store(floor_ptr + row, hi)
        return
    # later rounds: the scratch's tokens in (lo, hi], compacted in place (a block's land at or below it)
    while hi - lo > 1:
        step = tl.maximum((hi - lo) // (WAYS + 1), 1)
        cand = tl.minimum(lo + step * ks, hi)
        sums = tl.zeros([BLOCK, WAYS], tl.float64)
        kept = n * 0
        for start in range(0, n, BLOCK):
            idx = start + offs
            p = tl.load(scratch + idx, mask=idx < n, other=0.0)
            b = p.to(tl.int32, bitcast=True)
            keep = (idx < n) & (b > lo) & (b <= hi)
            sums += tl.where(keep[:, None] & (b[:, None] > cand[None, :]), p.to(tl.float64)[:, None], 0.0)
            ones = keep.to(tl.int32)
            tl.store(scratch + kept + tl.cumsum(ones, 0) - 1, p, mask=keep)
            kept += tl.sum(ones, 0)
        tl.debug_barrier()
        n = kept
        lo, hi, base = _update(lo, hi, base, cand, base + tl.sum(sums, 0), top_p)
    if STOP == 4:  # benchmarks: the phases before this one only (their time)
        tl.store(floor_ptr + row, hi)
        return
    floor = tl.where(total < top_p, 0, hi)
    tl.store(floor_ptr + row, floor)
    # 3. each block's nucleus mass and the last token, then the draw (`pick_in_row`)
    last = tl.full([BLOCK], -1, tl.int32)
    for start in range(0, V, BLOCK):
        idx = start + offs
        p = tl.load(src + idx, mask=idx < V, other=0.0)
        keep = (idx < V) & (p.to(tl.int32, bitcast=True) >= floor)
        tl.store(block_ptr + row * NBLOCKS + start // BLOCK, tl.sum(tl.where(keep, p.to(tl.float64), 0.0), 0))
        last = tl.maximum(last, tl.where(keep, idx, -1))
    last_token = tl.max(last, 0)
    tl.debug_barrier()
    tl.store(out_ptr + row, pick_in_row(src, block_ptr + row * NBLOCKS, floor, u, last_token, V, NBLOCKS, BLOCK))
