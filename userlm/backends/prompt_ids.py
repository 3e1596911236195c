"""A conversation's next prompt tokenized from its previous prompt's last special token on (the hf backend's
`suffix_tokens`): a chat template renders turn t's prompt as turn t-1's followed by the new messages, and a fast
tokenizer splits its input at added tokens before it normalizes, pre-tokenizes and merges each piece on its own, so
the ids up to and including such a token stay what they were. At a simulation's turn end the host then tokenizes
each row's new ~200 tokens instead of its whole ~1,000 (128 rows: 47 -> 12 ms on a 2-core CPU), while the GPU waits.

Only where that holds by construction: a fast tokenizer without Metaspace or a Prepend normalizer (their rules
depend on a piece being the input's first), split at special added tokens that are matched in the raw text, strip no
whitespace and overlap no other added token (`boundaries`); the prompt
must start with the previous one's text up to that token (else it is tokenized whole). The first VERIFY prompts so
tokenized are also tokenized whole and compared, then one batch in RECHECK; a difference turns it off with one line
naming the tokenizer."""

from __future__ import annotations

from collections.abc import Hashable

VERIFY = 256  # prompts checked against a whole tokenization before trusting the split
RECHECK = 64  # after those, one batch in this many checked again


def unsupported(tokenizer) -> str | None:
    """Why `tokenizer` cannot be split at its special tokens (None: it can)."""
    if not getattr(tokenizer, "is_fast", False):
        return "not a fast tokenizer"
    backend = tokenizer.backend_tokenizer
    # their JSON (not the whole tokenizer's, vocabulary and merges included)
    rules = " ".join(str(o.__getstate__()) for o in (backend.normalizer, backend.pre_tokenizer) if o is not None)
    if "Metaspace" in rules or "Prepend" in rules:
        return "its normalizer or pre-tokenizer treats the input's first piece apart (Metaspace / Prepend)"
    if not boundaries(tokenizer):
        return "no special added tokens that strip no whitespace, are not normalized and overlap no other"
    return None


def boundaries(tokenizer) -> dict[int, str]:
    """The special added tokens that split the raw input exactly where they stand (id -> text): not normalized
    (those are matched after the piece's normalization), stripping nothing, no text of theirs overlapping itself
    or held inside another added token's (a longer match could then run across a prompt's cut)."""
    added = tokenizer.added_tokens_decoder.values()
    contents = [t.content for t in added]

    def alone(text: str) -> bool:
        return text and not any(text[:k] == text[-k:] for k in range(1, len(text))) \
            and not any(text in other and text != other for other in contents)
    return {i: t.content for i, t in tokenizer.added_tokens_decoder.items()
            if t.special and not (t.lstrip or t.rstrip or t.single_word or t.normalized) and alone(t.content)}


class PromptIds:
    """Tokenizes prompts in batches, each from the last special token of its key's previous prompt on."""

    def __init__(self, tokenizer):
        self.tokenizer, self.reason, self.boundaries = tokenizer, None, None  # checked at the first encode
        self.heads: dict[Hashable, tuple[str, list[int]]] = {}  # key -> (text, ids) up to its last special token
        self.verified = self.batches = 0
        self.reused = self.encoded = 0  # ids taken from a previous prompt, ids tokenized (counts)

    def encode(self, keys: list, texts: list[str]) -> list[list[int]]:
        if self.boundaries is None:
            self.reason = unsupported(self.tokenizer)
            self.boundaries = boundaries(self.tokenizer) if self.reason is None else {}
        self.batches += 1
        heads = [self.heads.get(key) if self.reason is None else None for key in keys]
        heads = [h if h is not None and text.startswith(h[0]) else None for h, text in zip(heads, texts)]
        pieces = [text[len(h[0]):] if h else text for h, text in zip(heads, texts)]
        ids = [h[1] + tail if h else tail for h, tail in
               zip(heads, self.tokenizer(pieces, add_special_tokens=False)["input_ids"] if pieces else [])]
        split = [i for i, h in enumerate(heads) if h]
        if split and (self.verified < VERIFY or self.batches % RECHECK == 0):
            whole = self.tokenizer([texts[i] for i in split], add_special_tokens=False)["input_ids"]
            self.verified += len(split)
            if any(ids[i] != w for i, w in zip(split, whole)):
                self.reason = "a prompt tokenized from its previous one's last special token differed from it whole"
                print(f"hf backend: prompts tokenized whole from now on ({type(self.tokenizer).__name__} "
                      f"{getattr(self.tokenizer, 'name_or_path', '')}: {self.reason})", flush=True)
                for i, w in zip(split, whole):
                    ids[i] = w
                self.heads.clear()
                split = []
        reused = sum(len(heads[i][1]) for i in split)
        self.reused, self.encoded = self.reused + reused, self.encoded + sum(map(len, ids)) - reused
        if self.reason is None:
            for key, text, row in zip(keys, texts, ids):
                self._keep(key, text, row)
        return ids

    def _keep(self, key, text: str, ids: list[int]) -> None:
        """The prompt up to and including its last special token, where that token's text occurs in `text` as often
        as its id in `ids` (so the last of each is the same token)."""
        self.heads.pop(key, None)
        last = next((j for j in range(len(ids) - 1, -1, -1) if ids[j] in self.boundaries), None)
        if last is None:
            return
        content = self.boundaries[ids[last]]
        if text.count(content) != ids.count(ids[last]):
            return
        self.heads[key] = (text[: text.rfind(content) + len(content)], ids[: last + 1])

    def release(self, conversation) -> None:
        """Forget the prompts of a conversation that is over (keys (conversation, ...))."""
        for key in [k for k in self.heads if isinstance(k, tuple) and k and k[0] == conversation]:
            del self.heads[key]


def common_prefix(old_ids: list[int], ids: list[int]) -> int:
    """Leading tokens the two share, leaving at least the last of `ids` to compute (its logits are needed).
    Bisection over slice comparisons (C speed) rather than a Python loop over every token."""
    most = min(len(old_ids), len(ids) - 1)
    if most <= 0 or old_ids[0] != ids[0]:
        return 0
    lo, hi = 1, most  # old_ids[:lo] == ids[:lo]
    if old_ids[:hi] == ids[:hi]:
        return hi
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if old_ids[:mid] == ids[:mid] else (lo, mid)
    return lo
