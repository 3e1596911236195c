"""A decode step's rotary embedding and key/value write as one Triton kernel a layer (the static engine's
`fuse_rotary_write`, with compile_decode on CUDA): where the step otherwise runs three per layer (inductor's rotary
for the queries, its rotary for the keys, the compiled write of keys and values into the slot buffers: ~170 us and 84
launches a 7B/128 step on an H200, each a few microseconds for a megabyte).

How it fits transformers' attention without replacing its forward: the modeling module's `apply_rotary_pos_emb`,
swapped by the engine for its decode passes (`deferring`), returns an empty tensor for the rotated queries and the
keys unrotated, and leaves the inputs here (`PENDING`); the attention then calls the cache's update
(`SlotBuffers.write_and_read`), which runs the kernel (`consume`): it fills that tensor with the rotated queries and
writes the rotated keys and the values at each row's position, before attention reads either (where the kernel
does not take the buffers, the wrapped rotary runs there instead and the engine writes as it does without). The slot attention
refuses to run with a rotation still pending (an architecture whose attention did not update the cache in between).
Hand-written because inductor compiles the rotary function and the cache write as separate graphs (the
write happens in the engine's Python between them); one kernel also reads the projections' output once."""

from __future__ import annotations

import functools

PENDING: list = [None]  # (the rotary it wraps, queries, their rotated output, cos, sin, packed) of the layer under way
# set by the engine around a pass that defers (`deferring` reads it each call): "decode" (a step's rows, one position
# each) or "packed" (a packed prefill pass, `slot_kv.prefill_pass`: one sequence of tokens, each into its own slot)
ENABLED: list = [False]
PACKED_ROWS = 16  # tokens a program rotates in a packed prefill pass (decode: one row a program)
# the modeling modules whose attention rotates the whole head with the half-split `rotate_half` (cat(-x2, x1)), then
# updates the cache, then attends: the kernel's formula and order (Cohere's interleaved rotary, say, is another)
MODULES = ("modeling_llama", "modeling_mistral", "modeling_qwen2", "modeling_qwen3")


def defers(module) -> bool:
    return module.__name__.rsplit(".", 1)[-1] in MODULES


def _deferrable(q, k, cos, sin, packed: bool) -> bool:
    """A call the kernel takes: decode, one position a row and a cos/sin row per batch row; packed, one row of
    tokens and a cos/sin row per token; either way the rotary over the whole head (a power of two), the last
    dimensions contiguous, one dtype."""
    dim = q.shape[-1]
    rows = (q.shape[0] == k.shape[0] == 1 and q.shape[2] == k.shape[2] and tuple(cos.shape[:2]) == (1, q.shape[2])) \
        if packed else (q.shape[2] == 1 and k.shape[2] == 1 and cos.shape[0] == q.shape[0] == k.shape[0])
    return (rows and cos.shape[-1] == dim and dim & (dim - 1) == 0 and cos.shape == sin.shape and cos.dim() == 3
            and q.stride(-1) == k.stride(-1) == cos.stride(-1) == sin.stride(-1) == 1 and q.dtype == k.dtype)


def deferring(rotary):
    """`apply_rotary_pos_emb` as the engine swaps it in: calls the kernel takes (`_deferrable`) deferred while
    ENABLED, any other call to `rotary` (the compiled or the module's own function)."""
    def apply(q, k, cos, sin, unsqueeze_dim=1, **kwargs):
        packed = ENABLED[0] == "packed"
        if not (ENABLED[0] and unsqueeze_dim == 1 and not kwargs and _deferrable(q, k, cos, sin, packed)):
            return rotary(q, k, cos, sin, unsqueeze_dim, **kwargs)
        import torch

        if PENDING[0] is not None:
            raise RuntimeError("rotary_write: a layer's deferred rotation was never consumed")
        # token-major, as the projection's view and the compiled rotary's output: a packed pass then gathers each
        # token's heads from one run of memory (head-major made that gather ~5x slower, 2026-12-01 session 20)
        out = torch.empty(q.shape[0], q.shape[2], q.shape[1], q.shape[3], dtype=q.dtype, device=q.device).transpose(1, 2)
        PENDING[0] = (rotary, q, out, cos, sin, packed)
        return out, k
    return apply


def check_consumed() -> None:
    if PENDING[0] is not None:
        PENDING[0] = None
        raise RuntimeError("rotary_write: attention ran before the key/value write that rotates its queries")


@functools.cache
def _kernel():
    import triton
    import triton.language as tl

    @triton.jit
    def rotate_and_write(q, k, v, cos, sin, q_out, keys, values, slots, writes, n, sq_b, sq_h, sk_b, sk_h, sv_b, sv_h,
                         sc_b, ss_b, so_b, so_h, sb_s, sb_h, sb_n, H: tl.constexpr, D: tl.constexpr,
                         ROWS: tl.constexpr):
        """Program (ROWS rows, head): a query head rotated into q_out, or (head >= H) a key/value head: the key
        rotated and the value copied to each row's slot at its write position. Float32 arithmetic, rounded once."""
        b = tl.program_id(0) * ROWS + tl.arange(0, ROWS)
        h = tl.program_id(1)
        live = b < n
        rows, keep = b[:, None], live[:, None]
        half = tl.arange(0, D // 2)[None, :]
        c1 = tl.load(cos + rows * sc_b + half, mask=keep).to(tl.float32)
        c2 = tl.load(cos + rows * sc_b + D // 2 + half, mask=keep).to(tl.float32)
        s1 = tl.load(sin + rows * ss_b + half, mask=keep).to(tl.float32)
        s2 = tl.load(sin + rows * ss_b + D // 2 + half, mask=keep).to(tl.float32)
        if h < H:
            src = q + rows * sq_b + h * sq_h
            dst = q_out + rows * so_b + h * so_h
        else:
            j = h - H
            src = k + rows * sk_b + j * sk_h
            at = (tl.load(slots + b, mask=live) * sb_s + j * sb_h + tl.load(writes + b, mask=live) * sb_n)[:, None]
            dst = keys + at
            d = tl.arange(0, D)[None, :]
            tl.store(values + at + d, tl.load(v + rows * sv_b + j * sv_h + d, mask=keep), mask=keep)
        x1 = tl.load(src + half, mask=keep).to(tl.float32)
        x2 = tl.load(src + D // 2 + half, mask=keep).to(tl.float32)
        # (x * cos) + (rotate_half(x) * sin), rotate_half(x) = cat(-x2, x1): transformers' apply_rotary_pos_emb
        tl.store(dst + half, (x1 * c1 - x2 * s1).to(dst.dtype.element_ty), mask=keep)
        tl.store(dst + D // 2 + half, (x2 * c2 + x1 * s2).to(dst.dtype.element_ty), mask=keep)

    return rotate_and_write


def rotate_and_write(q, k, v, cos, sin, q_out, keys, values, slots, writes, packed: bool = False) -> None:
    """q [b, heads, 1, dim], k/v [b, kv heads, 1, dim] (any strides, the last dimension contiguous), cos/sin
    [b, 1, dim]; q_out like q; keys/values [slots, kv heads, positions, dim] contiguous; slots/writes [b]: q_out
    = rotary(q), keys[slots[i], :, writes[i]] = rotary(k[i]) and values[...] = v[i]. `packed`: a packed prefill
    pass's tokens instead of rows: q [1, heads, n, dim], k/v [1, kv heads, n, dim], cos/sin [1, n, dim], slots/writes
    [n] (token i into slot slots[i] at position writes[i])."""
    at, at_cos = (2, 1) if packed else (0, 0)  # the dimension that runs over rows (tokens)
    heads, kv_heads, dim, n = q.shape[1], k.shape[1], q.shape[-1], q.shape[at]
    rows = PACKED_ROWS if packed else 1  # a pass's thousands of tokens: a program a row and head was launch-bound
    _kernel()[(-(-n // rows), heads + kv_heads)](
        q, k, v, cos, sin, q_out, keys, values, slots, writes, n, q.stride(at), q.stride(1), k.stride(at),
        k.stride(1), v.stride(at), v.stride(1), cos.stride(at_cos), sin.stride(at_cos), q_out.stride(at),
        q_out.stride(1), keys.stride(0), keys.stride(1), keys.stride(2), H=heads, D=dim, ROWS=rows,
        num_warps=4 if packed else 1)


def consume(keys, values, slots, writes, new_keys, new_values):
    """The layer's pending rotation done with its key/value write by the kernel (None: nothing left to write), or the
    keys the caller writes: `new_keys` where no rotation is pending, else rotated (with the queries) by the rotary
    the deferral wrapped, where the values or buffers are not the kernel's case (not contiguous, another dtype, CPU)."""
    pending = PENDING[0]
    if pending is None:
        return new_keys
    PENDING[0] = None
    rotary, q, out, cos, sin, packed = pending
    if (new_values.stride(-1) == 1 and keys.is_contiguous() and values.is_contiguous() and keys.is_cuda
            and new_values.dtype == keys.dtype == values.dtype == q.dtype):
        rotate_and_write(q, new_keys, new_values, cos, sin, out, keys, values, slots, writes, packed)
        return None
    rotated, new_keys = rotary(q, new_keys, cos, sin)
    out.copy_(rotated)
    return new_keys
