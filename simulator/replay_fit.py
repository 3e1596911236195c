"""Each replay point's history fitted to the prompt budget, all points of a conversation at once.

`fit_history` (replay_plan.py) renders and tokenizes a point's history O(log n) times: ~18 ms a ShareGPT point,
spent on the host between the GPU's decode steps (results/benchmarks/2026-11-30-h200-replay.md). Chat templates
of the ChatML kind render each message on its own, fenced by special tokens, so a prompt's token count is the sum
of its messages' counts: here each message of a conversation is tokenized once, and every point's cut is found
from the sums. Whether a template adds up is checked on each conversation (the counts' sum against the whole
conversation tokenized at once); where it does not, every point takes the exact path, `fit_history`, as does a
point whose last turn alone is over the budget (it is shortened there).

`history_cut` chooses which turns a point sees when its history is over the budget:
- `latest` (the default): the most recent turns that fit, as `fit_history` finds them;
- `blocks`: a point keeps the first turn the previous point of its conversation kept while its history fits;
  once it does not, the oldest turns are cut until the rest fits in `BLOCK_FILL` of the budget. Consecutive points
  then share their prompt's prefix, which the GPU engine computes once (`share_prefixes`, slot_prefill.py),
  at the price of a shorter history at some points (between BLOCK_FILL of the budget and all of it).
Either way a point's view depends only on its conversation and its position in it."""

from __future__ import annotations

from simulator.replay_plan import fit_history
from userlm.chat import render, speaker_view

HISTORY_CUTS = ("latest", "blocks")
BLOCK_FILL = 0.5  # `blocks`: a cut history fills at most this share of the budget


def _count(tokenizer, messages: list[dict], generation: bool) -> int:
    return len(tokenizer(render(tokenizer, messages, add_generation_prompt=generation),
                         add_special_tokens=False)["input_ids"])


def message_counts(tokenizer, view: list[dict]) -> tuple[int, list[int]] | None:
    """(tokens of the system part and the generation prompt, each further message's tokens) of `view` (the
    user's view of a whole conversation), or None where the template's counts do not add up on it."""
    if tokenizer is None:
        return None
    system = view[:1] if view and view[0]["role"] == "system" else []
    try:
        base = _count(tokenizer, system, False) if system else 0
        counts = [_count(tokenizer, system + [m], False) - base for m in view[len(system):]]
        head = _count(tokenizer, system, True)
        whole = _count(tokenizer, view, True)
    except Exception:  # noqa: BLE001 - a template that cannot render a part alone (no messages, say): exact path
        return None
    if head + sum(counts) != whole or min(counts, default=1) <= 0:
        return None
    return head, counts


def fit_points(tokenizer, messages: list[dict], indexes: list[int], system: str | None, budget: int,
               history_cut: str = "latest") -> list[tuple[list[dict], int]]:
    """For each point (the index of its message in the conversation, in order): the user's view of the history
    before it within `budget` prompt tokens, and how many turns were cut from it (`fit_history`'s answer)."""
    history = [{"role": m["role"], "content": m["content"]} for m in messages]
    view = speaker_view(history, "user", system)
    skip = len(view) - len(history)  # the system message
    found = message_counts(tokenizer, view)
    out, start = [], 0
    for index in indexes:
        exact = lambda: fit_history(tokenizer, history[:index], system, budget)  # noqa: E731
        if found is None or index == 0:
            out.append(exact())
            continue
        head, counts = found
        total = head + sum(counts[start:index])
        if history_cut == "blocks" and start < index and total <= budget:
            out.append((view[:skip] + view[skip + start: skip + index], start))
            continue
        limit = budget if history_cut == "latest" else max(int(budget * BLOCK_FILL), head + counts[index - 1])
        if head + counts[index - 1] > budget:  # the last turn alone is over the budget: shortened, exactly
            out.append(exact())
            start = index - 1
            continue
        k, used = 0, head
        while k < index and used + counts[index - 1 - k] <= limit:  # the most recent turns that fit
            used += counts[index - 1 - k]
            k += 1
        start = index - k
        out.append((view[:skip] + view[skip + start: skip + index], start))
    return out
