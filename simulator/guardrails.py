"""User-side guardrails (issue 24; UserLM-8b, arXiv 2510.06552, measures the same four), all off by default:

- `min_turns`: an end before the user has written this many turns is not taken: the end marker is dropped
  and the turn's text kept (a bare end marker is resampled instead);
- `no_assistant_opening`: a turn that opens like an assistant (ASSISTANT_OPENINGS) is resampled;
- `echo_words`: a turn that copies this many consecutive words of the assistant's last turn is resampled;
- `max_words`: a longer turn is cut at a word boundary and marked truncated.

Resampling asks the same backend again with another seed (any backend can, where a first-token logits
processor would need the hf backend's sampler), `retries` times at most; after that the last text is kept
(counted as `exhausted`). Every firing is counted per conversation (`guardrails` in transcripts.jsonl) and
per run (run.json). Both self-play (simulator/loop.py) and --replay (simulator/replay.py) call `review`."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, fields

from userlm.chat import strip_end_marker
from userlm.echo import echoes
from userlm.io import UserError

# First words of an assistant's voice (the UserLM-8b paper blocks such first tokens). "I" is one: an
# assistant's "I'd be happy to", and also many people's "I need"; measured before it is turned on.
ASSISTANT_OPENINGS = ("sure", "certainly", "of course", "absolutely", "great question", "here", "as an ai", "i",
                      "hello! how", "hi! how")
_OPENING = re.compile(r"^\W*(" + "|".join(re.escape(o) for o in ASSISTANT_OPENINGS) + r")\b", re.IGNORECASE)
RETRY_SEED_STEP = 7919  # the k-th resample's seed: seed + k * this (a prime, so retries of nearby seeds differ)


@dataclass(frozen=True)
class Guardrails:
    min_turns: int = 0  # user turns written before an end is taken (0: off)
    no_assistant_opening: int = 0  # 1: resample turns that open like an assistant
    echo_words: int = 0  # resample turns that copy this many consecutive words of the last AI turn (0: off)
    max_words: int = 0  # cut longer turns at a word boundary (0: off)
    retries: int = 3  # resamples of one turn at most

    @classmethod
    def parse(cls, options: dict) -> Guardrails | None:
        """From SimulationConfig.user_guardrails; None when every guardrail is off (the loop does nothing)."""
        known = {f.name for f in fields(cls)}
        for key, value in options.items():
            if key not in known:
                raise UserError(f"user_guardrails: unknown guardrail '{key}' (known: {', '.join(sorted(known))})")
            if not isinstance(value, int) or value < 0:  # (a bool is an int: no_assistant_opening: true)
                raise UserError(f"user_guardrails: '{key}' must be a whole number >= 0, got {value!r}")
        g = cls(**{k: int(v) for k, v in options.items()})
        return g if (g.min_turns or g.no_assistant_opening or g.echo_words or g.max_words) else None


def retry_seed(seed: int, attempt: int) -> int:
    return (seed + attempt * RETRY_SEED_STEP) % 2**31


def opens_like_assistant(text: str) -> bool:
    return bool(_OPENING.match(text))


@dataclass
class Review:
    """What to do with one generated user turn: resample, or take `text` (with `ended`, `truncated`)."""
    resample: bool
    text: str = ""
    ended: bool = False
    truncated: bool = False


def review(g: Guardrails | None, raw: str, truncated: bool, turns_before: int, last_assistant: str | None,
           attempt: int, fired: Counter) -> Review:
    """One generated turn (`raw`, end marker and all) after `turns_before` user turns, its `attempt`-th try
    (0 first). `fired` counts each guardrail that acted (and `resampled`, `exhausted`)."""
    text, ended = strip_end_marker(raw)
    if g is None:
        return Review(False, text, ended, truncated)
    can_retry = attempt < g.retries

    def again(name: str) -> Review | None:
        fired[name] += 1
        if can_retry:
            fired["resampled"] += 1
            return Review(True)
        fired["exhausted"] += 1
        return None

    early_end = ended and turns_before + bool(text) < g.min_turns
    if early_end and not text and (r := again("min_turns")):  # a bare end marker: resampled
        return r
    if text and g.no_assistant_opening and opens_like_assistant(text) and (r := again("assistant_opening")):
        return r
    if text and g.echo_words and last_assistant and echoes(text, [last_assistant], g.echo_words) \
            and (r := again("echo")):
        return r
    if early_end:  # the turn stands, the end does not (a bare end marker after the last retry: an empty turn,
        fired["min_turns"] += bool(text)  # which stops the conversation)
        ended = False
    if g.max_words and len(text.split()) > g.max_words:
        fired["word_cap"] += 1
        text, truncated = cut_words(text, g.max_words), True
    return Review(False, text, ended, truncated)


def cut_words(text: str, n: int) -> str:
    """The first n words, with the text's own spacing kept up to the cut."""
    spans = list(re.finditer(r"\S+", text))
    return text[: spans[n - 1].end()] if len(spans) > n else text


def totals(records: list[dict]) -> dict:
    """Per run: each guardrail's firings over its conversations (run.json)."""
    out = Counter()
    for r in records:
        out.update(r.get("guardrails") or {})
    return dict(sorted(out.items()))
