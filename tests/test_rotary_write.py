"""`userlm/backends/rotary_write.py`: a decode step's rotary embedding and key/value write as one Triton kernel
equals transformers' `apply_rotary_pos_emb` then the slot buffers' write (`slot_kv.write_rows`), for queries, keys
and values that are strided views of one projection's output, rows in any slots and positions; a deferred
rotation that attention would read before the write is refused; on CUDA the static engine's text is the same with
the kernel as without it (float32, compiled decode, CUDA graphs). Under Triton's interpreter on CPU-only machines
where Triton is installed (float32, float16), on CUDA in float32 and bfloat16."""

import pytest
from conftest import under_triton_interpreter

try:
    import torch

    CUDA = torch.cuda.is_available()
except ImportError:  # pragma: no cover
    CUDA = False


def check(device: str, dtype_name: str, tolerance: float, dim: int = 16, torch_path: bool = False):
    """`rotate_and_write` (or, `torch_path`, `consume`'s way without the kernel: the wrapped rotary, then the
    engine's own write) against transformers' rotary and the write, for a decode step's rows and for a packed
    prefill pass's tokens."""
    check_rows(device, dtype_name, tolerance, dim, torch_path)
    check_packed(device, dtype_name, tolerance, dim, torch_path)


def consumed(rotary, q, out, cos, sin, packed, keys, values, at, writes, k, v):
    """`consume` of a deferral of `rotary` (as `deferring` leaves it) on buffers the kernel does not take: the keys
    it hands back to write; nothing is written into the buffers."""
    import torch

    from userlm.backends import rotary_write

    before = keys.clone()
    rotary_write.PENDING[0] = (rotary, q, out, cos, sin, packed)
    rotated = rotary_write.consume(keys, values, at, writes, k, v)
    assert rotary_write.PENDING[0] is None and torch.equal(keys, before)
    return rotated


def check_packed(device: str, dtype_name: str, tolerance: float, dim: int, torch_path: bool):
    import torch
    from transformers.models.qwen2.modeling_qwen2 import apply_rotary_pos_emb

    from userlm.backends.rotary_write import rotate_and_write

    dtype = getattr(torch, dtype_name)
    g = torch.Generator().manual_seed(dim + 1)
    tokens, heads, kv_heads, slots, width = 21, 7, 2, 4, 12  # 21: a program's 16 tokens and a part of the next
    qkv = torch.randn(1, tokens, (heads + 2 * kv_heads) * dim, generator=g).to(device, dtype)  # packed: one row
    q, k, v = (t.view(1, tokens, -1, dim).transpose(1, 2) for t in qkv.split([heads * dim, kv_heads * dim, kv_heads * dim], -1))
    angles = torch.randn(1, tokens, dim // 2, generator=g) * 5
    cos, sin = (f(torch.cat([angles, angles], -1)).to(device, dtype) for f in (torch.cos, torch.sin))
    keys, values = (torch.randn(slots, kv_heads, width, dim, generator=g).to(device, dtype) for _ in range(2))
    want_keys, want_values = keys.clone(), values.clone()
    # four rows' tokens, in slot order or not: rows 2, 0, 3 (consecutive positions), then row 1's 12 in reverse
    at = torch.tensor([2, 2, 2, 0, 0, 3, 3, 3, 3] + [1] * 12, device=device)
    writes = torch.tensor([5, 6, 7, 0, 1, 8, 9, 10, 11] + list(range(0, 12))[::-1], device=device)
    out = torch.empty(1, tokens, heads, dim, dtype=dtype, device=device).transpose(1, 2)  # token-major, as deferred
    if torch_path:
        rotated = consumed(apply_rotary_pos_emb, q, out, cos, sin, True, keys, values, at, writes, k, v)
        keys[at, :, writes], values[at, :, writes] = rotated[0].transpose(0, 1), v[0].transpose(0, 1)
    else:
        rotate_and_write(q, k, v, cos, sin, out, keys, values, at, writes, True)
    want_q, want_k = (t.float() for t in apply_rotary_pos_emb(q.float(), k.float(), cos.float(), sin.float()))
    want_keys[at, :, writes] = want_k[0].transpose(0, 1).to(dtype)
    want_values[at, :, writes] = v[0].transpose(0, 1)
    assert float((out.float() - want_q).abs().max()) <= tolerance
    assert float((keys.float() - want_keys.float()).abs().max()) <= tolerance
    assert torch.equal(values, want_values)


def check_rows(device: str, dtype_name: str, tolerance: float, dim: int, torch_path: bool):
    """A decode step's rows (the layout `check_packed` checks for a packed pass's tokens)."""
    import torch
    from transformers.models.qwen2.modeling_qwen2 import apply_rotary_pos_emb

    from userlm.backends.rotary_write import rotate_and_write
    from userlm.backends.slot_kv import write_rows

    dtype = getattr(torch, dtype_name)
    g = torch.Generator().manual_seed(dim)
    rows, heads, kv_heads, slots, width = 5, 7, 2, 8, 12
    qkv = torch.randn(rows, 1, (heads + 2 * kv_heads) * dim, generator=g).to(device, dtype)  # one product's output
    q, k, v = (t.view(rows, 1, -1, dim).transpose(1, 2) for t in qkv.split([heads * dim, kv_heads * dim, kv_heads * dim], -1))
    angles = torch.randn(rows, 1, dim // 2, generator=g) * 5
    cos, sin = (f(torch.cat([angles, angles], -1)).to(device, dtype) for f in (torch.cos, torch.sin))
    keys, values = (torch.randn(slots, kv_heads, width, dim, generator=g).to(device, dtype) for _ in range(2))
    want_keys, want_values = keys.clone(), values.clone()
    at, writes = torch.tensor([3, 0, 5, 1, 7], device=device), torch.tensor([0, 11, 4, 4, 9], device=device)
    out = torch.empty(q.shape, dtype=dtype, device=device)
    if torch_path:
        rotated = consumed(apply_rotary_pos_emb, q, out, cos, sin, False, keys, values, at, writes, k, v)
        write_rows(keys, values, at, writes, rotated[:, :, 0], v[:, :, 0])
    else:
        rotate_and_write(q, k, v, cos, sin, out, keys, values, at, writes)
    want_q, want_k = (t.float() for t in apply_rotary_pos_emb(q.float(), k.float(), cos.float(), sin.float()))
    write_rows(want_keys, want_values, at, writes, want_k[:, :, 0].to(dtype), v[:, :, 0])
    assert float((out.float() - want_q).abs().max()) <= tolerance
    assert float((keys.float() - want_keys.float()).abs().max()) <= tolerance  # only the written positions changed
    assert torch.equal(values, want_values)


def interpreter_checks():
    for dtype, tolerance in (("float32", 1e-6), ("float16", 4e-3)):
        for dim in (16, 128):
            check("cpu", dtype, tolerance, dim)


def test_torch_form_and_which_calls_defer():
    """Without the kernel (CPU buffers) `consume` runs the wrapped rotary and hands back the keys to write; only the
    modeling modules whose rotary is the kernel's formula defer, and only calls the kernel takes (a head of a power
    of two, one cos/sin row per batch row)."""
    import types

    import torch

    from userlm.backends import rotary_write

    check("cpu", "float32", 1e-6, 16, torch_path=True)
    assert rotary_write.defers(types.ModuleType("transformers.models.qwen2.modeling_qwen2"))
    assert not rotary_write.defers(types.ModuleType("transformers.models.cohere.modeling_cohere"))
    q, k = torch.ones(2, 3, 1, 96), torch.ones(2, 1, 1, 96)
    assert not rotary_write._deferrable(q, k, torch.ones(2, 1, 96), torch.ones(2, 1, 96), False)  # head of 96
    q, k = torch.ones(2, 3, 1, 64), torch.ones(2, 1, 1, 64)
    assert rotary_write._deferrable(q, k, torch.ones(2, 1, 64), torch.ones(2, 1, 64), False)
    assert not rotary_write._deferrable(q, k, torch.ones(1, 1, 64), torch.ones(1, 1, 64), False)  # broadcast cos/sin
    assert not rotary_write._deferrable(q, k, torch.ones(2, 1, 64), torch.ones(2, 1, 64), True)  # not one packed row
    q, k = torch.ones(1, 3, 5, 64), torch.ones(1, 1, 5, 64)
    assert rotary_write._deferrable(q, k, torch.ones(1, 5, 64), torch.ones(1, 5, 64), True)
    assert not rotary_write._deferrable(q, k, torch.ones(1, 5, 64), torch.ones(1, 5, 64), False)


def test_unconsumed_rotation_is_refused():
    """A deferred rotation that the attention would read unwritten raises; calls the engine does not defer (not
    enabled, several positions, a partial rotary) go to the function it wraps."""
    import torch

    from userlm.backends import rotary_write

    calls = []
    apply = rotary_write.deferring(lambda q, k, cos, sin, dim=1: calls.append(1) or (q, k))
    q, k, cos = torch.ones(2, 3, 1, 4), torch.ones(2, 1, 1, 4), torch.ones(2, 1, 4)
    apply(q, k, cos, cos)
    rotary_write.ENABLED[0] = "decode"
    try:
        apply(torch.ones(2, 3, 5, 4), torch.ones(2, 1, 5, 4), torch.ones(2, 5, 4), torch.ones(2, 5, 4))
        apply(q, k, cos[..., :2], cos[..., :2])
        assert len(calls) == 3 and rotary_write.PENDING[0] is None
        out, key = apply(q, k, cos, cos)
        assert key is k and out.shape == q.shape and rotary_write.PENDING[0] is not None
        with pytest.raises(RuntimeError, match="never consumed"):
            apply(q, k, cos, cos)
        with pytest.raises(RuntimeError, match="attention ran before"):
            rotary_write.check_consumed()
        assert rotary_write.PENDING[0] is None
    finally:
        rotary_write.ENABLED[0], rotary_write.PENDING[0] = False, None


@pytest.mark.slow  # inductor compiles C++ on the CPU: about a minute
def test_engine_defers_and_writes_through_the_torch_form(tiny_model, monkeypatch):
    """The engine's deferral on the CPU (compiled decode and prefill, float32): with the rotation deferred into the
    key/value write (the wrapped rotary and the engine's write here; the kernel on CUDA) in decode steps and packed prefill passes,
    the same text as without, and both kinds of pass deferred."""
    from userlm.backends import GenerationRequest, Sampling, rotary_write
    from userlm.backends.decode_graphs import DecodeGraphs
    from userlm.backends.hf import HFBackend

    seen, consume = [], rotary_write.consume
    monkeypatch.setattr(rotary_write, "consume", lambda *a: (
        lambda pending, out: seen.append(pending and pending[5]) or out)(rotary_write.PENDING[0], consume(*a)))
    chats = [[{"role": "user", "content": f"Plan a trip number {i}."}] for i in range(5)]
    texts = []
    for defer in (False, True):
        monkeypatch.setattr(DecodeGraphs, "_rotary_write", lambda self, prefill=False, d=defer: d)
        backend = HFBackend(tiny_model, max_batch=4, static_cache=True, dtype="float32", compile_decode=True)
        backend.slots.compile_prefill = True
        backend.slots.fuse_rotary_prefill = True
        texts.append([o.text for o in backend.generate(
            [GenerationRequest(c, Sampling(0.9, 0.9, 10), seed=3 + i) for i, c in enumerate(chats)])])
        assert ({True, False} <= set(seen)) == defer  # packed prefill (True) and decode (False) passes deferred
        seen.clear()
    assert texts[0] == texts[1]


@pytest.mark.skipif(CUDA, reason="the interpreter test runs on CPU-only machines (CUDA machines run the kernel)")
def test_kernel_under_the_interpreter():
    under_triton_interpreter("test_rotary_write")


@pytest.mark.skipif(not CUDA, reason="the Triton kernel needs a CUDA GPU")
def test_kernel_on_cuda():
    check("cuda", "float32", 1e-5, 128)
    check("cuda", "bfloat16", 1.6e-2, 128)


@pytest.mark.skipif(not CUDA, reason="the Triton kernel needs a CUDA GPU")
def test_engine_text_same_with_the_kernel(tiny_model):
    """The compiled decode step (float32, CUDA graphs) with the rotation and write deferred into the kernel and
    without, and in packed prefill passes too (`fuse_rotary_prefill`): the same text for every seed, 5 requests over
    4 slots, and the kernel ran (more often with prefill's)."""
    from userlm.backends import GenerationRequest, Sampling, rotary_write
    from userlm.backends.hf import HFBackend

    ran, consume = [], rotary_write.consume
    chats = [[{"role": "user", "content": f"Plan a trip number {i}."}] for i in range(5)]
    texts, runs = [], []
    for fused, prefill in ((False, False), (True, False), (True, True)):
        backend = HFBackend(tiny_model, max_batch=4, static_cache=True, dtype="float32")
        backend.slots.fuse_rotary_write, backend.slots.fuse_rotary_prefill = fused, prefill
        rotary_write.consume = lambda *a: (lambda out: ran.append(out is None) or out)(consume(*a))
        try:
            texts.append([o.text for o in backend.generate(
                [GenerationRequest(c, Sampling(0.9, 0.9, 12), seed=3 + i) for i, c in enumerate(chats)])])
        finally:
            rotary_write.consume = consume
        assert not backend.slots.graph_error and (any(ran) == fused)
        runs.append(sum(ran))
        ran.clear()
    assert texts[0] == texts[1] == texts[2] and runs[2] > runs[1]
