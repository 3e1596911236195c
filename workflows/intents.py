"""`userlm data intents DATA_DIR`: an instruct model writes each prepared conversation's intent.

Batched through any backend (hf, openai-compatible servers such as `vllm serve`, vllm), cached by content
hash (writer + prompt), each appended as it finishes so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from userlm.config import check_fields, option, to_dict
from userlm.data.intents import (
    INTENTS_FILE,
    INTENTS_SUMMARY,
    check_intent,
    clean_intent,
    first_human_turn,
    gets_intent,
    intent_key,
    pick,
    read_intent_records,
    writer_messages,
)
from userlm.data.prepare import SPLITS, load_manifest, read_split
from userlm.io import UserError, append_jsonl, atomic_write_json
from userlm.models import DEFAULT_ASSISTANT


@dataclass
class IntentsConfig:
    data_dir: str = option("work/data", "a prepared data directory")
    model: str = option(DEFAULT_ASSISTANT, "the writer: any instruct model, or a served one with backend=openai")
    backend: str = option("hf", "hf | openai | vllm")
    backend_options: dict = option(factory=dict, flag="backend-arg",
                                   help="an option of the backend (repeatable KEY=VALUE), e.g. "
                                        "base_url=http://127.0.0.1:8000/v1")
    splits: list = option(factory=lambda: list(SPLITS), flag="split", help="splits to write intents for (repeatable)")
    limit: int | None = option(None, "examples per split (a seeded sample, the one `userlm train` takes; default: all)", min=1)
    split_limits: dict[str, int] = option(factory=dict, flag="split-limit", metavar="SPLIT=N",
                                          help="cap one split over --limit (repeatable SPLIT=N)")
    seed: int = option(0, "seed of the sample")
    # The examples a `userlm train` run with intent=mixed, the same seed and intent_share=share gives an intent
    # (the others would never read theirs).
    share: float = option(1.0, "below 1: only the seeded share of training examples an intent=mixed run uses", min=0, max=1)
    batch_size: int = option(16, "prompts in flight at once", min=1)
    max_new_tokens: int = option(64, "tokens per intent at most", min=1)
    max_words: int = option(60, "longer intents are flagged too_long", min=1)
    max_copied: float = option(0.5, "intents whose word trigrams come from the first turn this much are flagged copied", min=0, max=1)

    def __post_init__(self):
        check_fields(self)


def _wanted(cfg: IntentsConfig) -> list[tuple[str, dict]]:
    unknown = set(cfg.splits) - set(SPLITS) | set(cfg.split_limits) - set(SPLITS)
    if unknown:
        raise UserError(f"unknown split(s) {sorted(unknown)} (known: {', '.join(SPLITS)})")
    out = []
    for split in cfg.splits:
        limit = cfg.split_limits.get(split, cfg.limit)
        if limit is not None and limit < 0:
            raise UserError(f"limit for {split} must be >= 0, got {limit}")
        out += [(split, ex) for ex in pick(read_split(cfg.data_dir, split), limit, cfg.seed)
                if split != "train" or cfg.share >= 1 or gets_intent(ex["id"], cfg.seed, cfg.share)]
    return out


def write_intents(cfg: IntentsConfig, progress=None) -> dict:
    from userlm.locks import locked

    with locked(cfg.data_dir, "data directory"):  # one writer of intents.jsonl (and no prepare replacing it)
        return _write_intents(cfg, progress)


def _write_intents(cfg: IntentsConfig, progress=None) -> dict:
    from userlm.backends import GenerationRequest, Sampling, backend_options, get_backend

    load_manifest(cfg.data_dir)
    options = backend_options([cfg.backend], cfg.backend_options)[cfg.backend]  # checked before any work
    if cfg.backend == "hf":  # every writer prompt opens with the same system prompt and worked example (about
        # half of its tokens): the hf backend computes them once (the demo's 137 intents are the same either way)
        options.setdefault("shared_prefix", 4)
    path = Path(cfg.data_dir) / INTENTS_FILE
    wanted = [(split, ex, msgs, intent_key(cfg.model, msgs, cfg.max_new_tokens))
              for split, ex in _wanted(cfg) for msgs in [writer_messages(ex)]]
    records = read_intent_records(cfg.data_dir)
    written_intents = {r["key"]: r["intent"] for r in records}  # the cache, then what this call writes
    have = {(r["example_id"], r["key"]) for r in records}
    started, written = time.time(), 0

    def record(split: str, ex: dict, key: str, intent: str) -> None:
        flags = check_intent(intent, first_human_turn(ex), cfg.max_words, cfg.max_copied)
        append_jsonl(path, {"example_id": ex["id"], "split": split, "key": key, "writer": cfg.model,
                            "intent": intent, "flags": flags})

    todo, copies = [], []  # copies: examples whose writer prompt another example has: its intent, their id
    planned = set()
    for split, ex, msgs, key in wanted:
        if (ex["id"], key) in have:
            continue
        if key in written_intents or key in planned:
            copies.append((split, ex, key))
        else:
            planned.add(key)
            todo.append((split, ex, msgs, key))
    if todo:
        backend = get_backend(cfg.backend, cfg.model, **options)
        greedy = Sampling(temperature=0.0, top_p=1.0, max_new_tokens=cfg.max_new_tokens)
        # up to batch_size prompts in flight, the next submitted as soon as one finishes (on the hf backend it
        # joins the running batch), each intent appended as it comes
        requests = [GenerationRequest(msgs, greedy, seed=0) for _, _, msgs, _ in todo]
        for i, out in backend.generate_each(requests, in_flight=cfg.batch_size):
            split, ex, _, key = todo[i]
            written_intents[key] = clean_intent(out.text)
            record(split, ex, key, written_intents[key])
            written += 1
            if progress:
                progress(written, len(todo))
    for split, ex, key in copies:
        record(split, ex, key, written_intents[key])
    return _summarise(cfg, wanted, written, time.time() - started)


def _summarise(cfg: IntentsConfig, wanted: list, written: int, seconds: float) -> dict:
    pairs = {(ex["id"], key) for _, ex, _, key in wanted}
    mine = [r for r in read_intent_records(cfg.data_dir) if (r["example_id"], r["key"]) in pairs]
    flags = Counter(f for r in mine for f in r["flags"])
    summary = {
        "writer": cfg.model, "backend": cfg.backend, "config": to_dict(cfg),
        "examples": len(wanted), "written_now": written, "from_cache": len(wanted) - written,
        "usable": sum(not r["flags"] for r in mine), "flagged": dict(flags),
        "by_split": dict(Counter(r["split"] for r in mine)), "seconds": round(seconds, 1),
        "mean_words": round(sum(len(r["intent"].split()) for r in mine) / len(mine), 1) if mine else None,
    }
    atomic_write_json(Path(cfg.data_dir) / INTENTS_SUMMARY, summary)
    return summary
