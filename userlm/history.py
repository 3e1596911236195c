"""A conversation's history cut to a token budget the way the user model sees it: replay's prompts and the
trainer's windows use the same cut, so training sees contexts shaped like the ones it is asked to continue."""

from __future__ import annotations

from userlm.chat import render_ids, speaker_view
from userlm.io import UserError

CHARS_PER_TOKEN = 4  # the budget's estimate where the backend renders prompts itself (openai: no tokenizer here)


def prompt_tokens(tokenizer, messages: list[dict]) -> int:
    if not messages:  # no system prompt and no history: chat templates refuse to render nothing
        return 0
    if tokenizer is None:
        return sum(len(m["content"]) for m in messages) // CHARS_PER_TOKEN + 8 * len(messages)
    return len(render_ids(tokenizer, messages, add_generation_prompt=True))


def fit_history(tokenizer, history: list[dict], system: str | None, budget: int) -> tuple[list[dict], int]:
    """The user's view of `history` within `budget` prompt tokens, and how many turns were cut for it: the
    oldest turns are left out first; a last turn that alone is too long keeps its end (where the question is)."""
    turns, cut = fit_turns(tokenizer, history, system, budget)
    return speaker_view(turns, "user", system), cut


def fit_turns(tokenizer, history: list[dict], system: str | None, budget: int,
              speaker: str = "user") -> tuple[list[dict], int]:
    """fit_history's turns before the speaker's view is taken (training windows build on them)."""
    messages = lambda h: speaker_view(h, speaker, system)
    n = len(history)
    fits = lambda k: prompt_tokens(tokenizer, messages(history[n - k:])) <= budget  # the last k turns
    # The most recent k turns that fit (k >= 1; fewer turns, fewer tokens): galloping up from the last turn, then
    # bisecting, so a long history is tokenized O(log n) times in pieces about the budget's size. Cutting one
    # turn at a time re-tokenized the whole rest once per turn cut: 120 ms a ShareGPT point on one CPU thread,
    # longer than the GPU took to write the turn (results/benchmarks/2026-11-30-h200-replay.md).
    lo, hi = 0, 1  # fits(lo) (k = 0: nothing, trivially); hi: the next k tried
    while hi <= n and fits(hi):
        lo, hi = hi, 2 * hi
    hi = min(hi, n + 1)  # the smallest k known not to fit (n + 1: all of them fit)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if fits(mid) else (lo, mid)
    cut = n - max(lo, 1) if n else 0
    history, shortened = history[cut:], 0
    while history and (over := prompt_tokens(tokenizer, messages(history)) - budget) > 0:
        last = history[-1]["content"]
        keep = max(0, len(last) - max(16, over * CHARS_PER_TOKEN))
        history, shortened = ([{**history[-1], "content": last[len(last) - keep:]}] if keep else []), 1
    cut += shortened
    if prompt_tokens(tokenizer, messages(history)) > budget:
        raise UserError(f"context_tokens: the system prompt alone exceeds the prompt budget of {budget} tokens")
    return history, cut
