"""The split Triton kernels of `triton_top_p.py` (imported from there on first use only: this module imports
Triton): each row split over `chunks` programs (a grid rows x chunks), so 32 rows fill the GPU. Set
TRITON_INTERPRET=1 before its first import for Triton's interpreter (CPU tensors; the tests use it).

Launches, all with fixed grids (a CUDA graph captures them): `range_kernel` (each chunk's largest and smallest
bit pattern and its float64 mass), then `rounds` x `round_kernel` (each chunk's float64 sums above `WAYS`
candidates; from a compacting round on, over the chunk's tokens still inside the search interval only, a loop
bounded by their count), then `mass_kernel` (each block's nucleus mass, each chunk's last nucleus token), then `pick_kernel`
(a program a row: the block where the cumulative mass passes u * mass, a cumsum inside it). No program reduces
another row's partials: a row's token depends on its own inputs only. Each program of a launch first derives the
row's search state (lo, hi) from the previous launch's state and partial sums, all in the same
order (so the same values), and the row's first program writes it for the next launch (two slots, by parity)."""

import triton
import triton.language as tl


@triton.jit
def _update(lo, hi, cand, acc, top_p):
    """One round's verdicts: candidates whose mass above (acc, the whole row's) is below top_p lower hi; the
    others raise lo."""
    inside = acc < top_p
    return tl.max(tl.where(inside, lo, cand), 0), tl.min(tl.where(inside, cand, hi), 0)


@triton.jit
def _candidates(lo, hi, WAYS: tl.constexpr):
    step = tl.maximum((hi - lo) // (WAYS + 1), 1)
    return tl.minimum(lo + step * (tl.arange(0, WAYS) + 1), hi)


@triton.jit
def _state(part_ptr, lo_ptr, hi_ptr, row, rows, chunks, k, top_p, CHUNKS: tl.constexpr,
           WAYS: tl.constexpr, FIRST: tl.constexpr):
    """(lo, hi) after round k - 1: from the range pass's partials (FIRST), else from the state before round
    k - 1 (slot k % 2) and round k - 1's per-chunk sums (slot k % 2 of part)."""
    j = tl.arange(0, CHUNKS)
    if FIRST:
        m = j < chunks
        hi = tl.max(tl.load(hi_ptr + row * CHUNKS + j, mask=m, other=-1), 0)
        lo = tl.min(tl.load(lo_ptr + row * CHUNKS + j, mask=m, other=2147483647), 0) - 1
    else:
        slot = k % 2
        lo = tl.load(lo_ptr + slot * rows + row)
        hi = tl.load(hi_ptr + slot * rows + row)
        if hi - lo > 1:  # round k - 1 summed (else its partials are stale and the state stays)
            w = tl.arange(0, WAYS)
            part = part_ptr + ((slot * rows + row) * CHUNKS + j[:, None]) * WAYS + w[None, :]
            sums = tl.load(part, mask=(j < chunks)[:, None], other=0.0)
            lo, hi = _update(lo, hi, _candidates(lo, hi, WAYS), tl.sum(sums, 0), top_p)
    return lo, hi


@triton.jit
def range_and_mass(src, start, stop, V, BLOCK: tl.constexpr):
    """Tokens [start, stop) of a row (those below V): their largest and smallest float32 bit pattern and their
    float64 mass. Both kernels' first pass (`top_p_kernel.py` too)."""
    offs = tl.arange(0, BLOCK)
    mx = tl.full([BLOCK], -1, tl.int32)
    mn = tl.full([BLOCK], 2147483647, tl.int32)
    tot = tl.zeros([BLOCK], tl.float64)
    for first in range(start, stop, BLOCK):
        idx = first + offs
        m = idx < V
        p = tl.load(src + idx, mask=m, other=0.0)
        b = p.to(tl.int32, bitcast=True)
        mx = tl.maximum(mx, tl.where(m, b, -1))
        mn = tl.minimum(mn, tl.where(m, b, 2147483647))
        tot += p.to(tl.float64)
    return tl.max(mx, 0), tl.min(mn, 0), tl.sum(tot, 0)


@triton.jit
def load_probs(src, idx, valid, t, m, z, LOGITS: tl.constexpr):
    """Tokens idx's float32 probabilities (0 where not `valid`): read from the row, or (LOGITS) computed from its
    logits as softmax(logits / t), m the row's largest logit / t and z its sum of exp(logit / t - m) (the same bits
    at every call, so a kernel's passes over the row agree; they may differ from torch.softmax's in the last bits)."""
    if LOGITS:
        x = tl.load(src + idx, mask=valid, other=0.0).to(tl.float32) / t
        return tl.where(valid, tl.exp(x - m) / z, 0.0)
    else:
        return tl.load(src + idx, mask=valid, other=0.0)


@triton.jit
def nucleus_blocks(src, block_row, start, stop, V, floor, BLOCK: tl.constexpr, t=1.0, m=0.0, z=1.0,
                   LOGITS: tl.constexpr = False):
    """Each block of tokens [start, stop): its nucleus mass (tokens whose bits are >= floor) stored at
    block_row[its index]; returns the last nucleus token among them (-1: none). Both kernels' (`top_p_kernel.py`);
    t, m, z, LOGITS: `load_probs`'."""
    offs = tl.arange(0, BLOCK)
    last = tl.full([BLOCK], -1, tl.int32)
    for first in range(start, stop, BLOCK):
        idx = first + offs
        p = load_probs(src, idx, idx < V, t, m, z, LOGITS)
        keep = (idx < V) & (p.to(tl.int32, bitcast=True) >= floor)
        tl.store(block_row + first // BLOCK, tl.sum(tl.where(keep, p.to(tl.float64), 0.0), 0))
        last = tl.maximum(last, tl.where(keep, idx, -1))
    return tl.max(last, 0)


@triton.jit
def range_kernel(probs_ptr, mx_ptr, mn_ptr, tot_ptr, V, stride, CHUNK: tl.constexpr, CHUNKS: tl.constexpr,
                 BLOCK: tl.constexpr):
    """Each chunk's largest and smallest float32 bit pattern and its float64 mass."""
    row = tl.program_id(0).to(tl.int64)
    c = tl.program_id(1)
    mx, mn, tot = range_and_mass(probs_ptr + row * stride, c * CHUNK, c * CHUNK + CHUNK, V, BLOCK)
    tl.store(mx_ptr + row * CHUNKS + c, mx)
    tl.store(mn_ptr + row * CHUNKS + c, mn)
    tl.store(tot_ptr + row * CHUNKS + c, tot)


@triton.jit(do_not_specialize=["rows", "chunks", "k"])
def round_kernel(probs_ptr, mx_ptr, mn_ptr, part_ptr, lo_ptr, hi_ptr, top_p_ptr, scratch_ptr, count_ptr, carry_ptr,
                 V, stride, rows, chunks, k, CHUNK: tl.constexpr, CHUNKS: tl.constexpr, BLOCK: tl.constexpr,
                 WAYS: tl.constexpr, FIRST: tl.constexpr, MODE: tl.constexpr):
    """Round k (1, 2, ...): the state after round k - 1, then this chunk's sums above the round's candidates (slot
    (k + 1) % 2 of part); the row's first program writes the state (slot (k + 1) % 2). MODE 0: the whole chunk;
    1 (the compacting round): the whole chunk, and its tokens inside the round's interval (lo, hi] written to the
    chunk's own region of the scratch row (vocabulary order), their count, and the chunk's mass above hi (the
    carry); 2 (the rounds after): only those survivors, compacted again in place to this round's (lo, hi] (a
    block's land at or below it), the mass of those that leave it above hi added to the carry; the chunk's sum
    above a candidate is then the carry plus its survivors' above it."""
    row = tl.program_id(0).to(tl.int64)
    c = tl.program_id(1)
    top_p = tl.load(top_p_ptr + row).to(tl.float64)
    if FIRST:
        lo, hi = _state(part_ptr, mn_ptr, mx_ptr, row, rows, chunks, k, top_p, CHUNKS, WAYS, True)
    else:
        lo, hi = _state(part_ptr, lo_ptr, hi_ptr, row, rows, chunks, k, top_p, CHUNKS, WAYS, False)
    slot = (k + 1) % 2
    if c == 0:
        tl.store(lo_ptr + slot * rows + row, lo)
        tl.store(hi_ptr + slot * rows + row, hi)
    if hi - lo > 1:
        cand = _candidates(lo, hi, WAYS)
        offs = tl.arange(0, BLOCK)
        sums = tl.zeros([BLOCK, WAYS], tl.float64)  # each lane's own sums, reduced once
        scratch = scratch_ptr + row * (chunks * CHUNK) + c * CHUNK  # this chunk's region of the scratch row
        cc = row * CHUNKS + c
        if MODE == 2:
            n = tl.load(count_ptr + cc)
            extra = tl.zeros([BLOCK], tl.float64)  # survivors leaving (lo, hi] above hi
            kept = n * 0
            for start in range(0, n, BLOCK):
                idx = start + offs
                p = tl.load(scratch + idx, mask=idx < n, other=0.0)
                b = p.to(tl.int32, bitcast=True)
                keep = (idx < n) & (b > lo) & (b <= hi)
                extra += tl.where((idx < n) & (b > hi), p.to(tl.float64), 0.0)
                sums += tl.where(keep[:, None] & (b[:, None] > cand[None, :]), p.to(tl.float64)[:, None], 0.0)
                ones = keep.to(tl.int32)
                tl.store(scratch + kept + tl.cumsum(ones, 0) - 1, p, mask=keep)
                kept += tl.sum(ones, 0)
            carry = tl.load(carry_ptr + cc) + tl.sum(extra, 0)
            tl.store(count_ptr + cc, kept)
            tl.store(carry_ptr + cc, carry)
            total = carry + tl.sum(sums, 0)
        else:
            src = probs_ptr + row * stride
            extra = tl.zeros([BLOCK], tl.float64)  # MODE 1: the chunk's mass above hi
            kept = c * 0
            for start in range(c * CHUNK, c * CHUNK + CHUNK, BLOCK):
                idx = start + offs
                p = tl.load(src + idx, mask=idx < V, other=0.0)
                b = p.to(tl.int32, bitcast=True)
                sums += tl.where(b[:, None] > cand[None, :], p.to(tl.float64)[:, None], 0.0)
                if MODE == 1:
                    keep = (idx < V) & (b > lo) & (b <= hi)
                    extra += tl.where(b > hi, p.to(tl.float64), 0.0)
                    ones = keep.to(tl.int32)
                    tl.store(scratch + kept + tl.cumsum(ones, 0) - 1, p, mask=keep)
                    kept += tl.sum(ones, 0)
            if MODE == 1:
                tl.store(count_ptr + cc, kept)
                tl.store(carry_ptr + cc, tl.sum(extra, 0))
            total = tl.sum(sums, 0)
        tl.store(part_ptr + ((slot * rows + row) * CHUNKS + c) * WAYS + tl.arange(0, WAYS), total)


@triton.jit(do_not_specialize=["rows", "chunks", "k"])
def mass_kernel(probs_ptr, tot_ptr, part_ptr, lo_ptr, hi_ptr, top_p_ptr, block_ptr, last_ptr, floor_ptr,
                V, stride, rows, chunks, k, NBLOCKS: tl.constexpr, CHUNK: tl.constexpr, CHUNKS: tl.constexpr,
                BLOCK: tl.constexpr, WAYS: tl.constexpr):
    """After the last round (k = rounds + 1): the floor (the row's first program writes it), then this chunk's
    blocks' nucleus masses and its last nucleus token."""
    row = tl.program_id(0).to(tl.int64)
    c = tl.program_id(1)
    top_p = tl.load(top_p_ptr + row).to(tl.float64)
    lo, hi = _state(part_ptr, lo_ptr, hi_ptr, row, rows, chunks, k, top_p, CHUNKS, WAYS, False)
    j = tl.arange(0, CHUNKS)
    total = tl.sum(tl.load(tot_ptr + row * CHUNKS + j, mask=j < chunks, other=0.0), 0)
    floor = tl.where(total < top_p, 0, hi)
    if c == 0:
        tl.store(floor_ptr + row, floor)
    last = nucleus_blocks(probs_ptr + row * stride, block_ptr + row * NBLOCKS, c * CHUNK, c * CHUNK + CHUNK, V,
                          floor, BLOCK)
    tl.store(last_ptr + row * CHUNKS + c, last)


@triton.jit
def pick_in_row(src, block_row, floor, u, last_token, V, NBLOCKS: tl.constexpr, BLOCK: tl.constexpr, t=1.0, m=0.0,
                z=1.0, LOGITS: tl.constexpr = False):
    """The first token whose cumulative nucleus mass (vocabulary order) exceeds u * the nucleus' mass
    (`searchsorted(..., right=True)`), clamped to the nucleus' last token: the block where the cumulative block
    masses (`block_row`) pass it, then a cumsum inside that block. Both kernels' draw (`top_p_kernel.py` too);
    t, m, z, LOGITS: `load_probs`'."""
    j = tl.arange(0, NBLOCKS)
    blocks = tl.load(block_row + j, mask=j * BLOCK < V, other=0.0)
    cum = tl.cumsum(blocks, 0)
    target = u * tl.max(tl.where(j == NBLOCKS - 1, cum, 0.0), 0)
    at = tl.min(tl.where((cum > target) & (j * BLOCK < V), j, NBLOCKS), 0)
    pick = V + 0 * last_token
    if at < NBLOCKS:
        carry = tl.max(tl.where(j == at, cum - blocks, 0.0), 0)
        idx = at * BLOCK + tl.arange(0, BLOCK)
        p = load_probs(src, idx, idx < V, t, m, z, LOGITS)
        keep = (idx < V) & (p.to(tl.int32, bitcast=True) >= floor)
        cdf = carry + tl.cumsum(tl.where(keep, p.to(tl.float64), 0.0), 0)
        pick = tl.min(tl.where((idx < V) & (cdf > target), idx, V), 0)
    return tl.minimum(pick, last_token).to(tl.int64)


@triton.jit(do_not_specialize=["chunks"])
def pick_kernel(probs_ptr, block_ptr, last_ptr, floor_ptr, u_ptr, out_ptr, V, stride, chunks,
                NBLOCKS: tl.constexpr, CHUNKS: tl.constexpr, BLOCK: tl.constexpr):
    """A program a row: its token (`pick_in_row`)."""
    row = tl.program_id(0).to(tl.int64)
    u = tl.load(u_ptr + row).to(tl.float64)
    floor = tl.load(floor_ptr + row)
    jc = tl.arange(0, CHUNKS)
    last_token = tl.max(tl.load(last_ptr + row * CHUNKS + jc, mask=jc < chunks, other=-1), 0)
    tl.store(out_ptr + row, pick_in_row(probs_ptr + row * stride, block_ptr + row * NBLOCKS, floor, u, last_token, V,
                                        NBLOCKS, BLOCK))
