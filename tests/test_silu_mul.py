"""`silu_mul.py`: a prefill pass's silu(gate) * up as one Triton kernel (on CUDA; under Triton's interpreter on a
CPU-only machine), the compiled block's split that hands it the gate/up product, the engine's text with it, and the
torch form where the kernel cannot run."""

import pytest
from conftest import under_triton_interpreter

try:
    import torch

    CUDA = torch.cuda.is_available()
except ImportError:  # pragma: no cover
    CUDA = False


def check(device: str, dtype_name: str, tolerance: float):
    """The kernel against torch (float32 arithmetic, one rounding) over widths that are and are not a multiple of its
    block, one row and several, and no rows."""
    import torch

    from userlm.backends.silu_mul import reference, silu_mul

    dtype = getattr(torch, dtype_name)
    g = torch.Generator().manual_seed(0)
    for rows, inter in ((1, 1024), (5, 1500), (3, 96), (0, 64)):
        gate_up = (torch.randn(rows, 2 * inter, generator=g) * 4).to(device, dtype)
        got, want = silu_mul(gate_up), reference(gate_up)
        assert got.shape == (rows, inter) and got.dtype == dtype
        assert (float((got.float() - want.float()).abs().max()) <= tolerance) if rows else got.numel() == 0
    batched = torch.randn(2, 3, 2 * 96, generator=g).to(device, dtype)  # leading dimensions kept
    assert silu_mul(batched).shape == (2, 3, 96)
    assert float((silu_mul(batched).float() - reference(batched).float()).abs().max()) <= tolerance


def interpreter_checks():
    check("cpu", "float32", 1e-5)
    check("cpu", "float16", 1e-2)


@pytest.mark.skipif(CUDA, reason="the interpreter test runs on CPU-only machines (CUDA machines run the kernel)")
def test_kernel_under_the_interpreter():
    under_triton_interpreter("test_silu_mul")


@pytest.mark.skipif(not CUDA, reason="the Triton kernel needs a CUDA GPU")
def test_kernel_on_cuda():
    check("cuda", "float32", 1e-5)
    check("cuda", "bfloat16", 1.6e-2)


def test_block_hands_over_the_product_and_applies_only_where_enabled(tiny_model):
    """The compiled block's other form (`activate` False) returns the gate/up product, which `reference` activates to
    the block's own act; `applies` holds only while ENABLED, for SiLU with gate and up of one size, on CUDA."""
    import torch
    from transformers import AutoModelForCausalLM

    from userlm.backends import silu_mul
    from userlm.backends.fused_projections import GATE_UP, _concatenate
    from userlm.backends.fused_residual import post_attention

    model = AutoModelForCausalLM.from_pretrained(tiny_model)
    layer = model.model.layers[0]
    weight, _, sizes = _concatenate([getattr(layer.mlp, n) for n in GATE_UP])
    block = post_attention(layer, weight, sizes)
    residual, attended = torch.randn(2, 3, 64), torch.randn(2, 3, 64)
    with torch.no_grad():
        hidden, act = block(residual, attended)
        same, gate_up = block(residual, attended, False)
    assert torch.equal(hidden, same) and gate_up.shape[-1] == 2 * act.shape[-1]
    assert torch.allclose(silu_mul.reference(gate_up), act, atol=1e-6)
    assert not silu_mul.applies(layer.mlp.act_fn, attended, sizes)  # not enabled
    silu_mul.ENABLED[0] = True
    try:
        assert silu_mul.applies(layer.mlp.act_fn, attended.to("cuda" if CUDA else "meta"), sizes) == CUDA
        assert not silu_mul.applies(torch.nn.GELU(), attended, sizes)
        assert not silu_mul.applies(layer.mlp.act_fn, attended, [sizes[0], sizes[1] + 1])
    finally:
        silu_mul.ENABLED[0] = False


@pytest.mark.skipif(not CUDA, reason="the Triton kernel needs a CUDA GPU")
def test_engine_text_same_with_the_kernel(tiny_model):
    """Prefill passes (compiled, residual folded) with the activation by the kernel and by inductor: the same text for
    every seed (float32), 5 requests over 4 slots and a second turn, and the kernel ran."""
    from userlm.backends import GenerationRequest, Sampling, silu_mul
    from userlm.backends.hf import HFBackend

    ran, kernel = [], silu_mul.silu_mul
    chats = [[{"role": "user", "content": f"Plan a trip number {i}{', briefly' * i}."}] for i in range(5)]
    texts = []
    for on in (False, True):
        backend = HFBackend(tiny_model, max_batch=4, static_cache=True, dtype="float32")
        backend.slots.prefill_silu_kernel, backend.slots.fuse_residual = on, True
        silu_mul.silu_mul = lambda x: ran.append(x.shape[0]) or kernel(x)
        try:
            first = [o.text for o in backend.generate(
                [GenerationRequest(c, Sampling(0.9, 0.9, 12), seed=3 + i) for i, c in enumerate(chats)])]
            follow = chats[0] + [{"role": "assistant", "content": first[0]}, {"role": "user", "content": "Why?"}]
            texts.append(first + [backend.generate([GenerationRequest(follow, Sampling(0.9, 0.9, 8), seed=1)])[0].text])
        finally:
            silu_mul.silu_mul = kernel
        assert not backend.slots.graph_error and bool(ran) == on
        ran.clear()
    assert texts[0] == texts[1]


def test_activation_kernel_falls_back_with_one_line(capsys):
    """Where the kernel cannot run (here CPU tensors: no Triton, or Triton without a GPU), `silu_mul` prints one
    line, returns the torch form's result, and `applies` holds no more."""
    import torch

    from userlm.backends import silu_mul

    gate_up = torch.randn(3, 2 * 96)
    try:
        assert torch.equal(silu_mul.silu_mul(gate_up), silu_mul.reference(gate_up))
        assert silu_mul.FAILED[0] and "activation kernel failed" in capsys.readouterr().out
        silu_mul.ENABLED[0] = True
        assert not silu_mul.applies(torch.nn.SiLU(), gate_up, [96, 96])
    finally:
        silu_mul.ENABLED[0], silu_mul.FAILED[0] = False, None
