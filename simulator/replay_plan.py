"""What `simulate --replay` replays: which held-out conversations (one per tree), the points of each (every real
human turn, and the end decision after the last AI turn), and each point's history cut to a token budget."""

from __future__ import annotations

import random
from pathlib import Path

from userlm.end_policy import is_decision
from userlm.history import fit_history, prompt_tokens  # noqa: F401 (replay's names for them)
from userlm.io import UserError, sha256_json, stable_uint

PLAN_SEED = 0  # the conversations chosen do not depend on --seed: two seeds replay the same contexts


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
        decision = is_decision(msgs[:i])
        final = i == len(msgs)
        points.append({"index": i, "real": None if final else msgs[i]["content"], "decision": decision,
                       "person_ended": (final and bool(example.get("ends_conversation"))) if recorded else None})
    return points
