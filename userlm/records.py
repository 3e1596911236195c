"""The records that cross modules, read in one place: a simulation run's transcripts.jsonl and run.json (as
the dicts on disk, checked for the fields every reader needs) and an adapter's manifest.json (typed; it reads
and writes exactly the JSON on disk, unknown keys kept in `extra`)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from userlm.io import UserError, read_json, read_jsonl

ADAPTER_MANIFEST = "manifest.json"


def check_transcript(record: dict, where: str) -> dict:
    """A transcripts.jsonl record with the fields every reader needs, or a one-line UserError."""
    for name, kind in (("scenario_id", str), ("sample", int), ("stop_reason", str), ("turns", list)):
        if not isinstance(record.get(name), kind) or isinstance(record.get(name), bool):
            raise UserError(f"{where}: field '{name}' must be {kind.__name__}, got {record.get(name)!r:.60}")
    for i, turn in enumerate(record["turns"]):
        if not isinstance(turn, dict) or not isinstance(turn.get("role"), str) or not isinstance(turn.get("text"), str):
            raise UserError(f"{where}: field 'turns[{i}]' needs a string 'role' and 'text'")
    for i, point in enumerate(record.get("points", [])):  # a replayed conversation's points (docs/replay.md)
        if not (isinstance(point, dict) and isinstance(point.get("index"), int) and isinstance(point.get("ended"), bool)
                and isinstance(point.get("decision"), bool) and all(point.get(k) is None or isinstance(point[k], str)
                                                                      for k in ("real", "generated"))):
            raise UserError(f"{where}: field 'points[{i}]' needs an int 'index', bool 'ended' and 'decision', "
                            f"and 'real' / 'generated' strings or null")
    return record


def end_decisions(record: dict) -> list[tuple[bool, bool]]:
    """(the model ended, the person ended) at each end decision of a replayed conversation whose source records
    ends ([] for a self-play record or a source without ends): the pairs end precision, recall and F1 count."""
    return [(p["ended"], p["person_ended"]) for p in record.get("points", [])
            if p["decision"] and p.get("person_ended") is not None]


def paired_turns(record: dict) -> list[tuple[str, str]]:
    """(the person's turn, the model's turn) at each point of a replayed conversation where both wrote one."""
    return [(p["real"], p["generated"]) for p in record.get("points", [])
            if isinstance(p.get("real"), str) and isinstance(p.get("generated"), str)]


def load_transcripts(run_dir: str | Path) -> list[dict]:
    path = Path(run_dir) / "transcripts.jsonl"
    if not path.exists():
        raise UserError(f"{run_dir}: no transcripts.jsonl; run `simulate` first")
    records, seen = [], {}
    for i, r in enumerate(read_jsonl(path, tolerate_torn_tail=True), 1):
        key = (check_transcript(r, f"{path}: record {i}")["scenario_id"], r["sample"])
        if key in seen:  # two runs written into one directory: scoring it would count conversations twice
            raise UserError(f"{path}: record {i} repeats (scenario_id {key[0]!r:.60}, sample {key[1]}) of record "
                            f"{seen[key]}; not one run's transcripts")
        seen[key] = i
        records.append(r)
    return records


def load_run(run_dir: str | Path, allow_unfinished: bool = False) -> tuple[dict, list[dict]]:
    """run.json and the transcripts of a finished run; an unfinished one is a UserError unless allowed."""
    run_dir = Path(run_dir)
    if not (run_dir / "run.json").exists():
        raise UserError(f"{run_dir}: no run.json; not a simulation run directory")
    info = read_json(run_dir / "run.json", "run.json", {"config": dict})
    for name in ("user", "assistant"):
        if not isinstance(info["config"].get(name), str):
            raise UserError(f"{run_dir / 'run.json'}: field 'config.{name}' must be a string")
    records = load_transcripts(run_dir)
    total = info.get("total_conversations")
    if not allow_unfinished and ("finished_at" not in info or (isinstance(total, int) and len(records) < total)):
        raise UserError(f"{run_dir}: unfinished run ({len(records)} of {total} conversations"
                        f"{'' if 'finished_at' in info else ', no finished_at'}); finish it with "
                        f"`simulate ... --resume`")
    return info, records


@dataclass
class AdapterManifest:
    """manifest.json of an adapter written by `userlm train` (its presence marks a finished adapter)."""
    base_model: str
    system_prompt: str | None = None
    trained_with_intent: bool = False
    final_eval_loss: float | None = None
    extra: dict = field(default_factory=dict)

    @classmethod
    def from_dict(cls, d: dict) -> AdapterManifest:
        """From a manifest as read (by read_adapter_manifest, which checks its fields)."""
        known = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        manifest = cls(**{k: v for k, v in d.items() if k in known},
                       extra={k: v for k, v in d.items() if k not in known})
        manifest._raw = d
        return manifest

    def to_dict(self) -> dict:
        """The manifest as read (every key, in file order); one built in Python: its fields, then extra."""
        raw = getattr(self, "_raw", None)
        if raw is not None:
            return dict(raw)
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "extra"}
        return {**fields, **self.extra}


def read_adapter_manifest(adapter_dir: str | Path) -> AdapterManifest:
    path = Path(adapter_dir) / ADAPTER_MANIFEST
    if not path.exists():
        raise UserError(f"{adapter_dir}: no {ADAPTER_MANIFEST}; not a finished `userlm train` output")
    manifest = read_json(path, "adapter manifest", {"base_model": str})
    for name, kinds in (("system_prompt", (str, type(None))), ("trained_with_intent", (bool,)),
                        ("final_eval_loss", (int, float, type(None)))):
        value = manifest.get(name)
        if name in manifest and (not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds)):
            expected = " or ".join("null" if k is type(None) else k.__name__ for k in kinds)
            raise UserError(f"{path}: adapter manifest field '{name}' must be {expected}, got {value!r:.60}")
    return AdapterManifest.from_dict(manifest)
