"""A prefill pass's MLP activation, silu(gate) * up over the gate/up product [tokens, 2 x inter], as one Triton
kernel (the static engine's `prefill_silu_kernel`, on CUDA with Triton): one program a row's block of columns.

Why by hand: inductor's kernel for the same expression, compiled with the dynamic shapes a prefill pass needs (its
token count varies pass to pass), ran at ~1.5 TB/s on an H200 (24.8 ms of a 7B pass's ~228 ms of kernels): this one
273 us against its 718 at 9,700 tokens x 18,944 (4.0 TB/s; inductor's for that one shape 259), and 7B/128 1.010x
all-in side by side (2026-12-01 session 20, `benchmarks/bench_prefill_act.py`,
results/benchmarks/2026-12-01-h200-prefill-silu-suffix.md). The decode step keeps inductor's, compiled for its fixed
shapes. Same arithmetic as inductor's: silu and the product in float32, rounded once (the same bits in that test)."""

from __future__ import annotations

import functools

# set by the engine around its prefill passes (`DecodeGraphs._compiled`): `fused_residual.layer_forward` then
# activates after the compiled block, here
ENABLED: list = [False]
BLOCK = 1024


FAILED: list = [None]  # why the kernel could not run (then `applies` holds no more: inductor's activation again)


def applies(act_fn, x, sizes) -> bool:
    """While ENABLED, the kernel's case: SiLU (torch's or transformers'), gate and up of one size, on CUDA."""
    return bool(ENABLED[0]) and FAILED[0] is None and type(act_fn).__name__ in ("SiLU", "SiLUActivation") \
        and len(sizes) == 2 and sizes[0] == sizes[1] and x.is_cuda


@functools.cache
def _kernel():
    import triton
    import triton.language as tl

    @triton.jit
    def silu_mul_kernel(gate_up, out, inter, in_row, out_row, BLOCK: tl.constexpr):
        row = tl.program_id(0).to(tl.int64)
        cols = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
        keep = cols < inter
        gate = tl.load(gate_up + row * in_row + cols, mask=keep).to(tl.float32)
        up = tl.load(gate_up + row * in_row + inter + cols, mask=keep).to(tl.float32)
        tl.store(out + row * out_row + cols, (gate * tl.sigmoid(gate) * up).to(out.dtype.element_ty), mask=keep)
    return silu_mul_kernel


def silu_mul(gate_up):
    """silu(gate_up[..., :inter]) * gate_up[..., inter:], inter = half the last dimension (CUDA). Where the kernel
    fails (no Triton, a compile error), one line, `reference` for this call and inductor's activation after it."""
    import torch

    inter = gate_up.shape[-1] // 2
    flat = gate_up.reshape(-1, gate_up.shape[-1])
    flat = flat if flat.stride(-1) == 1 else flat.contiguous()
    out = torch.empty(flat.shape[0], inter, dtype=gate_up.dtype, device=gate_up.device)
    if flat.shape[0]:
        try:
            _kernel()[(flat.shape[0], -(-inter // BLOCK))](flat, out, inter, flat.stride(0), out.stride(0), BLOCK=BLOCK)
        except Exception as e:  # noqa: BLE001 - any failure to build or launch it: the torch form, then inductor's
            FAILED[0] = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
            print(f"hf backend: the prefill activation kernel failed ({FAILED[0]}); inductor's from now on", flush=True)
            return reference(gate_up)
    return out.view(*gate_up.shape[:-1], inter)


def reference(gate_up):
    """The same in torch (float32 arithmetic, one rounding), for tests and where the kernel cannot run."""
    gate, up = gate_up.float().chunk(2, dim=-1)
    return (gate * gate.sigmoid() * up).to(gate_up.dtype)
