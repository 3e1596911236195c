"""`prompt_ids.py`: a conversation's next prompt tokenized from its previous prompt's last special token on gives the
ids a whole tokenization gives; tokenizers where that does not hold by construction are refused; a difference found
by the check turns it off; and the hf backend's text is the same with it and without."""

import pytest

ODD = ["Hi <|im_end|> there", "  two leading spaces\n\n", "naïve café — 東京 🚆", "<|im_start|>user\nfake turn",
       "ends with a space ", "\ttabs\tand\r\nCRLF", "x" * 300]


def conversation_prompts(tokenizer, turns: int = 8):
    """The user side's prompts of one conversation, turn by turn (each extends the last), with odd contents."""
    from userlm.chat import render

    messages, prompts = [{"role": "system", "content": "You plan trips."}], []
    for t in range(turns):
        messages.append({"role": "user", "content": f"Question {t}: {ODD[t % len(ODD)]}"})
        prompts.append(render(tokenizer, messages, add_generation_prompt=True))
        messages.append({"role": "assistant", "content": ODD[(t + 3) % len(ODD)] + f" answer {t}"})
    return prompts


def test_split_ids_equal_whole_ids(tiny_model):
    from transformers import AutoTokenizer

    from userlm.backends.prompt_ids import PromptIds, unsupported

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    assert unsupported(tokenizer) is None
    ids = PromptIds(tokenizer)
    convs = [conversation_prompts(tokenizer) for _ in range(3)]
    for t in range(len(convs[0])):  # three conversations' turn t in one batch, as a turn's end submits them
        keys, texts = [(c, "user") for c in range(3)], [conv[t] for conv in convs]
        got = ids.encode(keys, texts)
        assert got == tokenizer(texts, add_special_tokens=False)["input_ids"]
    assert ids.reason is None and ids.verified > 0 and ids.reused > ids.encoded  # most ids came from the last prompt
    ids.release(0)
    assert (0, "user") not in ids.heads and (1, "user") in ids.heads
    # a prompt that does not extend its key's last one (another conversation's text) is tokenized whole
    other = "<|im_start|>user\nsomething else<|im_end|>\n<|im_start|>assistant\n"
    assert ids.encode([(1, "user")], [other]) == [tokenizer(other, add_special_tokens=False)["input_ids"]]


def test_a_difference_turns_it_off(tiny_model, capsys):
    from transformers import AutoTokenizer

    from userlm.backends.prompt_ids import PromptIds

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    ids = PromptIds(tokenizer)
    first, second = conversation_prompts(tokenizer, 2)
    ids.encode(["k"], [first])
    text, head = ids.heads["k"]
    ids.heads["k"] = (text, head[:-2] + head[-1:])  # a head that is not the text's ids
    assert ids.encode(["k"], [second]) == [tokenizer(second, add_special_tokens=False)["input_ids"]]
    assert ids.reason is not None and not ids.heads and "tokenized whole" in capsys.readouterr().out
    assert ids.encode(["k"], [second]) == [tokenizer(second, add_special_tokens=False)["input_ids"]]


def test_refuses_tokenizers_it_cannot_split():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    from userlm.backends.prompt_ids import PromptIds, boundaries, unsupported

    def fast(pre, specials=("<|im_start|>", "<|im_end|>"), normalizer=None, **flags):
        from tokenizers import AddedToken

        tok = Tokenizer(models.WordLevel({"[UNK]": 0, "a": 1}, unk_token="[UNK]"))
        tok.pre_tokenizer, tok.normalizer = pre, normalizer
        wrapped = PreTrainedTokenizerFast(tokenizer_object=tok)
        wrapped.add_special_tokens({"additional_special_tokens": [AddedToken(s, special=True, **flags)
                                                                  for s in specials]})
        return wrapped

    from tokenizers import normalizers

    assert "Metaspace" in unsupported(fast(pre_tokenizers.Metaspace()))
    assert "Prepend" in unsupported(fast(pre_tokenizers.Whitespace(), normalizer=normalizers.Prepend("_")))
    assert "strip" in unsupported(fast(pre_tokenizers.Whitespace(), lstrip=True))
    assert "normalized" in unsupported(fast(pre_tokenizers.Whitespace(), normalized=True))
    # a token inside another one's text, tokens whose text overlaps itself: none splits where it stands
    assert "overlap" in unsupported(fast(pre_tokenizers.Whitespace(), specials=("<s>", "x<s>x", "||")))
    assert list(boundaries(fast(pre_tokenizers.Whitespace(), specials=("<s>", "<s>x"))).values()) == ["<s>x"]  # the longer
    assert unsupported(fast(pre_tokenizers.Whitespace())) is None
    refused = PromptIds(fast(pre_tokenizers.Metaspace()))
    refused.encode(["k"], ["<|im_start|>a a"])
    assert not refused.heads  # nothing kept: every prompt tokenized whole


@pytest.mark.parametrize("static_cache", ["off", "on"])
def test_backend_text_same_with_and_without(tiny_model, static_cache):
    """Three conversations, three turns each, prompts tokenized from the last special token on and whole: the same
    texts, and the split was used."""
    from userlm.backends import GenerationRequest, Sampling
    from userlm.backends.hf import HFBackend

    texts = []
    for suffix in (False, True):
        backend = HFBackend(tiny_model, max_batch=3, static_cache=static_cache, compile_decode="off")
        backend.suffix_tokens = suffix
        chats = [[{"role": "user", "content": f"Plan trip {i}{' cheaply' * i}."}] for i in range(3)]
        for turn in range(3):
            for i, chat in enumerate(chats):
                backend.submit((i, "user"), GenerationRequest(chat, Sampling(0.9, 0.9, 6), seed=10 * turn + i))
            done = {}
            while len(done) < 3:
                done.update(backend.step())
            for i, chat in enumerate(chats):
                chat += [{"role": "assistant", "content": done[(i, "user")].text},
                         {"role": "user", "content": f"And then {turn}?"}]
        texts.append(chats)
        assert (backend.prompt_ids.reused > 0) == suffix
    assert texts[0] == texts[1]

