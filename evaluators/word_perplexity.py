"""Perplexity per word of real human turns, with the format tokens apart.

Per token in each model's own tokenizer, and with the end-of-turn and end-of-conversation tokens mixed in,
perplexity compares tokenizers and chat formats as much as words. Here each scored token is put in one group by
where it falls in the rendered conversation: the turn's text, the end-of-turn tokens after it (`<|im_end|>`,
`<end_of_turn>`), or the human's end-of-conversation turn (the marker and its end-of-turn). The text's negative
log-likelihood is divided by the turn's words (whitespace-split: the same count for every tokenizer); the end
tokens are reported apart, as nats per turn end and per conversation end.

Targets are never cut at a token count (which differs by tokenizer and by system prompt length): a conversation
longer than `max_words` is cut at a message boundary by words, so every model and condition (with or without
an intent) scores the same turns. Units for the bootstrap are dedup units: scored conversations whose human
turns are duplicates or near-duplicates (userlm/data/dedup.py) are resampled together.
"""

from __future__ import annotations

import math

from userlm import END_OF_CONVERSATION

TEXT, END_OF_TURN, END_OF_CONV = 1, 2, 3


def fitted(example: dict, max_words: int) -> dict | None:
    """The example cut at a message boundary to `max_words` words in all (always through its first target human
    turn), without its end when cut; None when it has no target human turn. Model-independent by design."""
    messages, total, seen_target = [], 0, False
    for m in example["messages"]:
        total += len(m["content"].split())
        if max_words and total > max_words and seen_target:
            break
        messages.append(m)
        seen_target = seen_target or (m["role"] == "user" and m.get("target", True))
    if not seen_target:
        return None
    cut = len(messages) < len(example["messages"])
    return {**example, "messages": messages, "ends_conversation": example.get("ends_conversation") and not cut}


def encode_grouped(tokenizer, example: dict, system: str) -> tuple[list[int], list[int], list[int], dict]:
    """(input ids, labels, group of each labelled token in order, word and byte counts of the scored text)."""
    from userlm.chat import target_spans, with_end_marker

    turns = with_end_marker(example)
    text, spans = target_spans(tokenizer, turns, "user", system)
    targets = [t for t in turns if t["role"] == "user" and t.get("target", True)]
    bounds, words, nbytes = [], 0, 0
    for (start, end), turn in zip(spans, targets):
        if turn["content"] == END_OF_CONVERSATION and turn is turns[-1] and example.get("ends_conversation"):
            bounds.append((start, start, end, END_OF_CONV))
            continue
        at = text.find(turn["content"], start, end)
        bounds.append((start, at + len(turn["content"]) if at >= 0 else end, end, TEXT))
        words += len(turn["content"].split())
        nbytes += len(turn["content"].encode("utf-8"))
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    labels, groups, b = [], [], 0
    for token_id, (offset, _) in zip(enc["input_ids"], enc["offset_mapping"]):
        while b < len(bounds) and offset >= bounds[b][2]:
            b += 1
        if b < len(bounds) and bounds[b][0] <= offset < bounds[b][2]:
            start, text_end, _, kind = bounds[b]
            groups.append(kind if kind == END_OF_CONV else TEXT if offset < text_end else END_OF_TURN)
            labels.append(token_id)
        else:
            labels.append(-100)
    return enc["input_ids"], labels, groups, {"words": words, "bytes": nbytes, "turns": len(bounds)}


def score_examples(model_ref: str, systems: str | list[str], examples: list[dict],
                   batch_tokens: int | None = None) -> list[dict]:
    """Per example: NLL (nats) and counts of its text tokens, its end-of-turn tokens and its end of conversation,
    under one system prompt or one per example. No truncation: the examples are cut by `fitted` beforehand."""
    from userlm.backends import get_backend

    backend = get_backend("hf", model_ref, quantization="none", max_batch=16)
    systems = [systems] * len(examples) if isinstance(systems, str) else systems
    encoded, meta = [], []
    for ex, system in zip(examples, systems):
        ids, labels, groups, counts = encode_grouped(backend.tokenizer, ex, system)
        encoded.append((ids, labels))
        meta.append((groups, counts))
    out = []
    for logps, (groups, counts) in zip(backend.masked_loglikelihood(encoded, batch_tokens=batch_tokens,
                                                                     per_token=True), meta):
        groups = groups[len(groups) - len(logps):]  # a labelled first token has no prediction (never here)
        nll = {g: -sum(lp for lp, k in zip(logps, groups) if k == g) for g in (TEXT, END_OF_TURN, END_OF_CONV)}
        out.append({"text_nll": nll[TEXT], "text_tokens": groups.count(TEXT), "words": counts["words"],
                    "bytes": counts["bytes"], "eot_nll": nll[END_OF_TURN], "eot_tokens": groups.count(END_OF_TURN),
                    "turn_ends": counts["turns"] - (END_OF_CONV in groups), "eoc_nll": nll[END_OF_CONV],
                    "conversation_ends": int(END_OF_CONV in groups)})
    return out


def dedup_units(examples: list[dict]) -> list[list[int]]:
    """Indices of the scored examples grouped by dedup unit (one tree, or duplicate / near-duplicate human
    turns: userlm.data.dedup.group_items), in first-seen order."""
    from userlm.data.dedup import group_items

    items = [(str(i), str(ex.get("tree_id", ex["id"])), [[m["content"] for m in ex["messages"] if m["role"] == "user"]])
             for i, ex in enumerate(examples)]
    unit_of = group_items(items).unit_of
    units: dict[str, list[int]] = {}
    for i in range(len(examples)):
        units.setdefault(unit_of[str(i)], []).append(i)
    return list(units.values())


def grouped(scores: list[dict], units: list[list[int]]) -> list[list[dict]]:
    return [[scores[i] for i in unit] for unit in units]


def _sum(groups: list[list[dict]], key: str) -> float:
    return sum(s[key] for g in groups for s in g)


def per_word(groups: list[list[dict]]) -> float:
    """exp(text NLL / words) over dedup units: the bootstrap's statistic."""
    return math.exp(_sum(groups, "text_nll") / max(1, _sum(groups, "words")))


def per_text_token(groups: list[list[dict]]) -> float:
    return math.exp(_sum(groups, "text_nll") / max(1, _sum(groups, "text_tokens")))


def end_of_turn_nll(groups: list[list[dict]]) -> float:
    """Nats per turn end (the end-of-turn tokens after a human turn's text)."""
    return _sum(groups, "eot_nll") / max(1, _sum(groups, "turn_ends"))


def end_of_conversation_nll(groups: list[list[dict]]) -> float:
    """Nats per end of conversation (the marker turn); nan where no scored conversation ended."""
    ends = _sum(groups, "conversation_ends")
    return _sum(groups, "eoc_nll") / ends if ends else float("nan")


def summary(groups: list[list[dict]]) -> dict:
    return {"perplexity": per_word(groups), "words": int(_sum(groups, "words")),
            "per_text_token": per_text_token(groups), "text_tokens": int(_sum(groups, "text_tokens")),
            "bits_per_byte": _sum(groups, "text_nll") / max(1, _sum(groups, "bytes")) / math.log(2),
            "end_of_turn_nll": end_of_turn_nll(groups), "end_of_conversation_nll": end_of_conversation_nll(groups),
            "conversation_ends": int(_sum(groups, "conversation_ends"))}


def mismatched(intents: list[str]) -> list[str] | None:
    """Each example's intent replaced by another example's (the next one whose intent text differs): the control
    for whether the model uses its own intent or only the intent-shaped prompt. None when all intents agree."""
    n = len(intents)
    out = []
    for i, own in enumerate(intents):
        other = next((intents[(i + k) % n] for k in range(1, n) if intents[(i + k) % n] != own), None)
        if other is None:
            return None
        out.append(other)
    return out
