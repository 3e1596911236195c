"""The records that cross modules, typed in one place: a conversation turn, a simulated transcript, a run's
run.json, an adapter's manifest.json and a prepared example. Each reads and writes exactly the JSON on disk
(`from_dict(d).to_dict() == d`, keys in the same order), so files stay byte-compatible: a turn's text is
`text` in transcripts and `content` in prepared messages, as it always was; in Python both are `.text`.
Unknown keys are kept in `extra` and written back after the known ones."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from userlm.io import UserError, read_json, read_jsonl

ADAPTER_MANIFEST = "manifest.json"


def _split(cls, d: dict, where: str, required: dict[str, type]) -> tuple[dict, dict]:
    """(known fields, the rest) of `d`, each required field checked for its type."""
    if not isinstance(d, dict):
        raise UserError(f"{where}: expected a JSON object")
    for name, kind in required.items():
        if not isinstance(d.get(name), kind) or (kind is not bool and isinstance(d.get(name), bool)):
            raise UserError(f"{where}: field '{name}' must be {kind.__name__}, got {d.get(name)!r:.60}")
    known = {f.name for f in dataclasses.fields(cls)} - {"extra"}
    return {k: v for k, v in d.items() if k in known}, {k: v for k, v in d.items() if k not in known}


def _known_then_extra(record, optional: tuple[str, ...] = ()) -> dict:
    """The fields in declaration order (those in `optional` only when set), then the unknown keys."""
    out = {}
    for f in dataclasses.fields(record):
        value = getattr(record, f.name)
        if f.name != "extra" and not (f.name in optional and value is None):
            out[f.name] = value
    return {**out, **record.extra}


@dataclass
class Turn:
    """One turn of a simulated conversation (transcripts.jsonl `turns`)."""
    role: str  # "user" | "assistant"
    text: str
    tokens: int = 0
    latency_s: float = 0.0
    truncated: bool | None = None  # user turns: the turn hit max_new_tokens (None: not recorded)
    extra: dict = field(default_factory=dict)

    @classmethod
    def from_dict(cls, d: dict, where: str = "turn") -> Turn:
        if not isinstance(d, dict) or not isinstance(d.get("role"), str) or not isinstance(d.get("text"), str):
            raise UserError(f"{where}: needs a string 'role' and 'text'")
        known, extra = _split(cls, d, where, {})
        return cls(**known, extra=extra)

    def to_dict(self) -> dict:
        return _known_then_extra(self, optional=("truncated",))


@dataclass
class Transcript:
    """One simulated conversation, a line of transcripts.jsonl."""
    scenario_id: str
    sample: int
    stop_reason: str
    turns: list[Turn]
    extra: dict = field(default_factory=dict)  # seed, n_user_turns, user_model, scenario_intent, ... in file order

    @classmethod
    def from_dict(cls, d: dict, where: str = "transcript") -> Transcript:
        check_transcript(d, where)
        known, extra = _split(cls, d, where, {})
        known["turns"] = [Turn.from_dict(t, f"{where}: field 'turns[{i}]'") for i, t in enumerate(d["turns"])]
        return cls(**known, extra=extra)

    def to_dict(self) -> dict:
        """In the file's key order: scenario_id, sample, then the rest as they were read."""
        extra = dict(self.extra)
        head = {"scenario_id": self.scenario_id, "sample": self.sample}
        if "seed" in extra:
            head["seed"] = extra.pop("seed")
        body = {"stop_reason": self.stop_reason}
        if "n_user_turns" in extra:
            body["n_user_turns"] = extra.pop("n_user_turns")
        return {**head, **body, "turns": [t.to_dict() for t in self.turns], **extra}

    @property
    def user_turns(self) -> list[str]:
        return [t.text for t in self.turns if t.role == "user"]


def check_transcript(record: dict, where: str) -> dict:
    """A transcripts.jsonl record with the fields every reader needs, or a one-line UserError."""
    for name, kind in (("scenario_id", str), ("sample", int), ("stop_reason", str), ("turns", list)):
        if not isinstance(record.get(name), kind) or isinstance(record.get(name), bool):
            raise UserError(f"{where}: field '{name}' must be {kind.__name__}, got {record.get(name)!r:.60}")
    for i, turn in enumerate(record["turns"]):
        if not isinstance(turn, dict) or not isinstance(turn.get("role"), str) or not isinstance(turn.get("text"), str):
            raise UserError(f"{where}: field 'turns[{i}]' needs a string 'role' and 'text'")
    return record


def load_transcripts(run_dir: str | Path) -> list[dict]:
    path = Path(run_dir) / "transcripts.jsonl"
    if not path.exists():
        raise UserError(f"{run_dir}: no transcripts.jsonl; run `simulate` first")
    return [check_transcript(r, f"{path}: record {i}")
            for i, r in enumerate(read_jsonl(path, tolerate_torn_tail=True), 1)]


@dataclass
class RunInfo:
    """run.json of a simulation run: what it ran (identity, config, models) and how it went."""
    config: dict
    kind: str | None = None  # "userlm-simulation-run" (runs of earlier versions have none)
    identity: dict | None = None  # what --resume and caches match on
    user_kind: str | None = None  # adapter | base | prompted
    total_conversations: int | None = None
    finished_at: str | None = None
    extra: dict = field(default_factory=dict)

    @classmethod
    def from_dict(cls, d: dict, where: str = "run.json") -> RunInfo:
        known, extra = _split(cls, d, where, {"config": dict})
        for name in ("user", "assistant"):
            if not isinstance(d["config"].get(name), str):
                raise UserError(f"{where}: field 'config.{name}' must be a string")
        info = cls(**known, extra=extra)
        info._order = list(d)
        return info

    def to_dict(self) -> dict:
        values = {**{f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "extra"}, **self.extra}
        order = getattr(self, "_order", list(values))
        return {k: values[k] for k in order if k in values} | {k: v for k, v in values.items()
                                                               if k not in order and v is not None}

    @property
    def finished(self) -> bool:
        return self.finished_at is not None


def load_run(run_dir: str | Path, allow_unfinished: bool = False) -> tuple[dict, list[dict]]:
    """run.json and the transcripts of a finished run; an unfinished one is a UserError unless allowed."""
    run_dir = Path(run_dir)
    if not (run_dir / "run.json").exists():
        raise UserError(f"{run_dir}: no run.json; not a simulation run directory")
    info = read_json(run_dir / "run.json", "run.json", {"config": dict})
    RunInfo.from_dict(info, str(run_dir / "run.json"))
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
    def from_dict(cls, d: dict, where: str = "adapter manifest") -> AdapterManifest:
        known, extra = _split(cls, d, where, {"base_model": str})
        manifest = cls(**known, extra=extra)
        manifest._raw = d
        return manifest

    def to_dict(self) -> dict:
        """The manifest as read (every key, in file order); one built in Python: its fields, then extra."""
        raw = getattr(self, "_raw", None)
        return dict(raw) if raw is not None else _known_then_extra(self)


def read_adapter_manifest(adapter_dir: str | Path) -> AdapterManifest:
    path = Path(adapter_dir) / ADAPTER_MANIFEST
    if not path.exists():
        raise UserError(f"{adapter_dir}: no {ADAPTER_MANIFEST}; not a finished `userlm train` output")
    return AdapterManifest.from_dict(read_json(path, "adapter manifest"), f"{path}")


@dataclass
class Message:
    """One message of a prepared example; `content` on disk."""
    role: str
    text: str
    target: bool  # a turn the user model is trained to write

    @classmethod
    def from_dict(cls, d: dict) -> Message:
        return cls(d["role"], d["content"], d["target"])

    def to_dict(self) -> dict:
        return {"role": self.role, "content": self.text, "target": self.target}


@dataclass
class Example:
    """One prepared conversation thread (a line of train/validation/test.jsonl)."""
    id: str
    tree_id: str
    source: str
    lang: str
    messages: list[Message]
    ends_conversation: bool
    end_recorded: bool
    extra: dict = field(default_factory=dict)

    @classmethod
    def from_dict(cls, d: dict, where: str = "example") -> Example:
        known, extra = _split(cls, d, where, {"id": str, "messages": list})
        known["messages"] = [Message.from_dict(m) for m in d["messages"]]
        return cls(**known, extra=extra)

    def to_dict(self) -> dict:
        out: dict[str, Any] = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "extra"}
        out["messages"] = [m.to_dict() for m in self.messages]
        return {**out, **self.extra}
