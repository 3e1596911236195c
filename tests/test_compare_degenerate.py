"""Issue 22's acceptance through `userlm compare` itself: a degenerate user ("ok" / "?" only, or one sentence
repeated) replaying the same real conversations as a sane one is a regression (exit 1) on the primary metric,
discriminability, and the sane one against itself is not. Both runs are replay run directories written as files
from real held-out ShareGPT conversations (the sane user writes what the person wrote); the classifier is a real
one trained on the same data's train split."""

import json
from pathlib import Path

import pytest
from test_against_people import DEGENERATE, replay_record

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    from evaluators.classifier import ClassifierConfig, train_classifier
    from userlm.data.prepare import PrepareConfig, prepare, read_split

    root = tmp_path_factory.mktemp("compare-degenerate")
    prepare(PrepareConfig(sources=["sharegpt"], out=str(root / "data"), max_trees_per_source=600))
    train_classifier(ClassifierConfig(out=str(root / "classifier"), data=[str(root / "data")],
                                      max_per_class_per_source=150, held_out_generators=False))
    conversations = [[{"role": m["role"], "text": m["content"]} for m in ex["messages"]]
                     for ex in read_split(root / "data", "test")
                     if ex["messages"][0]["role"] == "user" and sum(m["role"] == "user" for m in ex["messages"]) >= 2]
    return root, conversations[:40]


def write_replay_run(out: Path, user: str, conversations, generate) -> Path:
    out.mkdir(parents=True)
    records = [replay_record(i, msgs, generate) for i, msgs in enumerate(conversations)]
    (out / "transcripts.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    info = {"kind": "userlm-simulation-run", "mode": "replay", "config": {"user": user, "assistant": "replayed",
            "seed": 0, "split": "test"}, "replay": {"data_content_hash": "same", "split": "test", "limit": None},
            "total_conversations": len(records), "finished_at": "2026-11-30T00:00:00+0000"}
    (out / "run.json").write_text(json.dumps(info))
    return out


@pytest.mark.parametrize("name", sorted(DEGENERATE))
def test_compare_fails_a_degenerate_user_against_a_sane_one(work, tmp_path, name):
    from rich.console import Console

    from workflows.compare import compare

    root, conversations = work
    sane = write_replay_run(tmp_path / "sane", "sane-user", conversations, lambda index, text: text)
    broken = write_replay_run(tmp_path / "broken", "broken-user", conversations, DEGENERATE[name])
    common = dict(scenarios=str(ROOT / "scenarios" / "smoke"), classifier=str(root / "classifier"),
                  console=Console(quiet=True))
    result = compare(str(sane), str(broken), out=str(tmp_path / "c"), **common)
    rows = {r["metric"]: r for r in result["rows"]}
    assert result["primary"] == "discriminability" and result["exit_code"] == 1
    assert rows["discriminability"]["verdict"] == "regressed"
    assert rows["discriminability"]["candidate"] >= 0.95 and rows["discriminability"]["baseline"] < 0.6
    same = compare(str(sane), str(sane), out=str(tmp_path / "s"), **common)
    assert same["exit_code"] == 0 and not same["regressed"]
