"""Issue 24: the learned end policy (userlm/end_policy.py) alone on every end decision of a prepared data dir's test
split: end F1 at the policy's threshold (chosen on validation), always-end F1, the difference, AUROC, each with a 95%
percentile bootstrap CI over conversations (1,000 draws, points kept together); and the share of held-out
conversations it would end within 3 / 8 user turns (its first end on the real history) against people's.
python benchmarks/bench_end_policy.py --data DATA [--policy end_policy.json] (fits one when not given; CPU, ~10 s)"""

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from userlm.data.prepare import read_split
from userlm.end_policy import end_decisions, load_policy, write_policy
from userlm.threads import machine_line


def stats(p, y, t, users, n_users, ended, groups, idx) -> list:
    """F1, always-end F1, F1 - always, AUROC; policy / people share ending within 3 and 8 user turns."""
    pi, yi = p[np.concatenate([groups[g] for g in idx])], y[np.concatenate([groups[g] for g in idx])]
    f1 = 2 * ((pi >= t) & (yi == 1)).sum() / ((pi >= t).sum() + yi.sum())
    always = 2 * yi.sum() / (len(yi) + yi.sum())
    out = [f1, always, f1 - always, roc_auc_score(yi, pi) if 0 < yi.sum() < len(yi) else np.nan]
    first = np.array([next((u for u, q in zip(users[g], p[groups[g]]) if q >= t), 99) for g in idx])
    for k in (3, 8):
        out += [np.mean(first <= k), np.mean(ended[idx] & (n_users[idx] <= k))]
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split(". ")[0])
    ap.add_argument("--data", required=True, help="prepared data dir (train, validation, test splits with ends)")
    ap.add_argument("--policy", help="an end_policy.json (default: fit one on --data)")
    ap.add_argument("--split", default="test")
    a = ap.parse_args()
    print(machine_line(), flush=True)  # first, as every benchmark (tests/test_benchmark_machine.py)
    path = a.policy or str(Path(tempfile.mkdtemp()) / "end_policy.json")
    if not a.policy:
        write_policy(a.data, path)
    policy, info = load_policy(path), json.loads(Path(path).read_text())
    p, y, groups, users, n_users, ended = [], [], [], [], [], []
    for ex in read_split(a.data, a.split):
        points = end_decisions(ex)
        if not points:
            continue
        msgs = ex["messages"]
        probs = [policy.probability(msgs[:i]) for i, _ in points]
        groups.append(np.arange(len(p), len(p) + len(points)))
        p += probs
        y += [int(e) for _, e in points]
        users.append([sum(m["role"] == "user" for m in msgs[:i]) for i, _ in points])
        n_users.append(sum(m["role"] == "user" for m in msgs))
        ended.append(bool(ex.get("ends_conversation")))
    p, y, n_users, ended = map(np.array, (p, y, n_users, ended))
    print(f"policy {path} (sha256 {policy.sha256[:12]}), threshold {policy.threshold:.4f}, fitted on "
          f"{info['fitted_on']['decisions']} train decisions ({info['fitted_on']['ends']} ends); validation F1 "
          f"{info['validation']['f1']} vs always-end {info['validation']['always_end_f1']}")
    print(f"{a.split}: {len(y)} decisions, {y.sum()} real ends, {len(groups)} conversations\n")
    pv, yv = zip(*((policy.probability(ex["messages"][:i]), e) for ex in read_split(a.data, "validation")
                   for i, e in end_decisions(ex)))
    rate = float(np.quantile(pv, 1 - np.mean(yv)))  # ends at people's share of the validation decisions
    print("| threshold | end F1 | always-end F1 | F1 - always-end | AUROC | policy ends within 3 user turns | people "
          "| within 8 | people |\n|---|---|---|---|---|---|---|---|---|")
    for name, t in ((f"{policy.threshold:.4f} (the file's: best validation F1)", policy.threshold),
                    (f"{rate:.4f} (people's validation end rate)", rate)):
        args, rng = (p, y, t, users, n_users, ended, groups), np.random.default_rng(0)
        lo, hi = np.nanpercentile([stats(*args, rng.integers(0, len(groups), len(groups))) for _ in range(1000)],
                                  [2.5, 97.5], axis=0)
        print(f"| {name} | " + " | ".join(f"{v:.3f} [{x:.3f}, {z:.3f}]" for v, x, z in
                                          zip(stats(*args, np.arange(len(groups))), lo, hi)) + " |")


if __name__ == "__main__":
    main()
