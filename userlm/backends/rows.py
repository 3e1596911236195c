"""A live generation of the hf backend: the row both schedulers (hf.py's dynamic one and static_cache.py's slots)
advance. Its own module so that hf.py may import the slot engine and the engine never imports hf.py."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Hashable


@dataclass
class Row:
    key: Hashable
    ids: list[int]  # the tokens whose keys/values are in the cache
    sampling: object
    generator: object
    generated: list[int] = field(default_factory=list)

    def take(self, tokens, stop_ids) -> int:
        """Append `tokens` up to its first stop token (in `stop_ids`) or its budget, each previous last token moving
        into `ids`; how many were taken. One list operation each instead of a loop per token (a chunk hands 1,024
        tokens at 7B/128)."""
        n = min(len(tokens), max(1, self.sampling.max_new_tokens - len(self.generated)))  # the first always goes
        if not frozenset(stop_ids).isdisjoint(tokens[:n]):
            n = next(j for j, t in enumerate(tokens) if t in stop_ids) + 1
        if n:
            self.ids.append(self.generated[-1])
            self.ids.extend(tokens[:n - 1])
            self.generated.extend(tokens[:n])
        return n
