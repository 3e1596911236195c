"""Batched self-play loop vs a naive loop (one conversation at a time, plain `generate`), same models,
scenarios and token budget, measured side by side in one run. Also the share of the memory-bandwidth limit
that decoding reaches: bytes of weights read per decode step x decode steps/s over measured copy bandwidth."""

import argparse
import time

import torch

from simulator.backends import get_backend
from simulator.loop import Conversation, Side, run_conversations
from simulator.run import UserSpec, conversation_seed, user_system
from simulator.scenarios import load_scenarios
from userlm.chat import PROMPTED_USER_SYSTEM, prompt_for
from userlm.models import DEFAULT_ASSISTANT


def copy_bandwidth_gbs() -> float:
    x = torch.empty(256 * 2**20 // 4, dtype=torch.float32)
    y = torch.empty_like(x)
    y.copy_(x)
    started = time.perf_counter()
    for _ in range(5):
        y.copy_(x)
    return 2 * x.numel() * 4 * 5 / (time.perf_counter() - started) / 1e9  # bytes read + written


def conversations(scenarios, n):
    jobs = [(s, i) for i in range(n) for s in scenarios][:n]
    return [Conversation(s, i, conversation_seed(0, s.id, i)) for s, i in jobs]


def naive(backend, convs, user: UserSpec):
    """One conversation at a time, one turn at a time, with HF's own sampling."""
    model, tok = backend.model, backend.tokenizer
    tokens = 0
    for conv in convs:
        for _ in range(conv.scenario.max_turns):
            for speaker, sampling, system in (("user", conv.scenario.user_sampling, user_system(user, conv.scenario)),
                                              ("assistant", conv.scenario.assistant_sampling, None)):
                history = [{"role": t["role"], "content": t["text"]} for t in conv.turns]
                ids = tok(prompt_for(tok, history, speaker, system), return_tensors="pt", add_special_tokens=False)
                with torch.inference_mode():
                    out = model.generate(**ids, max_new_tokens=sampling.max_new_tokens, do_sample=True,
                                         temperature=sampling.temperature, top_p=sampling.top_p,
                                         eos_token_id=backend.stop_ids, pad_token_id=tok.pad_token_id)
                new = out[0, ids["input_ids"].shape[1]:]
                tokens += len(new)
                conv.turns.append({"role": speaker, "text": tok.decode(new, skip_special_tokens=True)})
    return tokens


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--conversations", type=int, default=32)
    parser.add_argument("--naive-conversations", type=int, default=8, help="the naive loop is slow; its rate is per token")
    parser.add_argument("--scenarios", default="scenarios/smoke")
    parser.add_argument("--max-turns", type=int, default=2)
    args = parser.parse_args()
    torch.manual_seed(0)
    scenarios = [s.__class__(**{**s.__dict__, "max_turns": args.max_turns}) for s in load_scenarios(args.scenarios)]
    backend = get_backend("hf", DEFAULT_ASSISTANT, quantization="none", max_batch=args.conversations)
    user = UserSpec("prompted", DEFAULT_ASSISTANT, PROMPTED_USER_SYSTEM)
    bandwidth = copy_bandwidth_gbs()
    weight_bytes = sum(p.numel() * p.element_size() for p in backend.model.parameters())

    started = time.perf_counter()
    naive_tokens = naive(backend, conversations(scenarios, args.naive_conversations), user)
    naive_rate = naive_tokens / (time.perf_counter() - started)

    steps = {"n": 0}
    original = backend.model.forward

    def counting_forward(*a, **k):
        steps["n"] += 1
        return original(*a, **k)

    backend.model.forward = counting_forward
    tokens = {"n": 0}
    user_side = Side(backend, "user", lambda s: user_system(user, s))
    assistant_side = Side(backend, "assistant", lambda s: None)
    started = time.perf_counter()
    run_conversations(conversations(scenarios, args.conversations), user_side, assistant_side, args.conversations,
                      on_finish=lambda c: None, on_step=lambda live, n: tokens.__setitem__("n", tokens["n"] + n))
    seconds = time.perf_counter() - started
    backend.model.forward = original
    batched_rate = tokens["n"] / seconds
    achieved = weight_bytes * steps["n"] / seconds / 1e9
    print(f"machine: {torch.get_num_threads()} threads, copy bandwidth {bandwidth:.1f} GB/s; weights {weight_bytes / 1e6:.0f} MB fp32")
    print(f"naive   ({args.naive_conversations} conversations, one at a time): {naive_tokens} tokens, {naive_rate:.1f} tok/s")
    print(f"batched ({args.conversations} live conversations): {tokens['n']} tokens, {batched_rate:.1f} tok/s, "
          f"{steps['n']} forward passes in {seconds:.1f} s")
    print(f"speed-up batched / naive: {batched_rate / naive_rate:.2f}x (goal >= 6x at 32 live conversations)")
    print(f"weights read per second: {achieved:.1f} GB/s = {achieved / bandwidth:.2f} of the measured copy bandwidth")


if __name__ == "__main__":
    main()
