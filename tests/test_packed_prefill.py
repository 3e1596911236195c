"""Packed prefill (`SlotPrefill.pack_prefill`, the default): a pass's new tokens are one sequence, so the model's
products compute no padding, and attention gathers them into left-padded rows and scatters its output back."""

import pytest
from conftest import every_turn


def test_packed_attention_equals_padded_rows(monkeypatch):
    """`slot_attention` on a packed pass (tokens of rows of different lengths, one after another) gives each token
    the output the left-padded rows give it, folded or not."""
    import torch

    from userlm.backends import slot_kv

    torch.manual_seed(0)
    heads, kv_heads, positions, dim = 6, 2, 16, 8
    lengths, starts = [2, 5, 1], [3, 0, 9]  # each row's new tokens and the position of its first
    width, rows = max(lengths), len(lengths)
    key, value = torch.randn(rows, kv_heads, positions, dim), torch.randn(rows, kv_heads, positions, dim)
    padded = torch.randn(rows, width, heads, dim)  # the padded places' queries are never read back
    at = torch.tensor([[0] * (width - n) + list(range(s, s + n)) for n, s in zip(lengths, starts)])
    mask = (torch.arange(positions)[None, None, :] <= at[:, :, None]).unsqueeze(1)
    places = [j * width + t for j, n in enumerate(lengths) for t in range(width - n, width)]
    packed = padded.reshape(rows * width, heads, dim)[places]  # [tokens, heads, dim]
    gather = torch.tensor([[0] * (width - n) + list(range(sum(lengths[:j]), sum(lengths[:j + 1])))
                           for j, n in enumerate(lengths)])
    for fold in (False, True):
        monkeypatch.setattr(slot_kv, "FOLD_PREFILL", fold)
        want = slot_kv.slot_attention(None, padded.transpose(1, 2), key, value, mask, scaling=dim ** -0.5)[0]
        with slot_kv.prefill_pass((gather, torch.tensor(places))):
            got = slot_kv.slot_attention(None, packed[None].transpose(1, 2), key, value, mask, scaling=dim ** -0.5)[0]
        assert got.shape == (1, len(places), heads, dim)
        torch.testing.assert_close(got[0], want.reshape(rows * width, heads, dim)[places], rtol=1e-6, atol=1e-6)
    assert slot_kv._packed[0] is None and slot_kv._repeated[0] is None
    with pytest.raises(RuntimeError), slot_kv.prefill_pass((gather, torch.tensor(places))):
        slot_kv.slot_attention(None, packed[None].transpose(1, 2), key, value, mask, scaling=dim ** -0.5)
        raise RuntimeError("a forward that fails")
    assert slot_kv._packed[0] is None and slot_kv._repeated[0] is None  # a failed pass leaves neither behind


def test_packed_prefill_keeps_texts_and_computes_no_padding(tiny_model, monkeypatch):
    """Prompts of different lengths, then second turns that feed only their new tokens after the first turn's kept
    keys/values, give the same greedy and sampled texts packed as left-padded; packed, the products compute the
    tokens alone, in no more passes, and some pass packs rows of different lengths that start after kept tokens."""
    from userlm.backends import Sampling
    from userlm.backends.hf import HFBackend

    chats = [[{"role": "user", "content": "Hi." + " Tell me more about that one." * n}] for n in (0, 1, 3, 6, 12)]
    seen = {}
    for pack in (False, True):
        backend = HFBackend(tiny_model, max_batch=5, static_cache=True, compile_decode="off")
        backend.slots.pack_prefill, backend.slots.prefill_tokens = pack, 256
        passes, prefill = [], backend.slots._prefill_chunk

        def spy(chunk, prefill=prefill, passes=passes):  # each pass's rows: (new tokens, tokens kept before)
            passes.append([(len(row.ids) - reused, reused) for _, row, reused in chunk])
            return prefill(chunk)

        monkeypatch.setattr(backend.slots, "_prefill_chunk", spy)

        greedy = every_turn(backend, chats, Sampling(0.0, 1.0, 8))
        hot = every_turn(backend, [c + [{"role": "assistant", "content": t}, {"role": "user", "content": "Why?" * (i + 1)}]
                    for i, (c, t) in enumerate(zip(chats, greedy))], Sampling(1.0, 0.9, 8))
        for i in range(len(chats)):
            backend.release(i)
        seen[pack] = greedy, hot, dict(backend.counts), passes
    (greedy, hot, padded_counts, _), (packed_greedy, packed_hot, packed_counts, packed_passes) = seen[False], seen[True]
    assert (packed_greedy, packed_hot) == (greedy, hot)
    assert packed_counts["prefill tokens"] == padded_counts["prefill tokens"] == packed_counts["prefill padded"]
    assert padded_counts["prefill padded"] > padded_counts["prefill tokens"]  # left padding, computed
    assert 1 < packed_counts["prefill"] <= padded_counts["prefill"]
    assert any(len(rows) > 1 and len({n for n, _ in rows}) > 1 and all(kept > 0 for _, kept in rows)
               for rows in packed_passes)
