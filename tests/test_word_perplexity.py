"""Fast tier: perplexity per word with the end tokens apart, the mismatched-intent control, and near-duplicate
linking (evaluators/word_perplexity.py, userlm/data/dedup.py), on the tiny real-architecture model."""

import json
import math

import pytest

TEXT = ("my landlord wants to keep the whole deposit because of a small stain on the carpet in the bedroom, "
        "we lived there for three years and paid every month on time, what can i do about it before friday")


def test_near_duplicate_turns_link_their_conversations_into_one_split_unit():
    from userlm.data.dedup import group_items

    changed = TEXT.replace("three years", "four years").replace("before friday", "this week")
    shared_phrase = "we lived there for three years and paid every month on time"  # 1 of many 8-grams
    items = [("a", "a", [[TEXT]]), ("b", "b", [["hi", changed]]),
             ("c", "c", [[f"how do i bake bread at home, {shared_phrase}, and which flour do i need for a soft loaf"]]),
             ("d", "d", [["what is the capital of france and how many people live there these days"]])]
    groups = group_items(items)
    assert groups.unit_of["a"] == groups.unit_of["b"]  # half their 8-grams shared: one unit
    assert len({groups.unit_of[k] for k in "acd"}) == 3  # one shared phrase is not a near-duplicate
    assert groups.near_duplicate_links == 1 and groups.linked_units == 1


def test_mismatched_intents_are_always_another_conversations():
    from evaluators.word_perplexity import mismatched

    intents = ["book a flight", "fix a bug", "fix a bug", "write a poem"]
    other = mismatched(intents)
    assert all(o != i for o, i in zip(other, intents)) and sorted(set(other)) == sorted(set(intents))
    assert mismatched(["same", "same"]) is None


def _example(ends: bool) -> dict:
    return {"id": "x:1", "tree_id": "x", "ends_conversation": ends, "end_recorded": True, "messages": [
        {"role": "user", "content": TEXT, "target": True},
        {"role": "assistant", "content": "You can ask for an itemised list of deductions.", "target": False},
        {"role": "user", "content": "ok thanks, and if they refuse?", "target": True},
        {"role": "assistant", "content": "Then small claims court is the usual next step.", "target": False}]}


def test_per_word_perplexity_puts_every_target_token_in_text_or_the_end_tokens(tiny_model):
    """Text, end-of-turn and end-of-conversation NLL add up to the whole target NLL the per-token perplexity
    sums (nothing scored twice or dropped), words are the turns' own, and the end tokens are kept apart."""
    from evaluators.perplexity import perplexity_units
    from evaluators.word_perplexity import score_examples, summary
    from userlm.chat import USER_MODEL_SYSTEM

    examples = [_example(True), _example(False)]
    scores = score_examples(tiny_model, USER_MODEL_SYSTEM, examples)
    whole = perplexity_units(tiny_model, USER_MODEL_SYSTEM, examples, max_length=100000)
    for s, (nll, tokens), ends in zip(scores, whole, (True, False)):
        assert s["text_nll"] + s["eot_nll"] + s["eoc_nll"] == pytest.approx(nll, rel=1e-4)
        assert s["words"] == len(TEXT.split()) + 6 and s["turn_ends"] == 2 and s["eot_tokens"] >= 2
        # the rest of the targets is the end-of-conversation turn's
        assert (s["text_tokens"] + s["eot_tokens"] < tokens) if ends else (s["text_tokens"] + s["eot_tokens"] == tokens)
    assert [s["conversation_ends"] for s in scores] == [1, 0] and scores[1]["eoc_nll"] == 0
    assert scores[0]["text_nll"] == pytest.approx(scores[1]["text_nll"], rel=1e-4)  # same text, same context
    total = summary([[s] for s in scores])
    assert total["perplexity"] == pytest.approx(math.exp(sum(s["text_nll"] for s in scores) / total["words"]))
    assert total["end_of_conversation_nll"] == pytest.approx(scores[0]["eoc_nll"])


def test_intent_conditions_score_the_same_words_with_a_mismatched_control_and_the_base_gain(tiny_model,
                                                                                          tmp_path, capsys):
    from evaluators.perplexity import perplexity_unit_sets
    from userlm.data.prepare import PrepareConfig, prepare, read_split
    from workflows.cli import main

    data = tmp_path / "data"
    prepare(PrepareConfig(sources=["sharegpt"], out=str(data), max_trees_per_source=150))
    test = read_split(data, "test")[:4]
    (data / "intents.jsonl").write_text("".join(json.dumps({"example_id": ex["id"], "intent": f"you want help #{i}"})
                                                + "\n" for i, ex in enumerate(test)))
    sets, base, _ = perplexity_unit_sets(f"base:{tiny_model}", str(data), test, max_words=150, base_model=tiny_model)
    assert base == tiny_model
    words = {name: sum(s["words"] for g in groups for s in g) for name, (_, groups) in sets.items()}
    conditions = ("perplexity_with_intent", "perplexity_without_intent", "perplexity_mismatched_intent",
                  "perplexity_base_with_intent", "perplexity_base_without_intent")
    assert len({words[c] for c in conditions}) == 1 and words["perplexity_real_user_turns"] == words[conditions[0]]
    tokens = {c: sum(s["text_tokens"] for g in sets[c][1] for s in g) for c in conditions}
    assert len(set(tokens.values())) == 1  # the intent's length never changes which tokens are scored
    # `base:M` with M as its base: the same model in the same format, so the same numbers and gains.
    values = {name: stat(groups) for name, (stat, groups) in sets.items()}
    assert values["perplexity_with_intent"] == pytest.approx(values["perplexity_base_with_intent"], rel=1e-4)
    assert main(["evaluate", "perplexity", "--model", f"base:{tiny_model}", "--base-model", tiny_model, "--data",
                 str(data), "--limit", "4", "--max-words", "150", "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["intent"]["gain"] == pytest.approx(result["intent"]["base_gain"], rel=1e-4)
    assert "gain_mismatched" in result["intent"] and result["words"] > 0 and result["end_of_turn_nll"] > 0
