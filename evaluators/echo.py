"""`echo_rate`: the share of user turns that copy 8+ consecutive words of the assistant turns before them in
their conversation (userlm/echo.py). Units carry `assistant_before` (per user turn, the assistant texts before
it: evaluators/reference.py builds it for runs and people); a unit without it is not scored."""

from __future__ import annotations

import numpy as np

from userlm.echo import echoes


def assistant_before(turns: list[dict], role: str = "role", text: str = "text") -> list[list[str]]:
    """For each user turn of a conversation (dicts with `role`/`text`), the assistant texts that came before it."""
    out, seen = [], []
    for t in turns:
        if t[role] == "assistant":
            seen = [*seen, t[text]]
        elif t[role] == "user":
            out.append(seen)
    return out


def people_before(record: dict) -> list[list[str]]:
    """A replay record's people side (evaluators/like_for_like.py replay_pairs: the points where both the person
    and the model wrote a turn): for each, the real assistant texts before it."""
    real = record["real_turns"]
    return [[t["text"] for t in real[:p["index"]] if t["role"] == "assistant"] for p in record["points"]
            if isinstance(p.get("generated"), str) and isinstance(p.get("real"), str)]


def unit_echoes(unit: dict) -> list[bool]:
    """Per user turn, whether it echoes (cached on the unit, so that bootstrap resamples are cheap)."""
    before = unit.get("assistant_before")
    if before is None:
        return []
    if "_echo" not in unit:
        unit["_echo"] = [echoes(turn, sources) for turn, sources in zip(unit["user_turns"], before)]
    return unit["_echo"]


def echo_rate(units: list[dict]) -> float:
    flags = [f for u in units for f in unit_echoes(u)]
    return float(np.mean(flags)) if flags else np.nan
