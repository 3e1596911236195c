"""Discriminability: a classifier two-sample test (Lopez-Paz & Oquab, ICLR 2017). A discriminator is trained
afresh to tell the model's user turns from people's user turns in the same contexts; its cross-validated AUROC
is the metric: 0.5 = indistinguishable, 1.0 = told apart every time.

Folds are grouped by conversation (StratifiedGroupKFold): a conversation's model turns and people's turns are
always in the same fold, so the discriminator never sees a test conversation while training. Each unit
(conversation) keeps its out-of-fold scores in u["disc"] = [(label, score, fold), ...] (label 1 = model side),
and the statistic reads them, so bootstrap_ci and compare's paired bootstrap resample conversations unchanged.

The features see what a reader notices:
  - wording: word 1-2-gram TF-IDF (lowercased), and char 1-4-gram TF-IDF within word boundaries keeping case
    and punctuation (so "ok", "?", "Sure!", "```" and misspellings all count);
  - length: log(1 + words), log(1 + characters);
  - repetition within the turn: share of repeated word 1-grams and 3-grams;
  - repetition across turns: the turn repeats an earlier turn of its side in the conversation, and its largest
    word-set Jaccard overlap with one;
  - punctuation and case: shares of punctuation, upper-case, digit and non-ASCII characters; question and
    exclamation marks; starts upper-case; ends with sentence punctuation; newlines; a code fence.
A logistic regression reads them, trained on the other folds' conversations (see `features` for what is fitted
without labels on all turns).

Cross-validated AUROC sits below 0.5 under the null (a held-out conversation is missing from its own class's
training data: "anti-learning"; with turns clustered in conversations the effective sample is small, so the
bias is not negligible: about -0.05 on 120 ShareGPT conversations). The people-vs-people control runs the same
pipeline at the same size: read the run against it, not against 0.5 alone."""

from __future__ import annotations

import math
import re

import numpy as np

FOLDS = 5
MAX_CHARS = 2000
_PUNCT = re.compile(r"[^\w\s]")


def _repeat_share(tokens: list[str], n: int) -> float:
    grams = [tuple(tokens[i: i + n]) for i in range(len(tokens) - n + 1)]
    return 1 - len(set(grams)) / len(grams) if grams else 0.0


def style(text: str, earlier: list[str]) -> list[float]:
    """The hand-written features of one turn, given the earlier turns of its side in the conversation."""
    tokens = text.lower().split()
    chars = max(len(text), 1)
    mine = set(tokens)
    overlap = max((len(mine & set(e.lower().split())) / max(len(mine | set(e.lower().split())), 1)
                   for e in earlier), default=0.0)
    stripped = text.strip()
    return [math.log1p(len(tokens)), math.log1p(len(text)),
            _repeat_share(tokens, 1), _repeat_share(tokens, 3),
            float(stripped in {e.strip() for e in earlier}), overlap,
            len(_PUNCT.findall(text)) / chars, sum(c.isupper() for c in text) / chars,
            sum(c.isdigit() for c in text) / chars, sum(ord(c) > 127 for c in text) / chars,
            math.log1p(text.count("?")), math.log1p(text.count("!")),
            float(stripped[:1].isupper()), float(stripped[-1:] in ".!?"), math.log1p(text.count("\n")),
            float("```" in text)]


STYLE_NAMES = ["log_words", "log_chars", "repeated_unigrams", "repeated_trigrams", "repeats_earlier_turn",
               "max_overlap_earlier", "punct_share", "upper_share", "digit_share", "non_ascii_share",
               "log_questions", "log_exclamations", "starts_upper", "ends_punct", "log_newlines", "code_fence"]


def _rows(units: list[dict]) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray, list[tuple[int, int]]]:
    """Texts, style matrix, labels, group ids, and (unit index, position in u["disc"]) of every turn."""
    texts, feats, labels, groups, where = [], [], [], [], []
    for g, u in enumerate(units):
        for label, side in ((1, u["model_turns"]), (0, u["people_turns"])):
            for i, text in enumerate(side):
                texts.append(text)
                feats.append(style(text, side[:i]))
                labels.append(label)
                groups.append(g)
                where.append((g, label))
    return texts, np.asarray(feats, dtype=float).reshape(-1, len(STYLE_NAMES)), np.asarray(labels), \
        np.asarray(groups), where


def features(texts: list[str], style_rows: np.ndarray):
    """The feature matrix of all turns. TF-IDF and the style scaling are fitted on all turns at once, without
    labels: no label reaches a test fold that way (only the logistic regression sees labels, fold by fold), and
    the n-grams are counted once instead of once a fold. Each turn's first MAX_CHARS characters feed the
    n-grams (cost: a pasted file of code would dominate; its opening carries its voice)."""
    from scipy.sparse import csr_matrix, hstack
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.preprocessing import StandardScaler

    cut = [t[:MAX_CHARS] for t in texts]
    words = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, token_pattern=r"(?u)\b\w+\b|[^\w\s]")
    chars = TfidfVectorizer(analyzer="char_wb", ngram_range=(1, 4), lowercase=False, sublinear_tf=True)
    return hstack([words.fit_transform(cut), chars.fit_transform(cut),
                   csr_matrix(StandardScaler().fit_transform(style_rows))]).tocsr()


def folds_of(labels: np.ndarray, groups: np.ndarray, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train, test) index pairs; every conversation in exactly one test fold, never in two."""
    from sklearn.model_selection import StratifiedGroupKFold

    k = min(FOLDS, len(np.unique(groups)))
    return list(StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed).split(labels, labels, groups))


def score(units: list[dict], seed: int = 0) -> dict:
    """Trains the discriminator fold by fold and puts each unit's out-of-fold scores in u["disc"], in place.
    Units need "model_turns" and "people_turns". Returns {"turns", "conversations", "folds"} (folds 0 when
    fewer than 2 conversations hold turns of both sides: the metric is then n/a)."""
    from sklearn.linear_model import LogisticRegression

    for u in units:
        u["disc"] = []
    usable = [u for u in units if u["model_turns"] and u["people_turns"]]
    if len(usable) < 2:
        return {"turns": 0, "conversations": len(usable), "folds": 0}
    texts, feats, labels, groups, where = _rows(usable)
    x = features(texts, feats)
    scores = np.zeros(len(texts))
    folds = folds_of(labels, groups, seed)
    for train, test in folds:
        model = LogisticRegression(C=1.0, max_iter=2000).fit(x[train], labels[train])
        scores[test] = model.predict_proba(x[test])[:, 1]
    fold_of = np.zeros(len(texts), dtype=int)
    for f, (_, test) in enumerate(folds):
        fold_of[test] = f
    for (g, label), s, f in zip(where, scores, fold_of):
        usable[g]["disc"].append((int(label), float(s), int(f)))
    return {"turns": len(texts), "conversations": len(usable), "folds": len(folds)}


def auroc(units: list[dict]) -> float:
    """AUROC over the (model turn, person's turn) pairs scored by the same fold's discriminator (ties count
    half), model side positive; nan without both sides. Pairs across folds are left out: each fold's model has
    its own offset and scale, which pooled AUROC mixes in (on ShareGPT it changed neither the null nor the
    degenerate users' values: docs/against-people.md)."""
    from scipy.stats import rankdata

    rows = np.asarray([p for u in units for p in u.get("disc") or ()], dtype=float).reshape(-1, 3)
    u_sum = pairs = 0.0
    for f in np.unique(rows[:, 2]):
        fold = rows[rows[:, 2] == f]
        pos = fold[:, 0] == 1
        n_pos, n_neg = int(pos.sum()), int((~pos).sum())
        if n_pos and n_neg:
            # Mann-Whitney U of the fold: roc_auc_score's value, ~10x cheaper (a bootstrap calls it 1000 times)
            u_sum += rankdata(fold[:, 1])[pos].sum() - n_pos * (n_pos + 1) / 2
            pairs += n_pos * n_neg
    return float(u_sum / pairs) if pairs else np.nan
