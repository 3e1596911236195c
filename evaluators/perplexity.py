"""Perplexity of a user model on real held-out human turns (only the targets count: the human turns and the
end marker, in the user-model format): the `perplexity` evaluator's numbers and `userlm evaluate perplexity`."""

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
    max_length: int = option(384, "tokens per example at most", min=1)
    base_model: str | None = option(None, "score this model beside it (default: an adapter's base)")

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
                         max_length: int = 384, base_model: str | None = None,
                         with_intent: bool = True) -> tuple[dict[str, list[tuple]], str | None]:
    """The steps of both `userlm evaluate perplexity` and the `perplexity` evaluator: ({metric: (sum NLL,
    tokens) units}, the base model scored beside it) on `limit` examples of a split (all: 0), with the base
    model (`base_model`, else the adapter's) and, `with_intent`, the examples that have written intents."""
    from userlm.chat import USER_MODEL_SYSTEM

    examples = sampled(split_examples, limit)
    ref, system, base = perplexity_setup(model)
    units = {"perplexity_real_user_turns": perplexity_units(ref, system, examples, max_length)}
    base = base_model or base
    if base:
        units["perplexity_base_model"] = perplexity_units(base, USER_MODEL_SYSTEM, examples, max_length)
    if with_intent:
        units.update(intent_perplexities(ref, system, data_dir, split_examples, limit, max_length))
    return units, base


def perplexity_of(model: str, data_dir: str, split: str = "test", limit: int = 0, max_length: int = 384,
                  base_model: str | None = None) -> dict:
    """`userlm evaluate perplexity`: the `perplexity` evaluator's steps (perplexity_unit_sets), on a split of
    prepared data. Only the targets count (the human turns and the end marker, in the user-model format)."""
    from userlm.data.prepare import read_split

    split_examples = read_split(data_dir, split)
    if not split_examples:
        raise UserError(f"{data_dir}: the {split} split holds no example")
    units, base = perplexity_unit_sets(model, data_dir, split_examples, limit, max_length, base_model)
    pooled = lambda name: {"perplexity": pooled_perplexity(units[name]), "tokens": sum(u[1] for u in units[name])}
    result = {"model": model, **pooled("perplexity_real_user_turns"),
              "examples": len(units["perplexity_real_user_turns"]), "split": split, "data_dir": str(data_dir)}
    if base:
        result["base"] = {"model": base, **pooled("perplexity_base_model")}
    if "perplexity_with_intent" in units:  # the split's examples that have written intents, with and without them
        result["intent"] = {"examples": len(units["perplexity_with_intent"]),
                            **{name: pooled_perplexity(units[name])
                               for name in ("perplexity_with_intent", "perplexity_without_intent")}}
    return result


def perplexity_summary(result: dict) -> str:
    """`perplexity_of`'s result in words (`userlm evaluate perplexity` without --json)."""
    base = result.get("base")
    text = (f"{result['model']}: perplexity {result['perplexity']:.3f} on {result['tokens']:,} target tokens of "
            f"{result['examples']} {result['split']} examples" +
            (f"; base {base['model']}: {base['perplexity']:.3f}" if base else ""))
    if "intent" in result:
        i = result["intent"]
        text += (f"\non the {i['examples']} examples with written intents: {i['perplexity_with_intent']:.3f} with "
                 f"the intent, {i['perplexity_without_intent']:.3f} without")
    return text


def intent_perplexities(model: str, system: str, data_dir: str, split_examples: list[dict], limit: int = 0,
                        max_length: int = 384) -> dict:
    """Perplexity with and without the written intent in the system prompt, on the same examples (those of
    the split that `userlm data intents` gave a usable intent): does the model use its intent?"""
    from userlm.chat import user_model_system
    from userlm.data.intents import load_intents

    intents = load_intents(data_dir, required=False)
    examples = [ex for ex in split_examples if ex["id"] in intents]
    if limit:
        examples = examples[:limit]
    if not examples:
        return {}
    with_intent = [user_model_system(system, intents[ex["id"]]) for ex in examples]
    return {"perplexity_with_intent": perplexity_units(model, with_intent, examples, max_length),
            "perplexity_without_intent": perplexity_units(model, system, examples, max_length)}
