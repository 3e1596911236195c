"""What every source reader yields and reports: `Tree`s of `Message`s with original roles ("user" = the
human, "assistant" = the AI; a linear conversation is a tree with one branch), the `ReadReport` of what a
reader passed over, and the field checks that name a malformed record's field (`BadRecord`)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

ROLES = {"prompter": "user", "human": "user", "user": "user",
         "assistant": "assistant", "gpt": "assistant", "chatgpt": "assistant", "bard": "assistant", "bing": "assistant"}


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


# Drops that are no error without --skip-bad: a row whose parent was filtered out of its table, and the
# record a file cut off at its very end stops inside.
TOLERATED = ("orphan", "cut_off_tail")


@dataclass
class ReadReport:
    """What a reader passed over, for the manifest and the console: `dropped` counts every input record (a
    line, row, ShareGPT record or message) that is not in a yielded tree, by reason (`drop`)."""
    skipped_records: int = 0  # bad records skipped under --skip-bad (every reason of `dropped` but TOLERATED)
    dropped_bytes: int = 0
    empty_records: int = 0
    duplicate_trees: int = 0
    parts_joined: int = 0  # ShareGPT parts appended to the conversation they were cut from
    part_breaks: int = 0  # parts that did not continue their predecessor (kept as separate segments)
    notes: list[str] = field(default_factory=list)
    dropped: Counter = field(default_factory=Counter)

    def drop(self, reason: str, n: int = 1) -> None:
        self.dropped[reason] += n
        if reason not in TOLERATED:
            self.skipped_records += n


class BadRecord(Exception):
    """A record that cannot be read; `reason` is what --skip-bad counts it as."""

    def __init__(self, field_name: str, problem: str, reason: str = "malformed"):
        super().__init__(f"field '{field_name}': {problem}")
        self.reason = reason


def role_of(value, where: str) -> str:
    if not isinstance(value, str) or value not in ROLES:
        raise BadRecord(where, f"unknown role {value!r:.60}")
    return ROLES[value]


def typed_field(obj: dict, name: str, kinds: tuple, where: str, default=None):
    """obj[name] if it has one of `kinds` (None allowed: the default); a bool is never taken for a number."""
    value = obj.get(name)
    if value is None:
        return default
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        names = " or ".join(k.__name__ for k in kinds)
        raise BadRecord(f"{where}{name}", f"must be {names}, got {type(value).__name__} {value!r:.40}")
    return value
