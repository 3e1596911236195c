"""One check of the hf backend's token-level scheduler, run on the tiny model (fast tier) and on the embedded
SmolLM2 (slow tier): greedy tokens equal transformers' own `generate` with more requests than slots, a row's
sampled text does not depend on its batch-mates, and a turn that reuses the conversation's KV cache equals one
computed afresh."""


def check_scheduler_against_generate(backend) -> None:
    import torch

    from userlm.backends import GenerationRequest, Sampling
    from userlm.backends.hf import HFBackend

    assert backend.step() == []  # an idle side of the loop is stepped too
    tok = backend.tokenizer
    chats = [[{"role": "user", "content": f"Tell me about idea {i}{', briefly' * (i % 3)}."}] for i in range(5)]
    greedy = Sampling(temperature=0.0, top_p=1.0, max_new_tokens=24)
    outs = backend.generate([GenerationRequest(c, greedy, seed=i) for i, c in enumerate(chats)])
    for chat, out in zip(chats, outs):
        ids = tok(tok.apply_chat_template(chat, tokenize=False, add_generation_prompt=True), return_tensors="pt",
                  add_special_tokens=False)
        with torch.inference_mode():
            ref = backend.model.generate(**ids, max_new_tokens=24, do_sample=False, eos_token_id=backend.stop_ids)
        assert out.text == tok.decode(ref[0, ids["input_ids"].shape[1]:], skip_special_tokens=True)

    hot = Sampling(temperature=0.9, top_p=0.9, max_new_tokens=16)
    alone = backend.generate([GenerationRequest(chats[0], hot, seed=7)])[0].text
    crowded = backend.generate([GenerationRequest(c, hot, seed=7 if i == 0 else i) for i, c in enumerate(chats)])
    assert crowded[0].text == alone

    backend.submit(("conv", "user"), GenerationRequest(chats[0], greedy, seed=1))
    first = []
    while not first:
        first = backend.step()
    follow_up = chats[0] + [{"role": "assistant", "content": first[0][1].text}, {"role": "user", "content": "Why?"}]
    backend.submit(("conv", "user"), GenerationRequest(follow_up, greedy, seed=1))
    assert len(backend.kept[("conv", "user")][0]) > 20  # the first turn's prompt and answer stay cached
    second = []
    while not second:
        second = backend.step()
    backend.release("conv")
    assert not backend.kept
    fresh = HFBackend.__new__(HFBackend)
    fresh.__dict__.update({**backend.__dict__, "kept": {}, "rows": [], "cache": None, "mask": None})
    fresh.waiting = type(backend.waiting)()
    assert fresh.generate([GenerationRequest(follow_up, greedy, seed=1)])[0].text == second[0][1].text
