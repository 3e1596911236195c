"""A simulation run directory on disk: what `simulate` may write into, the conversations it already holds
(--resume), starting it over (--overwrite), and merging the shards of a data-parallel run."""

from __future__ import annotations

import json
from pathlib import Path

from userlm.io import (
    UserError,
    atomic_write_text,
    overwrite_allowed,
    read_json,
    read_jsonl,
    truncate_torn_tail,
    userlm_kind,
)
from userlm.records import check_transcript
from userlm.scenarios import Scenario

RUN_KIND = "userlm-simulation-run"


def check_run_dir(out: Path) -> None:
    """Write only into a missing or empty directory or a run this project wrote; --overwrite never lifts it."""
    if out.exists() and not out.is_dir():
        raise UserError(f"{out}: exists and is not a directory; choose another --out")
    if not out.exists():
        return
    kind = userlm_kind(out)
    if (out / "run.json").exists() and kind is None:
        raise UserError(f"{out}/run.json: not a run.json written by `simulate`; refusing to replace it, even with "
                        f"--overwrite: choose another --out")
    if kind not in (None, RUN_KIND):
        raise UserError(f"{out}: holds a {kind} written by userlm, not a simulation run; choose another --out")
    ours = {"run.json", "transcripts.jsonl", "shards", "metrics.json", "metrics.md", "metrics.csv"}
    if any(p.name not in ours and not p.name.startswith(".") for p in out.iterdir()) and kind is None:
        raise UserError(f"{out}: exists, is not empty and is not a simulation run; refusing to write into it, "
                        f"even with --overwrite: choose another --out")


def _finished_records(out: Path) -> list[dict]:
    """Conversations already written: the merged file and any shards of an interrupted data-parallel run."""
    records = []
    for path in [out / "transcripts.jsonl", *sorted((out / "shards").glob("rank-*.jsonl"))]:
        if path.exists():
            truncate_torn_tail(path)
            records += [check_transcript(r, f"{path}: record {i}") for i, r in enumerate(read_jsonl(path), 1)]
    return records


def merge_shards(out: Path, jobs: list[tuple[Scenario, int]]) -> None:
    """One transcripts.jsonl in plan order, whatever the number of processes that wrote it (each once)."""
    order = {(s.id, i): n for n, (s, i) in enumerate(jobs)}
    records = {(r["scenario_id"], r["sample"]): r for r in _finished_records(out)}
    lines = [json.dumps(records[k], ensure_ascii=False) + "\n" for k in sorted(records, key=lambda k: order.get(k, len(order)))]
    atomic_write_text(out / "transcripts.jsonl", "".join(lines))
    for shard in (out / "shards").glob("rank-*.jsonl"):
        shard.unlink()


def finished_conversations(out: Path, ident: dict, resume: bool) -> set[tuple[str, int]]:
    """The (scenario, sample) pairs `out` already holds: only for --resume of the same run, else an error."""
    if not (out / "transcripts.jsonl").exists() and not any((out / "shards").glob("*.jsonl")):
        return set()
    if overwrite_allowed.get() and not resume:  # start this run over: only the files `simulate` writes
        from userlm import distributed

        if distributed.rank() == 0:
            for path in [out / "transcripts.jsonl", *(out / "shards").glob("rank-*.jsonl"),
                         *(out / f"metrics.{ext}" for ext in ("json", "md", "csv"))]:
                path.unlink(missing_ok=True)
        return set()
    if not resume:
        raise UserError(f"{out} already holds transcripts; pass --resume to finish it, --overwrite to start it "
                        f"over, or choose another --out")
    if not (out / "run.json").exists():
        raise UserError(f"{out}: transcripts without run.json; cannot tell which run they belong to")
    if read_json(out / "run.json", "run.json").get("identity") != ident:
        raise UserError(f"{out}: --resume with a different config or scenarios than the run it holds")
    return {(r["scenario_id"], r["sample"]) for r in _finished_records(out)}
