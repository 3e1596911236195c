"""Degenerate text, which no person writes and a bag-of-n-grams classifier can score as human: a sentence or
line repeated, a word or phrase looping ("please" x 50), a user turn that repeats an earlier user turn of the
same conversation, a conversation of nothing but fillers ("ok", "?", "ok thanks").

The AI-voice classifier scores each text alone, so two layers: `degenerate_text` is a rule applied to every
text it scores (P(AI) = 1), and `conversation_p_ai` applies the conversation rules where the evaluator knows
the conversation (`human_likeness`, `ai_voice_rate`). `degenerate_variants` makes the looped texts the
classifier also learns as AI (so near-loops the rule misses lean AI too)."""

from __future__ import annotations

import functools
import random
import re
from collections import Counter

# Turns that carry no content of their own: a conversation made only of these is "ok" spam.
FILLERS = set("""ok okay k kk ok. okk okey yes yeah yep yup no nope sure thanks thank you thx ty tnx cool nice great
good fine alright right hmm hm huh what why lol oh ah so and then more next again go on please pls plz""".split())
_WORD = re.compile(r"[^\W_]+", re.UNICODE)


def _words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def normalized(text: str) -> str:
    """Lowercase words only: 'OK!!' and 'ok' are the same turn."""
    return " ".join(_words(text))


def degenerate_text(text: str) -> bool:
    """A loop inside one text: one sentence or line 3+ times making up half the text or more, or one word
    (or word bigram/trigram) covering half or more of 12+ words (e.g. "please" x 50, "I see. I see. I see.")."""
    words = _words(text)
    if len(words) >= 12:
        for n in (1, 2, 3):
            grams = Counter(tuple(words[i:i + n]) for i in range(0, len(words) - n + 1))
            gram, count = grams.most_common(1)[0]
            if count * n >= 0.5 * len(words) and count >= 4 and not (n == 1 and gram[0] in _COMMON):
                return True
    parts = [normalized(p) for p in re.split(r"(?<=[.!?])\s+|\n+", text) if normalized(p)]
    if len(parts) >= 3:
        part, count = Counter(parts).most_common(1)[0]
        if count >= 3 and count * len(part.split()) >= 0.5 * max(len(words), 1):
            return True
    return False


# Words frequent enough in real text that covering half of a text alone is not a loop ("the" in a list).
_COMMON = set("the a an and of to i you it is in".split())


def filler_only(text: str) -> bool:
    """A turn with no word outside FILLERS ("ok", "?", "ok thanks", "...")."""
    return all(w in FILLERS for w in _words(text))


def conversation_flags(turns) -> list[str | None]:
    return list(_flags(tuple(turns)))


@functools.lru_cache(maxsize=65536)  # a bootstrap asks about the same conversations a thousand times
def _flags(turns: tuple) -> tuple:
    """Per user turn of one conversation: why it counts as degenerate, or None. 'repeat': the same words as an
    earlier user turn of this conversation; 'fillers': every user turn of the conversation (2 or more) is filler
    only; 'loop': degenerate_text."""
    spam = len(turns) >= 2 and all(filler_only(t) for t in turns)
    seen, out = set(), []
    for t in turns:
        key = normalized(t)
        out.append("loop" if degenerate_text(t) else "fillers" if spam else "repeat" if key in seen else None)
        seen.add(key)
    return tuple(out)


def conversation_p_ai(turns: list[str], p_of: dict) -> list[float]:
    """The classifier's P(AI) of each turn, 1.0 where conversation_flags marks it degenerate."""
    return [1.0 if flag else float(p_of[t]) for t, flag in zip(turns, conversation_flags(turns))]


def degenerate_variants(texts: list[str], n: int, seed: int) -> list[str]:
    """n looped texts made from these (real) texts, for the classifier's AI class: a sentence repeated, the
    first words looped, one word repeated."""
    rng = random.Random(seed)
    pool = [t for t in texts if _words(t)]
    out = []
    for i in range(n if pool else 0):
        text = rng.choice(pool)
        words = text.split()
        kind = i % 3
        if kind == 0:
            sentence = re.split(r"(?<=[.!?])\s+|\n+", text.strip())[0]
            out.append(" ".join([sentence] * rng.randint(3, 12)))
        elif kind == 1:
            out.append(" ".join(words[: rng.randint(2, 6)] * rng.randint(4, 15)))
        else:
            out.append(" ".join([rng.choice(words)] * rng.randint(8, 60)))
    return out


DEGENERATE_RULE = ("P(AI) = 1 for a text with a loop (degenerate_text); in evaluate and compare also for a user turn "
                   "that repeats an earlier user turn of its conversation, and for every turn of a conversation "
                   "whose 2+ user turns are fillers only")
