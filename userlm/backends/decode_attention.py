"""A decode step's attention over each row's live keys/values as two Triton kernels (opt-in for `live_attention.py`,
`LiveAttention.kernel = "triton"`): written here because flex decoding, which the engine uses otherwise, read the
live keys/values at about half the copy bandwidth in the 7B step (~0.66 ms a step where one read takes ~0.34).

One row's key/value head and its query heads (grouped-query attention: Qwen2.5-7B's 7, padded to the 16 rows a
product needs) are one program per `CHUNK` positions: it streams its chunk's keys and values once, in `BLOCK_N`
blocks, with an online softmax, and writes its partial sums; chunks past the row's length return at once (the grid
covers the whole slot buffer, so one CUDA graph serves every length). A second kernel combines a row's chunks. Float32
sums, probabilities cast to the values' dtype for their product (as flex attention does)."""

from __future__ import annotations

import functools

CHUNK, BLOCK_N = 256, 64


@functools.cache
def _kernels():
    import triton
    import triton.language as tl

    @triton.jit
    def partial(q, k, v, lengths, m_out, l_out, acc_out, scale, sq_b, sq_h, sq_g, sk_b, sk_h, sk_n, sv_b, sv_h, sv_n,
                H: tl.constexpr, G: tl.constexpr, BLOCK_G: tl.constexpr, D: tl.constexpr, CHUNK: tl.constexpr,
                BLOCK_N: tl.constexpr, SPLITS: tl.constexpr):
        b, h, s = tl.program_id(0), tl.program_id(1), tl.program_id(2)
        n = tl.load(lengths + b)
        start = s * CHUNK
        if start < n:
            g, d = tl.arange(0, BLOCK_G), tl.arange(0, D)
            query = tl.load(q + b * sq_b + h * sq_h + g[:, None] * sq_g + d[None, :], mask=g[:, None] < G, other=0.0)
            m = tl.full([BLOCK_G], float("-inf"), tl.float32)
            total = tl.zeros([BLOCK_G], tl.float32)
            acc = tl.zeros([BLOCK_G, D], tl.float32)
            end = tl.minimum(start + CHUNK, n)
            for i in range(0, CHUNK // BLOCK_N):  # a fixed count (Triton's interpreter wants it): blocks past the end load nothing
                pos = start + i * BLOCK_N + tl.arange(0, BLOCK_N)
                live = pos < end
                keys = tl.load(k + b * sk_b + h * sk_h + pos[:, None] * sk_n + d[None, :], mask=live[:, None], other=0.0)
                scores = tl.dot(query, tl.trans(keys)) * scale
                scores = tl.where(live[None, :], scores, float("-inf"))
                new_m = tl.maximum(m, tl.max(scores, 1))
                alpha = tl.exp(m - new_m)
                p = tl.exp(scores - new_m[:, None])
                total = total * alpha + tl.sum(p, 1)
                values = tl.load(v + b * sv_b + h * sv_h + pos[:, None] * sv_n + d[None, :], mask=live[:, None], other=0.0)
                acc = acc * alpha[:, None] + tl.dot(p.to(values.dtype), values)
                m = new_m
            at = (b * H + h) * SPLITS + s  # the G real query rows only (not the padding to BLOCK_G)
            tl.store(m_out + at * BLOCK_G + g, m, mask=g < G)
            tl.store(l_out + at * BLOCK_G + g, total, mask=g < G)
            tl.store(acc_out + (at * BLOCK_G + g[:, None]) * D + d[None, :], acc, mask=g[:, None] < G)

    @triton.jit
    def combine(lengths, m_in, l_in, acc_in, o, so_b, so_h, so_g, H: tl.constexpr, G: tl.constexpr,
                BLOCK_G: tl.constexpr, D: tl.constexpr, CHUNK: tl.constexpr, SPLITS: tl.constexpr):
        b, h = tl.program_id(0), tl.program_id(1)
        used = tl.cdiv(tl.load(lengths + b), CHUNK)
        g, d = tl.arange(0, BLOCK_G), tl.arange(0, D)
        base = (b * H + h) * SPLITS
        m = tl.full([BLOCK_G], float("-inf"), tl.float32)
        real = g < G  # padded query rows were not written: not read (their results are not stored)
        for s in range(0, SPLITS):  # chunks past a row's length wrote nothing: not read
            m = tl.maximum(m, tl.load(m_in + (base + s) * BLOCK_G + g, mask=real & (s < used), other=float("-inf")))
        total = tl.zeros([BLOCK_G], tl.float32)
        acc = tl.zeros([BLOCK_G, D], tl.float32)
        for s in range(0, SPLITS):
            live = s < used
            w = tl.exp(tl.load(m_in + (base + s) * BLOCK_G + g, mask=real & live, other=float("-inf")) - m)
            total += w * tl.load(l_in + (base + s) * BLOCK_G + g, mask=real & live, other=0.0)
            acc += w[:, None] * tl.load(acc_in + ((base + s) * BLOCK_G + g[:, None]) * D + d[None, :],
                                        mask=real[:, None] & live, other=0.0)
        out = acc / total[:, None]
        tl.store(o + b * so_b + h * so_h + g[:, None] * so_g + d[None, :], out.to(o.dtype.element_ty), mask=g[:, None] < G)

    return partial, combine


def decode_attention(query, key, value, lengths, scale: float, chunk: int = CHUNK, block_n: int = BLOCK_N,
                     warps: int = 4, stages: int = 2):
    """query [rows, kv heads, G, dim] (a key/value head's query heads), key/value [rows, kv heads, width, dim] (the
    slot buffers' views; the last dimension contiguous), lengths [rows] int32 (each row's live positions, >= 1):
    softmax(q k^T * scale) v over each row's first `lengths` positions, [rows, kv heads, G, dim]."""
    import torch
    import triton

    rows, heads, group, dim = query.shape
    splits = triton.cdiv(key.shape[2], chunk)
    block_g = max(16, triton.next_power_of_2(group))
    m = torch.empty(rows, heads, splits, block_g, dtype=torch.float32, device=query.device)
    total = torch.empty_like(m)
    acc = torch.empty(rows, heads, splits, block_g, dim, dtype=torch.float32, device=query.device)
    out = torch.empty(query.shape, dtype=query.dtype, device=query.device)
    partial, combine = _kernels()
    partial[(rows, heads, splits)](query, key, value, lengths, m, total, acc, scale, *query.stride()[:3],
                                   *key.stride()[:3], *value.stride()[:3], H=heads, G=group, BLOCK_G=block_g, D=dim,
                                   CHUNK=chunk, BLOCK_N=block_n, SPLITS=splits, num_warps=warps, num_stages=stages)
    combine[(rows, heads)](lengths, m, total, acc, out, *out.stride()[:3], H=heads, G=group, BLOCK_G=block_g, D=dim,
                           CHUNK=chunk, SPLITS=splits, num_warps=warps)
    return out
