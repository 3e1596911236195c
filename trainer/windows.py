"""Training windows: a conversation longer than max_length becomes several examples, each ending at one of its
human turns (or at the end marker) with as much history before it as fits, the oldest turns cut first and a
too-long last turn keeping its end: the cut `simulate --replay` makes to a prompt (userlm/history.py).

Why not the conversation's first max_length tokens: on the demo's ShareGPT data (median 1,228 tokens a
conversation) a 192-token head keeps 12% of the human target tokens and the end marker of 6% of the
conversations, so a user model trained that way never learned to stop (end F1 0 in the demo, 2026-11-30).
Windows train every human turn and every end decision once, in the context a simulation gives them."""

from __future__ import annotations

from userlm.chat import encode_turns, render_ids, speaker_view, training_turns
from userlm.history import fit_turns, prompt_tokens


def _tokens(tokenizer, messages: list[dict]) -> int:
    return len(render_ids(tokenizer, messages, add_generation_prompt=False)) if messages else 0


def encode_windows(tokenizer, example: dict, *, speaker: str, system: str | None, max_length: int) -> list[dict]:
    """input_ids/labels of each window (labels only on the window's own targets, each target in one window),
    plus `ends_conversation`: whether the window trains the end marker."""
    turns = training_turns(example, speaker)
    targets = [i for i, t in enumerate(turns) if t["role"] == speaker and t.get("target", True)]
    bare = _tokens(tokenizer, speaker_view([], speaker, system))  # the system prompt's own tokens
    # A target too long for its window still keeps the end of the turn it answers (the window is then cut at
    # max_length, as the head cut would).
    # (A template may add a default system prompt of its own: measured with a one-word turn.)
    other = "assistant" if speaker == "user" else "user"
    floor = prompt_tokens(tokenizer, speaker_view([{"role": other, "content": "x"}], speaker, system)) + 24
    span = lambda first, last: _tokens(tokenizer, speaker_view(turns[first:last + 1], speaker, system)) - bare
    rows, k = [], 0
    while k < len(targets):
        # A window's targets (and the turns between them) take at most half of it, so its first target keeps
        # at least half the window for the history it answers.
        m, group = k, span(targets[k], targets[k])
        while m + 1 < len(targets) and (wider := span(targets[k], targets[m + 1])) <= max_length // 2:
            m, group = m + 1, wider
        first, last = targets[k], targets[m]
        context = [{**t, "target": False} for t in turns[:first]]
        history, _ = fit_turns(tokenizer, context, system, max(max_length - group, floor), speaker)
        row = encode_turns(tokenizer, history + turns[first:last + 1], speaker, system, max_length)
        row["ends_conversation"] = bool(example.get("ends_conversation")) and speaker == "user" \
            and last == len(turns) - 1
        rows.append(row)
        k = m + 1
    return rows
