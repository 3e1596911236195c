"""Coverage of compare's intervals, measured by simulation on real conversations (tests/test_coverage.py).

The population is the first `size` conversations of the embedded ShareGPT file (their first thread's user
turns); each repetition draws n of them without replacement, computes each gated metric's interval
(evaluators/stats.py) and checks it holds the population's value; A/A repetitions draw two independent
samples of n and check that the paired delta's interval holds 0. Where a metric reads a model (the AI-voice
classifier's P(AI), MiniLM's embeddings), a cheap stand-in of the same shape takes its place so the fast tier
can run it: P(AI) a smooth function of turn length and punctuation in [0, 1], embeddings hashed bag-of-words
vectors (normalized, as MiniLM's are). Intervals depend on the conversations' spread and clustering, which
these keep; truncation is a turn over 150 words (as `max_new_tokens` would cut it)."""

from __future__ import annotations

import math

import numpy as np

from evaluators import metrics as M
from evaluators.stats import interval, paired_delta

# The default gate's secondaries (configs/compare-thresholds.yaml), then other metrics measured for the docs.
GATED = ["human_likeness", "role_adherence", "truncated_share", "diversity_between"]
MEASURED = [*GATED, "ai_voice_rate", "termination_rate", "distinct_2_pair"]


def first_thread(tree) -> list[tuple[str, str]]:
    out, node = [], tree.root
    while node is not None:
        out.append((node.role, node.text))
        node = node.children[0] if node.children else None
    return out


def population(size: int = 1500) -> list[dict]:
    from userlm.data.sharegpt import embedded_sharegpt_path, read_sharegpt
    from userlm.data.trees import ReadReport

    units = []
    for tree in read_sharegpt(embedded_sharegpt_path(), ReadReport(), skip_bad=True):
        thread = first_thread(tree)
        turns = [" ".join(text.split()[:400]) for role, text in thread if role == "user" and text.strip()]
        if turns:
            units.append({"id": tree.tree_id, "scenario_id": "real", "user_turns": turns,
                          "truncated": [M.words(t) > 150 for t in turns],
                          "ended_by_user": thread[-1][0] == "user" or len(turns) <= 2})
        if len(units) == size:
            return units
    return units


def stand_in_inputs(units: list[dict]) -> M.Inputs:
    from sklearn.feature_extraction.text import HashingVectorizer

    texts = M.distinct_turns(units)
    words = np.asarray([M.words(t) for t in texts], dtype=float)
    marks = np.asarray([sum(t.count(c) for c in ",.;:!") / max(M.words(t), 1) for t in texts])
    p_ai = 1 / (1 + np.exp(-(np.log1p(words) - 3.5 + 4 * (marks - 0.1))))
    vectors = HashingVectorizer(n_features=512, alternate_sign=False, norm="l2").transform(texts).toarray()
    return M.Inputs(p_ai=dict(zip(texts, p_ai)), vectors=dict(zip(texts, vectors)))


def coverage(units: list[dict], inputs: M.Inputs, sizes=(4, 8, 15, 30), reps: int = 100, seed: int = 0,
             metrics=MEASURED) -> dict:
    """{metric: {"single": {n: coverage}, "aa": {n: coverage}, "truth": value}}."""
    rng = np.random.default_rng(seed)
    draws = {n: [rng.choice(len(units), 2 * n, replace=False) for _ in range(reps)] for n in sizes}
    out = {}
    for name in metrics:
        metric = M.METRICS[name]
        fn = metric.statistic(inputs)
        truth = fn(units)
        single, aa = {}, {}
        for n in sizes:
            hits = aa_hits = 0
            for idx in draws[n]:
                a, b = [units[i] for i in idx[:n]], [units[i] for i in idx[n:]]
                ci = interval(a, fn, bounded=metric.bounded)
                hits += bool(ci["ci_low"] <= truth <= ci["ci_high"])
                d = paired_delta(a, b, fn, bounded=metric.bounded)
                aa_hits += bool(d["ci_low"] <= 0 <= d["ci_high"]) or not math.isfinite(d["delta"])
            single[n], aa[n] = hits / reps, aa_hits / reps
        out[name] = {"truth": truth, "single": single, "aa": aa}
    return out


def table(result: dict) -> str:
    sizes = list(next(iter(result.values()))["single"])
    lines = ["| metric | population value | " + " | ".join(f"n={n}" for n in sizes) + " | A/A delta, "
             + ", ".join(f"n={n}" for n in sizes) + " |", "|---" * (3 + len(sizes)) + "|"]
    for name, r in result.items():
        lines.append(f"| {name} | {r['truth']:.3f} | " + " | ".join(f"{r['single'][n]:.2f}" for n in sizes)
                     + " | " + ", ".join(f"{r['aa'][n]:.2f}" for n in sizes) + " |")
    return "\n".join(lines)


if __name__ == "__main__":  # the long measurement: python tests/coverage_sim.py [reps]
    import sys
    import time

    started = time.time()
    pop = population()
    print(table(coverage(pop, stand_in_inputs(pop), reps=int(sys.argv[1]) if len(sys.argv) > 1 else 400)))
    print(f"{len(pop)} conversations, {time.time() - started:.0f} s")
