"""Training windows (trainer/windows.py): every human target turn and the end marker trained exactly once, each
in a window of at most max_length tokens that holds the turn it answers, the history cut the way replay cuts a
prompt. The head cut (the conversation's first max_length tokens) never trains a long conversation's end."""

import pytest

from trainer.windows import encode_windows
from userlm import END_OF_CONVERSATION
from userlm.chat import USER_MODEL_SYSTEM, encode_for_training
from userlm.models import load_tokenizer

WORDS = "please help me plan a trip to the mountains in winter with two kids and a dog".split()


def conversation(turns: int) -> dict:
    messages = []
    for i in range(turns):
        messages.append({"role": "user", "content": f"q{i} " + " ".join(WORDS[: 3 + i % 9]), "target": True})
        messages.append({"role": "assistant", "content": f"a{i} " + " ".join(WORDS * (1 + i % 4)), "target": False})
    return {"messages": messages, "ends_conversation": True}


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer("embedded:smollm2-135m-instruct")


def learned(tokenizer, row) -> str:
    return tokenizer.decode([t for t in row["labels"] if t != -100])


@pytest.mark.parametrize("max_length", [64, 128, 400])
def test_every_target_once_within_max_length_with_the_turn_it_answers(tokenizer, max_length):
    example = conversation(9)
    rows = encode_windows(tokenizer, example, speaker="user", system=USER_MODEL_SYSTEM, max_length=max_length)
    assert all(len(r["input_ids"]) <= max_length for r in rows)
    texts = [learned(tokenizer, r) for r in rows]
    for i in range(9):
        assert sum(f"q{i} " in t for t in texts) == 1, (i, texts)
    assert sum(END_OF_CONVERSATION in t for t in texts) == 1 and END_OF_CONVERSATION in texts[-1]
    assert [r["ends_conversation"] for r in rows] == [False] * (len(rows) - 1) + [True]
    for row, text in zip(rows, texts):
        first = text.split()[0]
        if first.startswith("q") and first != "q0":  # the AI turn it answers is in the window (its end at least)
            before = tokenizer.decode(row["input_ids"]).split("<|im_start|>assistant\n" + first)[0]
            answered = before.rsplit("<|im_start|>user\n", 1)[1].removesuffix("<|im_end|>\n")
            assert answered and example["messages"][2 * int(first[1:]) - 1]["content"].endswith(answered)


def test_head_cut_never_trains_a_long_conversations_end_but_windows_do(tokenizer):
    example = conversation(9)
    head = encode_for_training(tokenizer, example, system=USER_MODEL_SYSTEM, max_length=128)
    assert END_OF_CONVERSATION not in learned(tokenizer, head)
    rows = encode_windows(tokenizer, example, speaker="user", system=USER_MODEL_SYSTEM, max_length=128)
    assert END_OF_CONVERSATION in learned(tokenizer, rows[-1])


def test_assistant_control_and_conversations_without_an_end(tokenizer):
    example = {**conversation(4), "ends_conversation": False}
    rows = encode_windows(tokenizer, example, speaker="user", system=USER_MODEL_SYSTEM, max_length=96)
    assert not any(r["ends_conversation"] for r in rows)
    assert all(END_OF_CONVERSATION not in learned(tokenizer, r) for r in rows)
    ai = encode_windows(tokenizer, example, speaker="assistant", system=None, max_length=96)
    texts = [learned(tokenizer, r) for r in ai]
    assert all(sum(f"a{i} " in t for t in texts) == 1 for i in range(4))


def test_end_share_sets_the_share_of_sampled_windows_that_end(tokenizer):
    from trainer.train import TrainConfig, check_config, tokenize_split
    from userlm.io import UserError

    examples = [conversation(6 + i % 3) for i in range(12)]
    cfg = TrainConfig(max_length=96, seed=3)
    natural, ends = tokenize_split(tokenizer, examples, cfg, limit=40)
    assert len(natural) == 40 and ends < 20
    cfg.end_share = 0.5
    _, ends = tokenize_split(tokenizer, examples, cfg, limit=20, end_share=cfg.end_share)
    assert ends == 10
    _, ends = tokenize_split(tokenizer, examples, cfg, limit=40, end_share=0.5)
    assert ends == 12  # as far as there are ends: one a conversation
    with pytest.raises(UserError, match="end_share needs"):
        check_config(TrainConfig(end_share=0.5, max_steps=-1))
