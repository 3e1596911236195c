"""Termination as the field measures it (UserLM-8b, arXiv 2510.06552, end-of-conversation F1): on held-out real
conversations that record a real end, at every point where the person either went on or stopped (after each AI
turn), does the user model end the conversation? Precision, recall and F1 of its ends, beside the real data's
base rate (the share of points where the person stopped)."""

from __future__ import annotations

from evaluators import ends

# The context a decision is made on: the last MAX_MESSAGES messages, each cut to its last MAX_CHARS characters
# (CPU cost, and the model's context window; the decision rests mostly on the latest exchange).
MAX_MESSAGES, MAX_CHARS = 6, 2000


def decision_points(examples: list[dict], limit: int = 32, seed: int = 0) -> list[dict]:
    """Units: one real conversation each, {"points": [(context messages, person stopped here)]}. A point is an
    AI turn followed by the person's next turn (went on), or the last AI turn of a conversation with a recorded
    end (stopped). Conversations are sampled one per tree."""
    import random

    by_tree: dict = {}
    for ex in examples:
        by_tree.setdefault(ex["tree_id"], ex)
    chosen = sorted(by_tree.values(), key=lambda e: e["id"])
    chosen = random.Random(seed).sample(chosen, min(limit, len(chosen)))
    units = []
    for ex in chosen:
        msgs = [{"role": m["role"], "content": m["content"][-MAX_CHARS:]} for m in ex["messages"]]
        points = []
        for i, m in enumerate(msgs):
            if m["role"] != "assistant":
                continue
            if i + 1 < len(msgs) and msgs[i + 1]["role"] == "user":
                points.append((msgs[max(0, i + 1 - MAX_MESSAGES): i + 1], False))
            elif i + 1 == len(msgs) and ex.get("ends_conversation"):
                points.append((msgs[-MAX_MESSAGES:], True))
        if points:
            units.append({"id": ex["id"], "points": points})
    return units


def predict_ends(model: str, system: str, units: list[dict], max_new_tokens: int = 16, seed: int = 0) -> None:
    """Adds "pred" (the user model ended, i.e. wrote the end marker) beside each unit's points, in place."""
    from userlm.backends import GenerationRequest, Sampling, get_backend
    from userlm.chat import speaker_view, strip_end_marker

    backend = get_backend("hf", model, quantization="none", max_batch=16)
    sampling = Sampling(temperature=0.8, top_p=0.95, max_new_tokens=max_new_tokens)
    requests = [GenerationRequest(speaker_view(ctx, "user", system), sampling, seed=seed * 100003 + i)
                for i, (ctx, _) in enumerate(p for u in units for p in u["points"])]
    outs = iter(backend.generate(requests))
    for u in units:
        u["pred"] = [strip_end_marker(next(outs).text)[1] for _ in u["points"]]


def with_ends(units: list[dict]) -> list[dict]:
    """u["ends"] = [(predicted end, real end)] from u["pred"] and u["points"], what evaluators/ends.py reads."""
    for u in units:
        u["ends"] = [(bool(p), bool(t)) for p, (_, t) in zip(u["pred"], u["points"])]
    return units


def termination_report(model: str, system: str, examples: list[dict], limit: int = 32) -> dict | None:
    """{metric: ci} for end_f1/precision/recall/base_rate and the always-end baseline's F1, or None where the data
    records no real end. The statistics are evaluators/ends.py's, the ones a replay run's points are scored by."""
    from evaluators.stats import bootstrap_ci

    if not any(ex.get("ends_conversation") for ex in examples):
        return None
    units = decision_points(examples, limit)
    if not units:
        return None
    predict_ends(model, system, units)
    with_ends(units)
    return {name: bootstrap_ci(units, fn) for name, fn in ENDS_METRICS.items()}


ENDS_METRICS = {"end_f1": ends.f1, "end_f1_always": ends.f1_always, "end_precision": ends.precision,
                "end_recall": ends.recall, "end_base_rate": ends.base_rate}
