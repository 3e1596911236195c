"""The decode step's products for a few rows (x [M <= 256, K] @ weight [N, K].T) by one Triton kernel
(`skinny_kernel.py`): split over K so that a small N still fills the GPU, the partial sums added in a fixed order
by the last program of each tile (no second kernel, the same result every run), with the epilogue the neighbours
need: a bias (q/k/v), the residual (down: addmm's beta = 1), or gate/up's silu(gate) * up (the MLP's activation, so
gate/up's output is never written). Hand-written because at these shapes cuBLAS reads the weights well below copy
bandwidth (7B, 128 rows, H200: down 46 us of which 4 its split-K reduce, against 32 at bandwidth; q/k/v 13.4 against
7.8) and neither cuBLAS nor inductor fuses an activation or residual into it. CUDA, bf16/fp16 only; the engine
keeps cuBLAS elsewhere (prefill, float32, CPU)."""

from __future__ import annotations

SMS = 132  # an H200's multiprocessors: programs a split aims to fill when a shape has no measured config
# (N, K, glu) -> (BN, BK, SPLIT, warps, stages), measured at 128 rows on an H200 (benchmarks/bench_skinny_gemm.py)
CONFIGS: dict = {}
_workspaces: dict = {}


def _pow2(n: int) -> int:
    return 1 << max(n - 1, 0).bit_length()


def config_for(n: int, k: int, glu: bool) -> tuple:
    """A measured config for the shape, else one that splits K until the tiles x splits fill the GPU's SMs."""
    if (n, k, glu) in CONFIGS:
        return CONFIGS[(n, k, glu)]
    bn, bk = 64, 128
    tiles = -(-n // bn)
    split = max(1, min(-(-SMS // tiles), k // (4 * bk)))
    return bn, bk, split, 4, 4


def workspace(device, n: int, bm: int, bn: int, split: int, glu: bool):
    """The float32 partials [split (x2 with glu), tiles x bn, bm] and the tiles' counters (zeros; the kernel puts
    each back to zero), one pair a shape, reused by every call of it (calls on one stream run one after another).
    Made on first use, so outside a CUDA graph capture as long as the engine runs a step eagerly first."""
    import torch

    tiles = -(-n // bn)
    key = (str(device), tiles * bn, bm, split, glu)
    if key not in _workspaces:
        part = torch.empty((2 if glu else 1) * split * tiles * bn * bm if split > 1 else 1, dtype=torch.float32,
                           device=device)
        _workspaces[key] = part, torch.zeros(tiles, dtype=torch.int32, device=device)
    return _workspaces[key]


def skinny_linear(x, weight, bias=None, residual=None, glu: bool = False, config: tuple | None = None,
                  tma: bool = False):
    """F.linear(x, weight, bias) (+ residual); with `glu`, weight is gate and up stacked ([2I, K]) and the result
    silu(x @ gate.T) * (x @ up.T) [.., I]. x [..., K] with at most 256 rows in all. `tma`: tiles brought by the
    tensor memory accelerator (Hopper on)."""
    import torch

    from userlm.backends.skinny_kernel import skinny_kernel

    k = x.shape[-1]
    flat = x.reshape(-1, k)
    if flat.stride(-1) != 1:
        flat = flat.contiguous()
    m = flat.shape[0]
    n = weight.shape[0] // 2 if glu else weight.shape[0]
    bn, bk, split, warps, stages = config or config_for(n, k, glu)
    bm = max(16, _pow2(m))
    if bm > 256:
        raise ValueError(f"skinny_linear: {m} rows; at most 256")
    out = torch.empty(m, n, dtype=x.dtype, device=x.device)
    res = residual.reshape(-1, n) if residual is not None else None
    part, counts = workspace(x.device, n, bm, bn, split, glu)
    iters = -(-k // (split * bk))
    flags = dict(BM=bm, BN=bn, BK=bk, SPLIT=split, HAS_BIAS=bias is not None, HAS_RES=res is not None, GLU=glu,
                 num_warps=warps, num_stages=stages)
    tail = (bias if bias is not None else out, res if res is not None else out, out, part, counts, m, n, k, iters, n)
    strides = (res.stride(0) if res is not None else 0, out.stride(0))
    if tma:
        from triton.tools.tensor_descriptor import TensorDescriptor

        from userlm.backends.skinny_kernel import skinny_tma_kernel

        skinny_tma_kernel[(-(-n // bn), split)](TensorDescriptor.from_tensor(flat, [bm, bk]),
                                                TensorDescriptor.from_tensor(weight, [bn, bk]), *tail, *strides, **flags)
    else:
        skinny_kernel[(-(-n // bn), split)](flat, weight, *tail, flat.stride(0), weight.stride(0), *strides, **flags)
    return out.view(*x.shape[:-1], n)
