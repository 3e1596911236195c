"""fit_history (replay's context budget) finds the same cut as cutting one turn at a time, with O(log n)
tokenizations instead of one per turn cut (which made replay host-bound on a GPU: docs/replay-gpu.md)."""

import userlm.history as history_module
from simulator.replay_plan import fit_history, prompt_tokens
from userlm.chat import speaker_view


def one_at_a_time(tokenizer, history, system, budget):
    """The cut the first version found: the oldest turns left out one by one until the rest fits."""
    cut = 0
    while prompt_tokens(tokenizer, speaker_view(history[cut:], "user", system)) > budget and cut < len(history) - 1:
        cut += 1
    return cut


def test_same_cut_as_one_turn_at_a_time_with_few_tokenizations(tiny_model, monkeypatch):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    words = "the user asks about tests and the assistant answers with code".split()
    history = [{"role": "user" if i % 2 == 0 else "assistant",
                "content": " ".join(words[(i * 7 + j) % len(words)] for j in range(5 + (i * 37) % 90))}
               for i in range(41)]
    calls = [0]

    def counted(tok, messages):
        calls[0] += 1
        return prompt_tokens(tok, messages)

    for n in (1, 2, 3, 8, 41):
        for budget in (60, 150, 400, 1000, 100_000):
            want = one_at_a_time(tokenizer, history[:n], "sys", budget)
            calls[0] = 0
            monkeypatch.setattr(history_module, "prompt_tokens", counted)
            messages, cut = fit_history(tokenizer, history[:n], "sys", budget)
            monkeypatch.undo()
            whole = prompt_tokens(tokenizer, speaker_view(history[want:n], "user", "sys")) <= budget
            assert cut == want + (not whole), (n, budget)  # a last turn too long alone is shortened (+1 counted)
            assert prompt_tokens(tokenizer, messages) <= budget
            if n == 41 and budget == 400:  # cutting one at a time tokenized the rest ~37 times here
                assert calls[0] <= 16, calls[0]
