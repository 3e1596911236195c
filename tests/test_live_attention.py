"""The static engine's decode attention over each row's live positions only (`userlm/backends/live_attention.py`,
`SlotEngine.live_attention`): the same attention values as the masked SDPA it replaces, and on the tiny model the
same text as the default engine (float32, CPU: flex_attention runs eagerly here, compiled on CUDA)."""

import pytest


@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_live_block_mask_equals_masked_sdpa(device):
    """Rows of lengths 1 (an idle slot), within one block, exactly one block, across blocks, the whole width;
    on CUDA compiled (flex-decoding kernel) with Qwen2.5's 7 query heads a key/value head."""
    import torch

    from userlm.backends.live_attention import LiveAttention, done

    if device == "cuda" and not torch.cuda.is_available():
        pytest.skip("no CUDA")
    torch.manual_seed(0)
    torch.set_default_device(device)
    rows, heads, kv_heads, width, dim = 5, 14, 2, 384, 64
    live = LiveAttention(8, torch.device(device), compiled=device == "cuda")
    positions = torch.tensor([[0], [40], [127], [200], [383], [9], [9], [9]])
    live.prepare(rows, positions, heads // kv_heads, width)
    done()
    q = torch.randn(rows, heads, 1, dim)
    k, v = torch.randn(rows, kv_heads, width, dim), torch.randn(rows, kv_heads, width, dim)
    k[1, :, 41:] = 1e4  # what a row must not read: its slot past its own length (stale, finite)
    v[1, :, 41:] = 1e4
    got = live.attend(q, k, v, dim ** -0.5)
    mask = torch.arange(width)[None, :] <= positions[:rows]
    want = torch.nn.functional.scaled_dot_product_attention(
        q.reshape(rows, kv_heads, heads // kv_heads, dim), k, v, attn_mask=mask[:, None, None, :]).reshape(q.shape)
    torch.set_default_device(None)
    assert torch.allclose(got, want, atol=1e-5 if device == "cpu" else 2e-3), (got - want).abs().max()
    assert live.lengths[:rows].tolist() == [1, 41, 128, 201, 384]


@pytest.mark.parametrize("temperature", [0.0, 0.9])
def test_live_attention_engine_same_text(tiny_model, temperature):
    """Rows join and leave, a second turn reuses the first's cache, the slot buffer grows past 1,024 positions:
    the text equals the default engine's, and a sampled row's text depends only on its seed."""
    from userlm.backends import GenerationRequest, Sampling
    from userlm.backends.hf import HFBackend

    chats = [[{"role": "user", "content": f"Tell me about idea {i}{' and more' * (300 * (i == 2))}."}]
             for i in range(5)]  # chat 2's prompt is past 1,024 tokens
    texts = []
    for live in (False, True):
        backend = HFBackend(tiny_model, max_batch=3, static_cache=True, compile_decode="off", dtype="float32")
        backend.slots.live_attention = live
        reqs = [GenerationRequest(c, Sampling(temperature, 0.9, 6 + 4 * i), seed=i) for i, c in enumerate(chats)]
        outs = [o.text for o in backend.generate(reqs)]
        follow = chats[0] + [{"role": "assistant", "content": outs[0]}, {"role": "user", "content": "Why?"}]
        outs.append(backend.generate([GenerationRequest(follow, Sampling(temperature, 0.9, 8), seed=1)])[0].text)
        alone = backend.generate([GenerationRequest(chats[1], Sampling(temperature, 0.9, 10), seed=1)])[0].text
        assert alone == outs[1]
        texts.append(outs)
        assert backend.slots.length >= 2048 and (backend.slots.live_kv is not None) == live
    assert texts[0] == texts[1]
    assert any(texts[0])


def test_wide_in_graph_same_tokens(tiny_model):
    """`wide_in_graph`: after a step with a row wider than the head, the step itself draws `sample_wide`'s token;
    the text equals the engine's without it (temperature 3: wide nuclei), and a row's text depends on its seed."""
    from userlm.backends import GenerationRequest, Sampling
    from userlm.backends.hf import HFBackend

    chats = [[{"role": "user", "content": f"Plan a trip number {i}."}] for i in range(4)]
    hot = Sampling(temperature=3.0, top_p=0.9, max_new_tokens=10)
    texts = []
    for inside in (False, True):
        backend = HFBackend(tiny_model, max_batch=4, static_cache=True, compile_decode="off", dtype="float32")
        backend.slots.wide_sort, backend.slots.wide_in_graph, backend.slots.live_attention = False, inside, inside
        backend.slots.wide_kernel = "torch"  # `sample_wide` (on CUDA the default draws every row by rejection)
        crowded = [o.text for o in backend.generate([GenerationRequest(c, hot, seed=7 + i) for i, c in enumerate(chats)])]
        assert backend.generate([GenerationRequest(chats[1], hot, seed=8)])[0].text == crowded[1]
        assert backend.slots.wide_steps > 0 and backend.slots.last_wide
        texts.append(crowded)
    assert texts[0] == texts[1]
