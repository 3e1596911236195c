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


def _oasst_message(obj: dict, where: str) -> Message:
    if not isinstance(obj, dict):
        raise BadRecord(where, "expected an object")
    replies = typed_field(obj, "replies", (list,), f"{where}.", [])
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
            tree_id = str(typed_field(obj, "message_tree_id", (str, int), "") or root.id)
            tree_state = typed_field(obj, "tree_state", (str,), "")
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
            tree_id = str(typed_field(row, "message_tree_id", (str, int), ""))
            parent = typed_field(row, "parent_id", (str, int), "")
            state = typed_field(row, "tree_state", (str,), "")
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
            report.skipped_records += 1
        else:
            raise UserError(f"{path}:{number}: expected a JSON object")
