"""Nucleus sampling for a batch of rows, on the device, one uniform draw per row (inverse CDF): temperature
and top-p per row, greedy at temperature 0. Both engines of the hf backend sample with it: the dynamic
scheduler (`hf.py`) calls `sample_next`; the static engine (`static_cache.py`) runs its two halves,
`sample_head` inside its CUDA graph and `sample_sorted` after the replay when a nucleus is wider."""

from __future__ import annotations

NUCLEUS_HEAD = 128  # the nucleus is looked for among this many most likely tokens before sorting everything


def _tempered(logits, temperatures):
    """(greedy rows, probabilities at each row's temperature; a greedy row's at temperature 1)."""
    import torch

    greedy = temperatures <= 0
    return greedy, torch.softmax(logits / torch.where(greedy, 1.0, temperatures).unsqueeze(-1), dim=-1)


def _pick(top, order, greedy, top_ps, uniforms):
    """Inverse CDF over the nucleus of `top` (probabilities, descending; `order` their token ids)."""
    import torch

    top = torch.where(top.cumsum(-1) - top < top_ps.unsqueeze(-1), top, 0.0)
    cdf = top.cumsum(-1)
    pick = torch.searchsorted(cdf, (uniforms * cdf[:, -1]).unsqueeze(-1)).clamp(max=top.shape[-1] - 1)
    pick = torch.where(greedy.unsqueeze(-1), 0, pick)
    return order.gather(-1, pick).squeeze(-1)


def sample_head(logits, temperatures, top_ps, uniforms):
    """`sample_next` without its host sync (capturable in a CUDA graph): (tokens drawn from the NUCLEUS_HEAD
    most likely, `wide` (a device bool: some sampled row's nucleus is wider, and then `sample_sorted` gives the
    batch's tokens instead), greedy, probs). A greedy row (an idle slot too) never makes the batch wide."""
    greedy, probs = _tempered(logits, temperatures)
    top, order = probs.topk(min(NUCLEUS_HEAD, probs.shape[-1]), dim=-1)
    wide = ((top.sum(-1) < top_ps) & ~greedy).any()
    return _pick(top, order, greedy, top_ps, uniforms), wide, greedy, probs


def sample_sorted(probs, greedy, top_ps, uniforms):
    """`sample_next`'s path for a batch where some row's nucleus is wider than NUCLEUS_HEAD tokens."""
    top, order = probs.sort(dim=-1, descending=True)
    return _pick(top, order, greedy, top_ps, uniforms)


def sample_next(logits, temperatures, top_ps, uniforms):
    """Nucleus sampling for a batch, one uniform draw per row (inverse CDF), exact: the nucleus is looked for in
    the 128 most likely tokens and the full vocabulary is sorted only when it is wider. Temperature 0 is greedy
    (the most likely token: its row never asks for the sort, which was a fifth of a greedy decode step on the CPU).
    The static engine runs the same two halves (`sample_head` inside its CUDA graph, then `sample_sorted`)."""
    greedy, probs = _tempered(logits, temperatures)
    top, order = probs.topk(min(NUCLEUS_HEAD, probs.shape[-1]), dim=-1)
    if bool(((top.sum(-1) < top_ps) & ~greedy).any()):
        top, order = probs.sort(dim=-1, descending=True)
    return _pick(top, order, greedy, top_ps, uniforms)
