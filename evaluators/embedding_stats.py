"""Statistics of a set of normalized sentence embeddings (diversity and Vendi), shared by the metrics."""

from __future__ import annotations

import numpy as np


def mean_pairwise_cosine_distance(vectors: np.ndarray) -> float:
    """For normalized vectors: mean over pairs i != j of 1 - cos. Identical vectors give 0."""
    n = len(vectors)
    if n < 2:
        return np.nan
    s = vectors @ vectors.T
    return float((n * n - s.sum()) / (n * (n - 1)))  # diagonal contributes n*(1-1)=0 to the distance sum


def vendi_score(vectors: np.ndarray) -> float:
    """exp(entropy of the eigenvalues of K/n), K the cosine similarity matrix (Friedman & Dieng, 2023): the
    effective number of distinct items. Computed on the smaller of X X^T and X^T X (same non-zero spectrum)."""
    n = len(vectors)
    if n == 0:
        return np.nan
    gram = vectors.T @ vectors if vectors.shape[1] < n else vectors @ vectors.T
    eig = np.clip(np.linalg.eigvalsh(gram / n), 0, None)
    eig = eig[eig > 1e-12]
    return float(np.exp(-(eig * np.log(eig)).sum()))
