"""Fixed-size versions of the set metrics, for intervals that cover and a gate that can test them.

distinct-n and the pairwise diversity of all turns change with the number of conversations they are computed
on (distinct-n falls as a run grows; all-turn diversity counts pairs of turns of one conversation, whose
share falls as a run grows), so "the population value" is undefined and no interval over 4 or 30
conversations covers it. These versions estimate a value that does not depend on the run's size:
- distinct_2_pair: distinct bigrams / bigrams of two conversations together, averaged over every pair of
  conversations (a U-statistic of order 2: it still drops when conversations repeat each other);
- diversity_between: mean cosine distance between user turns of different conversations.
Both are means over pairs of conversations, so the delete-one jackknife (evaluators/stats.py) fits them."""

from __future__ import annotations

import numpy as np

from evaluators.metrics import Inputs, all_turns, unit_grams


def _bigram_sets(units: list[dict], n: int = 2):
    """A sparse 0/1 matrix (units x n-gram ids) of each unit's distinct n-grams, and each unit's n-gram count."""
    from scipy.sparse import csr_matrix

    grams = [np.unique(unit_grams(u, n)) for u in units]
    totals = np.asarray([len(unit_grams(u, n)) for u in units], dtype=float)
    rows = np.repeat(np.arange(len(units)), [len(g) for g in grams])
    cols = np.concatenate(grams) if grams else np.zeros(0, dtype=np.int64)
    width = int(cols.max()) + 1 if len(cols) else 1
    return csr_matrix((np.ones(len(cols)), (rows, cols)), shape=(len(units), width)), totals


def distinct_pair(units: list[dict], n: int = 2) -> float:
    """Mean over pairs of conversations (i < j) with any n-gram of (|U_i| + |U_j| - |U_i & U_j|) / (t_i + t_j)."""
    if len(units) < 2:
        return np.nan
    sets, totals = _bigram_sets(units, n)
    distinct = np.asarray(sets.sum(axis=1)).ravel()
    shared = (sets @ sets.T).toarray()
    i, j = np.triu_indices(len(units), k=1)
    words = totals[i] + totals[j]
    keep = words > 0
    if not keep.any():
        return np.nan
    return float(np.mean((distinct[i] + distinct[j] - shared[i, j])[keep] / words[keep]))


def between_distance(groups: list[np.ndarray]) -> float:
    """Mean of 1 - cos over pairs of normalized vectors from different groups (closed form from group sums)."""
    groups = [g for g in groups if len(g)]
    if len(groups) < 2:
        return np.nan
    sums = np.stack([g.sum(axis=0) for g in groups])
    sizes = np.asarray([len(g) for g in groups], dtype=float)
    total = sums.sum(axis=0)
    similar = total @ total - (sums * sums).sum()
    pairs = sizes.sum() ** 2 - (sizes ** 2).sum()
    return float(1 - similar / pairs)


def diversity_between(s: Inputs):
    def statistic(us):
        return between_distance([np.stack([s.vectors[t] for t in u["user_turns"]]) if u["user_turns"]
                                 else np.zeros((0, 1)) for u in us])
    return statistic


def turns_of(units: list[dict]) -> list[str]:
    return all_turns(units)
