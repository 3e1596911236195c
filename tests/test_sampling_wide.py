"""`sample_wide` (userlm/backends/sampling.py): a nucleus wider than the head drawn without sorting the vocabulary.
Its nucleus is the sorted definition's (tokens whose more likely tokens hold less than top_p), whatever the
search's width; its draws follow the nucleus's renormalized probabilities; a row's token depends on its own
logits and uniform only."""

import pytest


def _reference_nucleus(p, top_p):
    """In float64: token i is in when the tokens strictly more likely than it sum below top_p."""
    import torch

    p = p.double()
    above = torch.stack([p[p > x].sum() for x in p])
    return above < top_p


@pytest.mark.parametrize("quantized", [False, True])
def test_nucleus_is_the_sorted_definition_for_any_search_width(quantized):
    import torch

    from userlm.backends.sampling import nucleus_floor, search_rounds

    assert search_rounds(1) == 32 and search_rounds(15) == 9
    g = torch.Generator().manual_seed(0)
    for scale, top_p in ((0.3, 0.9), (2.0, 0.95), (4.0, 0.5), (1.0, 1.0)):
        logits = torch.randn(5, 400, generator=g) * scale
        if quantized:  # bf16 logits: many tied probabilities, as on the GPU
            logits = logits.bfloat16().float()
        probs = torch.softmax(logits, -1)
        top_ps = torch.full((5,), top_p)
        floors = [nucleus_floor(probs, top_ps, ways) for ways in (1, 3, 15)]
        assert all(torch.equal(floors[0], f) for f in floors[1:])
        keep = probs.view(torch.int32) >= floors[0].unsqueeze(-1)
        for row in range(5):
            want = _reference_nucleus(probs[row], top_p)
            # float32 sums may differ from float64 at a token exactly on the boundary; none is in these draws
            assert torch.equal(keep[row], want), (scale, top_p, row)


def test_wide_draws_follow_the_nucleus_probabilities():
    import torch

    from userlm.backends.sampling import nucleus_floor, sample_wide

    g = torch.Generator().manual_seed(1)
    probs = torch.softmax(torch.randn(1, 50, generator=g) * 1.5, -1)
    top_p = torch.tensor([0.8])
    keep = probs.view(torch.int32) >= nucleus_floor(probs, top_p).unsqueeze(-1)
    n = 40000
    u = torch.rand(n, generator=g)
    tokens = sample_wide(probs.expand(n, -1).contiguous(), top_p.expand(n), u)
    assert bool(keep[0, tokens].all())  # never outside the nucleus
    freq = torch.bincount(tokens, minlength=50).double() / n
    want = torch.where(keep[0], probs[0], 0).double()
    want /= want.sum()
    assert (freq - want).abs().max() < 0.01
    # the inverse CDF in vocabulary order: u just below 1 gives the last token of the nucleus
    last = int(keep[0].nonzero().max())
    assert int(sample_wide(probs, top_p, torch.tensor([1 - 2**-24]))) == last
    assert int(sample_wide(probs, top_p, torch.tensor([0.0]))) == int(keep[0].nonzero().min())


def test_a_rows_token_depends_on_its_own_logits_only():
    """sample_next decides per row: a wide row beside a narrow one, a greedy one and an idle slot (top_p 0)
    gets the token it gets alone, and a narrow row keeps the head's (descending-order) token."""
    import torch

    from userlm.backends.sampling import sample_head, sample_next, sample_wide

    g = torch.Generator().manual_seed(2)
    logits = torch.randn(4, 3000, generator=g) * torch.tensor([[0.2], [9.0], [1.0], [0.3]])
    temps = torch.tensor([1.0, 0.8, 0.0, 0.0])
    top_ps = torch.tensor([0.9, 0.9, 1.0, 0.0])
    for _ in range(10):
        u = torch.rand(4, generator=g)
        both = sample_next(logits, temps, top_ps, u, search=True)
        alone = torch.cat([sample_next(logits[i:i + 1], temps[i:i + 1], top_ps[i:i + 1], u[i:i + 1], search=True)
                           for i in range(4)])
        assert torch.equal(both, alone)
        head, wide, greedy, probs = sample_head(logits, temps, top_ps, u)
        assert wide.tolist() == [True, False, False, False]
        assert both[1] == head[1] and both[2] == logits[2].argmax()
        assert both[0] == sample_wide(probs[:1], top_ps[:1], u[:1])[0]


def test_fifteen_ways_converge_where_a_round_leaves_an_uneven_interval():
    """A row whose 15-way search passes through a 63-wide interval (-> 18 -> 3 -> 1): it needs 9 rounds; with the
    8 run before 2026-11-30 its floor stayed one above, dropping the boundary token from the nucleus."""
    import torch

    from userlm.backends.sampling import nucleus_floor

    g = torch.Generator().manual_seed(218)
    row = torch.softmax(torch.randn(57, 50257, generator=g)[56:] * 8.0, -1)  # as tests/test_triton_top_p.py draws it
    top_p = torch.tensor([0.9])
    for double in (False, True):
        floors = [int(nucleus_floor(row, top_p, ways, double=double)) for ways in (1, 15)]
        assert floors[0] == floors[1]


@pytest.mark.parametrize("vocab", [151936, 1000, 128])
def test_head_chosen_by_bf16_logits_has_the_probabilities_top_values(vocab):
    """`head_topk` with bf16 logits chooses the head by them: the same values as torch.topk of the probabilities,
    descending, each held by its token (only the order of tied tokens may differ); float32 logits (the CPU's) give
    torch.topk of the probabilities itself, tokens included."""
    import torch

    from userlm.backends.sampling import _tempered, head_topk

    g = torch.Generator().manual_seed(vocab)
    temps = torch.tensor([1.0, 0.7, 0.0, 1.6])
    for scale in (0.6, 3.0, 12.0):
        logits = (torch.randn(4, vocab, generator=g) * scale).bfloat16()
        probs = _tempered(logits, temps)[1]
        k = min(128, vocab)
        want, want_tokens = probs.topk(k, dim=-1)
        top, tokens = head_topk(probs, k, logits)
        assert torch.equal(top, want) and torch.equal(probs.gather(-1, tokens), top)
        assert all(len(set(row)) == k for row in tokens.tolist())
        wide = logits.float()
        assert all(torch.equal(a, b) for a, b in zip(head_topk(_tempered(wide, temps)[1], k, wide),
                                                      _tempered(wide, temps)[1].topk(k, dim=-1), strict=True))


def test_head_takes_low_precision_logits_as_float32():
    """`sample_head` casts inside (so a compiled head fuses the cast): bf16 logits give the probabilities, wide flags
    and tokens of their float32 copy; choosing the head by the bf16 logits keeps the probabilities, the wide flags
    and the probability of each drawn token (ties may swap the token)."""
    import torch

    from userlm.backends.sampling import sample_head

    g = torch.Generator().manual_seed(5)
    logits = (torch.randn(6, 5000, generator=g) * 4).bfloat16()
    temps, top_ps, u = torch.tensor([0.7, 1.0, 0.0, 1.3, 0.9, 2.0]), torch.full((6,), 0.9), torch.rand(6, generator=g)
    got, want = sample_head(logits, temps, top_ps, u, by_logits=False), sample_head(logits.float(), temps, top_ps, u)
    assert all(torch.equal(a, b) for a, b in zip(got, want, strict=True)) and got[3].dtype == torch.float32
    by_logits = sample_head(logits, temps, top_ps, u)
    assert all(torch.equal(a, b) for a, b in zip(by_logits[1:], want[1:], strict=True))
    # ties may swap which token holds a drawn place of the head, never the probability drawn
    picked = want[3].gather(-1, by_logits[0].unsqueeze(-1)), want[3].gather(-1, want[0].unsqueeze(-1))
    assert torch.equal(*picked)


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_head_by_logits_with_masked_tokens(dtype):
    """16-bit logits with -inf (masked) tokens: the head chosen by the logits holds the probabilities' top values
    and never a masked token while unmasked ones remain."""
    import torch

    from userlm.backends.sampling import _tempered, head_topk

    g = torch.Generator().manual_seed(9)
    logits = (torch.randn(3, 4000, generator=g) * 2).to(getattr(torch, dtype))
    logits[:, ::3] = float("-inf")
    probs = _tempered(logits, torch.tensor([1.0, 0.5, 0.0]))[1]
    top, tokens = head_topk(probs, 128, logits)
    assert torch.equal(top, probs.topk(128, dim=-1).values) and bool((tokens % 3 != 0).all())


def test_rejection_sampling_draws_the_nucleus_and_depends_on_the_row_only():
    """`sample_rejection` (opt-in): every token it draws is in the nucleus, their frequencies are the nucleus'
    renormalized probabilities, a row's token is the same alone as in a batch, and round r's uniforms are a hash of
    the row's own (the same numbers for the same uniform)."""
    import torch

    from userlm.backends.sampling import derived_uniforms, nucleus_floor, sample_rejection

    g = torch.Generator().manual_seed(11)
    probs = torch.softmax(torch.randn(1, 20, generator=g) * 1.5, -1)
    top_p = torch.tensor([0.8])
    keep = probs.view(torch.int32) >= nucleus_floor(probs, top_p, 15, double=True).unsqueeze(-1)
    nucleus = torch.where(keep, probs, 0.0).double() / torch.where(keep, probs, 0.0).double().sum()
    n = 20000
    tokens = sample_rejection(probs.expand(n, 20).contiguous(), top_p.expand(n).contiguous(),
                              torch.rand(n, generator=g), double=True)
    assert bool(keep[0][tokens].all())
    assert float((torch.bincount(tokens, minlength=20).double() / n - nucleus[0]).abs().max()) < 0.015
    batch = torch.softmax(torch.randn(4, 500, generator=g) * torch.tensor([[0.3], [2.0], [8.0], [1.0]]), -1)
    u, tps = torch.rand(4, generator=g), torch.tensor([0.9, 0.5, 0.95, 0.0])
    alone = torch.cat([sample_rejection(batch[i:i + 1], tps[i:i + 1], u[i:i + 1]) for i in range(4)])
    assert torch.equal(sample_rejection(batch, tps, u), alone) and int(alone[3]) == int(batch[3].argmax())
    assert torch.equal(derived_uniforms(u, 3), derived_uniforms(u.clone(), 3))
    assert not torch.equal(derived_uniforms(u, 1), derived_uniforms(u, 2)) and bool((derived_uniforms(u, 5) < 1).all())
