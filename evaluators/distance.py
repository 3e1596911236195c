"""embedding_mmd: how far the model's user turns lie from people's, as a distribution, in MiniLM embedding space.

The unbiased estimate of the squared maximum mean discrepancy (Gretton et al., JMLR 2012) with an RBF kernel,
its bandwidth the median pairwise distance of the pooled sample (the median heuristic). Chosen over a Fréchet
distance because it is unbiased at small sizes (a run has tens of turns; a 384-dimensional covariance needs far
more), needs no covariance estimate, and sits at 0 (can go slightly below) when both samples come from one
distribution, so the people-vs-people control reads directly. The two sides are equal in size by construction
(the same positions of the same or matched conversations, evaluators/like_for_like.py).

Units keep their embeddings in u["emb"] = (model side, people side); the statistic stacks them, so
bootstrap_ci resamples conversations. A resample that repeats a conversation pairs its turns with their own
copies (counted as different conversations), which biases MMD^2, so the metric is declared set-based
(distinct conversations per resample, estimate +- z * SE)."""

from __future__ import annotations

import numpy as np


def mmd2_unbiased(x: np.ndarray, y: np.ndarray, cx: np.ndarray | None = None, cy: np.ndarray | None = None) -> float:
    """Unbiased MMD^2 of samples x (m, d) and y (n, d), RBF kernel with the median-heuristic bandwidth.

    With cluster ids (cx, cy: the conversation of each row) every kernel average runs over pairs from different
    conversations only: turns of one conversation share a topic, so counting their pairs inflates the within-side
    terms (people vs people read ~0.004 > 0 on ShareGPT), and a replayed turn and the person's turn share a context,
    which would deflate the cross term. Over independent conversations all three terms estimate the same
    expectation under the null, so the estimate stays unbiased. Without ids: Gretton et al.'s estimator."""
    m, n = len(x), len(y)
    cx = np.arange(m) if cx is None else np.asarray(cx)
    cy = np.arange(m, m + n) if cy is None else np.asarray(cy)
    z = np.concatenate([x, y]).astype(np.float64)
    sq = np.square(z).sum(1)
    d2 = np.clip(sq[:, None] + sq[None, :] - 2 * z @ z.T, 0, None)
    off = d2[~np.eye(len(z), dtype=bool)]
    bandwidth2 = np.median(off[off > 0]) if (off > 0).any() else 1.0  # squared median distance
    k = np.exp(-d2 / bandwidth2)
    terms = []
    for block, a, b in ((k[:m, :m], cx, cx), (k[m:, m:], cy, cy), (k[:m, m:], cx, cy)):
        apart = a[:, None] != b[None, :]
        if not apart.any():
            return np.nan
        terms.append(block[apart].mean())
    return float(terms[0] + terms[1] - 2 * terms[2])


def embedding_mmd(units: list[dict]) -> float:
    """MMD^2 of the units' model-side vs people-side embeddings, pairs within one unit (conversation) left out."""
    sides = [(i, u["emb"]) for i, u in enumerate(units) if u.get("emb") is not None and len(u["emb"][0])]
    if len(sides) < 2:
        return np.nan
    x = np.concatenate([a for _, (a, _) in sides])
    y = np.concatenate([b for _, (_, b) in sides])
    cx = np.concatenate([np.full(len(a), i) for i, (a, _) in sides])
    cy = np.concatenate([np.full(len(b), i) for i, (_, b) in sides])
    return mmd2_unbiased(x, y, cx, cy)


def attach_embeddings(units: list[dict], embed) -> None:
    """u["emb"] = (embeddings of u["model_turns"], of u["people_turns"]), in place; `embed(texts) -> array`
    (evaluators/cache.embed: cached, normalized MiniLM vectors). Each distinct text is embedded once."""
    texts = sorted({t for u in units for t in (*u["model_turns"], *u["people_turns"])})
    if not texts:
        for u in units:
            u["emb"] = None
        return
    vectors = dict(zip(texts, np.asarray(embed(texts), dtype=np.float32)))
    dim = len(next(iter(vectors.values())))
    for u in units:
        u["emb"] = tuple(np.stack([vectors[t] for t in side]) if side else np.zeros((0, dim), np.float32)
                         for side in (u["model_turns"], u["people_turns"]))
