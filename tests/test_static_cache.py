"""The hf backend's static-slot engine (the GPU default, `userlm/backends/static_cache.py`) on the CPU:
greedy tokens equal to the dynamic scheduler's, with more requests than slots (token-level joining and
leaving), different budgets, and a second turn that reuses the first turn's KV cache."""

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run_both(model, drive):
    from userlm.backends.hf import HFBackend

    dynamic = HFBackend(model, max_batch=3, static_cache=False)
    # the same kernels as the dynamic scheduler; the compiled decode (the CUDA default) is tested on its own below
    static = HFBackend(model, max_batch=3, static_cache=True, compile_decode="off")
    assert dynamic.slots is None and static.slots is not None
    return drive(dynamic), drive(static), static


def test_static_slots_match_dynamic_scheduler_greedy(tiny_model):
    from userlm.backends import GenerationRequest, Sampling

    chats = [[{"role": "user", "content": f"Tell me about idea {i}{', briefly' * (i % 3)}."}] for i in range(5)]

    def drive(backend):
        reqs = [GenerationRequest(c, Sampling(temperature=0.0, top_p=1.0, max_new_tokens=8 + 5 * i), seed=i)
                for i, c in enumerate(chats)]  # 5 requests, 3 slots, different lengths: rows join and leave
        outs = backend.generate(reqs)
        # a second turn that reuses the first turn's cache, while another conversation's first turn joins
        backend.submit(("a", "user"), GenerationRequest(chats[0], Sampling(0.0, 1.0, 12), seed=1))
        first = []
        while not first:
            first = backend.step()
        follow = chats[0] + [{"role": "assistant", "content": first[0][1].text}, {"role": "user", "content": "Why?"}]
        backend.submit(("a", "user"), GenerationRequest(follow, Sampling(0.0, 1.0, 12), seed=1))
        backend.submit(("b", "user"), GenerationRequest(chats[3], Sampling(0.0, 1.0, 20), seed=2))
        assert len(backend.kept[("a", "user")][0]) > 10  # the first turn's tokens stay cached
        done = {}
        while len(done) < 2:
            done.update(backend.step())
        backend.release("a")
        backend.release("b")
        return [(o.text, o.tokens, o.finish_reason) for o in outs] + \
            [(first[0][1].text, first[0][1].tokens)] + [(done[k].text, done[k].tokens) for k in sorted(done)]

    dynamic, static, backend = run_both(tiny_model, drive)
    from userlm.backends import slot_kv

    assert slot_kv._repeated[0] is None  # the repeated prefill mask is not held past its pass
    assert any(t[1] > 1 for t in dynamic)
    assert static == dynamic
    assert backend.counts["prefill"] < backend.counts["decode"]
    assert not backend.kept and backend.slots.live() == 0


@pytest.mark.parametrize("temperature", [0.9, 3.0])  # 3.0: nuclei wider than the head (`sample_wide`)
def test_static_slots_keep_per_conversation_seeds(tiny_model, temperature):
    """A sampled row's text depends on its seed, not on its batch-mates (nor on the engine)."""
    from userlm.backends import GenerationRequest, Sampling

    chats = [[{"role": "user", "content": f"Plan a trip number {i}."}] for i in range(4)]
    hot = Sampling(temperature=temperature, top_p=0.9, max_new_tokens=10)

    def drive(backend):
        alone = backend.generate([GenerationRequest(chats[0], hot, seed=7)])[0].text
        crowded = backend.generate([GenerationRequest(c, hot, seed=7 if i == 0 else i) for i, c in enumerate(chats)])
        assert crowded[0].text == alone
        return alone

    dynamic, static, backend = run_both(tiny_model, drive)
    assert static == dynamic
    assert (backend.slots.wide_steps > 0) == (temperature > 1)  # steps with rows wider than the head
    # `sample_wide` for them (pinned: on CUDA the default draws every row by rejection): a row's text still depends
    # only on its seed
    backend.slots.wide_sort, backend.slots.wide_kernel = False, "torch"
    backend.slots.wide_steps = 0
    drive(backend)
    assert (backend.slots.wide_steps > 0) == (temperature > 1)


def test_prefill_padding_cap_splits_passes_and_keeps_text(tiny_model, monkeypatch):
    """`prefill_padding`: prompts of very different lengths (short ones beside a long one: replay's pattern) are
    prefilled in more passes, each computing more than PREFILL_MIN tokens with at most that share of left padding,
    and the greedy text stays the same; at 1.0 one pass, as before (PREFILL_MIN lowered: these prompts are short)."""
    from userlm.backends import GenerationRequest, Sampling, slot_prefill
    from userlm.backends.hf import HFBackend

    monkeypatch.setattr(slot_prefill, "PREFILL_MIN", 8)
    chats = [[{"role": "user", "content": "Hi." + " Tell me more about that one." * n}] for n in (0, 0, 1, 3, 6, 30)]
    seen = {}
    for cap in (1.0, 0.1):
        backend = HFBackend(tiny_model, max_batch=6, static_cache=True, compile_decode="off")
        backend.slots.prefill_padding, backend.slots.pack_prefill = cap, False  # the cap limits padded passes
        passes, prefill = [], backend.slots._prefill_chunk

        def spy(chunk, prefill=prefill, passes=passes):  # records each pass, then runs it
            width = max(len(row.ids) - reused for _, row, reused in chunk)
            passes.append((width * len(chunk), sum(len(row.ids) - reused for _, row, reused in chunk)))
            return prefill(chunk)

        monkeypatch.setattr(backend.slots, "_prefill_chunk", spy)
        texts = [o.text for o in backend.generate(
            [GenerationRequest(c, Sampling(0.0, 1.0, 6), seed=i) for i, c in enumerate(chats)])]
        seen[cap] = texts, passes, backend.counts["prefill padded"], backend.counts["prefill tokens"]
    (texts, passes, padded, fed), (lean_texts, lean_passes, lean_padded, lean_fed) = seen[1.0], seen[0.1]
    assert lean_texts == texts and lean_fed == fed
    assert len(passes) == 1 and len(lean_passes) > 1 and lean_padded < padded
    assert all(width - new <= 0.1 * width for width, new in lean_passes if width > slot_prefill.PREFILL_MIN)
    assert (lean_padded, lean_fed) == tuple(map(sum, zip(*lean_passes)))


@pytest.mark.parametrize("every_row", [False, True])
def test_rejection_rows_keep_per_conversation_seeds(tiny_model, every_row):
    """The rejection draw (`wide_kernel = "rejection"`, torch's; on CUDA the Triton kernel is the default) for rows
    wider than the head, or for every row with no head (`rejection_every_row`): a row's text depends on its seed
    only (alone = among others), each step's tokens are `sample_rejection`'s on the same logits (`verify`), and it
    is another draw than the default's."""
    from userlm.backends import GenerationRequest, Sampling
    from userlm.backends.hf import HFBackend

    chats = [[{"role": "user", "content": f"Plan a trip number {i}."}] for i in range(4)]
    backend = HFBackend(tiny_model, max_batch=4, static_cache=True, compile_decode="off")
    engine = backend.slots
    engine.wide_sort, engine.wide_kernel, engine.rejection_every_row = False, "rejection", every_row
    for temperature in (3.0, 0.7, 0.0):  # wide rows, peaked rows, greedy rows
        hot = Sampling(temperature=temperature, top_p=0.9, max_new_tokens=10)
        engine.verify, engine.verified, engine.mismatches, engine.wide_steps = True, 0, 0, 0
        first = backend.generate([GenerationRequest(chats[0], hot, seed=7)])[0]
        crowded = backend.generate([GenerationRequest(c, hot, seed=7 if i == 0 else i) for i, c in enumerate(chats)])
        alone = first.text
        assert crowded[0].text == alone and engine.verified > 0
        if every_row:  # every token counted, the first ones too (`_sample_first` draws them the same way)
            assert engine.verified == first.tokens + sum(o.tokens for o in crowded)
        assert (engine.wide_steps > 0) == (temperature > 1 and not every_row)  # every row: no head, no wide flags
        if every_row or temperature <= 1:  # `verify` compares with `sample_rejection` / `sample_next` respectively
            assert engine.mismatches == 0
        if temperature > 1 or temperature == 0:  # another draw than the default's; greedy: the same tokens
            engine.wide_kernel = "torch"
            other = backend.generate([GenerationRequest(chats[0], hot, seed=7)])[0].text
            assert (other == alone) == (temperature == 0)
            engine.wide_kernel = "rejection"


def test_gpu_sampling_halves_equal_sample_next():
    """The static engine's sampling (`sample_head` in the graph, `sample_wide` for the rows whose nucleus is wider,
    the old full sort where `wide_sort` asks) gives `sample_next`'s tokens for the same uniforms: peaked and flat
    rows, greedy rows, idle rows (top_p 0)."""
    import torch

    from userlm.backends.sampling import sample_head, sample_next, sample_sorted, sample_wide

    g = torch.Generator().manual_seed(0)
    for scale, top_p in ((8.0, 0.9), (0.5, 0.9), (8.0, 1.0), (3.0, 0.5)):
        logits = torch.randn(6, 1000, generator=g) * scale
        temps = torch.tensor([0.7, 1.0, 0.0, 1.3, 0.0, 0.9])
        top_ps = torch.tensor([top_p, top_p, 1.0, top_p, 0.0, top_p])  # row 4: an idle slot
        for _ in range(20):
            u = torch.rand(6, generator=g)
            live = torch.tensor([0, 1, 2, 3, 5])
            want = sample_next(logits[live], temps[live], top_ps[live], u[live])
            head, wide, greedy, probs = sample_head(logits, temps, top_ps, u)
            got = sample_sorted(probs, greedy, top_ps, u)[live] if bool(wide.any()) else head[live]
            assert torch.equal(got, want)
            got = torch.where(wide, sample_wide(probs, top_ps, u), head)[live]
            assert torch.equal(got, sample_next(logits[live], temps[live], top_ps[live], u[live], search=True))
            assert head[2] == logits[2].argmax() and head[4] == logits[4].argmax() and not wide[4]
    flat = torch.randn(4, 1000, generator=g)  # a nucleus far wider than the head, but every row is greedy
    assert not bool(sample_head(flat, torch.zeros(4), torch.ones(4), torch.rand(4, generator=g))[1].any())
    assert torch.equal(sample_next(flat, torch.zeros(4), torch.ones(4), torch.rand(4, generator=g)), flat.argmax(-1))


@pytest.mark.slow  # inductor compiles C++ on the CPU: about a minute
def test_compiled_decode_matches_eager_decode(tiny_model):
    """`compile_decode` swaps inductor-fused RMSNorms and rotary embeddings into the decode step only: greedy
    tokens stay those of the eager engine, and the model's own modules are left as they were."""
    import torch

    from userlm.backends import GenerationRequest, Sampling
    from userlm.backends.hf import HFBackend

    chats = [[{"role": "user", "content": f"Tell me about idea {i}."}] for i in range(3)]
    reqs = [GenerationRequest(c, Sampling(temperature=0.0, top_p=1.0, max_new_tokens=12), seed=i)
            for i, c in enumerate(chats)]
    # float32 on any device: in bf16 a fused kernel's rounding may flip a near-tie
    eager = HFBackend(tiny_model, max_batch=4, static_cache=True, dtype="float32")
    compiled = HFBackend(tiny_model, max_batch=4, static_cache=True, compile_decode=True, dtype="float32")
    compiled.slots.fuse_projections = compiled.slots.fuse_kv_write = False  # (on by default on CUDA) below
    want = [g.text for g in eager.generate(reqs)]
    assert [g.text for g in compiled.generate(reqs)] == want
    hot = Sampling(temperature=0.9, top_p=0.9, max_new_tokens=10)  # a row's text still depends only on its seed
    alone = compiled.generate([GenerationRequest(chats[0], hot, seed=7)])[0].text
    crowded = compiled.generate([GenerationRequest(c, hot, seed=7 if i == 0 else i) for i, c in enumerate(chats)])
    assert crowded[0].text == alone
    parts = compiled.slots.fused[1]
    assert {name for _, name, *_ in parts} == {"forward", "apply_rotary_pos_emb"}
    assert all("forward" not in owner.__dict__ for owner, *_ in parts if isinstance(owner, torch.nn.Module))
    fused = HFBackend(tiny_model, max_batch=4, static_cache=True, compile_decode=True, dtype="float32")
    fused.slots.fuse_projections = True  # q/k/v and gate/up one matmul each, compiled with the rest
    fused.slots.fuse_kv_write = True  # and a step's key and value writes one compiled kernel
    fused.slots.fuse_rotary_write = False  # (on by default on CUDA: the write then runs in rotary_write's kernel)
    assert [g.text for g in fused.generate(reqs)] == want
    assert len(fused.slots.fused[1]) > len(parts) and fused.slots.kv_writer is not None
    fused.slots.compile_prefill = True  # prefill runs the same pieces, compiled for dynamic shapes
    assert [g.text for g in fused.generate(reqs)] == want
    assert {kind for kind, *_ in fused.slots.fused[2]} == {"decode", "prefill"}
    fused.slots.fuse_residual = True  # and the layers' residual adds folded into the norm and the down projection
    assert [g.text for g in fused.generate(reqs)] == want
    assert any(owner is fused.model.model.layers[0] and when for owner, _, _, when in fused.slots.fused[1])
    assert all("forward" not in owner.__dict__ for owner, *_ in fused.slots.fused[1] if isinstance(owner, torch.nn.Module))


def test_kept_keys_values_read_per_layer_as_the_dynamic_engine_keeps_them(tiny_model):
    """A finished row's keys/values kept by the static engine (`SlotKV`, views made when read) read as the dynamic
    engine's per-layer list: the dynamic scheduler continues a conversation whose first turn the static engine ran
    (prefix reused) with the text it gives when it ran both turns itself."""
    import torch

    from userlm.backends import GenerationRequest, Sampling
    from userlm.backends.hf import HFBackend
    from userlm.backends.slot_kv import SlotKV

    keys, values = torch.randn(3, 2, 5, 4), torch.randn(3, 2, 5, 4)
    kv = SlotKV(keys, values)
    assert len(kv) == 3 and [k.shape for k, _ in kv] == [(1, 2, 5, 4)] * 3
    assert torch.equal(kv[-1][1][0], values[2]) and torch.equal(kv[1][0][0], keys[1])
    with pytest.raises(IndexError):
        kv[3]
    def turn(backend, request):  # the conversation's key, so that its keys/values are kept for the next turn
        backend.submit(("c", "user"), request)
        while not (done := backend.step()):
            pass
        return done[0][1].text

    chat = [{"role": "user", "content": "Plan a trip."}]
    greedy = Sampling(temperature=0.0, top_p=1.0, max_new_tokens=6)
    texts = []
    for static_first in (True, False):
        backend = HFBackend(tiny_model, max_batch=2, static_cache=True, compile_decode="off")
        engine = backend.slots
        backend.slots = engine if static_first else None
        first = turn(backend, GenerationRequest(chat, greedy, seed=1))
        assert isinstance(backend.kept[("c", "user")][1], SlotKV) == static_first
        backend.slots = None  # the second turn by the dynamic scheduler, from the kept prefix
        seen, prompt = [], backend._prompt
        backend._prompt = lambda *a: seen.append(prompt(*a)) or seen[-1]  # noqa: B023 (read at once)
        follow = chat + [{"role": "assistant", "content": first}, {"role": "user", "content": "Why?"}]
        texts.append((first, turn(backend, GenerationRequest(follow, greedy, seed=1))))
        assert seen[0][1] > 0  # the first turn's tokens came from the kept keys/values
    assert texts[0] == texts[1]


def test_prefill_attention_folded_equals_keys_copied_per_head(monkeypatch):
    """Prefill's grouped-query attention folded (query heads of a key/value head stacked along the query, the mask
    repeated once a pass) gives the attention of keys copied once per query head, for left-padded rows."""
    import torch

    from userlm.backends import slot_kv

    torch.manual_seed(0)
    rows, heads, kv_heads, q_len, positions, dim = 3, 6, 2, 5, 16, 8
    query = torch.randn(rows, q_len, heads, dim).transpose(1, 2)  # as the model hands it: a transposed view
    key, value = torch.randn(rows, kv_heads, positions, dim), torch.randn(rows, kv_heads, positions, dim)
    starts = torch.tensor([0, 4, 9])  # each row's first real position: the rows before are another row's padding
    at = starts[:, None] + torch.arange(q_len)  # query t of a row sits at position starts + t
    mask = (torch.arange(positions)[None, None, :] <= at[:, :, None]).unsqueeze(1)
    outs = {}
    for fold in (False, True):
        monkeypatch.setattr(slot_kv, "FOLD_PREFILL", fold)
        outs[fold] = [slot_kv.slot_attention(None, query, key, value, mask, scaling=dim ** -0.5)[0] for _ in range(2)]
    assert outs[True][0].shape == (rows, q_len, heads, dim)
    torch.testing.assert_close(outs[True][0], outs[False][0], rtol=1e-6, atol=1e-6)
    assert torch.equal(outs[True][0], outs[True][1])  # the second layer reuses the repeated mask
    assert slot_kv._repeated[0] is mask and slot_kv._repeated[2].shape == (rows, 1, q_len * heads // kv_heads, positions)


def test_no_collection_during_a_capture_restores_the_collector():
    """`no_collection` (around every decode graph capture) turns Python's collector off inside and back to what it
    was after, also when the capture raises."""
    import gc

    from userlm.backends.decode_graphs import no_collection

    assert gc.isenabled()
    with pytest.raises(RuntimeError), no_collection():
        assert not gc.isenabled()
        raise RuntimeError("a capture that fails")
    assert gc.isenabled()
    gc.disable()
    try:
        with no_collection():
            assert not gc.isenabled()
        assert not gc.isenabled()  # left off: it was off before
    finally:
        gc.enable()
