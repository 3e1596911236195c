"""Intents: the writer command (cache, resume, bad output), training with intents (none/always/mixed, the
same system prompt the simulator builds), and the simulator telling intent-trained users their scenario."""

import json
from pathlib import Path

import pytest
from conftest import sharegpt_file

from userlm.chat import user_model_system
from userlm.data.intents import (
    INTENTS_FILE,
    check_intent,
    clean_intent,
    first_human_turn,
    gets_intent,
    load_intents,
)
from userlm.data.prepare import PrepareConfig, prepare, read_split
from userlm.io import append_jsonl

SMOKE = Path(__file__).resolve().parents[1] / "scenarios" / "smoke"


@pytest.fixture
def data_dir(tmp_path):
    records = [(f"c{i}", [("human", f"hey, can you help me plan a trip to city {i} for {i + 2} days"),
                          ("gpt", f"Sure! Here is a plan for city {i}."),
                          ("human", f"cheaper please, i only have {100 * i} dollars")]) for i in range(12)]
    out = tmp_path / "data"
    prepare(PrepareConfig(sources=[sharegpt_file(tmp_path / "s.json", records)], out=str(out),
                          validation_fraction=0.2, test_fraction=0.2))
    return out


def test_intent_checks_flag_empty_long_copied_and_third_person():
    first = "please write me a poem about the sea at night with rhymes"
    assert check_intent("", first) == ["empty"]
    assert check_intent("You want a poem about the night sea that rhymes.", first) == []
    assert "copied" in check_intent("You want: please write me a poem about the sea at night", first)
    assert "too_long" in check_intent("You want " + "very " * 70 + "much", first)
    assert "not_second_person" in check_intent("The user wants a poem.", first)
    assert "echoes_prompt" in check_intent("You want to plan a week of cheap vegetarian meals for about 40 dollars",
                                           first)
    assert clean_intent('Intent: "You want a poem."\n\nSure, anything else?') == "You want a poem."


def test_intents_command_caches_resumes_and_flags_bad_output(data_dir, tiny_model):
    from workflows.intents import IntentsConfig, write_intents

    cfg = IntentsConfig(data_dir=str(data_dir), model=tiny_model, batch_size=2, max_new_tokens=8)
    total = sum(len(read_split(data_dir, s)) for s in ("train", "validation", "test"))

    def stop_after_three(written, _todo):
        if written == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):  # one queue, two prompts in flight: stopped with one still running
        write_intents(cfg, progress=stop_after_three)
    lines = (data_dir / INTENTS_FILE).read_text().splitlines()
    assert len(lines) == 3  # every intent that finished is on disk
    summary = write_intents(cfg)  # the same backend, which still has the interrupted call's request in flight
    assert summary["written_now"] == total - 3 and summary["from_cache"] == 3
    records = [json.loads(line) for line in (data_dir / INTENTS_FILE).read_text().splitlines()]
    assert len(records) == total == len({r["key"] for r in records})
    # Each intent is its own prompt's greedy answer, whatever ran beside it (and the shared-prefix reuse the hf
    # backend gets from write_intents): the same as written one prompt at a time without it.
    from userlm.backends import GenerationRequest, Sampling, get_backend
    from userlm.data.intents import writer_messages

    alone = get_backend("hf", tiny_model)
    greedy = Sampling(temperature=0.0, top_p=1.0, max_new_tokens=8)
    examples = {ex["id"]: ex for s in ("train", "validation", "test") for ex in read_split(data_dir, s)}
    for r in records:
        out = alone.generate([GenerationRequest(writer_messages(examples[r["example_id"]]), greedy, seed=0)])[0]
        assert r["intent"] == clean_intent(out.text)
    writer = get_backend("hf", tiny_model, shared_prefix=4)  # the backend write_intents used
    assert writer.recent and not writer.kept and not alone.kept  # every finished intent released, leftovers too
    assert {r["writer"] for r in records} == {tiny_model}
    # A random model writes nonsense: every intent is flagged, and none is used.
    assert all(r["flags"] for r in records) and summary["usable"] == 0 and not load_intents(data_dir)
    again = write_intents(cfg)
    assert again["written_now"] == 0 and again["from_cache"] == total
    capped = write_intents(IntentsConfig(data_dir=str(data_dir), model=tiny_model, split_limits={"train": 3},
                                         splits=["train"], max_new_tokens=8))
    assert capped["examples"] == 3 and capped["written_now"] == 0
    # share < 1: only the examples a mixed training run with that share would give their intent
    half = write_intents(IntentsConfig(data_dir=str(data_dir), model=tiny_model, splits=["train"], share=0.5,
                                       max_new_tokens=8))
    assert half["written_now"] == 0
    # the budget is part of the cache key: another budget writes anew
    other = write_intents(IntentsConfig(data_dir=str(data_dir), model=tiny_model, split_limits={"train": 1},
                                        splits=["train"], max_new_tokens=9))
    assert other["written_now"] == 1
    train = read_split(data_dir, "train")
    assert half["examples"] == sum(gets_intent(ex["id"], 0, 0.5) for ex in train) < len(train)


def test_intents_queue_on_a_batch_backend(data_dir, monkeypatch):
    """A batch backend (openai, vllm) runs what was submitted since its last step as one batch: the queue
    hands it batch_size prompts a step, and each answer reaches its own example."""
    import userlm.backends as backends
    from userlm.backends import BatchBackend, Generation
    from workflows.intents import IntentsConfig, write_intents

    batches = []

    class Echo(BatchBackend):
        def __init__(self, model: str):
            pass

        def generate_batch(self, requests):
            batches.append(len(requests))
            return [Generation(f"You want {r.messages[-1]['content'].split(chr(10))[2]}", 3) for r in requests]

        def masked_loglikelihood(self, encoded, batch_tokens=None):
            raise NotImplementedError

    monkeypatch.setitem(backends._REGISTRY, "echo", Echo)
    monkeypatch.setattr(backends, "_CACHE", {})
    summary = write_intents(IntentsConfig(data_dir=str(data_dir), model="m", backend="echo", batch_size=3,
                                          splits=["train"]))
    n = len(read_split(data_dir, "train"))
    assert summary["written_now"] == n == sum(batches) and batches == [3] * (n // 3) + [n % 3] * (n % 3 > 0)
    examples = {ex["id"]: ex for ex in read_split(data_dir, "train")}
    for line in (data_dir / INTENTS_FILE).read_text().splitlines():
        r = json.loads(line)
        assert r["intent"] == clean_intent("You want 1. " + first_human_turn(examples[r["example_id"]]))


def test_examples_with_one_writer_prompt_each_get_their_intent(tmp_path, tiny_model):
    from workflows.intents import IntentsConfig, write_intents

    long = " ".join(f"word{i}" for i in range(70))  # the writer sees each turn's first 60 words
    src = sharegpt_file(tmp_path / "s.json", [("a", [("human", long + " apples")]), ("b", [("human", long + " pears")])])
    out = tmp_path / "data"
    prepare(PrepareConfig(sources=[src], out=str(out), test_fraction=0, validation_fraction=0))
    summary = write_intents(IntentsConfig(data_dir=str(out), model=tiny_model, max_new_tokens=4))
    records = [json.loads(line) for line in (out / INTENTS_FILE).read_text().splitlines()]
    assert summary["written_now"] == 1 and summary["from_cache"] == 1
    assert sorted(r["example_id"].split(":")[0] for r in records) == ["a", "b"]
    assert len({r["intent"] for r in records}) == 1


def _give_intents(data_dir, split="train"):
    for ex in read_split(data_dir, split):
        append_jsonl(data_dir / INTENTS_FILE, {"example_id": ex["id"], "split": split, "key": ex["id"],
                                               "writer": "test", "intent": f"You want a cheap plan for {ex['id']}.",
                                               "flags": []})


def test_training_systems_none_always_mixed_match_the_simulator(data_dir):
    from trainer.train import TrainConfig, example_systems
    from userlm.chat import USER_MODEL_SYSTEM
    from userlm.records import AdapterManifest
    from userlm.scenarios import Scenario
    from userlm.users import UserSpec, user_system

    examples = [{**ex, "id": f"{ex['id']}#{i}"} for ex in read_split(data_dir, "train") for i in range(40)]
    intents = {ex["id"]: f"You want a cheap plan for {ex['id']}." for ex in examples}
    assert set(example_systems(examples, TrainConfig(intent="none"), intents)) == {USER_MODEL_SYSTEM}
    always = example_systems(examples, TrainConfig(intent="always"), intents)
    assert all(intents[ex["id"]] in s for ex, s in zip(examples, always))
    mixed = example_systems(examples, TrainConfig(intent="mixed", intent_share=0.5), intents)
    share = sum(s != USER_MODEL_SYSTEM for s in mixed) / len(mixed)
    assert 0.4 < share < 0.6
    # seeded per example: the same choice in any order
    assert mixed[::-1] == example_systems(examples[::-1], TrainConfig(intent="mixed", intent_share=0.5), intents)
    # The simulator tells an intent-trained user its scenario's intent in exactly the training wording.
    scenario = Scenario(id="s", description="d", intent=intents[examples[0]["id"]])
    user = UserSpec("adapter", "x", USER_MODEL_SYSTEM, AdapterManifest("b", trained_with_intent=True))
    told = user_system(user, scenario.intent, scenario.persona)
    assert told == always[0] == user_model_system(USER_MODEL_SYSTEM, scenario.intent)
    assert user_system(UserSpec("adapter", "x", USER_MODEL_SYSTEM, AdapterManifest("b")), scenario.intent,
                       scenario.persona) == USER_MODEL_SYSTEM


def test_intent_trained_adapter_is_told_the_scenario_intent(data_dir, tiny_model, tmp_path):
    from simulator.run import SimulationConfig, simulate
    from trainer.train import TrainConfig, train
    from userlm.io import UserError

    with pytest.raises(UserError, match="data intents"):
        train(TrainConfig(base_model=tiny_model, data_dir=str(data_dir), output_dir=str(tmp_path / "none"),
                          intent="mixed", max_steps=1))
    _give_intents(data_dir)
    _give_intents(data_dir, "validation")
    adapter = tmp_path / "adapter"
    manifest = train(TrainConfig(base_model=tiny_model, data_dir=str(data_dir), output_dir=str(adapter),
                                 intent="mixed", max_steps=2, per_device_train_batch_size=2, max_length=96,
                                 lora_r=4, eval_steps=10, save_steps=10, logging_steps=1))
    assert manifest["trained_with_intent"] and manifest["intent_mode"] == "mixed"
    assert 0 < manifest["train_examples_with_intent"] <= manifest["train_examples"]
    runs = {}
    for name, user in (("trained", str(adapter)), ("base", f"base:{tiny_model}")):
        out = simulate(SimulationConfig(scenarios=str(SMOKE), user=user, assistant=tiny_model,
                                        out=str(tmp_path / name), samples=1, max_turns=1))
        runs[name] = [json.loads(line) for line in (out / "transcripts.jsonl").read_text().splitlines()]
    assert all(r["user_told_intent"] and r["scenario_intent"] for r in runs["trained"])
    assert not any(r["user_told_intent"] for r in runs["base"])
    _give_intents(data_dir, "test")
    from evaluators.perplexity import perplexity_of
    from evaluators.run import evaluate_run

    report = evaluate_run(str(tmp_path / "trained"), reference=str(data_dir), evaluators="intent,perplexity")
    metrics = report["metrics"]
    assert 0 <= metrics["intent_topic"]["reference"]["value"] <= 1
    # "You want a cheap plan for X" has no constraints: adherence on hard negatives is n/a, and says why.
    assert "no intent with constraints" in metrics["intent_adherence"]["reference"]["note"]
    assert 0 <= metrics["intent_adherence"]["run"]["value"] <= 1  # the smoke intents have constraints
    assert metrics["perplexity_with_intent"]["run"]["n"] == metrics["perplexity_without_intent"]["run"]["n"] > 0
    result = perplexity_of(str(adapter), str(data_dir), "test")
    assert result["intent"]["examples"] == len(read_split(data_dir, "test"))
    # the command and the evaluator take the same steps (the evaluator's 48 examples are the whole split here)
    command = {"perplexity_real_user_turns": result["perplexity"], "perplexity_base_model": result["base"]["perplexity"],
               **{name: result["intent"][name] for name in ("perplexity_with_intent", "perplexity_without_intent")}}
    assert {name: metrics[name]["run"]["value"] for name in command} == pytest.approx(command, rel=1e-6)
    # the demo scores fewer held-out conversations (evaluate --perplexity-examples)
    fewer = evaluate_run(str(tmp_path / "trained"), reference=str(data_dir), evaluators="perplexity",
                         perplexity_examples=1)["metrics"]["perplexity_real_user_turns"]["run"]["n"]
    assert fewer == 1 < metrics["perplexity_real_user_turns"]["run"]["n"]


def test_intent_topic_tells_a_pursued_intent_from_another_and_decomposition_a_pasted_one():
    from evaluators.cache import embed
    from evaluators.intent import checklist, mean_of, score_units

    meals = "a week of cheap vegetarian dinners for two people, without mushrooms, for 40 dollars"
    bug = "fix a Python KeyError when counting words in a dictionary, without defaultdict"
    units = [{"intent": meals, "user_turns": ["what can i cook this week without meat, on a budget?"]},
             {"intent": bug, "user_turns": ["my python script crashes with KeyError in counts[word] += 1"]},
             {"intent": bug, "user_turns": ["any vegetarian recipes for dinner?"]}]  # pursues the other intent
    score_units(units, lambda texts: embed(texts))
    assert [u["intent_topic"] for u in units] == [1.0, 1.0, 0.0]
    assert mean_of("intent_topic")(units) == pytest.approx(2 / 3)
    assert checklist(meals, f"i want {meals}") == 1.0
    assert checklist(meals, "hi, can you help me with food?") == 0.0
