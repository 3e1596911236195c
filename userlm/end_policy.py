"""A learned end policy (issue 24): a small model of *when* people stop, fitted on the recorded ends of a prepared
data dir. At each end decision (after an AI turn, once the user has spoken) it gives p(end) from six surface
features of the history; the user ends there when p >= its threshold, and otherwise the user model writes the turn.
It does not read the intent, nor what the turns mean beyond those features: it models when people stop, not why.

Fit: sklearn's LogisticRegression (balanced classes) on the train split's decisions, features standardised; the
threshold is the p that maximises end F1 on the validation split's decisions. Saved as plain JSON (no pickle), so
deciding needs neither sklearn nor numpy. Only for sources that record ends (ShareGPT does; OASST trees do not).

`mode: sample` (2026-11-30): the user ends at each decision with probability people's end rate at that user turn on
the train split (`hazard`), drawn from the conversation's seed, instead of thresholding the six features. The turn
index is all the measurable signal these data carry about when people stop, and a thresholding user ends far sooner
than people do (benchmarks/bench_end_signal.py), while a sampling one ends at their rate."""

from __future__ import annotations

import math
import random
import re
from dataclasses import dataclass
from pathlib import Path

from userlm.io import UserError, atomic_write_json, read_json, require_fields, sha256_file

POLICY_FILE = "end_policy.json"  # in an adapter dir: the adapter's own policy (`simulate --end-policy auto`)
POLICY_KIND = "userlm-end-policy"
MODES = ("threshold", "sample")
HAZARD_TURNS = 12  # people's end rate per user turn 1..11, then one rate for 12 turns and more
FEATURES = ("user_turns", "log_ai_words", "log_user_words", "user_thanks", "ai_asks", "ai_code")
_THANKS = re.compile(r"thank|thx|great|perfect", re.IGNORECASE)
_ASKS = re.compile(r"\?\s*$")


def turn_text(turn: dict) -> str:
    """A turn's text, as chat messages ({role, content}) or transcript turns ({role, text}) hold it."""
    return turn["content"] if "content" in turn else turn["text"]


def is_decision(history: list[dict]) -> bool:
    """An end decision: the history ends with an AI turn and the user has spoken (replay's points use this too)."""
    return bool(history) and history[-1]["role"] == "assistant" and any(t["role"] == "user" for t in history)


def features(history: list[dict]) -> list[float]:
    """FEATURES of the history before an end decision (turns {role, content} or {role, text}): user turns so far,
    log(1 + words) of the last AI turn and of the last user turn, the last user turn thanks / praises, the AI turn
    ends on a question, the AI turn has a code block."""
    user = [turn_text(t) for t in history if t["role"] == "user"]
    ai = turn_text(history[-1])
    return [float(len(user)), math.log1p(len(ai.split())), math.log1p(len(user[-1].split())),
            float(bool(_THANKS.search(user[-1]))), float(bool(_ASKS.search(ai))), float("```" in ai)]


def end_decisions(example: dict) -> list[tuple[int, bool]]:
    """(index into the messages, the person ended there) of each end decision of a prepared example whose source
    records ends; [] where it does not. The same points as simulator/replay_plan.plan_points (a test checks)."""
    msgs = example["messages"]
    if not example.get("end_recorded"):
        return []
    out = []
    for i in range(1, len(msgs) + 1):
        if (msgs[i]["role"] == "user" if i < len(msgs) else msgs[-1]["role"] == "assistant") and is_decision(msgs[:i]):
            out.append((i, i == len(msgs) and bool(example.get("ends_conversation"))))
    return out


def best_threshold(p, y) -> float:
    """The p at or above which ending maximises F1 (cut only between distinct values of p)."""
    import numpy as np

    p, y = np.asarray(p, float), np.asarray(y, float)
    ps, f1 = p[o := np.argsort(-p, kind="stable")], 2 * np.cumsum(y[o]) / (np.arange(1, len(p) + 1) + y.sum())
    return float(ps[np.argmax(np.where(np.r_[ps[1:] != ps[:-1], True], f1, -1))])


def f1_at(p, y, threshold: float) -> float:
    said = [q >= threshold for q in p]
    tp = sum(s and t for s, t in zip(said, y))
    return 2 * tp / (sum(said) + sum(y)) if sum(said) + sum(y) else 0.0


@dataclass(frozen=True)
class EndPolicy:
    means: tuple[float, ...]
    scales: tuple[float, ...]
    coefficients: tuple[float, ...]
    intercept: float
    threshold: float
    path: str | None = None
    sha256: str | None = None
    hazard: tuple[float, ...] = ()  # mode sample: p(end) after 1, 2, ... user turns (the last for all later ones)

    @property
    def mode(self) -> str:
        return "sample" if self.hazard else "threshold"

    def probability(self, history: list[dict]) -> float:
        z = self.intercept + sum(c * (x - m) / s for c, x, m, s in
                                 zip(self.coefficients, features(history), self.means, self.scales))
        return 1 / (1 + math.exp(-z)) if z >= 0 else math.exp(z) / (1 + math.exp(z))

    def ends(self, history: list[dict], seed: int = 0) -> bool:
        """End here instead of writing a turn: only at an end decision, where p(end) >= threshold, or in mode sample
        where the conversation's `seed` draws below people's end rate at this user turn."""
        if not is_decision(history):
            return False
        if not self.hazard:
            return self.probability(history) >= self.threshold
        turns = sum(t["role"] == "user" for t in history)
        return end_draw(seed, turns) < end_rate(self.hazard, turns)

    def describe(self) -> dict:
        """What run.json records of the policy in use."""
        # a threshold policy is described as before sample mode existed: runs written then keep their identity
        return {"file": self.path, "sha256": self.sha256,
                **({"mode": "sample", "hazard": list(self.hazard)} if self.hazard else {"threshold": self.threshold})}


def end_rate(hazard, user_turns: int) -> float:
    """People's end rate after `user_turns` turns (the last rate for every later turn)."""
    return hazard[min(user_turns, len(hazard)) - 1]


def end_draw(seed: int, user_turns: int) -> float:
    """The uniform a sampling policy compares with p(end) after `user_turns` turns: a function of the conversation's
    seed and the turn alone (random.Random seeds a string through SHA-512: the same on every machine)."""
    return random.Random(f"userlm-end:{seed}:{user_turns}").random()


def _finite_numbers(path: Path, what: str, info: dict, name: str, n: int | None) -> list[float]:
    v = info[name]
    if (n is not None and len(v) != n) or not v or not all(
            isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in v):
        raise UserError(f"{path}: {what} field '{name}' must be a list of {n or 'one or more'} finite numbers")
    return v


def load_policy(path: str | Path) -> EndPolicy:
    """A policy file as `fit_policy` writes it; anything wrong is one UserError naming the file and field."""
    path = Path(path)
    what = "end policy"
    info = read_json(path, what, {"kind": str})
    if info["kind"] != POLICY_KIND:
        raise UserError(f"{path}: {what} field 'kind' must be '{POLICY_KIND}', got {info['kind']!r}")
    if info.get("mode", "threshold") not in MODES:
        raise UserError(f"{path}: {what} field 'mode' must be one of {', '.join(MODES)}, got {info['mode']!r}")
    if info.get("mode") == "sample":
        hazard = _finite_numbers(path, what, require_fields(path, what, info, {"hazard": list}), "hazard", None)
        if not all(0 <= x <= 1 for x in hazard):
            raise UserError(f"{path}: {what} field 'hazard' must hold probabilities within [0, 1]")
        return EndPolicy((), (), (), 0.0, 0.0, str(path), sha256_file(path), tuple(float(x) for x in hazard))
    require_fields(path, what, info, {"features": list, "means": list, "scales": list, "coefficients": list,
                                      "intercept": (int, float), "threshold": (int, float)})
    if info["features"] != list(FEATURES):
        raise UserError(f"{path}: {what} field 'features' must be {list(FEATURES)} (this version's features)")
    for name in ("means", "scales", "coefficients"):
        _finite_numbers(path, what, info, name, len(FEATURES))
    if not all(s > 0 for s in info["scales"]):
        raise UserError(f"{path}: {what} field 'scales' must be > 0")
    for name in ("intercept", "threshold"):
        if isinstance(info[name], bool) or not math.isfinite(info[name]):
            raise UserError(f"{path}: {what} field '{name}' must be a finite number")
    if not 0 <= info["threshold"] <= 1:
        raise UserError(f"{path}: {what} field 'threshold' must be within [0, 1], got {info['threshold']}")
    return EndPolicy(tuple(info["means"]), tuple(info["scales"]), tuple(info["coefficients"]),
                     float(info["intercept"]), float(info["threshold"]), str(path), sha256_file(path))


def split_decisions(data_dir: str | Path, split: str) -> tuple[list[list[float]], list[int], list[str], dict]:
    """(features, person ended, conversation id) of every end decision of a split, and counts (conversations,
    those whose source records no end: they have no decisions to learn from and are counted, not used)."""
    from userlm.data.prepare import read_split

    X, y, conv, skipped, n = [], [], [], 0, 0
    for n, ex in enumerate(read_split(data_dir, split), 1):
        if not ex.get("end_recorded"):
            skipped += 1
        for i, ended in end_decisions(ex):
            X.append(features(ex["messages"][:i]))
            y.append(int(ended))
            conv.append(ex["id"])
    return X, y, conv, {"conversations": n, "conversations_without_recorded_end": skipped,
                        "decisions": len(y), "ends": sum(y)}


def fit_policy(data_dir: str | Path, mode: str = "threshold") -> dict:
    """The policy (a dict, as saved) fitted on `data_dir`'s train split, threshold on its validation split; in mode
    sample, people's end rate at each user turn on the train split, read on validation as a sampling user's
    expected end F1."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    from userlm.data.prepare import load_manifest

    manifest = load_manifest(data_dir)
    X, y, _, train = split_decisions(data_dir, "train")
    Xv, yv, _, val = split_decisions(data_dir, "validation")
    for name, counts in (("train", train), ("validation", val)):
        if not counts["ends"] or counts["ends"] == counts["decisions"]:
            raise UserError(f"{data_dir}: the {name} split has {counts['decisions']} end decisions with "
                            f"{counts['ends']} recorded ends ({counts['conversations_without_recorded_end']} of "
                            f"{counts['conversations']} conversations record no end); a learned end policy needs a "
                            f"source that records where people stopped (ShareGPT does, OASST does not)")
    always = round(f1_at([1.0] * len(yv), yv, 0.0), 4)
    common = {"data_dir": str(data_dir), "data_content_hash": manifest["content_hash"], "fitted_on": {"split": "train", **train}}
    if mode == "sample":
        turns = [min(int(x[0]), HAZARD_TURNS) for x in X]
        hazard = [sum(e for t, e in zip(turns, y) if t == k) / turns.count(k) for k in range(1, max(turns) + 1)]
        pv = [end_rate(hazard, int(x[0])) for x in Xv]
        expected = 2 * sum(p * e for p, e in zip(pv, yv)) / (sum(pv) + sum(yv))
        return {"kind": POLICY_KIND, "mode": "sample", "hazard": hazard, **common,
                "validation": {**val, "f1": round(expected, 4), "always_end_f1": always},
                "about": "when people stop: their end rate at each user turn (the last for every later turn), drawn "
                         "from the conversation's seed; the user model writes the turns"}
    scaler = StandardScaler().fit(X)
    model = LogisticRegression(max_iter=1000, class_weight="balanced").fit(scaler.transform(X), y)
    policy = {"kind": POLICY_KIND, "features": list(FEATURES), "means": [float(v) for v in scaler.mean_],
              "scales": [float(v) for v in scaler.scale_], "coefficients": [float(v) for v in model.coef_[0]],
              "intercept": float(model.intercept_[0]), "threshold": 0.5}
    fitted = EndPolicy(*(tuple(policy[k]) for k in ("means", "scales", "coefficients")), policy["intercept"], 0.5)
    pv = [fitted.probability(h) for h in _histories(data_dir, "validation")]
    policy["threshold"] = best_threshold(pv, yv)
    return {**policy, **common, "validation": {**val, "f1": round(f1_at(pv, yv, policy["threshold"]), 4),
                                               "always_end_f1": always},
            "about": "when people stop, from 6 surface features of the history (not from the intent); "
                     "the user model writes the turns"}


def _histories(data_dir, split):
    from userlm.data.prepare import read_split

    for ex in read_split(data_dir, split):
        for i, _ in end_decisions(ex):
            yield ex["messages"][:i]


def write_policy(data_dir: str | Path, out: str | Path, mode: str = "threshold") -> dict:
    """Fit and write `out` (refused if it exists: nothing is overwritten); returns the policy."""
    out = Path(out)
    if out.exists():
        raise UserError(f"{out} already exists; choose another path")
    policy = fit_policy(data_dir, mode)
    atomic_write_json(out, policy)
    return policy


def summary(policy: dict, out: str | Path) -> str:
    f, v = policy["fitted_on"], policy["validation"]
    how = (f"sampled at people's end rate a user turn ({', '.join(f'{h:.3f}' for h in policy['hazard'][:3])}, ...); "
           f"validation expected end F1" if policy.get("mode") == "sample" else
           f"threshold {policy['threshold']:.4f}; validation end F1")
    return (f"{out}: end policy fitted on {f['decisions']} train decisions ({f['ends']} ends, "
            f"{f['conversations_without_recorded_end']} conversations without a recorded end left out); "
            f"{how} {v['f1']:.3f} vs always-end {v['always_end_f1']:.3f}")


def fit_for_adapter(data_dir: str | Path, adapter_dir: str | Path, mode: str = "threshold") -> dict:
    """`userlm train` with `end_policy: learned` (mode threshold) or `sampled`: the adapter's end_policy.json, or a
    skip with its reason where the data records no ends (printed, and in the adapter manifest)."""
    try:
        policy = write_policy(data_dir, Path(adapter_dir) / POLICY_FILE, mode)
    except UserError as e:
        print(f"end policy skipped: {e}")
        return {"skipped": str(e)}
    print(summary(policy, Path(adapter_dir) / POLICY_FILE))
    return {"file": POLICY_FILE, "mode": mode, **({"hazard": policy["hazard"]} if mode == "sample" else
                                                  {"threshold": policy["threshold"]}), "validation": policy["validation"]}
