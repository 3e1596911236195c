"""Duplicates and near-duplicates before splitting, so that no held-out human turn was trained on.

Conversations are linked when they share a long human turn (after normalising case, white space and the
punctuation at the ends): ShareGPT holds many copies of one conversation, and templated prompts
("I want you to act as ...") reappear in many. Near-duplicates are linked too: two human turns that share half
the word 8-grams of the shorter one (n-gram containment; a pasted text with a line changed, a prompt with a
name swapped). Linked conversations form one split unit. A conversation whose human turns are exactly those
of an earlier one is dropped, so duplicates are trained once.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

_EDGES = re.compile(r"^[\W_]+|[\W_]+$")


def normalise(text: str) -> str:
    return _EDGES.sub("", " ".join(text.lower().split()))


@dataclass
class Groups:
    unit_of: dict[str, str] = field(default_factory=dict)  # item -> split unit (its smallest member key)
    duplicates: set[str] = field(default_factory=set)  # items whose human turns repeat an earlier item's
    linked_units: int = 0  # units holding more than one original group
    linked_items: int = 0  # items in such units
    near_duplicate_links: int = 0  # unions made by 8-gram containment alone (no shared exact turn)


GRAM = 8  # words per n-gram of the containment test
CONTAINMENT = 0.5  # share of the shorter turn's n-grams found in the other turn
POSTINGS_SCANNED = 200  # earlier turns compared per n-gram (a template's n-grams occur in thousands)


def ngrams(turn: str, n: int = GRAM) -> set[int]:
    """The normalised turn's word n-grams, hashed (in-process only: the sets are compared, never stored)."""
    words = turn.split()
    return {hash(tuple(words[i:i + n])) for i in range(len(words) - n + 1)}


class NearDuplicates:
    """Turns that share CONTAINMENT of the shorter one's n-grams with an earlier turn. An inverted index of
    n-gram -> turns, scanning at most POSTINGS_SCANNED turns per n-gram (so a counted overlap is a lower bound
    for the commonest n-grams); hand-written because the stack has no MinHash/LSH (datasketch is not a
    dependency) and exact containment on the candidates is cheap at ShareGPT's size."""

    def __init__(self):
        self.postings: dict[int, list[int]] = {}
        self.sizes: list[int] = []
        self.owners: list[str] = []

    def add(self, turn: str, owner: str) -> list[str]:
        """Index the turn; return the owners of earlier turns it near-duplicates (at least 2 shared n-grams)."""
        grams = ngrams(turn)
        if not grams:
            return []
        shared = Counter(j for g in grams for j in self.postings.get(g, ())[:POSTINGS_SCANNED])
        found = [self.owners[j] for j, c in shared.items()
                 if c >= 2 and c >= CONTAINMENT * min(len(grams), self.sizes[j])]
        index = len(self.sizes)
        self.sizes.append(len(grams))
        self.owners.append(owner)
        for g in grams:
            self.postings.setdefault(g, []).append(index)
        return found


def group_items(items: list[tuple[str, str, list[list[str]]]], min_words: int = 8) -> Groups:
    """items: (item key, original group, human turns of each thread), in a stable order."""
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        while parent.setdefault(x, x) != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    def union(a: str, b: str) -> None:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)  # the smallest key names the unit: stable, order-free

    groups = Groups()
    seen_signatures: dict[tuple, str] = {}
    owner_of_turn: dict[str, str] = {}
    near = NearDuplicates()
    for key, group, threads in items:
        find(f"g:{group}")  # every group is a unit, linked or not
        normalised = [tuple(normalise(t) for t in thread) for thread in threads]
        signature = tuple(sorted(normalised))
        if signature in seen_signatures:
            groups.duplicates.add(key)
            union(f"g:{group}", f"g:{seen_signatures[signature]}")
        else:
            seen_signatures[signature] = group
        for turn in sorted({t for thread in normalised for t in thread if len(t.split()) >= min_words}):
            if turn in owner_of_turn:
                union(f"g:{group}", f"g:{owner_of_turn[turn]}")
                continue
            owner_of_turn[turn] = group
            for other in near.add(turn, group):
                if find(f"g:{group}") != find(f"g:{other}"):
                    groups.near_duplicate_links += 1
                    union(f"g:{group}", f"g:{other}")
    members: dict[str, set[str]] = {}
    for key, group, _ in items:
        root = find(f"g:{group}")
        groups.unit_of[key] = root[2:]
        members.setdefault(root, set()).add(group)
    linked = {r for r, m in members.items() if len(m) > 1}
    groups.linked_units = len(linked)
    groups.linked_items = sum(find(f"g:{g}") in linked for _, g, _ in items)
    return groups


# The content hashes of an adapter's training turns (written by `userlm train` beside its manifest), so that
# `evaluate` can refuse held-out data whose conversations it was trained on, whatever directory holds them.
TRAINING_HASHES = "training_turns.sha"
HASH_CHARS = 12  # 48 bits: ~1e-5 expected false matches between 50k training and 5k held-out turns


def turn_hash(text: str) -> str:
    import hashlib

    return hashlib.sha256(normalise(text).encode("utf-8")).hexdigest()[:HASH_CHARS]


def example_turn_hashes(example: dict, min_words: int = 8) -> set[str]:
    """Hashes of an example's human turns of at least `min_words` words (the turns that link split units, so
    data prepared with one seed never overlaps itself)."""
    return {turn_hash(m["content"]) for m in example["messages"]
            if m["role"] == "user" and len(normalise(m["content"]).split()) >= min_words}


def write_hashes(path, examples: list[dict]) -> int:
    """A sorted file of the examples' turn hashes, one a line; returns how many."""
    from pathlib import Path

    hashes = sorted({h for ex in examples for h in example_turn_hashes(ex)})
    Path(path).write_text("".join(h + "\n" for h in hashes), encoding="utf-8")
    return len(hashes)


def read_hashes(path) -> set[str]:
    from pathlib import Path

    return {line.strip() for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()}
