"""`userlm data prepare`: trees -> threads -> examples whose targets are the human turns -> splits."""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from userlm import END_OF_CONVERSATION, __version__
from userlm.config import check_fields, option, to_dict
from userlm.data.dedup import group_items
from userlm.data.sharegpt_parts import join_parts
from userlm.data.sources import read_source
from userlm.data.trees import Message, ReadReport, Tree
from userlm.io import (
    UserError,
    atomic_directory,
    atomic_write_json,
    read_json,
    seeded_fraction,
    sha256_file,
    sha256_text,
)
from userlm.locks import locked

SPLITS = ("train", "validation", "test")


@dataclass
class PrepareConfig:
    sources: list = option(factory=lambda: ["sharegpt"], flag="source",
                           help="sharegpt | hub:OpenAssistant/oasst1 | PATH (OASST trees or messages, ShareGPT JSON); "
                                "repeatable")
    out: str = option("work/data", "output directory (train/validation/test.jsonl, manifest.json)")
    lang: list = option(factory=list, help="keep these languages (repeatable; default: every language; unlabelled "
                                           "sources such as ShareGPT always pass)")
    keep_deleted: bool = option(False, "keep messages marked deleted")
    keep_unreviewed: bool = option(False, "keep messages whose review_result is false")
    keep_synthetic: bool = option(False, "keep synthetic messages")
    keep_unfinished_trees: bool = option(False, "keep OASST trees whose tree_state is not ready_for_export")
    branches: Literal["all", "best"] = option("all", "all root-to-leaf paths, or the best (lowest rank at each "
                                                     "step)")
    dedup_prefix_targets: bool = option(True, "a human turn shared by several threads is a target in the first only")
    # Chat logs (ShareGPT) record where the person stopped; OASST trees stop growing for reasons of collection.
    end_markers: Literal["auto", "always", "never"] = option(
        "auto", "where an end-of-conversation target goes: auto = only for sources that record where the person "
                "stopped, always, never")
    dedup: bool = option(True, "drop exact repeats; conversations sharing a long human turn share a split")
    dedup_min_words: int = option(8, "human turns of at least this many words link conversations into one split unit", min=1)
    greeting: str = option("", "assistant greeting placed before a conversation the human opens (empty: no context)")
    seed: int = option(0, "seed of the split")
    validation_fraction: float = option(0.05, "share of split units in validation", min=0, max=1)
    test_fraction: float = option(0.05, "share of split units in test", min=0, max=1)
    max_trees_per_source: int | None = option(None, "read at most this many trees (conversations) per source", min=1)
    skip_bad: bool = option(False, "count and skip malformed records instead of stopping")

    def __post_init__(self):
        check_fields(self)


FINISHED_TREE = "ready_for_export"


def drop_reason(msg: Message, cfg: PrepareConfig) -> str | None:
    if msg.deleted and not cfg.keep_deleted:
        return "deleted"
    if msg.review_ok is False and not cfg.keep_unreviewed:
        return "unreviewed"
    if msg.synthetic and not cfg.keep_synthetic:
        return "synthetic"
    return None if msg.text.strip() else "empty"


def _rank_key(msg: Message):
    return (msg.rank is None, msg.rank if msg.rank is not None else 0)


def _size(msg: Message) -> int:
    n, stack = 0, [msg]
    while stack:
        n += 1
        stack += stack.pop().children
    return n


def threads(tree: Tree, cfg: PrepareConfig, dropped: Counter | None = None) -> list[list[Message]]:
    """Root-to-leaf paths over kept messages (a path stops where its children were all filtered).
    `dropped` counts the messages left out by reason: a filtered message and every message below it."""
    dropped = Counter() if dropped is None else dropped
    if reason := drop_reason(tree.root, cfg):
        dropped[reason] += _size(tree.root)
        return []
    paths, stack = [], [[tree.root]]
    while stack:
        path = stack.pop()
        children = []
        for child in path[-1].children:
            if reason := drop_reason(child, cfg) or ("same_role_reply" if child.role == path[-1].role else None):
                dropped[reason] += _size(child)  # the readers refuse same-role replies; a tree built elsewhere
            else:
                children.append(child)
        if cfg.branches == "best" and children:
            best = min(children, key=_rank_key)
            dropped["other_branches"] += sum(_size(c) for c in children if c is not best)
            children = [best]
        if not children:
            paths.append(path)
        for child in reversed(children):
            stack.append(path + [child])
    return paths


def end_recorded(tree: Tree, cfg: PrepareConfig) -> bool:
    return {"always": True, "never": False}.get(cfg.end_markers, tree.records_end)


def tree_examples(tree: Tree, cfg: PrepareConfig, dropped: Counter | None = None) -> list[dict]:
    """One example a thread. Examples that would train nothing (every human turn already a target in an
    earlier thread, and no end) are left out."""
    examples, targeted = [], set()
    recorded = end_recorded(tree, cfg)
    # A ShareGPT segment cut from the middle of a conversation: its first human turn had context we lack.
    opens = tree.part is None or tree.part.get("opens", True)
    for path in threads(tree, cfg, dropped):
        messages = []
        if cfg.greeting and path[0].role == "user" and opens:
            messages.append({"role": "assistant", "content": cfg.greeting, "target": False})
        for i, msg in enumerate(path):
            is_target = msg.role == "user" and not (cfg.dedup_prefix_targets and msg.id in targeted)
            is_target = is_target and (opens or i > 0)
            if msg.role == "user":
                targeted.add(msg.id)
            messages.append({"role": msg.role, "content": msg.text.strip(), "target": is_target})
        ends = recorded and path[-1].role == "assistant"
        if not ends and not any(m["target"] for m in messages):
            continue
        examples.append({
            "id": f"{tree.tree_id}:{path[-1].id}", "tree_id": tree.tree_id, "source": tree.source,
            "lang": tree.root.lang or "und", "messages": messages,
            "ends_conversation": ends, "end_recorded": recorded,
        })
    return examples


def split_of(unit: str, cfg: PrepareConfig) -> str:
    """Deterministic from (seed, split unit) alone, so a unit never straddles splits and adding sources
    does not reshuffle existing ones (unless a new conversation links them)."""
    u = seeded_fraction(f"{cfg.seed}:{unit}")
    if u < cfg.test_fraction:
        return "test"
    if u < cfg.test_fraction + cfg.validation_fraction:
        return "validation"
    return "train"


def _check(cfg: PrepareConfig) -> None:
    if cfg.branches not in ("all", "best"):
        raise UserError(f"branches must be 'all' or 'best', got '{cfg.branches}'")
    if cfg.end_markers not in ("auto", "always", "never"):
        raise UserError(f"end_markers must be 'auto', 'always' or 'never', got '{cfg.end_markers}'")
    if not cfg.sources:
        raise UserError("no sources given")
    if not 0 <= cfg.validation_fraction + cfg.test_fraction < 1:
        raise UserError("validation_fraction + test_fraction must be in [0, 1)")


def _read(spec: str, cfg: PrepareConfig, seen_trees: set, progress) -> tuple[list, dict]:
    """(tree, examples) pairs of one source and what each filter dropped."""
    report, dropped_trees, dropped_messages = ReadReport(), Counter(), Counter()
    kept, langs = [], set(cfg.lang)
    for tree in join_parts(read_source(spec, report, cfg.skip_bad), report):
        if cfg.max_trees_per_source is not None and len(kept) >= cfg.max_trees_per_source:
            break
        if langs and tree.root.lang and tree.root.lang not in langs:
            dropped_trees["language"] += 1
            continue
        if tree.tree_state not in (None, FINISHED_TREE) and not cfg.keep_unfinished_trees:
            dropped_trees[f"tree_state:{tree.tree_state}"] += 1
            continue
        if tree.tree_id in seen_trees:  # the same tree exported in two sources
            report.duplicate_trees += 1
            continue
        seen_trees.add(tree.tree_id)
        examples = tree_examples(tree, cfg, dropped_messages)
        if not examples:
            dropped_trees["nothing_to_train"] += 1
            continue
        kept.append((tree, examples))
        if progress:
            progress(len(kept))
    info = {"source": spec, "trees": len(kept), "records_end": any(t.records_end for t, _ in kept),
            "skipped_records": report.skipped_records, "empty_records": report.empty_records,
            "duplicate_trees": report.duplicate_trees, "parts_joined": report.parts_joined,
            "part_breaks": report.part_breaks, "dropped_trees": dict(dropped_trees),
            "dropped_messages": dict(dropped_messages), "dropped_bytes": report.dropped_bytes,
            "dropped_records": dict(report.dropped),
            "notes": report.notes}
    return kept, info


def prepare(cfg: PrepareConfig, progress=None) -> dict:
    _check(cfg)
    with locked(cfg.out, "--out"):  # one writer per output directory
        return _prepare(cfg, progress)


def _prepare(cfg: PrepareConfig, progress=None) -> dict:
    started = time.time()
    counts = {s: Counter() for s in SPLITS}
    kept, source_info, seen_trees = [], [], set()
    for spec in cfg.sources:
        trees, info = _read(spec, cfg, seen_trees, progress)
        kept += trees
        source_info.append(info)
    items = [(tree.tree_id, tree.group_id,
              [[m["content"] for m in ex["messages"] if m["role"] == "user"] for ex in examples])
             for tree, examples in kept]
    groups = group_items(items if cfg.dedup else [], cfg.dedup_min_words)
    out = Path(cfg.out)
    with atomic_directory(out, kind="userlm-prepared-data") as tmp:
        files = {s: open(tmp / f"{s}.jsonl", "w", encoding="utf-8") for s in SPLITS}
        try:
            for tree, examples in kept:
                if tree.tree_id in groups.duplicates:
                    continue
                split = split_of(groups.unit_of.get(tree.tree_id, tree.group_id), cfg)
                counts[split]["trees"] += 1
                for ex in examples:
                    files[split].write(json.dumps(ex, ensure_ascii=False) + "\n")
                    counts[split]["examples"] += 1
                    counts[split]["human_targets"] += sum(m["target"] for m in ex["messages"])
                    counts[split]["end_targets"] += ex["ends_conversation"]
        finally:
            for f in files.values():
                f.close()
        if not any(c["examples"] for c in counts.values()):
            raise UserError(f"no examples: every conversation of {', '.join(cfg.sources)} was filtered out "
                            f"(lang, deleted, review or synthetic filters); nothing written to {out}")
        hashes = {s: sha256_file(tmp / f"{s}.jsonl") for s in SPLITS}
        manifest = {
            "kind": "userlm-prepared-data", "userlm_version": __version__, "config": to_dict(cfg),
            "sources": source_info, "counts": {s: dict(c) for s, c in counts.items()},
            "end_marker": END_OF_CONVERSATION,
            "dedup": {"exact_duplicates_dropped": len(groups.duplicates), "linked_units": groups.linked_units,
                      "conversations_in_linked_units": groups.linked_items, "min_words": cfg.dedup_min_words,
                      "near_duplicate_links": groups.near_duplicate_links},
            "file_sha256": hashes,
            "content_hash": sha256_text("".join(hashes[s] for s in SPLITS)),
            "seconds": round(time.time() - started, 2),
        }
        atomic_write_json(tmp / "manifest.json", manifest)
    return manifest


def load_manifest(data_dir: str | Path) -> dict:
    path = Path(data_dir) / "manifest.json"
    if not path.exists():
        raise UserError(f"{data_dir}: not a prepared data directory (no manifest.json); run `userlm data prepare`")
    return read_json(path, "data manifest", {"counts": dict, "content_hash": str})


def check_example(example: dict, where: str) -> dict:
    """A prepared example with the fields and types every reader needs, or a one-line UserError naming them."""
    if not isinstance(example.get("id"), str):
        raise UserError(f"{where}: field 'id' must be a string, got {example.get('id')!r:.60}")
    messages = example.get("messages")
    if not isinstance(messages, list) or not messages:
        raise UserError(f"{where}: field 'messages' must be a non-empty list, got {messages!r:.60}")
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in ("system", "user", "assistant") \
                or not isinstance(m.get("content"), str) or not isinstance(m.get("target", False), bool):
            raise UserError(f"{where}: field 'messages[{i}]' must be {{role: user|assistant|system, content: "
                            f"string, target: true|false}}, got {m!r:.80}")
    return example


def read_split(data_dir: str | Path, split: str) -> list[dict]:
    from userlm.io import read_jsonl

    load_manifest(data_dir)
    path = Path(data_dir) / f"{split}.jsonl"
    return [check_example(ex, f"{path}: record {i}") for i, ex in enumerate(read_jsonl(path), 1)]
