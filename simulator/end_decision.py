"""The user side's learned end policy (userlm/end_policy.py) in self-play and --replay. At each end decision the
policy decides first: p(end) >= threshold (mode sample: a draw from the conversation's seed below people's end
rate at that turn) ends the conversation there without generating a turn (`end_by: "policy"`); otherwise the user
model writes the turn. What the model's own end marker does then, at a decision or at an opening (where no
person ends), is `end_policy_lm_ends`: `drop` (the default: the policy alone decides; the marker is dropped and
the turn's text kept, a bare marker is resampled up to 3 times and then taken, `end_by: "model"`) or `keep` (the
policy or the model may end). Without a policy nothing here runs: the user behaves as before."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from simulator.guardrails import Review
from userlm.end_policy import POLICY_FILE, EndPolicy, load_policy
from userlm.users import UserSpec

RETRIES = 3  # resamples of a bare end marker the policy did not ask for


def resolve_policy(setting: str, user: UserSpec) -> EndPolicy | None:
    """`auto`: the user adapter's end_policy.json where it has one; `off`: none; else a policy file."""
    if setting == "off":
        return None
    if setting == "auto":
        path = Path(user.model) / POLICY_FILE if user.kind == "adapter" else None
        return load_policy(path) if path is not None and path.exists() else None
    return load_policy(setting)


def policy_info(policy: EndPolicy | None, lm_ends: str, identity: bool = False) -> dict:
    """run.json's `end_policy`: the file, its hash, mode and threshold (or rates), and the model's ends (the identity's: without
    the file's path, so a moved policy file resumes); {} without a policy."""
    if policy is None:
        return {}
    return {"end_policy": {k: v for k, v in {**policy.describe(), "lm_ends": lm_ends}.items()
                           if not (identity and k == "file")}}


def overrule(policy: EndPolicy | None, lm_ends: str, history: list[dict], r: Review, attempt: int,
             counts: Counter) -> Review:
    """A generated user turn at a point where the policy said go on (`history`: the turns before it)."""
    if policy is None or r.resample or not r.ended or lm_ends == "keep":
        return r
    if r.text:
        counts["lm_end_dropped"] += 1
        return Review(False, r.text, False, r.truncated)
    if attempt < RETRIES:
        counts["lm_end_resampled"] += 1
        return Review(True)
    counts["lm_end_taken"] += 1  # a bare end marker every time: taken, as the model's end
    return r
