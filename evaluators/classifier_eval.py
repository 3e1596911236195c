"""What the AI-voice classifier's AUROC is worth: the same held-out turns scored whole, with both classes cut
alike to paired lengths (classifier_data.length_matched), within length buckets, per AI source and per data
source, each beside the AUROC of word count alone (the shortcut), with n and a bootstrap CI per source, plus a
reliability table (P(AI) against the observed share of AI turns)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from evaluators.classifier_data import BUCKETS, bucket, bucket_name, length_matched, words


def auroc(labels, scores) -> float | None:
    from sklearn.metrics import roc_auc_score

    labels = list(labels)
    if len(set(labels)) < 2:
        return None
    return round(float(roc_auc_score(labels, list(scores))), 4)


def auroc_ci(labels, scores, seed: int = 0, resamples: int = 300, level: float = 0.95) -> list | None:
    """Percentile bootstrap CI of the AUROC, resampling each class's turns (stratified, so both classes stay in
    every resample). sklearn has no AUROC interval; the rank form below is roc_auc_score's value, vectorised."""
    from scipy.stats import rankdata

    labels, scores = np.asarray(labels), np.asarray(scores, float)
    pos, neg = np.flatnonzero(labels == 1), np.flatnonzero(labels == 0)
    if not len(pos) or not len(neg):
        return None
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(resamples):
        p, q = rng.choice(pos, len(pos)), rng.choice(neg, len(neg))
        ranks = rankdata(np.concatenate([scores[p], scores[q]]))
        values.append((ranks[: len(p)].sum() - len(p) * (len(p) + 1) / 2) / (len(p) * len(q)))
    tail = (1 - level) / 2 * 100
    return [round(float(np.percentile(values, tail)), 4), round(float(np.percentile(values, 100 - tail)), 4)]


def _pair(humans, ais, score_of, length_of, seed: int = 0) -> dict:
    labels = [0] * len(humans) + [1] * len(ais)
    scores = [score_of(r) for r in humans + ais]
    return {"auroc": auroc(labels, scores), "ci": auroc_ci(labels, scores, seed),
            "word_count_baseline": auroc(labels, [length_of(r) for r in humans + ais]),
            "n_human": len(humans), "n_ai": len(ais)}


def reliability(labels, scores, bins: int = 10) -> dict:
    """Equal-width P(AI) bins: count, mean P(AI), observed share of AI turns; and the expected calibration error."""
    labels, scores = np.asarray(labels, float), np.asarray(scores, float)
    idx = np.minimum((scores * bins).astype(int), bins - 1)
    table, ece = [], 0.0
    for b in range(bins):
        mask = idx == b
        if mask.any():
            mean_p, share = float(scores[mask].mean()), float(labels[mask].mean())
            ece += mask.sum() / len(scores) * abs(mean_p - share)
            table.append({"bin": [b / bins, (b + 1) / bins], "n": int(mask.sum()), "mean_p_ai": round(mean_p, 4),
                          "observed_ai_share": round(share, 4)})
    return {"bins": table, "ece": round(ece, 4), "ai_share": round(float(labels.mean()), 4) if len(labels) else None}


def held_out_report(rows: list[dict], score: Callable[[list[str]], np.ndarray], seed: int) -> dict:
    """All the AUROCs of one model on held-out rows ({text, label, source, data})."""
    humans = [r for r in rows if r["label"] == 0]
    ais = [r for r in rows if r["label"] == 1]
    cuts = {"all": length_matched(ais, humans, seed)}
    for source in sorted({r["source"] for r in ais}):
        cuts[source] = length_matched([r for r in ais if r["source"] == source], humans, seed)
    for fam in sorted({r["data"] for r in humans}):
        cuts["data:" + fam] = length_matched([r for r in ais if r["data"] == fam and r["source"].startswith(fam + ":")],
                                             [r for r in humans if r["data"] == fam], seed)
    texts = sorted({r["text"] for r in rows} | {r["text"] for h, a in cuts.values() for r in h + a})
    p = dict(zip(texts, score(texts)))
    s = lambda r: p[r["text"]]
    n = lambda r: words(r["text"])
    out = {"overall": _pair(humans, ais, s, n), "length_matched": _pair(*cuts["all"], s, n)}
    out["length_matched"]["cut_turns"] = {"human": sum(r["cut"] for r in cuts["all"][0]),
                                          "ai": sum(r["cut"] for r in cuts["all"][1])}
    out["by_length_bucket"] = {}
    for b in range(len(BUCKETS)):
        hb, ab = [r for r in humans if bucket(n(r)) == b], [r for r in ais if bucket(n(r)) == b]
        if hb or ab:
            out["by_length_bucket"][bucket_name(b)] = _pair(hb, ab, s, n)
    out["by_ai_source"] = {}
    for source in sorted({r["source"] for r in ais}):
        mine = [r for r in ais if r["source"] == source]
        matched = _pair(*cuts[source], s, n)
        out["by_ai_source"][source] = {**_pair(humans, mine, s, n), "length_matched": matched["auroc"],
                                       "length_matched_ci": matched["ci"], "length_matched_n_ai": matched["n_ai"]}
    out["by_data_source"] = {}
    for fam in sorted({r["data"] for r in humans}):
        hf = [r for r in humans if r["data"] == fam]
        af = [r for r in ais if r["data"] == fam and r["source"].startswith(fam + ":")]
        if hf and af:
            matched = _pair(*cuts["data:" + fam], s, n)
            out["by_data_source"][fam] = {**_pair(hf, af, s, n), "length_matched": matched["auroc"],
                                          "length_matched_ci": matched["ci"]}
    out["calibration"] = reliability([r["label"] for r in rows], [s(r) for r in rows])
    return out


def summary_line(report: dict) -> str:
    o, lm = report["overall"], report["length_matched"]
    return (f"AUROC {o['auroc']} (word count alone {o['word_count_baseline']}), length-matched {lm['auroc']} "
            f"(word count {lm['word_count_baseline']}), ECE {report['calibration']['ece']}")
