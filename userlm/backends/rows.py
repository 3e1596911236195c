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
