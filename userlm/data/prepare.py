"""`userlm data prepare`: trees -> threads -> examples whose targets are the human turns -> splits."""

from __future__ import annotations

import hashlib
import json
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from userlm import END_OF_CONVERSATION, __version__
from userlm.config import to_dict
from userlm.data.sources import Message, ReadReport, Tree, read_source
from userlm.io import UserError, atomic_directory, atomic_write_json, read_json, sha256_file

SPLITS = ("train", "validation", "test")


@dataclass
class PrepareConfig:
    sources: list = field(default_factory=lambda: ["sharegpt"])
    out: str = "work/data"
    lang: list = field(default_factory=list)  # empty = every language; unlabelled sources (ShareGPT) always pass
    keep_deleted: bool = False
    keep_unreviewed: bool = False  # keep messages whose review_result is false
    keep_synthetic: bool = False
    branches: str = "all"  # "all" root-to-leaf paths, or "best" (lowest rank at each step)
    dedup_prefix_targets: bool = True  # a human turn shared by several threads is a target in the first only
    greeting: str = ""  # assistant greeting placed before a conversation the human opens ("" = empty context)
    seed: int = 0
    validation_fraction: float = 0.05
    test_fraction: float = 0.05
    max_trees_per_source: int | None = None
    skip_bad: bool = False


def keep_message(msg: Message, cfg: PrepareConfig) -> bool:
    if msg.deleted and not cfg.keep_deleted:
        return False
    if msg.review_ok is False and not cfg.keep_unreviewed:
        return False
    if msg.synthetic and not cfg.keep_synthetic:
        return False
    return bool(msg.text.strip())


def _rank_key(msg: Message):
    return (msg.rank is None, msg.rank if msg.rank is not None else 0)


def threads(tree: Tree, cfg: PrepareConfig) -> list[list[Message]]:
    """Root-to-leaf paths over kept messages (a path stops where its children were all filtered)."""
    if not keep_message(tree.root, cfg):
        return []
    paths, stack = [], [[tree.root]]
    while stack:
        path = stack.pop()
        children = [c for c in path[-1].children if keep_message(c, cfg) and c.role != path[-1].role]
        if cfg.branches == "best" and children:
            children = [min(children, key=_rank_key)]
        if not children:
            paths.append(path)
        for child in reversed(children):
            stack.append(path + [child])
    return paths


def tree_examples(tree: Tree, cfg: PrepareConfig) -> list[dict]:
    examples, targeted = [], set()
    for path in threads(tree, cfg):
        messages = []
        if cfg.greeting and path[0].role == "user":
            messages.append({"role": "assistant", "content": cfg.greeting, "target": False})
        for msg in path:
            is_target = msg.role == "user" and not (cfg.dedup_prefix_targets and msg.id in targeted)
            if msg.role == "user":
                targeted.add(msg.id)
            messages.append({"role": msg.role, "content": msg.text.strip(), "target": is_target})
        examples.append({
            "id": f"{tree.tree_id}:{path[-1].id}", "tree_id": tree.tree_id, "source": tree.source,
            "lang": tree.root.lang or "und", "messages": messages,
            "ends_conversation": path[-1].role == "assistant",
        })
    return examples


def split_of(tree_id: str, cfg: PrepareConfig) -> str:
    """Deterministic from (seed, tree id) alone, so a tree never straddles splits and adding sources
    does not reshuffle existing trees."""
    u = int.from_bytes(hashlib.sha256(f"{cfg.seed}:{tree_id}".encode()).digest()[:8], "big") / 2**64
    if u < cfg.test_fraction:
        return "test"
    if u < cfg.test_fraction + cfg.validation_fraction:
        return "validation"
    return "train"


def prepare(cfg: PrepareConfig, progress=None) -> dict:
    if cfg.branches not in ("all", "best"):
        raise UserError(f"branches must be 'all' or 'best', got '{cfg.branches}'")
    if not cfg.sources:
        raise UserError("no sources given")
    if not 0 <= cfg.validation_fraction + cfg.test_fraction < 1:
        raise UserError("validation_fraction + test_fraction must be in [0, 1)")
    started = time.time()
    counts = {s: Counter() for s in SPLITS}
    source_info = []
    langs = set(cfg.lang)
    seen_trees: set[str] = set()
    out = Path(cfg.out)
    with atomic_directory(out, kind="userlm-prepared-data") as tmp:
        files = {s: open(tmp / f"{s}.jsonl", "w", encoding="utf-8") for s in SPLITS}
        try:
            for spec in cfg.sources:
                report = ReadReport()
                n_trees = 0
                for tree in read_source(spec, report, cfg.skip_bad):
                    if cfg.max_trees_per_source is not None and n_trees >= cfg.max_trees_per_source:
                        break
                    if langs and tree.root.lang and tree.root.lang not in langs:
                        continue
                    if tree.tree_id in seen_trees:  # the same tree exported in two sources
                        report.duplicate_trees += 1
                        continue
                    seen_trees.add(tree.tree_id)
                    examples = tree_examples(tree, cfg)
                    if not examples:
                        continue
                    n_trees += 1
                    split = split_of(tree.group_id, cfg)
                    counts[split]["trees"] += 1
                    for ex in examples:
                        files[split].write(json.dumps(ex, ensure_ascii=False) + "\n")
                        counts[split]["examples"] += 1
                        counts[split]["human_targets"] += sum(m["target"] for m in ex["messages"])
                        counts[split]["end_targets"] += ex["ends_conversation"]
                    if progress:
                        progress(n_trees)
                source_info.append({"source": spec, "trees": n_trees, "skipped_records": report.skipped_records,
                                    "empty_records": report.empty_records,
                                    "duplicate_trees": report.duplicate_trees,
                                    "dropped_bytes": report.dropped_bytes, "notes": report.notes})
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
            "end_marker": END_OF_CONVERSATION, "file_sha256": hashes,
            "content_hash": hashlib.sha256("".join(hashes[s] for s in SPLITS).encode()).hexdigest(),
            "seconds": round(time.time() - started, 2),
        }
        atomic_write_json(tmp / "manifest.json", manifest)
    return manifest


def load_manifest(data_dir: str | Path) -> dict:
    path = Path(data_dir) / "manifest.json"
    if not path.exists():
        raise UserError(f"{data_dir}: not a prepared data directory (no manifest.json); run `userlm data prepare`")
    return read_json(path, "data manifest", {"counts": dict, "content_hash": str})


def read_split(data_dir: str | Path, split: str) -> list[dict]:
    from userlm.io import read_jsonl

    load_manifest(data_dir)
    return list(read_jsonl(Path(data_dir) / f"{split}.jsonl"))
