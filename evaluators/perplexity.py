"""Perplexity of a user model on real held-out human turns: the `perplexity` evaluator's numbers and `userlm
evaluate perplexity`. Per word of the turns' text, with the end-of-turn and end-of-conversation tokens apart and
no target cut at a token count (evaluators/word_perplexity.py); `perplexity_units` is the older per-token total
of every target token (the human turns and the end marker), kept for training checks."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from userlm.config import check_fields, option
from userlm.io import UserError


@dataclass
class PerplexityConfig:
    """`userlm evaluate perplexity`: the arguments of `perplexity_of`."""

    model: str = option(help="adapter dir, model ref, base:MODEL or prompted:MODEL")
    data_dir: str = option(help="prepared data dir", flag="data", metavar="DATA")
    split: Literal["train", "validation", "test"] = option("test", "which split to score")
    limit: int = option(0, "examples at most, sampled with seed 0 (0 = all)", min=0)
    max_words: int = option(400, "words per conversation at most, cut at a message boundary, the same for every "
                                 "model and condition (0 = whole conversations)", min=0)
    base_model: str | None = option(None, "score this model beside it (default: an adapter's base)")

    REPLACED_FIELDS = {"max_length": "max_words (targets are no longer cut at a token count)"}

    def __post_init__(self):
        check_fields(self)


def perplexity_units(model_ref: str, system: str | list[str], examples: list[dict], max_length: int = 384,
                     batch_tokens: int | None = None) -> list[tuple]:
    """Per example (sum NLL, tokens) of the human turns (and end marker) in the user model's flipped format,
    under one system prompt or one per example. The backend batches them (`batch_tokens` padded tokens a
    batch at most; None = its own choice for the device)."""
    from userlm.backends import get_backend
    from userlm.chat import encode_for_training

    backend = get_backend("hf", model_ref, quantization="none", max_batch=16)
    systems = [system] * len(examples) if isinstance(system, str) else system
    encoded = []
    for ex, ex_system in zip(examples, systems):
        enc = encode_for_training(backend.tokenizer, ex, speaker="user", system=ex_system, max_length=max_length)
        if any(label != -100 for label in enc["labels"]):
            encoded.append((enc["input_ids"], enc["labels"]))
    if not encoded:
        return []
    return [(-s, count) for s, count in backend.masked_loglikelihood(encoded, batch_tokens=batch_tokens)]


def pooled_perplexity(units) -> float:
    """exp(total NLL / total tokens) over (sum NLL, tokens) units: a statistic for the bootstrap."""
    return math.exp(sum(u[0] for u in units) / max(1, sum(u[1] for u in units)))


def perplexity_setup(model: str) -> tuple[str, str, str | None]:
    """(model to load, system prompt it was trained or told with, its base model when it is an adapter)."""
    from userlm.users import parse_user

    user = parse_user(model, "hf")
    system = user.system_prompt.format(intent="") if user.kind == "prompted" else user.system_prompt
    return user.model, system, user.manifest.base_model if user.manifest else None


def perplexity_examples(data_dir: str, split: str = "test", limit: int = 0) -> list[dict]:
    """Real held-out conversations (examples sampled with seed 0 when `limit` is set)."""
    from userlm.data.prepare import read_split

    return sampled(read_split(data_dir, split), limit)


def sampled(examples: list[dict], limit: int = 0) -> list[dict]:
    """`limit` of the examples drawn with seed 0 (all of them, in order, when `limit` is 0)."""
    import random

    return random.Random(0).sample(examples, min(limit, len(examples))) if limit else examples


def perplexity_unit_sets(model: str, data_dir: str, split_examples: list[dict], limit: int = 0,
                         max_words: int = 400, base_model: str | None = None,
                         with_intent: bool = True) -> tuple[dict[str, tuple], str | None, dict]:
    """The steps of both `userlm evaluate perplexity` and the `perplexity` evaluator on `limit` examples of a
    split (all: 0): ({metric: (statistic, per-example scores grouped by dedup unit)}, the base model scored
    beside it, counts). With `with_intent`, the examples that have written intents are also scored with their
    intent and with another example's (the control), by the model and by the base model."""
    from evaluators import word_perplexity as W
    from userlm.chat import USER_MODEL_SYSTEM, user_model_system
    from userlm.data.intents import load_intents

    pairs = [(ex, W.fitted(ex, max_words)) for ex in sampled(split_examples, limit)]
    examples = [f for _, f in pairs if f is not None]
    counts = {"sampled": len(pairs), "without_target": len(pairs) - len(examples),
              "cut_at_max_words": sum(f is not None and len(f["messages"]) < len(ex["messages"]) for ex, f in pairs)}
    ref, system, base = perplexity_setup(model)
    base = base_model or base
    units = W.dedup_units(examples)
    plain = W.score_examples(ref, system, examples)
    out = {"perplexity_real_user_turns": (W.per_word, W.grouped(plain, units)),
           "end_of_turn_nll": (W.end_of_turn_nll, W.grouped(plain, units))}
    if any(s["conversation_ends"] for s in plain):  # OASST records no ends: nothing to score there
        out["end_of_conversation_nll"] = (W.end_of_conversation_nll, W.grouped(plain, units))
    base_plain = W.score_examples(base, USER_MODEL_SYSTEM, examples) if base else None
    if base_plain:
        out["perplexity_base_model"] = (W.per_word, W.grouped(base_plain, units))
    intents = load_intents(data_dir, required=False) if with_intent else {}
    chosen = [i for i, ex in enumerate(examples) if ex["id"] in intents]
    if chosen:
        subset = [examples[i] for i in chosen]
        own = [intents[ex["id"]] for ex in subset]
        sub_units = W.dedup_units(subset)
        pick = lambda scores: W.grouped([scores[i] for i in chosen], sub_units)
        told = lambda sys, texts: [user_model_system(sys, t) for t in texts]
        out["perplexity_with_intent"] = (W.per_word, W.grouped(W.score_examples(ref, told(system, own), subset),
                                                               sub_units))
        out["perplexity_without_intent"] = (W.per_word, pick(plain))
        other = W.mismatched(own)
        if other:
            out["perplexity_mismatched_intent"] = (W.per_word, W.grouped(
                W.score_examples(ref, told(system, other), subset), sub_units))
        if base_plain:
            out["perplexity_base_with_intent"] = (W.per_word, W.grouped(
                W.score_examples(base, told(USER_MODEL_SYSTEM, own), subset), sub_units))
            out["perplexity_base_without_intent"] = (W.per_word, pick(base_plain))
    return out, base, counts


def perplexity_of(model: str, data_dir: str, split: str = "test", limit: int = 0, max_words: int = 400,
                  base_model: str | None = None) -> dict:
    """`userlm evaluate perplexity`: the `perplexity` evaluator's steps (perplexity_unit_sets) on a split of
    prepared data, refused where the split shares human turns with the adapter's training data."""
    from evaluators import word_perplexity as W
    from evaluators.comparability import check_no_overlap
    from evaluators.stats import bootstrap_ci
    from userlm.data.prepare import read_split

    check_no_overlap(model, data_dir, split)  # held-out means not trained on: refused otherwise
    split_examples = read_split(data_dir, split)
    if not split_examples:
        raise UserError(f"{data_dir}: the {split} split holds no example")
    sets, base, counts = perplexity_unit_sets(model, data_dir, split_examples, limit, max_words, base_model)
    groups = sets["perplexity_real_user_turns"][1]
    result = {"model": model, **W.summary(groups), "examples": sum(len(g) for g in groups),
              "dedup_units": len(groups), "split": split, "data_dir": str(data_dir), "max_words": max_words,
              **counts, "ci": bootstrap_ci(groups, W.per_word)}
    if base:
        base_groups = sets["perplexity_base_model"][1]
        result["base"] = {"model": base, **W.summary(base_groups), "ci": bootstrap_ci(base_groups, W.per_word)}
    if "perplexity_with_intent" in sets:  # the examples with written intents: own, none, another's
        i = {name: W.per_word(sets[name][1]) for name in sets if "intent" in name}
        result["intent"] = {"examples": sum(len(g) for g in sets["perplexity_with_intent"][1]), **i,
                            "gain": i["perplexity_without_intent"] / i["perplexity_with_intent"]}
        if "perplexity_mismatched_intent" in i:
            result["intent"]["gain_mismatched"] = i["perplexity_without_intent"] / i["perplexity_mismatched_intent"]
        if "perplexity_base_with_intent" in i:
            result["intent"]["base_gain"] = i["perplexity_base_without_intent"] / i["perplexity_base_with_intent"]
    return result


def perplexity_summary(result: dict) -> str:
    """`perplexity_of`'s result in words (`userlm evaluate perplexity` without --json)."""
    line = lambda r: (f"{r['perplexity']:.2f} per word [{r['ci']['ci_low']:.2f}, {r['ci']['ci_high']:.2f}] "
                      f"({r['per_text_token']:.2f} per text token), end of turn {r['end_of_turn_nll']:.3f} nats, "
                      f"end of conversation {r['end_of_conversation_nll']:.3f} nats")
    text = (f"{result['model']}: {line(result)}\n  on {result['words']:,} words of {result['examples']} "
            f"{result['split']} examples ({result['dedup_units']} dedup units; {result['cut_at_max_words']} cut at "
            f"{result['max_words']} words, {result['without_target']} without a human turn)")
    if result.get("base"):
        text += f"\nbase {result['base']['model']}: {line(result['base'])}"
    if "intent" in result:
        i = result["intent"]
        text += (f"\non the {i['examples']} examples with written intents, per word: {i['perplexity_with_intent']:.2f} "
                 f"with the intent, {i['perplexity_without_intent']:.2f} without (gain x{i['gain']:.3f})")
        if "gain_mismatched" in i:
            text += f", {i['perplexity_mismatched_intent']:.2f} with another's (x{i['gain_mismatched']:.3f})"
        if "base_gain" in i:
            text += (f"; base {i['perplexity_base_with_intent']:.2f} with, {i['perplexity_base_without_intent']:.2f} "
                     f"without (x{i['base_gain']:.3f})")
    return text
