"""Rows for the AI-voice classifier, taken from prepared data directories only.

A turn's split is its conversation's split in the prepared directory (`userlm data prepare`), so the classifier
trains on train, picks its features on validation and reports on test, and the real-human reference (test split)
never reaches its training rows. Texts that also occur in a held-out split (a "thanks!" in two conversations) are
dropped from the training side, so no held-out text is ever trained on."""

from __future__ import annotations

import random
import re
from pathlib import Path

from evaluators.classifier_config import SCENARIOS

SPLITS = ("train", "validation", "test")
# Generated (machine-written) turns are spread over the splits like this, by the split of their prompt.
# The test split gets 0.4 so that each generator has turns enough for its own AUROC and CI.
GENERATED_SHARE = {"train": 0.5, "validation": 0.1, "test": 0.4}
# Looped copies of real turns (evaluators/degenerate.py), labelled AI, spread the same way.
DEGENERATE_SHARE = {"train": 0.7, "validation": 0.1, "test": 0.2}


def family(source: str) -> str:
    """'oasst:file.trees.jsonl' -> 'oasst'; 'sharegpt' -> 'sharegpt'."""
    return source.split(":", 1)[0]


def words(text: str) -> int:
    return len(text.split())


def cut_to_words(text: str, n: int) -> str:
    """The text's first n words, cut at a word boundary, whitespace and line breaks inside kept."""
    ends = [m.end() for m in re.finditer(r"\S+", text)]
    return text if n >= len(ends) else text[: ends[max(n, 1) - 1]]


def data_rows(data_dirs: list[str], cap: int, seed: int) -> tuple[dict, dict]:
    """({split: [row]}, {split: [(first human turn, first AI reply, group, family)]}).
    row = {text, label (1 = AI), source ('sharegpt:human', 'oasst:assistant', ...), data (family), group}."""
    from userlm.data.prepare import read_split

    rows = {s: {} for s in SPLITS}
    openings = {s: [] for s in SPLITS}
    for data_dir in data_dirs:
        for split in SPLITS:
            for ex in read_split(data_dir, split):
                fam = family(ex["source"])
                msgs = ex["messages"]
                for m in msgs:
                    text = m["content"].strip()
                    if text and text not in rows[split]:
                        label = int(m["role"] == "assistant")
                        rows[split][text] = {"text": text, "label": label, "data": fam, "group": ex["tree_id"],
                                             "source": f"{fam}:{'assistant' if label else 'human'}"}
                if len(msgs) >= 2 and msgs[0]["role"] == "user" and msgs[1]["role"] == "assistant":
                    openings[split].append((msgs[0]["content"].strip(), msgs[1]["content"].strip(), ex["tree_id"], fam))
    held_out = set(rows["validation"]) | set(rows["test"])
    rows["train"] = {t: r for t, r in rows["train"].items() if t not in held_out}
    rows["validation"] = {t: r for t, r in rows["validation"].items() if t not in rows["test"]}
    rng = random.Random(seed)
    out = {}
    for split in SPLITS:
        by_source: dict = {}
        for r in rows[split].values():
            by_source.setdefault(r["source"], []).append(r)
        out[split] = [r for source in sorted(by_source)
                      for r in rng.sample(by_source[source], min(cap, len(by_source[source])))]
    for split in SPLITS:  # one opening per conversation tree
        seen, unique = set(), []
        for o in openings[split]:
            if o[2] not in seen and o[0] and o[1]:
                seen.add(o[2])
                unique.append(o)
        openings[split] = unique
    return out, openings


def scenario_intents(folder: str | Path = SCENARIOS) -> list[tuple[str, str]]:
    """(scenario id, the prompted-user system prompt) for the scenarios in `folder` (not the smoke set, which the
    demo evaluates on)."""
    from userlm.chat import PROMPTED_USER_SYSTEM
    from userlm.scenarios import load_scenarios
    from userlm.users import UserSpec, user_system

    if not Path(folder).exists():
        return []
    spec = UserSpec("prompted", "", PROMPTED_USER_SYSTEM)
    return [(s.id, user_system(spec, s.intent, s.persona)) for s in load_scenarios(str(folder)) if s.intent and not s.opening]


def generated_rows(cfg, openings: dict, console=None) -> dict:
    """Machine-written turns of the stock model, by split: its replies to real first human turns (the voice a
    simulated user slips into), and the adversary: the same model told to act as a user (the prompted baseline's
    voice), writing the next user turn of real conversations and opening turns for scenario intents."""
    from userlm.backends import GenerationRequest, Sampling, get_backend
    from userlm.chat import PROMPTED_USER_SYSTEM, speaker_view

    say = console.print if console else print
    rng = random.Random(cfg.seed + 1)
    model = cfg.stock_model.split(":")[-1]
    jobs = []  # (split, source, group, data, messages)
    for split, share in GENERATED_SHARE.items():
        pool = [o for o in openings[split] if 3 <= words(o[0]) <= 80]
        n_stock, n_adv = round(cfg.stock_turns * share), round(cfg.adversary_turns * share)
        n_intents = n_adv // 2 if split == "train" else 0
        picks = rng.sample(pool, min(len(pool), n_stock + n_adv - n_intents))
        for first, _, group, fam in picks[:n_stock]:
            jobs.append((split, f"stock:{model}", group, fam, [{"role": "user", "content": first}]))
        prompted = PROMPTED_USER_SYSTEM.format(intent="")
        for first, reply, group, fam in picks[n_stock:]:
            history = [{"role": "user", "content": first}, {"role": "assistant", "content": reply[:600]}]
            jobs.append((split, f"prompted-user:{model}", group, fam, speaker_view(history, "user", prompted)))
        intents = scenario_intents(cfg.adversary_scenarios) if n_intents else []
        for i in range(min(n_intents, len(intents) * 4)):
            sid, system = intents[i % len(intents)]
            jobs.append((split, f"prompted-user:{model}", f"scenario:{sid}", "scenario",
                         speaker_view([], "user", system)))
    if not jobs:
        return {s: [] for s in SPLITS}
    say(f"classifier: generating {len(jobs)} turns with {cfg.stock_model} (replies, and turns told to act as a user)")
    backend = get_backend("hf", cfg.stock_model, quantization="none", max_batch=32)
    sampling = Sampling(temperature=0.7, top_p=0.95, max_new_tokens=96)
    import time

    started = time.time()
    outs = backend.generate([GenerationRequest(m, sampling, seed=i) for i, (*_, m) in enumerate(jobs)])
    say(f"classifier: generated {sum(o.tokens for o in outs):,} tokens in {time.time() - started:.0f} s")
    from userlm.chat import strip_end_marker

    out = {s: [] for s in SPLITS}
    seen = set()
    for (split, source, group, fam, _), o in zip(jobs, outs):
        text = strip_end_marker(o.text)[0].strip()
        if text and text not in seen:
            seen.add(text)
            out[split].append({"text": text, "label": 1, "source": source, "data": fam, "group": group})
    return out


CUT_WORDS = (5, 40)  # the range of lengths both classes are cut to for the length-matched AUROC


def degenerate_rows(splits: dict, n: int, seed: int) -> dict:
    """n looped texts made from each split's own AI turns, as AI turns of source 'degenerate' (loops of human
    turns labelled AI taught the bag-of-n-grams model that people's words are AI: whole AUROC 0.950 -> 0.910)."""
    from evaluators.degenerate import degenerate_variants

    out = {}
    for i, (split, share) in enumerate(DEGENERATE_SHARE.items()):
        rows = splits.get(split, [])
        made = degenerate_variants([r["text"] for r in rows if r["label"] == 1], round(n * share), seed + i)
        out[split] = [{"text": t, "label": 1, "source": "degenerate", "data": "degenerate", "group": f"degenerate:{j}"}
                      for j, t in enumerate(dict.fromkeys(made))]
    return out


def length_matched(ai_rows: list[dict], human_rows: list[dict], seed: int,
                   span: tuple[int, int] = CUT_WORDS) -> tuple[list[dict], list[dict]]:
    """(humans, ais) cut alike: target lengths n drawn uniformly from `span`, and for each one a human and an AI
    turn of at least n words, both cut to their first n words at a word boundary. Both classes then have the
    same length distribution and are cut mid-sentence equally often (before, only AI turns were cut: the cut
    itself was a signal). Turns shorter than span[0] words take no part; a target no unused turn of one class
    can reach is dropped. Each row gains `cut` (True where words were dropped)."""
    rng = random.Random(seed)
    lo, hi = span
    targets = sorted((rng.randint(lo, hi) for _ in range(min(len(ai_rows), len(human_rows)))), reverse=True)
    classes = []
    for rows in (human_rows, ai_rows):
        order = sorted((r for r in rows if words(r["text"]) >= lo), key=lambda r: -words(r["text"]))
        classes.append(order)
    picked: list[list[dict]] = [[], []]
    pools: list[list[dict]] = [[], []]
    at = [0, 0]
    for n in targets:  # longest targets first: the pool of turns long enough only grows
        for c, order in enumerate(classes):
            while at[c] < len(order) and words(order[at[c]]["text"]) >= n:
                pools[c].append(order[at[c]])
                at[c] += 1
        if not (pools[0] and pools[1]):
            continue
        for c in (0, 1):
            i = rng.randrange(len(pools[c]))
            pools[c][i], pools[c][-1] = pools[c][-1], pools[c][i]
            r = pools[c].pop()
            picked[c].append({**r, "text": cut_to_words(r["text"], n), "cut": n < words(r["text"])})
    return picked[0], picked[1]


BUCKETS = (1, 4, 9, 17, 33, 65, 129)  # word-count lower edges: 1-3, 4-8, 9-16, 17-32, 33-64, 65-128, 129+


def bucket(n: int) -> int:
    return max(i for i, edge in enumerate(BUCKETS) if n >= edge) if n >= 1 else 0


def bucket_name(i: int) -> str:
    return f"{BUCKETS[i]}-{BUCKETS[i + 1] - 1}" if i + 1 < len(BUCKETS) else f"{BUCKETS[i]}+"


def balanced_weights(rows: list[dict]):
    """Sample weights giving human and AI turns equal weight within every length bucket, so that length alone
    carries no signal in the training objective (a bucket with one class only keeps weight 1 per row)."""
    import numpy as np

    counts: dict = {}
    for r in rows:
        key = (bucket(words(r["text"])), r["label"])
        counts[key] = counts.get(key, 0) + 1
    w = []
    for r in rows:
        b = bucket(words(r["text"]))
        both = counts.get((b, 0), 0) and counts.get((b, 1), 0)
        w.append((counts[(b, 0)] + counts[(b, 1)]) / (2 * counts[(b, r["label"])]) if both else 1.0)
    w = np.asarray(w, dtype=float)
    return w / w.mean()
