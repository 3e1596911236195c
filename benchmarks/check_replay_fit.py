"""Replay's per-message fitting (simulator/replay_fit.py) against `fit_history` at every point of a prepared data
dir's replay plan: the same messages and cut at each point, and the host seconds of both; and how much of the
points' prompts the blocks cut lets consecutive points share (their tokens summed, and those of each run of
points with one start, the longest prompt of each run: what the engine computes when a conversation's points
are prefilled together).

    python benchmarks/check_replay_fit.py MODEL DATA [--limit 128] [--context-tokens 2048]"""

from __future__ import annotations

import argparse
import time

from simulator.replay_fit import fit_points
from simulator.replay_plan import fit_history, plan_points, prompt_tokens, replay_plan
from userlm.chat import USER_MODEL_SYSTEM, render_ids


def main():
    from transformers import AutoTokenizer

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model")
    parser.add_argument("data")
    parser.add_argument("--limit", type=int, default=128)
    parser.add_argument("--context-tokens", type=int, default=2048)
    args = parser.parse_args()
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    budget = args.context_tokens - 160
    examples, _, _ = replay_plan(args.data, "test", args.limit, False)
    plans = [[p["index"] for p in plan_points(ex)] for ex in examples]
    started = time.perf_counter()
    exact = [[fit_history(tokenizer, [{"role": m["role"], "content": m["content"]} for m in ex["messages"][:i]],
                          USER_MODEL_SYSTEM, budget) for i in idx] for ex, idx in zip(examples, plans)]
    t_exact = time.perf_counter() - started
    fitted = {}
    for cut in ("latest", "blocks"):
        started = time.perf_counter()
        fitted[cut] = [fit_points(tokenizer, ex["messages"], idx, USER_MODEL_SYSTEM, budget, cut)
                       for ex, idx in zip(examples, plans)]
        fitted[cut + " s"] = time.perf_counter() - started
    points = sum(map(len, plans))
    same = sum(a == b[:2] for x, y in zip(exact, fitted["latest"]) for a, b in zip(x, y))
    joined = [(ids, messages) for conv in fitted["latest"] + fitted["blocks"] for messages, _, ids in conv if ids]
    ids_same = sum(ids == render_ids(tokenizer, messages, add_generation_prompt=True) for ids, messages in joined)
    print(f"{len(examples)} conversations, {points} points: fit_history {t_exact:.1f} s, per-message counts "
          f"{fitted['latest s']:.1f} s (blocks {fitted['blocks s']:.1f} s); same messages and cut at {same} of {points}; "
          f"joined prompt ids equal to the prompt tokenized at {ids_same} of {len(joined)} (latest and blocks)")
    for cut in ("latest", "blocks"):
        total = shared = cut_points = 0
        for conv in fitted[cut]:
            lengths = [prompt_tokens(tokenizer, messages) for messages, _, _ in conv]
            total += sum(lengths)
            cut_points += sum(c > 0 for _, c, _ in conv)
            runs: dict[int, int] = {}
            for (_, start, _), n in zip(conv, lengths):
                runs[start] = max(runs.get(start, 0), n)
            shared += sum(runs.values())
        print(f"history_cut={cut}: {cut_points} points cut; prompt tokens {total}, with each run of points of one "
              f"start computed once {shared} ({total / max(shared, 1):.1f}x fewer)")


if __name__ == "__main__":
    from userlm.threads import machine_line

    print(machine_line(), flush=True)
    main()
