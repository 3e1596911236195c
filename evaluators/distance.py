"""Distribution distances of the model's user turns from people's (generated vs real turns, equal sizes):

- `distribution_mmd` (headline): MMD^2 under a product kernel, k = k_topic(MiniLM embeddings) x k_style(the
  discriminator's 16 style features, evaluators/discriminability.py STYLE_NAMES: length, repetition within
  and across turns, punctuation, case, digits, newlines, code, ending mid-sentence), each factor an RBF whose
  bandwidth is the median heuristic of its own block. Two turns are alike only when they are alike in both
  what they say and how they are written, so a user whose rambling on-topic prose is all cut off at the token
  budget (Gemma-3-270M) is far from people although its topics are theirs.
- `embedding_mmd` (second view, topic only): the same statistic with the MiniLM factor alone. Mean-pooled
  sentence embeddings see topic, not length, cut-off text or repetition.

The statistic is the unbiased estimate of the squared maximum mean discrepancy (Gretton et al., JMLR 2012).
Chosen over a Fréchet distance because it is unbiased at small sizes (a run has tens of turns; a 384-dimensional
covariance needs far more), needs no covariance estimate, and sits at 0 (can go slightly below) when both
samples come from one distribution, so the people-vs-people control reads directly. A product of
characteristic kernels on the two blocks is characteristic on the joint (Szabó & Sriperumbudur, JMLR 2018), so
the distance is 0 only for equal joint distributions of (topic, style). The style block is standardised over
the pooled sample of each call (no labels); both bandwidths are fitted per call too, so a jackknife leave-out
refits them alike. Setting each block's median squared distance to 1 weighs the two blocks equally: the
product kernel is exp(-(d_topic^2 / h_topic + d_style^2 / h_style)), an RBF on the concatenation with each
block scaled by its own median (without the scaling, 16 standardised features would outweigh a unit-norm
embedding ~10 to 1).

Units keep their vectors in u["emb"] and u["style"] = (model side, people side); the statistics stack them, so
the interval resamples conversations. A resample that repeats a conversation pairs its turns with their own
copies (counted as different conversations), which biases MMD^2, so the metrics are declared set-based
(distinct conversations per resample, estimate +- z * SE)."""

from __future__ import annotations

import numpy as np


def _scaled_sq_distances(z: np.ndarray) -> np.ndarray:
    """Pairwise squared distances of the rows of z divided by their median (the median heuristic's bandwidth)."""
    z = z.astype(np.float64)
    sq = np.square(z).sum(1)
    d2 = np.clip(sq[:, None] + sq[None, :] - 2 * z @ z.T, 0, None)
    off = d2[~np.eye(len(z), dtype=bool)]
    return d2 / (np.median(off[off > 0]) if (off > 0).any() else 1.0)


def mmd2_kernel(k: np.ndarray, m: int, cx: np.ndarray | None = None, cy: np.ndarray | None = None) -> float:
    """Unbiased MMD^2 from the kernel matrix k of the pooled sample (its first m rows the x side).

    With cluster ids (cx, cy: the conversation of each row) every kernel average runs over pairs from different
    conversations only: turns of one conversation share a topic, so counting their pairs inflates the within-side
    terms (people vs people read ~0.004 > 0 on ShareGPT), and a replayed turn and the person's turn share a context,
    which would deflate the cross term. Over independent conversations all three terms estimate the same
    expectation under the null, so the estimate stays unbiased. Without ids: Gretton et al.'s estimator."""
    n = len(k) - m
    cx = np.arange(m) if cx is None else np.asarray(cx)
    cy = np.arange(m, m + n) if cy is None else np.asarray(cy)
    terms = []
    for block, a, b in ((k[:m, :m], cx, cx), (k[m:, m:], cy, cy), (k[:m, m:], cx, cy)):
        apart = a[:, None] != b[None, :]
        if not apart.any():
            return np.nan
        terms.append(block[apart].mean())
    return float(terms[0] + terms[1] - 2 * terms[2])


def mmd2_unbiased(x: np.ndarray, y: np.ndarray, cx: np.ndarray | None = None, cy: np.ndarray | None = None) -> float:
    """Unbiased MMD^2 of samples x (m, d) and y (n, d), RBF kernel with the median-heuristic bandwidth."""
    return mmd2_kernel(np.exp(-_scaled_sq_distances(np.concatenate([x, y]))), len(x), cx, cy)


def mmd2_product(blocks_x: list[np.ndarray], blocks_y: list[np.ndarray], cx: np.ndarray | None = None,
                 cy: np.ndarray | None = None) -> float:
    """Unbiased MMD^2 under the product of one RBF kernel per block (rows aligned across blocks), each with the
    median-heuristic bandwidth of its own block."""
    scaled = sum(_scaled_sq_distances(np.concatenate([bx, by])) for bx, by in zip(blocks_x, blocks_y))
    return mmd2_kernel(np.exp(-scaled), len(blocks_x[0]), cx, cy)


def standardised(z: np.ndarray) -> np.ndarray:
    """Columns to mean 0, sd 1 (a constant column stays 0). sklearn's StandardScaler does this too; the two
    lines here keep sklearn out of a statistic the jackknife calls once per conversation."""
    sd = z.std(0)
    return (z - z.mean(0)) / np.where(sd > 0, sd, 1.0)


def _stacked(units: list[dict], key: str) -> tuple | None:
    """(x, y, cx, cy): the model-side and people-side rows of u[key] over the units, with their conversation."""
    sides = [(i, u[key]) for i, u in enumerate(units) if u.get(key) is not None and len(u[key][0])]
    if len(sides) < 2:
        return None
    return (np.concatenate([a for _, (a, _) in sides]), np.concatenate([b for _, (_, b) in sides]),
            np.concatenate([np.full(len(a), i) for i, (a, _) in sides]),
            np.concatenate([np.full(len(b), i) for i, (_, b) in sides]))


def embedding_mmd(units: list[dict]) -> float:
    """MMD^2 of the units' model-side vs people-side embeddings (topic), pairs within one unit left out."""
    got = _stacked(units, "emb")
    return np.nan if got is None else mmd2_unbiased(*got)


def distribution_mmd(units: list[dict]) -> float:
    """MMD^2 of the units' model-side vs people-side turns under the product kernel of embeddings (topic) and
    standardised style features, pairs within one unit (conversation) left out."""
    emb, sty = _stacked(units, "emb"), _stacked(units, "style")
    if emb is None or sty is None:
        return np.nan
    x, y, cx, cy = emb
    style = standardised(np.concatenate([sty[0], sty[1]]))
    return mmd2_product([x, style[:len(x)]], [y, style[len(x):]], cx, cy)


def attach_style(units: list[dict]) -> None:
    """u["style"] = (style rows of u["model_turns"], of u["people_turns"]), in place: the discriminator's
    features of each turn given the earlier turns of its side in the conversation."""
    from evaluators.discriminability import STYLE_NAMES, style

    for u in units:
        u["style"] = tuple(np.asarray([style(t, side[:i]) for i, t in enumerate(side)], dtype=np.float64)
                           .reshape(-1, len(STYLE_NAMES)) for side in (u["model_turns"], u["people_turns"]))


def attach_embeddings(units: list[dict], embed) -> None:
    """u["emb"] = (embeddings of u["model_turns"], of u["people_turns"]) and u["style"] (attach_style), in place;
    `embed(texts) -> array` (evaluators/cache.embed: cached, normalized MiniLM vectors). Each distinct text is
    embedded once."""
    attach_style(units)
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
