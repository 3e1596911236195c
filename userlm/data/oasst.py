"""Readers for OpenAssistant (OASST) exports: `*.trees.jsonl[.gz]` (one tree a line, nested replies) and flat
message tables (the hub dataset, its parquet or JSON lines files) whose rows name their parent."""

from __future__ import annotations

import gzip
import json
import zlib
from pathlib import Path
from typing import Iterable, Iterator

from userlm.data.trees import BadRecord, Message, ReadReport, Tree, role_of, typed_field
from userlm.io import UserError


def _message_fields(obj: dict, where: str) -> dict:
    """The fields of one OASST message (tree export or flat row), each checked for its type."""
    prefix = f"{where}." if where else ""
    for name in ("message_id", "role", "text"):
        if obj.get(name) is None:
            raise BadRecord(f"{prefix}{name}", "missing")
    return {
        "id": str(typed_field(obj, "message_id", (str, int), prefix)), "role": role_of(obj["role"], f"{prefix}role"),
        "text": typed_field(obj, "text", (str,), prefix), "lang": typed_field(obj, "lang", (str,), prefix),
        "rank": typed_field(obj, "rank", (int, float), prefix), "deleted": typed_field(obj, "deleted", (bool,), prefix, False),
        "review_ok": typed_field(obj, "review_result", (bool,), prefix),
        "synthetic": typed_field(obj, "synthetic", (bool,), prefix, False),
    }


def _oasst_message(obj: dict, where: str, parent_role: str | None = None) -> Message:
    if not isinstance(obj, dict):
        raise BadRecord(where, "expected an object")
    replies = typed_field(obj, "replies", (list,), f"{where}.", [])
    fields = _message_fields(obj, where)
    if fields["role"] == parent_role:  # the branch below it would vanish from every thread
        raise BadRecord(f"{where}.role", f"a {obj['role']} reply to a {obj['role']} message")
    return Message(**fields, children=[_oasst_message(r, f"{where}.replies[{i}]", fields["role"])
                                       for i, r in enumerate(replies)])


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
                report.drop("malformed")
    except (EOFError, gzip.BadGzipFile, zlib.error) as e:
        where = f"{path}:{number + 1}"
        if not skip_bad:
            raise UserError(f"{where}: corrupt or truncated gzip file ({e})") from None
        report.drop("malformed")
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
            tree_id = str(typed_field(obj, "message_tree_id", (str, int), "") or root.id)
            tree_state = typed_field(obj, "tree_state", (str,), "")
        except BadRecord as e:
            if skip_bad:
                report.drop(e.reason)
                continue
            raise UserError(f"{path}:{number}: {e}") from None
        yield Tree(tree_id, f"oasst:{path.name}", root, tree_state=tree_state)


def trees_from_message_rows(rows: Iterable[dict], source: str, report: ReadReport, skip_bad: bool) -> Iterator[Tree]:
    """OASST flat message tables (the hub dataset OpenAssistant/oasst1, or its parquet/jsonl files). A row
    that breaks the tree structure (a repeated message id, its own parent, a parent in another tree or of the
    same role, a parent cycle) is an error naming the row; under skip_bad it and the branch below it are
    counted by reason. A row whose parent is not in the table (filtered out of it) is counted as an orphan."""
    rows_of: dict[str, tuple[int, Message, str | None, str, str | None]] = {}  # id -> row, message, parent, tree, state
    for number, row in enumerate(rows, 1):
        try:
            if not isinstance(row, dict):
                raise BadRecord("(row)", "expected a JSON object")
            if row.get("message_tree_id") is None:
                raise BadRecord("message_tree_id", "missing")
            msg = Message(**_message_fields(row, ""))
            tree_id = str(typed_field(row, "message_tree_id", (str, int), ""))
            parent = typed_field(row, "parent_id", (str, int), "")
            state = typed_field(row, "tree_state", (str,), "")
            if msg.id in rows_of:
                raise BadRecord("message_id", f"{msg.id!r:.60} repeats row {rows_of[msg.id][0]}", "duplicate_id")
        except BadRecord as e:
            if skip_bad:
                report.drop(e.reason)
                continue
            raise UserError(f"{source}: row {number}: {e}") from None
        rows_of[msg.id] = (number, msg, None if parent is None else str(parent), tree_id, state)
    broken: dict[str, str] = {}  # message id -> why it is not linked to its parent
    roots = []
    for mid, (number, msg, parent, tree_id, _state) in rows_of.items():
        if parent is None:
            roots.append(mid)
            continue
        if parent not in rows_of:
            broken[mid] = "orphan"  # its parent was filtered out of the table: counted, not an error
            continue
        above = rows_of[parent]
        problem = ("self_parent", "parent_id", "is the row's own message_id") if parent == mid else \
            ("parent_in_other_tree", "parent_id", f"{parent!r:.60} (row {above[0]}) is in tree {above[3]!r:.60}, "
                                                  f"this row in {tree_id!r:.60}") if above[3] != tree_id else \
            ("same_role_reply", "role", f"a {msg.role} reply to a {msg.role} message (row {above[0]})") \
            if above[1].role == msg.role else None
        if problem is None:
            above[1].children.append(msg)
        elif skip_bad:
            broken[mid] = problem[0]
        else:
            raise UserError(f"{source}: row {number}: field '{problem[1]}': {problem[2]}")
    _count_unreachable(rows_of, roots, broken, source, report, skip_bad)
    for mid in roots:
        _number, msg, _parent, tree_id, state = rows_of[mid]
        yield Tree(tree_id, source, msg, tree_state=state)


def _count_unreachable(rows_of: dict, roots: list[str], broken: dict[str, str], source: str, report: ReadReport,
                       skip_bad: bool) -> None:
    """Count every message no root reaches by the reason of the first broken link above it (or a cycle)."""
    reached, stack = set(), [rows_of[mid][1] for mid in roots]
    while stack:
        msg = stack.pop()
        reached.add(msg.id)
        stack += msg.children
    reason_of = dict(broken)
    for mid in rows_of:
        if mid in reached or mid in reason_of:
            continue
        chain, node = [], mid
        while node not in reason_of and node not in chain:
            chain.append(node)
            node = rows_of[node][2]
        if node in chain:  # a parent cycle: no root above these rows
            cycle = chain[chain.index(node):]
            if not skip_bad:
                first = min(cycle, key=lambda m: rows_of[m][0])
                raise UserError(f"{source}: row {rows_of[first][0]}: field 'parent_id': a parent cycle "
                                f"({' -> '.join(repr(m)[:40] for m in [*cycle, node])})")
            reason = "cycle"
        else:
            reason = reason_of[node]
        for m in chain:
            reason_of[m] = reason
    for reason in reason_of.values():
        report.drop(reason)


def load_table(spec: str):
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


def jsonl_rows(path: Path, report: ReadReport, skip_bad: bool) -> Iterator[dict]:
    """A flat message table in JSON lines, read line by line so a bad line is named (or skipped)."""
    for number, obj in _json_lines(path, report, skip_bad):
        if isinstance(obj, dict):
            yield obj
        elif skip_bad:
            report.drop("malformed")
        else:
            raise UserError(f"{path}:{number}: expected a JSON object")
