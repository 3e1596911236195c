"""High-level intents of prepared conversations ("You want to ..."), written by an instruct model from the
human side of each conversation, stored beside the data in `intents.jsonl` (append-only, one line per
example and writer prompt) with a summary in `intents.json`.

UserLM-8b (arXiv 2510.06552) conditions its user model on such intents: it then steers toward a chosen goal
and reveals it bit by bit. An intent must say the goal without copying the first turn, else the user model
learns to paste its intent.
"""

from __future__ import annotations

import random
import re
from pathlib import Path

from userlm.io import UserError, read_jsonl, seeded_fraction, sha256_json, truncate_torn_tail

INTENTS_FILE = "intents.jsonl"
INTENTS_SUMMARY = "intents.json"
WRITER_SYSTEM = "You summarise what a person wanted from a conversation with an AI assistant."
WRITER_PROMPT = (
    "Messages a person wrote to an AI assistant, in order:\n\n{turns}\n\n"
    "In one sentence, tell this person what they wanted: their overall goal and any constraints. "
    'Start with "You want to", speak to them as "you", use at most 40 words, and do not quote their messages.'
)
# One worked example: small writers (the embedded 135M assistant) follow a shown answer far better than
# an instruction alone.
EXAMPLE_TURNS = ("1. hey can u help me plan meals for the week, im vegetarian\n"
                 "2. cheaper pls, i have like 40 bucks\n3. ok and no mushrooms")
EXAMPLE_INTENT = ("You want to plan a week of cheap vegetarian meals for about 40 dollars, "
                  "without mushrooms.")


def writer_messages(example: dict, max_words_per_turn: int = 60, max_turns: int = 5) -> list[dict]:
    """The chat an instruct model answers with the intent: the human side only, each turn clipped."""
    human = [m["content"] for m in example["messages"] if m["role"] == "user"][:max_turns]
    clipped = [" ".join(t.split()[:max_words_per_turn]) for t in human]
    turns = "\n".join(f"{i}. {t}" for i, t in enumerate(clipped, 1))
    return [{"role": "system", "content": WRITER_SYSTEM},
            {"role": "user", "content": WRITER_PROMPT.format(turns=EXAMPLE_TURNS)},
            {"role": "assistant", "content": EXAMPLE_INTENT},
            {"role": "user", "content": WRITER_PROMPT.format(turns=turns)}]


def intent_key(writer: str, messages: list[dict], max_new_tokens: int) -> str:
    """The cache key: the same writer on the same prompt and budget gives the same intent (greedy decoding)."""
    return sha256_json([writer, messages, max_new_tokens])


def clean_intent(text: str) -> str:
    """The first paragraph, without quotes or an 'Intent:' label."""
    text = text.strip().split("\n\n")[0].strip()
    text = re.sub(r"^(intent|goal|answer)\s*:\s*", "", text, flags=re.I)
    return " ".join(text.strip().strip('"').split())


def _grams(text: str, n: int) -> set[tuple[str, ...]]:
    words = re.findall(r"\w+", text.lower())
    return {tuple(words[i:i + n]) for i in range(len(words) - n + 1)}


def copied_share(intent: str, first_turn: str, n: int = 3) -> float:
    """Share of the intent's word n-grams found in the first human turn (1.0 = pasted from it)."""
    grams = _grams(intent, n)
    return len(grams & _grams(first_turn, n)) / len(grams) if grams else 0.0


def check_intent(intent: str, first_turn: str, max_words: int = 60, max_copied: float = 0.5) -> list[str]:
    """Why an intent is not usable ([] if it is)."""
    if not intent:
        return ["empty"]
    flags = []
    if len(intent.split()) > max_words:
        flags.append("too_long")
    if copied_share(intent, first_turn) >= max_copied:
        flags.append("copied")
    # A small writer may parrot the worked example or the instruction instead of the conversation.
    if copied_share(intent, f"{EXAMPLE_INTENT} {WRITER_PROMPT}") >= 0.3:
        flags.append("echoes_prompt")
    if not intent.lower().startswith("you"):
        flags.append("not_second_person")
    return flags


def first_human_turn(example: dict) -> str:
    return next((m["content"] for m in example["messages"] if m["role"] == "user"), "")


def pick(examples: list[dict], limit: int | None, seed: int) -> list[dict]:
    """The examples a capped run uses: the same seeded sample `userlm train` takes for max_train_examples."""
    if limit is None or limit >= len(examples):
        return examples
    return random.Random(seed).sample(examples, limit)


def gets_intent(example_id: str, seed: int, share: float) -> bool:
    """Whether a `mixed` run gives this example its intent: a seeded draw per example id, so the choice does not
    depend on the order or sample of examples (and `userlm data intents --set share=...` can write just those)."""
    return seeded_fraction(f"intent:{seed}:{example_id}") < share


def read_intent_records(data_dir: str | Path) -> list[dict]:
    path = Path(data_dir) / INTENTS_FILE
    if not path.exists():
        return []
    truncate_torn_tail(path)
    return list(read_jsonl(path))


def load_intents(data_dir: str | Path, required: bool = True) -> dict[str, str]:
    """example id -> usable intent (the latest unflagged one written for it)."""
    records = read_intent_records(data_dir)
    if not records and required:
        raise UserError(f"{data_dir}: no {INTENTS_FILE}; run `userlm data intents {data_dir}` first")
    return {r["example_id"]: r["intent"] for r in records if not r.get("flags")}
