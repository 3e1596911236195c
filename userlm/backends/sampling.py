"""Nucleus sampling for a batch of rows, on the device, one uniform draw per row (inverse CDF): temperature
and top-p per row, greedy at temperature 0. Both engines of the hf backend sample with it: the dynamic
scheduler (`hf.py`) calls `sample_next`; the static engine (`static_cache.py`) runs its two halves,
`sample_head` inside its CUDA graph and `sample_wide` after the replay when some row's nucleus is wider.

A row whose nucleus fits the NUCLEUS_HEAD most likely tokens is drawn over them in descending order (as ever).
A wider nucleus (flat logits: a random-weight model's, or a hot temperature) is drawn after a full sort of the
vocabulary by default, or, opt-in (`search`; the static engine's `wide_sort=False`), without sorting it
(`sample_wide`, 2026-11-30; a full sort of 128 x 152k is 2.8 ms of an 11 ms 7B decode step):
its tokens are found by a search over probability values, then drawn in vocabulary order. The nucleus is the
same set of tokens and each is drawn with the same probability, up to float rounding, as when drawn in sorted
order; only which uniform maps to which token differs. A row's token depends only on its own logits and
uniform (never on its batch-mates or on whether another row is wide). On CUDA the static engine's `wide_sort=False`
path draws by rejection instead (`sample_rejection`, one Triton kernel, `triton_top_p.rejection_tokens`; every row,
with no head, by default), or with `wide_kernel = "triton"` `sample_wide`'s tokens by Triton kernels (the same floor
and tokens; its sums and these are float64 there)."""

from __future__ import annotations

NUCLEUS_HEAD = 128  # the nucleus is looked for among this many most likely tokens first
REJECTION_ROUNDS = 64  # `sample_rejection`'s last round (a bound for broken rows only)


def _tempered(logits, temperatures):
    """(greedy rows, float32 probabilities at each row's temperature; a greedy row's at temperature 1). Logits of
    any float dtype: the division and softmax run in float32 (under `torch.compile` the cast, division and softmax
    are one kernel; eagerly bf16 logits are cast first, the same numbers)."""
    import torch

    greedy = temperatures <= 0
    return greedy, torch.softmax(logits.float() / torch.where(greedy, 1.0, temperatures).unsqueeze(-1), dim=-1)


def head_topk(probs, k: int, logits=None):
    """Each row's k largest probabilities, descending, and their tokens. With 16-bit `logits` (bf16 on the GPU) the
    k are chosen by `torch.topk` of the logits and their probabilities gathered: torch's radix select then takes half
    the passes over the row (0.218 against 0.393 ms at 128 x 152k on an H200, 2026-11-30); the same values, since
    the softmax keeps the logits' order (a larger logit never gets a smaller probability); only which of tied
    tokens comes first may differ, which is torch.topk's choice either way. Else (float32 logits: the CPU's models,
    whose results stay as before) `torch.topk` of the probabilities."""
    if logits is None or logits.element_size() > 2:
        return probs.topk(k, dim=-1)
    order = logits.topk(k, dim=-1).indices
    return probs.gather(-1, order), order


def _pick(top, order, greedy, top_ps, uniforms):
    """Inverse CDF over the nucleus of `top` (probabilities, descending; `order` their token ids)."""
    import torch

    top = torch.where(top.cumsum(-1) - top < top_ps.unsqueeze(-1), top, 0.0)
    cdf = top.cumsum(-1)
    pick = torch.searchsorted(cdf, (uniforms * cdf[:, -1]).unsqueeze(-1)).clamp(max=top.shape[-1] - 1)
    pick = torch.where(greedy.unsqueeze(-1), 0, pick)
    return order.gather(-1, pick).squeeze(-1)


def search_rounds(ways: int) -> int:
    """Rounds of a `ways`-candidate search (`nucleus_floor`'s steps) that pin one float32 bit pattern in [-1, 2**31),
    whatever the row's largest one. A round leaves an interval of `step` or the last one, span - ways * step
    (= step + span % (ways + 1)), which is not monotone in the span: a smaller span can need more rounds (63 -> 18
    -> 3 -> 1 where 64 -> 4 -> 1), so this follows the largest interval any span up to the current one leaves
    (before 2026-11-30 it followed 2**31 + 1's own path: 8 rounds at 15 ways, where some rows need 9)."""
    span, rounds = 2**31 + 1, 0
    while span > 1:
        step = max(span // (ways + 1), 1)
        worst = max(step, span - ways * step)
        if step > 1:  # the span just below a multiple of ways + 1: one step less, the largest remainder
            worst = max(worst, step - 1 + ways)
        span, rounds = worst, rounds + 1
    return rounds


def _mass(probs, double):
    """The probabilities the sums add: float64 on CUDA (or where `double`), so that any summation order (torch's,
    the Triton kernel's in `triton_top_p.py`) gives the same nucleus and token; the CPU's float32 as before."""
    import torch

    return probs.to(torch.float64) if (probs.is_cuda if double is None else double) else probs


def nucleus_floor(probs, top_ps, ways: int = 1, double: bool | None = None):
    """Per row, the smallest float32 bit pattern x whose strictly larger probabilities sum below top_p: the nucleus
    is every token whose probability's bits are >= x (a token is in it when the tokens more likely than it hold
    less than top_p). Non-negative floats order as their bit patterns, so this searches integers: each round
    tests `ways` candidates lo + k * step (1: bisection, 32 rounds; 15: 8 rounds of 15 masked sums, which
    `torch.compile` fuses into one pass over the probabilities; int32 adds and multiplies only, as the fused
    kernel recomputes them per element). The sums are monotone in x, so every `ways` finds the same x. The sums
    are float64 on CUDA (`_mass`)."""
    import torch

    bits, mass = probs.view(torch.int32), _mass(probs, double)
    lo = torch.full(top_ps.shape, -1, dtype=torch.int32, device=probs.device)  # above: the whole mass
    hi = bits.max(-1).values  # above the most likely: nothing, which is < top_p for any top_p > 0
    for _ in range(search_rounds(ways)):
        step = torch.clamp((hi - lo) // (ways + 1), min=1)
        new_lo, new_hi = lo, hi
        for k in range(1, ways + 1):
            mid = torch.minimum(lo + step * k, hi)
            above = torch.where(bits > mid.unsqueeze(-1), mass, 0.0).sum(-1)
            inside = above < top_ps
            new_hi = torch.where(inside, torch.minimum(new_hi, mid), new_hi)
            new_lo = torch.where(inside, new_lo, torch.maximum(new_lo, mid))
        lo, hi = new_lo, new_hi
    return hi


def sample_wide(probs, top_ps, uniforms, floor=nucleus_floor, double: bool | None = None):
    """Each row drawn from its nucleus (`nucleus_floor`, or `floor`: the same search compiled) by inverse CDF in
    vocabulary order: no sort. Hand-written because torch has no top-p sampler and flashinfer's kernels are a
    large CUDA-only wheel (on CUDA, `triton_top_p.py` fuses the same draw into one kernel). Sums are float64 on
    CUDA (`_mass`)."""
    import torch

    keep = probs.view(torch.int32) >= floor(probs, top_ps, double=double).unsqueeze(-1)
    cdf = torch.where(keep, _mass(probs, double), 0.0).cumsum(-1)
    pick = torch.searchsorted(cdf, (uniforms.to(cdf.dtype) * cdf[:, -1]).unsqueeze(-1), right=True).squeeze(-1)
    # u * total may round up to the total: the last token of the nucleus then
    last = torch.where(keep, torch.arange(probs.shape[-1], device=probs.device), 0).max(-1).values
    return torch.minimum(pick, last)


def derived_uniforms(uniforms, r: int):
    """Round r's uniforms for `sample_rejection` (round 0: the rows' own): a 32-bit integer hash (Wellons'
    lowbias32) of each uniform's float32 bits and r, its top 24 bits as a float32 in [0, 1). Integer arithmetic,
    so torch and the Triton kernel compute the same numbers; a row's depend on its own uniform only."""
    import torch

    if r == 0:
        return uniforms
    m = 0xFFFFFFFF
    x = (uniforms.float().contiguous().view(torch.int32).to(torch.int64) & m) ^ ((r * 0x9E3779B9) & m)
    x ^= x >> 16
    x = (x * 0x7FEB352D) & m
    x ^= x >> 15
    x = (x * 0x846CA68B) & m
    x ^= x >> 16
    return (x >> 8).to(torch.float32) * 2.0**-24


def sample_rejection(probs, top_ps, uniforms, double: bool | None = None):
    """Nucleus sampling by rejection (flashinfer's scheme; `triton_top_p.rejection_tokens` on CUDA, where the static
    engine's `wide_sort=False` path draws so by default): draw by inverse CDF in vocabulary order among the tokens more likely than a pivot (at first all), accept the token
    when the mass strictly above it is below top_p (it is in the nucleus), else raise the pivot to it (every token
    as likely or less is outside too) and draw again with `derived_uniforms`. The accepted token is distributed as
    the nucleus renormalized; which token a uniform gives differs from `sample_wide`'s. No floor search: a round is
    two passes with one masked sum a token. A row with top_p <= 0 (an idle slot) gets its most likely token; a row
    still drawing at round REJECTION_ROUNDS (only NaN probabilities do: the slowest of 128 flat rows takes 2-5)
    keeps that round's token, so a broken row cannot stall the step."""
    import torch

    bits, mass = probs.view(torch.int32), _mass(probs, double)
    pivot = torch.full(top_ps.shape, -1, dtype=torch.int32, device=probs.device)
    done = top_ps <= 0
    out = probs.argmax(-1)
    r = 0
    while not bool(done.all()):
        drawn = sample_wide(probs, top_ps, derived_uniforms(uniforms, r), floor=lambda *a, **k: pivot + 1,
                            double=double)
        at = bits.gather(-1, drawn.unsqueeze(-1))
        above = torch.where(bits > at, mass, 0.0).sum(-1)
        accept = ~done & ((above < top_ps) | (r >= REJECTION_ROUNDS - 1))
        out = torch.where(accept, drawn, out)
        done = done | accept
        pivot = torch.where(done, pivot, at.squeeze(-1))
        r += 1
    return out


def rejection_inputs(logits, temperatures, top_ps):
    """(greedy, probs, top_ps) for drawing every row by `sample_rejection` with no head (the static engine's
    `rejection_every_row`): `_tempered`'s, a greedy row's top_p 0 (its most likely token, the head's greedy pick)."""
    import torch

    greedy, probs = _tempered(logits, temperatures)
    return greedy, probs, torch.where(greedy, 0.0, top_ps)


def sample_sorted(probs, greedy, top_ps, uniforms):
    """The default wide path: every row of the batch drawn in descending order after a full sort of the vocabulary
    (a narrow row gets the head's token)."""
    top, order = probs.sort(dim=-1, descending=True)
    return _pick(top, order, greedy, top_ps, uniforms)


def sample_head(logits, temperatures, top_ps, uniforms, by_logits: bool = True):
    """`sample_next` without its host sync (capturable in a CUDA graph): (tokens drawn from the NUCLEUS_HEAD
    most likely, `wide` (per row, a device bool: its nucleus is wider, and `sample_wide` gives its token
    instead), greedy, float32 probs). A greedy row (an idle slot too) is never wide. `by_logits`: the head chosen by
    16-bit logits where given (`head_topk`; False: by the probabilities, as before 2026-11-30)."""
    greedy, probs = _tempered(logits, temperatures)
    top, order = head_topk(probs, min(NUCLEUS_HEAD, probs.shape[-1]), logits if by_logits else None)
    wide = (top.sum(-1) < top_ps) & ~greedy
    return _pick(top, order, greedy, top_ps, uniforms), wide, greedy, probs


def sample_next(logits, temperatures, top_ps, uniforms, search: bool = False):
    """Nucleus sampling for a batch, one uniform draw per row (inverse CDF), exact: the nucleus is looked for in
    the 128 most likely tokens; where some row's is wider, the full vocabulary is sorted (the default, as before
    2026-11-30), or with `search` each wider row takes `sample_wide`'s token (no sort; decided per row).
    Temperature 0 is greedy (the most likely token). The static engine runs the same halves (`sample_head` in its
    CUDA graph, then `sample_sorted`, or `sample_wide` where its `wide_sort` is off)."""
    import torch

    tokens, wide, greedy, probs = sample_head(logits, temperatures, top_ps, uniforms)
    if bool(wide.any()):
        if not search:
            return sample_sorted(probs, greedy, top_ps, uniforms)
        tokens = torch.where(wide, sample_wide(probs, top_ps, uniforms), tokens)
    return tokens
