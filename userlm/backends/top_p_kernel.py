"""The Triton kernel of `triton_top_p.py` (imported from there on first use only: this module imports Triton).
Set TRITON_INTERPRET=1 before its first import for Triton's interpreter (CPU tensors; the tests use it)."""

import triton
import triton.language as tl

from userlm.backends.top_p_split import load_probs, nucleus_blocks, pick_in_row, range_and_mass


@triton.jit
def _update(lo, hi, base, cand, acc, top_p):
    """One round's verdicts: candidates whose mass above is below top_p lower hi; the others raise lo."""
    inside = acc < top_p
    new_hi = tl.min(tl.where(inside, cand, hi), 0)
    new_lo = tl.max(tl.where(inside, lo, cand), 0)
    at = tl.max(tl.where(inside & (cand == new_hi), acc, -1.0), 0)  # the mass above the new hi
    return new_lo, new_hi, tl.where(at >= 0, at, base)


@triton.jit
def _survivors(src, V, dst, counts, lo, hi, cand, BLOCK: tl.constexpr, WAYS: tl.constexpr, FROM_ROW: tl.constexpr):
    """One round over the tokens inside (lo, hi]: their float64 masses above each candidate, and those tokens kept
    lane by lane: lane j's k-th survivor at dst[k * BLOCK + j] (a lane writes only its own column, so no scan across
    the block and no ordering between lanes). FROM_ROW: the row's V tokens (lane j reads j, j + BLOCK, ...); else
    dst itself, lane j's first counts[j] entries, compacted in place (an entry lands at or before where it was).
    Returns (sums, each lane's new count)."""
    offs = tl.arange(0, BLOCK)
    sums = tl.zeros([BLOCK, WAYS], tl.float64)  # each lane's own sums, reduced once
    kept = tl.zeros([BLOCK], tl.int32)
    n = tl.cdiv(V, BLOCK) if FROM_ROW else tl.max(counts, 0)
    for r in range(0, n):
        valid = (r * BLOCK + offs < V) if FROM_ROW else (r < counts)
        p = tl.load(src + r * BLOCK + offs, mask=valid, other=0.0)
        b = p.to(tl.int32, bitcast=True)
        keep = valid & (b > lo) & (b <= hi)
        sums += tl.where(keep[:, None] & (b[:, None] > cand[None, :]), p.to(tl.float64)[:, None], 0.0)
        tl.store(dst + kept * BLOCK + offs, p, mask=keep)
        kept += keep.to(tl.int32)
    return tl.sum(sums, 0), kept


@triton.jit
def top_p_kernel(probs_ptr, scratch_ptr, block_ptr, top_p_ptr, u_ptr, out_ptr, floor_ptr, V, stride,
                 BLOCK: tl.constexpr, WAYS: tl.constexpr, NBLOCKS: tl.constexpr, STOP: tl.constexpr = 0):
    row = tl.program_id(0).to(tl.int64)
    src = probs_ptr + row * stride
    scratch = scratch_ptr + row * (tl.cdiv(V, BLOCK) * BLOCK)  # a lane's survivors: a column of BLOCK-strided entries
    top_p = tl.load(top_p_ptr + row).to(tl.float64)
    u = tl.load(u_ptr + row).to(tl.float64)
    offs = tl.arange(0, BLOCK)
    ks = tl.arange(0, WAYS) + 1
    # 1. bit pattern range and total mass
    hi, lo, total = range_and_mass(src, 0, V, V, BLOCK)  # hi: nothing lies above the most likely (< any top_p > 0)
    lo -= 1  # everything lies above: the total, >= top_p (else the floor is 0, below)
    base = total * 0.0  # the mass above hi (a float64 scalar)
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
    # round two: the tokens in (lo, hi] copied into scratch, lane by lane, as their sums are taken
    counts = tl.zeros([BLOCK], tl.int32)
    if hi - lo > 1:
        step = tl.maximum((hi - lo) // (WAYS + 1), 1)
        cand = tl.minimum(lo + step * ks, hi)
        above, counts = _survivors(src, V, scratch, counts, lo, hi, cand, BLOCK, WAYS, True)
        tl.debug_barrier()  # layouts may differ between a round's stores and the next one's loads
        lo, hi, base = _update(lo, hi, base, cand, base + above, top_p)
    if STOP == 3:  # benchmarks: the phases before this one only (their time)
        tl.store(floor_ptr + row, hi)
        return
    # later rounds: the scratch's tokens in (lo, hi], each lane's compacted in place
    while hi - lo > 1:
        step = tl.maximum((hi - lo) // (WAYS + 1), 1)
        cand = tl.minimum(lo + step * ks, hi)
        above, counts = _survivors(scratch, V, scratch, counts, lo, hi, cand, BLOCK, WAYS, False)
        tl.debug_barrier()
        lo, hi, base = _update(lo, hi, base, cand, base + above, top_p)
    if STOP == 4:  # benchmarks: the phases before this one only (their time)
        tl.store(floor_ptr + row, hi)
        return
    floor = tl.where(total < top_p, 0, hi)
    tl.store(floor_ptr + row, floor)
    # 3. each block's nucleus mass and the last token, then the draw (`pick_in_row`)
    last_token = nucleus_blocks(src, block_ptr + row * NBLOCKS, 0, V, V, floor, BLOCK)
    tl.debug_barrier()
    tl.store(out_ptr + row, pick_in_row(src, block_ptr + row * NBLOCKS, floor, u, last_token, V, NBLOCKS, BLOCK))


@triton.jit
def _derived_uniform(ubits, r):
    """`sampling.derived_uniforms` for round r >= 1 of one row: lowbias32 of its uniform's bits and r, in int64 with
    32-bit masks (the products wrap; their low 32 bits are the hash's), the top 24 bits as a float64 in [0, 1)."""
    m = 0xFFFFFFFF
    x = ubits ^ ((r.to(tl.int64) * 0x9E3779B9) & m)
    x ^= x >> 16
    x = (x * 0x7FEB352D) & m
    x ^= x >> 15
    x = (x * 0x846CA68B) & m
    x ^= x >> 16
    return (x >> 8).to(tl.float64) * (1.0 / 16777216.0)


@triton.jit
def softmax_stats(src, t, V, BLOCK: tl.constexpr):
    """A row's largest logit / t and its sum of exp(logit / t - that), in float32 (an online softmax, lane by lane)."""
    offs = tl.arange(0, BLOCK)
    mx = tl.full([BLOCK], float("-inf"), tl.float32)
    s = tl.zeros([BLOCK], tl.float32)
    for start in range(0, V, BLOCK):
        idx = start + offs
        x = tl.load(src + idx, mask=idx < V, other=float("-inf")).to(tl.float32) / t
        new = tl.maximum(mx, x)
        empty = new == float("-inf")  # a lane that has seen only -inf: no exp of -inf - -inf
        s = tl.where(empty, 0.0, s * tl.exp(mx - new) + tl.exp(x - new))
        mx = new
    m = tl.max(mx, 0)
    return m, tl.sum(tl.where(mx == float("-inf"), 0.0, s * tl.exp(mx - m)), 0)


@triton.jit
def rejection_kernel(probs_ptr, block_ptr, top_p_ptr, u_ptr, out_ptr, V, stride, temp_ptr, BLOCK: tl.constexpr,
                     NBLOCKS: tl.constexpr, ROUNDS: tl.constexpr, LOGITS: tl.constexpr = False):
    """`sampling.sample_rejection`, one program a row: each round the blocks' masses above the pivot
    (`nucleus_blocks` with floor pivot + 1), the draw (`pick_in_row`), then the mass strictly above the drawn
    token; accepted below top_p, else the pivot rises to it. A row with top_p <= 0 gets its most likely token;
    round ROUNDS keeps its draw (as `sample_rejection`). LOGITS: the rows are logits, each pass computing the
    probabilities at the row's temperature (`temp_ptr`; `sampling.rejection_inputs`' greedy rows: temperature
    <= 0, top_p 0 and temperature 1) from the row's softmax statistics (a first pass, `softmax_stats`) instead of
    reading them: no float32 probabilities written and read back, and half the bytes a pass for 16-bit logits.
    Measured and not kept (H200, 2026-12-01): one pass a round, `nucleus_blocks` above the drawn token serving as
    both its acceptance sum and the next round's blocks, was slower (0.310 against 0.244 ms at 128 flat rows,
    1024 x 16): its block-wide sum each block costs more than the lane-wise sum below, and most rows take one round."""
    row = tl.program_id(0).to(tl.int64)
    src = probs_ptr + row * stride
    block_row = block_ptr + row * NBLOCKS
    top_p = tl.load(top_p_ptr + row).to(tl.float64)
    t = 1.0
    m = 0.0
    z = 1.0
    if LOGITS:
        t = tl.load(temp_ptr + row)
        top_p = tl.where(t <= 0, 0.0, top_p)
        t = tl.where(t <= 0, 1.0, t)
        m, z = softmax_stats(src, t, V, BLOCK)
    u0 = tl.load(u_ptr + row)
    ubits = u0.to(tl.int32, bitcast=True).to(tl.int64) & 0xFFFFFFFF
    offs = tl.arange(0, BLOCK)
    token = tl.zeros([], tl.int64) - 1
    if top_p <= 0:  # the first of the largest (torch's argmax)
        best = tl.full([BLOCK], -1, tl.int32)
        first = tl.full([BLOCK], 2147483647, tl.int32)
        for start in range(0, V, BLOCK):
            idx = start + offs
            b = load_probs(src, idx, idx < V, t, m, z, LOGITS).to(tl.int32, bitcast=True)
            b = tl.where(idx < V, b, -1)
            first = tl.where(b > best, idx, first)  # a lane's first index of its largest
            best = tl.maximum(best, b)
        top = tl.max(best, 0)
        token = tl.min(tl.where(best == top, first, 2147483647), 0).to(tl.int64)
    pivot = tl.zeros([], tl.int32) - 1
    r = tl.zeros([], tl.int32)
    while token < 0:
        u = tl.where(r == 0, u0.to(tl.float64), _derived_uniform(ubits, r))
        last = nucleus_blocks(src, block_row, 0, V, V, pivot + 1, BLOCK, t, m, z, LOGITS)
        tl.debug_barrier()
        drawn = tl.maximum(pick_in_row(src, block_row, pivot + 1, u, last, V, NBLOCKS, BLOCK, t, m, z, LOGITS),
                           0)  # torch's last >= 0
        at = load_probs(src, drawn, drawn >= 0, t, m, z, LOGITS).to(tl.int32, bitcast=True)
        above = tl.zeros([BLOCK], tl.float64)
        for start in range(0, V, BLOCK):
            idx = start + offs
            p = load_probs(src, idx, idx < V, t, m, z, LOGITS)
            above += tl.where(p.to(tl.int32, bitcast=True) > at, p.to(tl.float64), 0.0)
        accept = (tl.sum(above, 0) < top_p) | (r >= ROUNDS - 1)
        token = tl.where(accept, drawn, token)
        pivot = tl.where(accept, pivot, at)
        r += 1
        tl.debug_barrier()  # the next round rewrites block_row
    tl.store(out_ptr + row, token)
