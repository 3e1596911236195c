"""What `simulate --replay` replays: which held-out conversations (one per tree), the points of each (every real
human turn, and the end decision after the last AI turn), and each point's history cut to a token budget."""

from __future__ import annotations

import random
from pathlib import Path

from userlm.chat import render, speaker_view
from userlm.io import UserError, sha256_json, stable_uint

PLAN_SEED = 0  # the conversations chosen do not depend on --seed: two seeds replay the same contexts
CHARS_PER_TOKEN = 4  # the budget's estimate where the backend renders prompts itself (openai: no tokenizer here)


def replay_plan(data_dir: str, split: str, limit: int | None, with_intent: bool) -> tuple[list[dict], dict, dict]:
    """(examples in plan order, example id -> intent, the data's manifest). One example per tree (a seeded
    choice among the tree's threads, so a branching tree weighs no more than a linear one), then a seeded
    sample of `limit` trees, in example-id order."""
    from userlm.data.intents import load_intents
    from userlm.data.prepare import SPLITS, load_manifest, read_split

    manifest = load_manifest(data_dir)
    if split not in SPLITS:
        raise UserError(f"--split {split!r}: not a split of a prepared data dir (one of {', '.join(SPLITS)})")
    if limit is not None and limit < 1:
        raise UserError(f"limit must be >= 1, got {limit}")
    intents = load_intents(data_dir, required=with_intent)
    by_tree: dict[str, list[dict]] = {}
    for i, ex in enumerate(read_split(data_dir, split), 1):
        if not isinstance(ex.get("messages"), list) or not all(
                isinstance(m, dict) and m.get("role") in ("user", "assistant") and isinstance(m.get("content"), str)
                for m in ex["messages"]):
            raise UserError(f"{Path(data_dir) / f'{split}.jsonl'}:{i}: field 'messages' must be a list of "
                            f"{{role: user|assistant, content: str}}")
        if any(m["role"] == "user" for m in ex["messages"]) and (ex["id"] in intents or not with_intent):
            by_tree.setdefault(str(ex.get("tree_id", ex["id"])), []).append(ex)
    chosen = sorted((random.Random(stable_uint(f"{PLAN_SEED}:{tree}", 8)).choice(sorted(exs, key=lambda e: e["id"]))
                     for tree, exs in by_tree.items()), key=lambda e: e["id"])
    if limit is not None and limit < len(chosen):
        chosen = sorted(random.Random(PLAN_SEED).sample(chosen, limit), key=lambda e: e["id"])
    if not chosen:
        raise UserError(f"{data_dir}: no conversation to replay in {split}.jsonl"
                        + (" with a written intent (intents.jsonl)" if with_intent else ""))
    return chosen, {ex["id"]: intents[ex["id"]] for ex in chosen if ex["id"] in intents}, manifest


def plan_hash(examples: list[dict], intents: dict) -> str:
    return sha256_json([[ex["id"], ex["messages"], intents.get(ex["id"])] for ex in examples])


def plan_points(example: dict) -> list[dict]:
    """Each real human turn (index into the messages), then the point after the last AI turn (index = the number
    of messages) where the person stopped or the source does not say. `decision`: an AI turn came before and the
    person had spoken, so ending was an option; `person_ended`: None where the source records no ends."""
    msgs, recorded = example["messages"], bool(example.get("end_recorded"))
    points = []
    for i in range(len(msgs) + 1):
        if i < len(msgs) and msgs[i]["role"] != "user":
            continue
        if i == len(msgs) and (not msgs or msgs[-1]["role"] != "assistant"):
            continue
        decision = i > 0 and msgs[i - 1]["role"] == "assistant" and any(m["role"] == "user" for m in msgs[:i])
        final = i == len(msgs)
        points.append({"index": i, "real": None if final else msgs[i]["content"], "decision": decision,
                       "person_ended": (final and bool(example.get("ends_conversation"))) if recorded else None})
    return points


def prompt_tokens(tokenizer, messages: list[dict]) -> int:
    if tokenizer is None:
        return sum(len(m["content"]) for m in messages) // CHARS_PER_TOKEN + 8 * len(messages)
    return len(tokenizer(render(tokenizer, messages, add_generation_prompt=True), add_special_tokens=False)["input_ids"])


def fit_history(tokenizer, history: list[dict], system: str | None, budget: int) -> tuple[list[dict], int]:
    """The user's view of `history` within `budget` prompt tokens, and how many turns were cut for it: the
    oldest turns are left out first; a last turn that alone is too long keeps its end (where the question is)."""
    messages = lambda h: speaker_view(h, "user", system)
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
    return messages(history), cut
