"""Which reader reads a source: `read_source` turns a source spec (`sharegpt`, `hub:NAME`, or a file path by its
ending) into the `Tree`s of `trees.py`, read by `oasst.py` or `sharegpt.py`."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

from userlm.data.oasst import jsonl_rows, load_table, read_oasst_trees, trees_from_message_rows
from userlm.data.sharegpt import embedded_sharegpt_path, read_sharegpt
from userlm.data.trees import ReadReport, Tree
from userlm.io import UserError


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
        return trees_from_message_rows(load_table(spec), spec, report, skip_bad)
    path = Path(spec)
    if not path.exists():
        raise UserError(f"{spec}: source not found")
    if path.is_dir():
        raise UserError(f"{spec}: is a directory; give a source file")
    name = path.name
    if name.endswith((".trees.jsonl", ".trees.jsonl.gz")):
        return read_oasst_trees(path, report, skip_bad)
    if name.endswith((".jsonl", ".jsonl.gz")):
        return trees_from_message_rows(jsonl_rows(path, report, skip_bad), str(path), report, skip_bad)
    if name.endswith(".parquet"):
        return trees_from_message_rows(load_table(spec), name, report, skip_bad)
    if name.endswith(".json"):
        return read_sharegpt(path, report, skip_bad)
    raise UserError(f"{spec}: unknown source type (expected .trees.jsonl[.gz], .parquet, .jsonl or ShareGPT .json)")
