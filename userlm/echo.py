"""Echo: a user turn that copies a run of consecutive words from the assistant's turns. One definition for the
simulator's echo guardrail (simulator/guardrails.py) and the `echo_rate` metric (evaluators/echo.py)."""

from __future__ import annotations

import re

ECHO_WORDS = 8  # the metric's run length: 8+ consecutive words copied (issue 24)
_WORD = re.compile(r"\w+(?:['’]\w+)*")


def words_of(text: str) -> list[str]:
    """Lowercased words, punctuation and spacing dropped (a copy that re-punctuates is still a copy)."""
    return _WORD.findall(text.lower())


def grams(text: str, n: int) -> set[tuple[str, ...]]:
    tokens = words_of(text)
    return {tuple(tokens[i: i + n]) for i in range(len(tokens) - n + 1)}


def echoes(turn: str, sources: list[str], n: int = ECHO_WORDS) -> bool:
    """True when `turn` holds n consecutive words that also stand consecutively in one of `sources` (a run
    never spans two source turns)."""
    mine = grams(turn, n)
    return bool(mine) and any(mine & grams(source, n) for source in sources)
