"""Which runs and which real-human data may be set side by side.

`check_comparable` lists why two runs (their run.json) cannot be paired: anything but the user model differs.
`check_no_overlap` refuses a reference / data split whose conversations the adapter was trained on, by content
(hashes of the normalised human turns, userlm.data.dedup.turn_hashes), not by directory: a reference prepared
with another seed puts other conversations in its test split."""

from __future__ import annotations

from pathlib import Path

from userlm.io import UserError

# (reason, where in run.json): the settings two paired runs must share. Sampling and per-scenario max_turns are
# fields of the scenarios, so the scenario hash covers them; the backend options hold the sampling overrides.
_SAME = [
    ("seed plan (seed)", ("config", "seed")),
    ("seed plan (samples per scenario)", ("config", "samples")),
    ("seed plan (conversations)", ("total_conversations",)),
    ("scenario hashes (scenarios, their sampling or max_turns)", ("identity", "scenarios_sha256")),
    ("max_turns", ("config", "max_turns")),
    ("assistant", ("config", "assistant")),
    ("assistant", ("assistant_model",)),
    ("assistant backend", ("config", "assistant_backend")),
    ("assistant backend", ("config", "backend")),
    ("sampling (backend options)", ("identity", "config", "backend_options")),
    ("replay data", ("config", "replay")),
    ("replay data hash", ("replay_data_content_hash",)),
    ("replay data hash", ("replay", "content_hash")),
    ("replay split", ("config", "split")),
    ("replay limit", ("config", "limit")),
    ("replay history cut", ("replay", "history_cut")),
]
_MISSING = object()


def _get(info: dict, path: tuple[str, ...]):
    for key in path:
        if not isinstance(info, dict) or key not in info:
            return _MISSING
        info = info[key]
    return info


def _short(value) -> str:
    text = "unset" if value is _MISSING or value is None else str(value)
    return text if len(text) <= 40 else text[:16] + "..."


def check_comparable(run_a_info: dict, run_b_info: dict) -> list[str]:
    """The reasons two run.json infos are not comparable (empty when they are): each setting but the user model
    that differs, once per reason, as 'reason: A vs B'. A setting one run.json lacks (an older run) is not
    compared."""
    reasons: dict[str, str] = {}
    for reason, path in _SAME:
        a, b = _get(run_a_info, path), _get(run_b_info, path)
        if _MISSING in (a, b) or a == b or reason in reasons:
            continue
        reasons[reason] = f"{reason}: {_short(a)} vs {_short(b)}"
    return list(reasons.values())


def refuse_incomparable(infos: list[tuple[str, dict]], what: str = "runs") -> list[str]:
    """One message a run that is not comparable with the first (none when all are), each on one line."""
    (first, first_info), out = infos[0], []
    for name, info in infos[1:]:
        reasons = check_comparable(first_info, info)
        if reasons:
            out.append(f"{what} {first} and {name} are not comparable: {'; '.join(reasons)}")
    return out


def check_no_overlap(model: str | None, data_dir: str, split: str, examples: list[dict] | None = None) -> None:
    """UserError when held-out conversations of `data_dir`'s `split` share a human turn with the adapter's
    training conversations (compared by content hash)."""
    from userlm.data.dedup import TRAINING_HASHES, example_turn_hashes, read_hashes
    from userlm.data.prepare import load_manifest, read_split

    if not model or not (Path(model) / "adapter_config.json").exists():
        return
    adapter = Path(model)
    if (adapter / TRAINING_HASHES).exists():
        trained, source = read_hashes(adapter / TRAINING_HASHES), f"{adapter / TRAINING_HASHES}"
    else:
        from userlm.io import read_json

        manifest = read_json(adapter / "manifest.json", "adapter manifest") if (adapter / "manifest.json").exists() else {}
        train_dir = manifest.get("data_dir")
        if not train_dir or not (Path(train_dir) / "manifest.json").exists() or \
                load_manifest(train_dir).get("content_hash") != manifest.get("data_content_hash"):
            return  # nothing to compare with: the adapter records no training turns and its data is gone
        trained = {h for ex in read_split(train_dir, "train") for h in example_turn_hashes(ex)}
        source = f"the train split of {train_dir}"
    examples = read_split(data_dir, split) if examples is None else examples
    overlap = sum(bool(example_turn_hashes(ex) & trained) for ex in examples)
    if overlap:
        raise UserError(f"{data_dir}: {overlap} of {len(examples)} {split} conversations share a human turn with "
                        f"{model}'s training data ({source}); use the data dir it was trained on, or data "
                        f"prepared with the same seed")
