"""Issue 24: how much do the data say about *when* people end, beyond the turn position? Models of p(end) at every
end decision, fitted on the train split (calibrated: no class weights), read on the test split:
- position: people's end rate at each user-turn index on train (1-11, then 12+), nothing else;
- 6 features: the learned end policy's features (userlm/end_policy.py FEATURES), logistic regression;
- 14 features: those plus the AI turn cut off, "continue", the user asking, an apology / "as an AI", a list,
  words so far, the first turn's words, messages so far; gradient-boosted trees (sklearn);
- text: 14 features plus TF-IDF word 1-2-grams of the last user turn and of the AI turn's last 40 words, logistic.
For each: AUROC; end F1 when ending where p >= the threshold that ends at people's validation end rate (a
deterministic user); and the expected end F1 and share of conversations ended within 3 user turns of a user that
*samples* its end with probability p (what a generative user does): E[F1] ~ 2 sum(p y) / (sum(p) + sum(y)). 95%
percentile bootstrap CIs over test conversations (1,000 draws, points kept together).
python benchmarks/bench_end_signal.py --data DATA (a prepared data dir whose source records ends; CPU, ~2 min)"""

import argparse
import math
import re
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from userlm.data.prepare import read_split
from userlm.end_policy import HAZARD_TURNS, end_decisions, features, turn_text
from userlm.threads import machine_line


def more_features(history) -> list[float]:
    user, ai = [turn_text(t) for t in history if t["role"] == "user"], turn_text(history[-1]).rstrip()
    return [float(not re.search(r"[.!?:)`\"'\]*]$", ai)), float(bool(re.search(r"continu", user[-1], re.I))),
            float(user[-1].rstrip().endswith("?")), float(bool(re.search(r"sorry|as an ai|language model", ai, re.I))),
            float(bool(re.search(r"^\s*(\d+\.|-|\*)\s", ai, re.M))),
            math.log1p(sum(len(turn_text(t).split()) for t in history)), math.log1p(len(user[0].split())), float(len(history))]


def load(data, split):
    rows = []  # (14 features, user text, AI tail, ended, conversation)
    for ex in read_split(data, split):
        for i, ended in end_decisions(ex):
            h = ex["messages"][:i]
            user = [turn_text(t) for t in h if t["role"] == "user"][-1]
            rows.append((features(h) + more_features(h), user, " ".join(turn_text(h[-1]).split()[-40:]), int(ended), ex["id"]))
    X, U, A, y, g = zip(*rows)
    return np.array(X), list(U), list(A), np.array(y), np.array(g)


def models(tr, splits):
    """{name: [p(end) on each split]}, every model fitted on `tr`."""
    from scipy.sparse import csr_matrix, hstack
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    position = lambda X: np.minimum(X[:, 0], HAZARD_TURNS)  # noqa: E731  (user turns so far, 12+ pooled)
    rate = {k: tr[3][position(tr[0]) == k].mean() for k in np.unique(position(tr[0]))}
    out = {"position": [np.array([rate.get(k, tr[3].mean()) for k in position(s[0])]) for s in splits]}
    sc6 = StandardScaler().fit(tr[0][:, :6])
    lr = LogisticRegression(max_iter=2000).fit(sc6.transform(tr[0][:, :6]), tr[3])
    out["6 features, logistic"] = [lr.predict_proba(sc6.transform(s[0][:, :6]))[:, 1] for s in splits]
    hgb = HistGradientBoostingClassifier(max_iter=300, learning_rate=0.05, random_state=0).fit(tr[0], tr[3])
    out["14 features, boosted trees"] = [hgb.predict_proba(s[0])[:, 1] for s in splits]
    sc, tu, ta = (StandardScaler().fit(tr[0]), *(TfidfVectorizer(min_df=5, max_features=20000, ngram_range=(1, 2),
                                                                 sublinear_tf=True).fit(t) for t in (tr[1], tr[2])))
    M = lambda s: hstack([csr_matrix(sc.transform(s[0])), tu.transform(s[1]), ta.transform(s[2])]).tocsr()  # noqa: E731
    text = LogisticRegression(max_iter=3000, C=0.1).fit(M(tr), tr[3])
    out["14 features + text, logistic"] = [text.predict_proba(M(s))[:, 1] for s in splits]
    return out


def stats(p, t, y, first3, groups, idx):
    """AUROC; F1 at threshold t, always-end F1, their difference; sampled E[F1], its difference; sampled share
    ending within 3 user turns; people's share."""
    from sklearn.metrics import roc_auc_score

    at = np.concatenate([groups[c] for c in idx])
    pi, yi = p[at], y[at]
    said = pi >= t
    f1, always, sampled = (2 * (said & (yi == 1)).sum() / (said.sum() + yi.sum()), 2 * yi.sum() / (len(yi) + yi.sum()),
                           2 * (pi * yi).sum() / (pi.sum() + yi.sum()))
    within = [1 - np.prod(1 - p[groups[c]][first3[groups[c]]]) for c in idx]
    people = [bool((y[groups[c]] * first3[groups[c]]).any()) for c in idx]
    return [roc_auc_score(yi, pi), f1, always, f1 - always, sampled, sampled - always, np.mean(within), np.mean(people)]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split(". ")[0])
    ap.add_argument("--data", required=True, help="prepared data dir (train, validation, test splits with ends)")
    a = ap.parse_args()
    print(machine_line(), flush=True)  # first, as every benchmark (tests/test_benchmark_machine.py)
    tr, va, te = (load(a.data, s) for s in ("train", "validation", "test"))
    print(f"decisions: train {len(tr[3])} ({tr[3].sum()} ends), validation {len(va[3])}, test {len(te[3])} "
          f"({te[3].sum()} ends, {len(set(te[4]))} conversations)\n", flush=True)
    _, inverse = np.unique(te[4], return_inverse=True)
    groups = [np.flatnonzero(inverse == c) for c in range(inverse.max() + 1)]
    first3 = te[0][:, 0] <= 3
    print("| p(end) from | AUROC | F1 at people's rate | always-end F1 | difference | sampled E[F1] | difference | "
          "sampled: ended within 3 user turns | people |\n|---|---|---|---|---|---|---|---|---|")
    for name, (pv, pt) in models(tr, (va, te)).items():
        t = float(np.quantile(pv, 1 - va[3].mean()))
        rng = np.random.default_rng(0)
        draws = [stats(pt, t, te[3], first3, groups, rng.integers(0, len(groups), len(groups))) for _ in range(1000)]
        lo, hi = np.percentile(draws, [2.5, 97.5], axis=0)
        cells = [f"{v:.3f} [{x:.3f}, {z:.3f}]" for v, x, z in
                 zip(stats(pt, t, te[3], first3, groups, np.arange(len(groups))), lo, hi)]
        print(f"| {name} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
