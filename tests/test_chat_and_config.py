import pytest

from userlm import END_OF_CONVERSATION
from userlm.chat import USER_MODEL_SYSTEM, encode_for_training, prompt_for, speaker_view, with_end_marker
from userlm.config import load_config
from userlm.io import UserError
from userlm.models import load_tokenizer, resolve

EXAMPLE = {"messages": [
    {"role": "user", "content": "how long do i boil an egg", "target": True},
    {"role": "assistant", "content": "About 8 minutes for hard-boiled.", "target": False},
    {"role": "user", "content": "and soft?", "target": False},  # shared with another thread: context only
    {"role": "assistant", "content": "6 minutes.", "target": False},
    {"role": "user", "content": "thx", "target": True},
    {"role": "assistant", "content": "You're welcome!", "target": False},
], "ends_conversation": True}


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer("embedded:smollm2-135m-instruct")


def test_speaker_view_flips_roles_for_the_user_model_only():
    conv = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    assert [m["role"] for m in speaker_view(conv, "user", "sys")] == ["system", "assistant", "user"]
    assert [m["role"] for m in speaker_view(conv, "assistant")] == ["user", "assistant"]


def test_labels_cover_exactly_the_target_human_turns_and_end_marker(tokenizer):
    enc = encode_for_training(tokenizer, EXAMPLE, max_length=4096)
    learned = tokenizer.decode([t for t, lab in zip(enc["input_ids"], enc["labels"]) if lab != -100])
    assert "how long do i boil an egg" in learned and "thx" in learned and END_OF_CONVERSATION in learned
    for context in ("and soft?", "About 8 minutes", "6 minutes", "You're welcome", "human user talking"):
        assert context not in learned
    # Context (system prompt, AI turns) carries no loss at all.
    assert enc["labels"][0] == -100


def test_training_prefix_is_byte_for_byte_the_simulator_prompt(tokenizer):
    enc = encode_for_training(tokenizer, EXAMPLE, max_length=4096)
    turns = with_end_marker(EXAMPLE)
    checked = 0
    for i, turn in enumerate(turns):
        if turn["role"] != "user" or not turn["target"]:
            continue
        history = [{"role": t["role"], "content": t["content"]} for t in turns[:i]]
        prompt = prompt_for(tokenizer, history, "user", USER_MODEL_SYSTEM)  # what the simulator sends
        ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        assert enc["input_ids"][: len(ids)] == ids, f"turn {i}: training tokens differ from the inference prompt"
        assert enc["labels"][len(ids) - 1] == -100 and enc["labels"][len(ids)] != -100
        checked += 1
    assert checked == 3


def test_assistant_target_role_learns_ai_turns(tokenizer):
    enc = encode_for_training(tokenizer, EXAMPLE, speaker="assistant", system=None, max_length=4096)
    learned = tokenizer.decode([t for t, lab in zip(enc["input_ids"], enc["labels"]) if lab != -100])
    assert "6 minutes." in learned and "boil an egg" not in learned


def test_model_references_resolve_with_clear_errors(tmp_path):
    assert resolve("embedded:smollm2-135m-instruct").kind == "gguf"
    assert resolve("Qwen/Qwen2.5-7B").kind == "hub"
    with pytest.raises(UserError, match="unknown embedded model"):
        resolve("embedded:nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="neither a model"):
        resolve(str(tmp_path / "empty"))


def test_config_yaml_and_overrides(tmp_path):
    from trainer.train import TrainConfig

    path = tmp_path / "c.yaml"
    path.write_text("lora_r: 8\nlearning_rate: 1\n")
    cfg = load_config(TrainConfig, path, ["max_steps=5", "base_model=foo/bar"])
    assert (cfg.lora_r, cfg.learning_rate, cfg.max_steps, cfg.base_model) == (8, 1.0, 5, "foo/bar")
    path.write_text("lora_rank: 8\n")
    with pytest.raises(UserError, match="unknown field 'lora_rank'"):
        load_config(TrainConfig, path)
    with pytest.raises(UserError, match="field 'max_steps' must be int"):
        load_config(TrainConfig, None, ["max_steps=lots"])


def test_batch_rendering_gives_each_prompts_own_ids(tokenizer):
    """`render_ids_batch` (the static engine's prefill tokenizes its joining prompts in one call) gives each
    conversation the ids `render_ids` gives it alone: long and short, special-token-like text, empty batch."""
    from userlm.chat import render, render_ids_batch

    turns = with_end_marker(EXAMPLE)
    conversations = [[{"role": t["role"], "content": t["content"]} for t in turns[:n]] for n in range(1, len(turns) + 1)]
    conversations.append([{"role": "user", "content": "<|im_end|> not the end, \n\n  spaces   and ünïcode 😀"}])
    batch = render_ids_batch(tokenizer, conversations, add_generation_prompt=True)
    alone = [tokenizer(render(tokenizer, c, True), add_special_tokens=False)["input_ids"] for c in conversations]
    assert batch == alone and len({len(ids) for ids in alone}) > 1  # lengths differ: no padding crept in
    assert render_ids_batch(tokenizer, [], add_generation_prompt=True) == []
