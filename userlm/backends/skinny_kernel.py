"""The Triton kernel behind `skinny_gemm.py` (imported on first use: it needs Triton). Set TRITON_INTERPRET=1 before
its first import for Triton's interpreter (CPU tensors; the tests use it)."""

import triton
import triton.language as tl


@triton.jit
def skinny_kernel(x_ptr, w_ptr, bias_ptr, res_ptr, out_ptr, part_ptr, count_ptr, M, N, K, ITERS, GLU_OFFSET,
                  stride_xm, stride_wn, stride_rm, stride_om,
                  BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr, SPLIT: tl.constexpr,
                  HAS_BIAS: tl.constexpr, HAS_RES: tl.constexpr, GLU: tl.constexpr):
    """out[m, n] = x[m] . w[n] (+ bias[n]) (+ res[m, n]); with GLU, silu(x . w[n]) * (x . w[n + GLU_OFFSET]), each
    product rounded to out's dtype first (as the unfused path's gate/up output is). Computed transposed, w's rows
    against x's (the weights' side fills the tensor cores' 64-row side, the few rows of x the narrow one). Program
    (n tile, k split): a slice of K; with SPLIT > 1 each writes its float32 partial and bumps the tile's counter, and
    the one that finds the others done sums the partials in split order (the same sum whichever finishes last), adds
    the epilogue and resets the counter for the next launch."""
    pid_n = tl.program_id(0)
    pid_s = tl.program_id(1)
    offs_n = pid_n * BN + tl.arange(0, BN)
    offs_m = tl.arange(0, BM)
    offs_k = tl.arange(0, BK)
    n_ok = offs_n < N
    m_ok = offs_m < M
    start = pid_s * ITERS * BK  # each split's slice of K: ITERS blocks of BK
    acc = tl.zeros([BN, BM], dtype=tl.float32)
    acc_up = tl.zeros([BN, BM], dtype=tl.float32)
    w_rows = w_ptr + offs_n[:, None].to(tl.int64) * stride_wn
    x_rows = x_ptr + offs_m[:, None] * stride_xm
    for i in range(0, ITERS):  # past K the loads are masked (a split's last slice, or a split past the end)
        k = start + i * BK
        k_ok = (k + offs_k) < K
        x = tl.load(x_rows + (k + offs_k)[None, :], mask=m_ok[:, None] & k_ok[None, :], other=0.0)
        w = tl.load(w_rows + (k + offs_k)[None, :], mask=n_ok[:, None] & k_ok[None, :], other=0.0)
        acc = tl.dot(w, tl.trans(x), acc)
        if GLU:
            up = tl.load(w_rows + GLU_OFFSET * stride_wn + (k + offs_k)[None, :], mask=n_ok[:, None] & k_ok[None, :],
                         other=0.0)
            acc_up = tl.dot(up, tl.trans(x), acc_up)
    _finish(acc, acc_up, pid_n, pid_s, offs_n, offs_m, n_ok, m_ok, bias_ptr, res_ptr, out_ptr, part_ptr, count_ptr,
            N, stride_rm, stride_om, BM, BN, SPLIT, HAS_BIAS, HAS_RES, GLU)


@triton.jit
def skinny_tma_kernel(x_desc, w_desc, bias_ptr, res_ptr, out_ptr, part_ptr, count_ptr, M, N, K, ITERS, GLU_OFFSET,
                      stride_rm, stride_om, BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr,
                      SPLIT: tl.constexpr, HAS_BIAS: tl.constexpr, HAS_RES: tl.constexpr, GLU: tl.constexpr):
    """`skinny_kernel` with x's and the weights' tiles brought by the tensor memory accelerator (host-made
    descriptors; rows and columns past the ends read as zeros)."""
    pid_n = tl.program_id(0)
    pid_s = tl.program_id(1)
    offs_n = pid_n * BN + tl.arange(0, BN)
    offs_m = tl.arange(0, BM)
    start = pid_s * ITERS * BK
    acc = tl.zeros([BN, BM], dtype=tl.float32)
    acc_up = tl.zeros([BN, BM], dtype=tl.float32)
    for i in range(0, ITERS):
        k = start + i * BK
        x = x_desc.load([0, k])
        acc = tl.dot(w_desc.load([pid_n * BN, k]), tl.trans(x), acc)
        if GLU:
            acc_up = tl.dot(w_desc.load([GLU_OFFSET + pid_n * BN, k]), tl.trans(x), acc_up)
    _finish(acc, acc_up, pid_n, pid_s, offs_n, offs_m, offs_n < N, offs_m < M, bias_ptr, res_ptr, out_ptr, part_ptr,
            count_ptr, N, stride_rm, stride_om, BM, BN, SPLIT, HAS_BIAS, HAS_RES, GLU)


@triton.jit
def _finish(acc, acc_up, pid_n, pid_s, offs_n, offs_m, n_ok, m_ok, bias_ptr, res_ptr, out_ptr, part_ptr, count_ptr,
            N, stride_rm, stride_om, BM: tl.constexpr, BN: tl.constexpr, SPLIT: tl.constexpr,
            HAS_BIAS: tl.constexpr, HAS_RES: tl.constexpr, GLU: tl.constexpr):
    """With SPLIT > 1: the partial stored, the tile's counter bumped, and the last program of the tile sums the
    partials in split order and writes the result; else the result written."""
    if SPLIT > 1:
        NP = tl.cdiv(N, BN) * BN  # the partials' rows: whole tiles
        tile = (pid_s * NP + offs_n[:, None]) * BM + offs_m[None, :]
        tl.store(part_ptr + tile, acc)
        if GLU:
            tl.store(part_ptr + SPLIT * NP * BM + tile, acc_up)
        tl.debug_barrier()  # every thread's partial stored before the counter moves
        done = tl.atomic_add(count_ptr + pid_n, 1, sem="acq_rel", scope="gpu")
        if done == SPLIT - 1:  # the others' partials are visible: sum them in split order
            acc = tl.zeros([BN, BM], dtype=tl.float32)
            acc_up = tl.zeros([BN, BM], dtype=tl.float32)
            for s in range(SPLIT):
                at = (s * NP + offs_n[:, None]) * BM + offs_m[None, :]
                acc += tl.load(part_ptr + at, cache_modifier=".cg")
                if GLU:
                    acc_up += tl.load(part_ptr + SPLIT * NP * BM + at, cache_modifier=".cg")
            tl.store(count_ptr + pid_n, 0)
            _epilogue(acc, acc_up, offs_n, offs_m, n_ok, m_ok, bias_ptr, res_ptr, out_ptr, stride_rm, stride_om,
                      HAS_BIAS, HAS_RES, GLU)
    else:
        _epilogue(acc, acc_up, offs_n, offs_m, n_ok, m_ok, bias_ptr, res_ptr, out_ptr, stride_rm, stride_om,
                  HAS_BIAS, HAS_RES, GLU)


@triton.jit
def _epilogue(acc, acc_up, offs_n, offs_m, n_ok, m_ok, bias_ptr, res_ptr, out_ptr, stride_rm, stride_om,
              HAS_BIAS: tl.constexpr, HAS_RES: tl.constexpr, GLU: tl.constexpr):
    dtype = out_ptr.dtype.element_ty
    ok = n_ok[:, None] & m_ok[None, :]
    if HAS_BIAS:  # F.linear's bias joins the product before it is rounded
        acc += tl.load(bias_ptr + offs_n, mask=n_ok, other=0.0).to(tl.float32)[:, None]
    if GLU:
        gate = acc.to(dtype).to(tl.float32)
        up = acc_up.to(dtype).to(tl.float32)
        acc = gate / (1.0 + tl.exp(-gate)) * up
    if HAS_RES:  # addmm's beta = 1: the residual added in float32, one rounding
        acc += tl.load(res_ptr + offs_m[None, :] * stride_rm + offs_n[:, None], mask=ok, other=0.0).to(tl.float32)
    tl.store(out_ptr + offs_m[None, :] * stride_om + offs_n[:, None], acc.to(dtype), mask=ok)
