"""One matmul for q/k/v and one for gate/up in the static engine's decode step (`fused_projections.py`): the model's
weights become views of the concatenation (no copy), the shared projection recomputes for a new input, and the
engine's text for each seed is the same with and without it (tiny Qwen2, float32, CPU)."""

import pytest


def test_shared_projection_parts_equal_separate_linears():
    import torch

    from userlm.backends.fused_projections import SharedProjection

    torch.manual_seed(0)
    linears = [torch.nn.Linear(16, n) for n in (16, 4, 4)]
    want = lambda x: [m(x) for m in linears]  # noqa: E731 - before the weights become views
    x, y = torch.randn(3, 16), torch.randn(3, 16)
    before = [want(x), want(y)]
    shared = SharedProjection(linears)
    assert all(m.weight.untyped_storage().data_ptr() == shared.weight.untyped_storage().data_ptr() for m in linears)
    q, k, v = (shared.forward(i) for i in range(3))
    got = (k(x), q(x), v(x))  # any order
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(got, (before[0][1], before[0][0], before[0][2])))
    assert shared.input is None  # all three handed out: nothing held
    assert torch.allclose(q(x), before[0][0], atol=1e-6)
    assert torch.allclose(q(y), before[1][0], atol=1e-6)  # a new input: computed again
    assert torch.allclose(q(y), before[1][0], atol=1e-6)  # the same part twice: computed again
    assert torch.allclose(linears[1](y), before[1][1], atol=1e-6)  # the module's own forward reads the view


@pytest.mark.parametrize("temperature", [0.0, 0.9, 3.0])
def test_engine_text_same_with_fused_projections(tiny_model, temperature, monkeypatch):
    """The same text with q/k/v and gate/up one matmul each, and with the layers' residual adds folded into the
    post-attention norm and the down projection (`fuse_residual`, float32 on the CPU, uncompiled)."""
    from userlm.backends import GenerationRequest, Sampling, fused_residual
    from userlm.backends.fused_residual import fusable
    from userlm.backends.hf import HFBackend

    ran = []  # the folded block's calls: a layer forward that fell back to the layer's own would not count
    built = fused_residual.post_attention
    monkeypatch.setattr(fused_residual, "post_attention", lambda *a: (
        lambda block: lambda residual, attended: ran.append(1) or block(residual, attended))(built(*a)))

    chats = [[{"role": "user", "content": f"Tell me about idea {i}{', briefly' * (i % 3)}."}] for i in range(4)]
    texts = []
    for fuse, residual in ((False, False), (True, False), (True, True)):
        backend = HFBackend(tiny_model, max_batch=3, static_cache=True, compile_decode="off", dtype="float32")
        backend.slots.fuse_projections, backend.slots.fuse_residual = fuse, residual
        reqs = [GenerationRequest(c, Sampling(temperature, 0.9, 6 + 3 * i), seed=i) for i, c in enumerate(chats)]
        texts.append([(o.text, o.tokens) for o in backend.generate(reqs)])
        if fuse:
            parts = backend.slots.fused[1]
            layer = backend.model.model.layers[0]
            assert fusable(layer)  # Qwen2DecoderLayer, one tensor out
            # the MLP's forward swapped without residual folding, the whole layer's with it (its block reads the MLP's
            # weights); built once, chosen per pass
            assert [when for owner, _, _, when in parts if owner is layer or owner is layer.mlp] == [False, True]
            projections = {id(getattr(layer.self_attn, n)) for n in ("q_proj", "k_proj", "v_proj")}
            assert {id(owner) for owner, *_ in parts} >= projections
            assert layer.self_attn.q_proj.weight.untyped_storage().data_ptr() == \
                layer.self_attn.v_proj.weight.untyped_storage().data_ptr()
            assert "forward" not in layer.mlp.__dict__ and "forward" not in layer.__dict__  # swapped in for a pass only
    assert texts[0] == texts[1] == texts[2]
    assert sum(t[1] for t in texts[0]) > 10 and ran  # (on CUDA the block runs when a graph is captured only)
