"""The static engine's host-light decode (`userlm/backends/chunk_decode.py`): uniforms drawn many at a time are
the same as drawn one at a time, and k decode steps a round trip (`decode_chunk`) give the step-by-step engine's
text for every seed: rows that stop inside a chunk, rows that join between chunks, a second turn, and wide nuclei
that a chunk's graph did not draw (the row runs that step again). Float32 on the CPU (eager live attention)."""

import pytest


def test_rand_many_equals_rand_one_by_one():
    import torch

    one = torch.Generator().manual_seed(11)
    many = torch.Generator().manual_seed(11)
    singles = [torch.rand(1, generator=one).item() for _ in range(150)]
    assert torch.rand(64, generator=many).tolist() + torch.rand(86, generator=many).tolist() == singles


@pytest.mark.parametrize("temperature,wide_sort", [(0.9, True), (3.0, False), (3.0, True)])
def test_chunked_decode_same_text(tiny_model, temperature, wide_sort):
    from userlm.backends import GenerationRequest, Sampling
    from userlm.backends.hf import HFBackend

    chats = [[{"role": "user", "content": f"Tell me about idea {i}{', briefly' * (i % 3)}."}] for i in range(5)]
    texts = []
    for chunk, ahead, graph_steps in ((1, 1, 0), (1, 64, 0), (4, 64, 0), (7, 3, 0), (6, 64, 2), (5, 64, 1)):
        backend = HFBackend(tiny_model, max_batch=3, static_cache=True, compile_decode="off", dtype="float32")
        engine = backend.slots
        engine.live_attention, engine.decode_chunk, engine.ahead_size, engine.wide_sort = True, chunk, ahead, wide_sort
        engine.wide_in_graph, engine.graph_steps = True, graph_steps
        engine.wide_kernel = "torch"  # `sample_wide` for wide rows (CUDA's default draws every row by rejection)
        reqs = [GenerationRequest(c, Sampling(temperature, 0.9, 5 + 4 * i), seed=i) for i, c in enumerate(chats)]
        outs = [(o.text, o.tokens, o.finish_reason) for o in backend.generate(reqs)]  # 5 requests, 3 slots
        follow = chats[0] + [{"role": "assistant", "content": outs[0][0]}, {"role": "user", "content": "Why?"}]
        outs.append(backend.generate([GenerationRequest(follow, Sampling(temperature, 0.9, 9), seed=1)])[0].text)
        alone = backend.generate([GenerationRequest(chats[1], Sampling(temperature, 0.9, 9), seed=1)])[0]
        assert (alone.text, alone.tokens, alone.finish_reason) == outs[1]  # a row's text depends on its seed only
        if chunk > 1:
            assert backend.counts["chunk tokens"] > 0
        if temperature > 1:
            assert engine.wide_steps > 0
            assert chunk == 1 or backend.counts["chunk retries"] > 0  # a wide row ran its step again
        assert sum(o[1] for o in outs[:5]) > 15
        texts.append(outs)
    assert all(t == texts[0] for t in texts[1:])


def test_row_take_stops_at_stop_token_or_budget():
    """`Row.take` (a chunk's tokens accepted in list operations) keeps what the per-token loop kept: tokens up to
    and with the first stop token, at most the row's budget, each previous last token moved into `ids`."""
    from userlm.backends import Sampling
    from userlm.backends.rows import Row

    def loop(row, tokens, stops):  # the per-token acceptance it replaces
        for t in tokens:
            row.ids.append(row.generated[-1])
            row.generated.append(t)
            if t in stops or len(row.generated) >= row.sampling.max_new_tokens:
                break

    stops = [2, 9]
    for tokens in [(5, 6, 7), (5, 2, 7), (2,), (), (4, 4, 9, 2), (1, 1, 1, 1, 1, 1)]:
        for budget in (1, 2, 3, 4, 10):
            a, b = (Row("k", [1, 3], Sampling(max_new_tokens=budget), None, [8]) for _ in range(2))
            taken = a.take(tokens, stops)
            loop(b, tokens, stops)
            assert (a.ids, a.generated) == (b.ids, b.generated)
            assert taken == len(b.generated) - 1


@pytest.mark.parametrize("temperature", [0.0, 0.9, 3.0])
def test_overlapped_chunks_same_text(tiny_model, temperature):
    """Every row drawn by rejection (`wide_kernel = "rejection"`, `rejection_every_row`): the same text for every
    seed step by step, in chunks, and in chunks queued one ahead of the host (`overlap_chunks`): 5 requests over 3
    slots (rows join while a chunk is in flight, rows stop inside chunks), a second turn, a row alone."""
    from userlm.backends import GenerationRequest, Sampling
    from userlm.backends.hf import HFBackend

    chats = [[{"role": "user", "content": f"Tell me about idea {i}{', briefly' * (i % 3)}."}] for i in range(5)]
    texts = []
    for chunk, ahead, graph_steps, overlap in ((1, 1, 0, False), (4, 64, 0, False), (4, 64, 0, True),
                                               (3, 64, 1, True), (7, 3, 0, True)):
        # no CUDA graphs: torch's rejection draw syncs with the host each round (on a GPU: eager steps)
        backend = HFBackend(tiny_model, max_batch=3, static_cache=True, compile_decode="off", dtype="float32",
                            cuda_graphs=False)
        engine = backend.slots
        engine.live_attention, engine.decode_chunk, engine.ahead_size, engine.wide_sort = True, chunk, ahead, False
        engine.graph_steps, engine.wide_kernel, engine.rejection_every_row = graph_steps, "rejection", True
        engine.overlap_chunks = overlap
        reqs = [GenerationRequest(c, Sampling(temperature, 0.9, 5 + 4 * i), seed=i) for i, c in enumerate(chats)]
        outs = [(o.text, o.tokens, o.finish_reason) for o in backend.generate(reqs)]
        follow = chats[0] + [{"role": "assistant", "content": outs[0][0]}, {"role": "user", "content": "Why?"}]
        outs.append(backend.generate([GenerationRequest(follow, Sampling(temperature, 0.9, 9), seed=1)])[0].text)
        alone = backend.generate([GenerationRequest(chats[1], Sampling(temperature, 0.9, 9), seed=1)])[0]
        assert (alone.text, alone.tokens, alone.finish_reason) == outs[1]
        assert (backend.counts["chunks queued ahead"] > 0) == overlap and engine.wide_steps == 0
        assert sum(o[1] for o in outs[:5]) > 15
        texts.append(outs)
    assert all(t == texts[0] for t in texts[1:])


def budget_engine(tiny_model, slots: int, overlap: bool):
    """A backend whose rows run to their budget (no stop token), its engine drawing every row by torch's rejection
    draw in chunks of 4 (no CUDA graphs: that draw syncs with the host), overlapped or not."""
    from userlm.backends.hf import HFBackend

    backend = HFBackend(tiny_model, max_batch=slots, static_cache=True, compile_decode="off", dtype="float32",
                        cuda_graphs=False)
    backend.stop_ids = []
    engine = backend.slots
    engine.live_attention, engine.decode_chunk, engine.ahead_size, engine.wide_sort = True, 4, 64, False
    engine.wide_kernel, engine.rejection_every_row, engine.overlap_chunks = "rejection", True, overlap
    return backend, engine


def test_overlap_queues_nothing_past_every_rows_budget(tiny_model):
    """Rows that end by their budget: with chunks queued ahead (`overlap_chunks`), no chunk is queued once every live
    row ends inside the chunk in flight, so the run computes as many decode steps as without overlap (a whole chunk
    more each time the rows drained, before)."""
    from userlm.backends import GenerationRequest, Sampling

    chats = [[{"role": "user", "content": f"Tell me about idea {i}."}] for i in range(3)]
    steps, texts = [], []
    for overlap in (False, True):
        backend, engine = budget_engine(tiny_model, 3, overlap)
        for budget in (9, 12):  # one chunk past the first (9 = 1 + 2 x 4), and a partial last chunk
            texts.append([o.text for o in backend.generate(
                [GenerationRequest(c, Sampling(0.9, 0.9, budget), seed=i) for i, c in enumerate(chats)])])
        steps.append(backend.counts["decode"])
        assert (backend.counts["chunks queued ahead"] > 0) == overlap
    assert steps[0] == steps[1] and texts[:2] == texts[2:]


def test_overlap_parks_empty_slots_when_buffers_grow(tiny_model):
    """Overlapped chunks: a prompt whose budget needs longer buffers joins while a chunk is in flight and a slot has
    long been empty. The buffers' spare position (`trash`, where an empty slot writes) moves when they grow; every
    empty slot must be parked there again, or it would count as live and walk past the buffers' end."""
    from userlm.backends import GenerationRequest, Sampling

    backend, engine = budget_engine(tiny_model, 4, True)
    chat = [{"role": "user", "content": "Tell me about an idea."}]
    for seed, (key, budget) in enumerate((("d", 3), ("e", 3), ("a", 10), ("b", 200))):  # slots 0, 1, 2, 3
        backend.submit(key, GenerationRequest(chat, Sampling(0.9, 0.9, budget), seed=seed))
    done = {}
    while "a" not in done:  # d and e leave early (their slots empty for chunks), then a
        done.update(backend.step())
    length = engine.length
    backend.submit("c", GenerationRequest(chat, Sampling(0.9, 0.9, 1030), seed=9))  # past 1,024 positions
    for _ in range(4):
        empty = [i for i, r in enumerate(engine.rows) if r is None]
        backend.step()
        assert all(int(engine.writes[i]) == engine.trash for i in empty if engine.rows[i] is None), empty
    assert engine.length > length and backend.counts["chunks queued ahead"] > 0


@pytest.mark.slow  # ~30 s on 2 CPU cores: 1,030 decode steps twice
def test_overlap_survives_buffers_growing_while_a_chunk_is_in_flight(tiny_model):
    """A joining prompt whose budget needs longer buffers arrives while an overlapped chunk is in flight: the texts
    are those of the engine without overlap."""
    from userlm.backends import GenerationRequest, Sampling

    budgets = [6, 40, 8, 1030]  # 4 requests over 3 slots: the last joins when the first ends, past 1,024 positions
    chats = [[{"role": "user", "content": f"Tell me about idea {i}."}] for i in range(len(budgets))]
    texts = []
    for overlap in (False, True):
        backend, engine = budget_engine(tiny_model, 3, overlap)
        texts.append([(o.text, o.tokens) for o in backend.generate(
            [GenerationRequest(c, Sampling(0.9, 0.9, n), seed=i) for i, (c, n) in enumerate(zip(chats, budgets))])])
        assert engine.length > 1024 and (backend.counts["chunks queued ahead"] > 0) == overlap
    assert texts[0] == texts[1] and [t for _, t in texts[0]] == budgets
