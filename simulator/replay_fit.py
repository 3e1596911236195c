"""Each replay point's history fitted to the prompt budget, all points of a conversation at once.

`fit_history` (replay_plan.py) renders and tokenizes a point's history O(log n) times: ~18 ms a ShareGPT point,
spent on the host between the GPU's decode steps (results/benchmarks/2026-11-30-h200-replay.md). Chat templates
of the ChatML kind render each message on its own, fenced by special tokens, so a prompt's token count is the sum
of its messages' counts, and its token ids those of its messages in a row: here each message of a conversation
is tokenized once (one batch), every point's cut is found from the counts, and its prompt's ids (which the hf
backend would otherwise render and tokenize again) are joined from the messages'. Whether a template adds up so
is checked on each conversation (three of its points' prompts tokenized whole: the first, the last, the first
with a cut history); where it does not, every point takes the exact path, `fit_history`, as does a point whose
last turn alone is over the budget (it is shortened there).

`history_cut` chooses which turns a point sees when its history is over the budget:
- `latest` (the default): the most recent turns that fit, as `fit_history` finds them;
- `blocks`: a point keeps the first turn the previous point of its conversation kept while its history fits;
  once it does not, the oldest turns are cut until the rest fits in `BLOCK_FILL` of the budget. Consecutive points
  then share their prompt's prefix, which the GPU engine computes once (`share_prefixes`, slot_prefill.py),
  at the price of a shorter history at some points (between BLOCK_FILL of the budget and all of it).
Either way a point's view depends only on its conversation and its position in it."""

from __future__ import annotations

from userlm.chat import render, render_ids, speaker_view
from userlm.history import fit_history

HISTORY_CUTS = ("latest", "blocks")
BLOCK_FILL = 0.5  # `blocks`: a cut history fills at most this share of the budget


def _each_ids(tokenizer, system: list[dict], rest: list[dict]) -> list[list[int]]:
    """The ids of the system part with each message of `rest` after it, in one call (one batch for the tokenizer)."""
    texts = [render(tokenizer, system + [m], add_generation_prompt=False) for m in rest]
    return tokenizer(texts, add_special_tokens=False)["input_ids"] if texts else []


def message_tokens(tokenizer, view: list[dict]) -> tuple[list[int], list[list[int]], list[int]] | None:
    """(the system part's token ids, each further message's, the generation prompt's) of `view` (the user's view
    of a whole conversation): any run of its messages renders to the system's, those messages' and the
    generation prompt's ids in a row (`fit_points` checks that on two of its points). None where the parts do
    not even begin with the system part's ids."""
    if tokenizer is None:
        return None
    system = view[:1] if view and view[0]["role"] == "system" else []
    rest = view[len(system):]
    try:
        head = render_ids(tokenizer, system, False) if system else []
        parts = _each_ids(tokenizer, system, rest)
        generation = render_ids(tokenizer, system, True) if system else render_ids(tokenizer, rest[:1], True)[len(parts[0]):]
    except Exception:  # noqa: BLE001 - a template that cannot render a part alone (no messages, say): exact path
        return None
    if any(p[:len(head)] != head or len(p) <= len(head) for p in parts) or generation[:len(head)] != head:
        return None
    return head, [p[len(head):] for p in parts], generation[len(head):] if system else generation


def fit_points(tokenizer, messages: list[dict], indexes: list[int], system: str | None, budget: int,
               history_cut: str = "latest") -> list[tuple[list[dict], int, list[int] | None]]:
    """For each point (the index of its message in the conversation, in order): the user's view of the history
    before it within `budget` prompt tokens, how many turns were cut from it (`fit_history`'s answer), and its
    prompt's token ids where they were found from the messages' (None: the backend tokenizes the prompt)."""
    history = [{"role": m["role"], "content": m["content"]} for m in messages]
    view = speaker_view(history, "user", system)
    skip = len(view) - len(history)  # the system message
    found = message_tokens(tokenizer, view)
    if found:
        system_ids, parts, generation = found
        head, counts = len(system_ids) + len(generation), [len(p) for p in parts]
    out, start = [], 0
    for index in indexes:
        exact = lambda: (*fit_history(tokenizer, history[:index], system, budget), None)  # noqa: E731
        if found is None or index == 0:
            out.append(exact())
            continue
        ids = lambda: system_ids + [t for p in parts[start:index] for t in p] + generation  # noqa: E731
        total = head + sum(counts[start:index])
        if history_cut == "blocks" and start < index and total <= budget:
            out.append((view[:skip] + view[skip + start: skip + index], start, ids()))
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
        out.append((view[:skip] + view[skip + start: skip + index], start, ids()))
    # the template adds up on this conversation: the first and last points joined from the messages' ids, and the
    # first one with a cut history, each against its prompt tokenized whole; else every point takes the exact path
    joined = [n for n, fitted in enumerate(out) if fitted[2] is not None]
    checked = {*joined[:1], *joined[-1:], *[n for n in joined if out[n][1] > 0][:1]}
    if any(out[n][2] != render_ids(tokenizer, out[n][0], True) for n in checked):
        return [(*fit_history(tokenizer, history[:i], system, budget), None) for i in indexes]
    return out
