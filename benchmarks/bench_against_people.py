"""Does the against-people evaluator tell a broken user from people, and hold chance on people? On a prepared
data dir's held-out test conversations (one per tree), replay-format units are built by hand with the user turns
written by: the same people (trivial), another person at the same positions (the null), a user that only says
"ok" / "?" / "ok thanks", and a user repeating one sentence. Prints discriminability, its people-vs-people and
self controls, distribution MMD^2 (embedding x style) and embedding MMD^2 with their controls, each with its 95% bootstrap CI, and the seconds each took.

    python benchmarks/bench_against_people.py DATA_DIR [--conversations 120]"""

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def fmt(ci):
    if ci.get("value") is None:
        return "n/a"
    return f"{ci['value']:.3f} [{ci['ci_low']:.3f}, {ci['ci_high']:.3f}]"


def main():
    from evaluators.against_people import evaluate
    from evaluators.cache import embed
    from evaluators.reference import transcript_units
    from userlm.data.prepare import read_split

    parser = argparse.ArgumentParser()
    parser.add_argument("data_dir")
    parser.add_argument("--conversations", type=int, default=120)
    parser.add_argument("--no-embed", action="store_true", help="discriminability only (no MiniLM)")
    args = parser.parse_args()
    by_tree = {}
    for ex in read_split(args.data_dir, "test"):
        by_tree.setdefault(ex["tree_id"], [{"role": m["role"], "text": m["content"]} for m in ex["messages"]])
    convs = [c for c in by_tree.values() if c[0]["role"] == "user"]
    main_set, others = convs[:args.conversations], convs[args.conversations:]

    def users(msgs):
        return [m["text"] for m in msgs if m["role"] == "user"]

    def replay(generate):
        records, pool = [], list(others)
        for i, msgs in enumerate(main_set):
            gen = generate(i, msgs, pool)
            if gen is None:
                continue
            k = iter(gen)
            points = [{"index": j, "real": m["text"], "generated": next(k), "ended": False,
                       "person_ended": False if j else None, "decision": j > 0}
                      for j, m in enumerate(msgs) if m["role"] == "user"]
            turns = [{"role": m["role"], "text": m["text"]} for m in msgs]
            records.append({"scenario_id": "replay:test", "sample": i, "stop_reason": "replayed", "turns": turns,
                            "points": points, "conversation_id": str(i)})
        return transcript_units(records)

    def other_person(i, msgs, pool):
        other = next((o for o in pool if len(users(o)) >= len(users(msgs))), None)
        if other is not None:
            pool.remove(other)
            return users(other)
        return None

    users_ = {"people themselves": lambda i, msgs, pool: users(msgs),
              "another person (null)": other_person,
              "ok / ? / ok thanks": lambda i, msgs, pool: [["ok", "?", "ok thanks"][j % 3]
                                                            for j in range(len(users(msgs)))],
              "one sentence": lambda i, msgs, pool: ["Can you tell me more about that?"] * len(users(msgs))}
    print(f"{len(main_set)} test conversations of {args.data_dir} (one per tree), {len(others)} others")
    for name, generate in users_.items():
        started = time.time()
        units = replay(generate)
        metrics, card = evaluate(units, None, embed=None if args.no_embed else embed)
        print(f"{name} ({len(units)} conversations, {card['discriminator']['turns']} turns, "
              f"{time.time() - started:.1f} s): " + "; ".join(
                  f"{m} {fmt(metrics[m]['run'])}" for m in metrics if m in ("discriminability", "discriminability_people",
                                                              "discriminability_self", "distribution_mmd",
                                                              "distribution_mmd_people", "embedding_mmd",
                                                              "embedding_mmd_people")))


if __name__ == "__main__":
    from userlm.threads import machine_line

    print(machine_line(), flush=True)
    main()
