import gzip
import json
import subprocess
import sys

import pytest
from conftest import OASST2_SAMPLE, OASST_EN, msg, needs_shared, sharegpt_file, write_trees

from userlm.data.oasst import read_oasst_trees
from userlm.data.prepare import PrepareConfig, prepare, read_split, split_of
from userlm.data.sharegpt import read_sharegpt
from userlm.data.sources import read_source
from userlm.data.trees import ReadReport
from userlm.io import UserError


def _all_examples(out):
    return [ex for s in ("train", "validation", "test") for ex in read_split(out, s)]


def test_sharegpt_package_recovers_every_whole_conversation():
    report = ReadReport()
    trees = list(read_source("sharegpt", report))
    assert len(trees) + report.empty_records == 17_671
    assert report.dropped_bytes > 0 and "cut off" in report.notes[0]
    assert all(t.root.role in ("user", "assistant") for t in trees)


def test_truncated_sharegpt_file_keeps_whole_records(tmp_path):
    records = [{"id": "a_0", "conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "hello"}]},
               {"id": "a_1", "conversations": [{"from": "human", "value": "more"}]}]
    text = json.dumps(records)
    path = tmp_path / "cut.json"
    path.write_text(text[: text.index('"more"') + 3])
    report = ReadReport()
    trees = list(read_sharegpt(path, report))
    assert [t.tree_id for t in trees] == ["a_0"] and report.dropped_bytes > 0
    assert trees[0].group_id == "a"


def test_branching_tree_threads_targets_and_best_branch(tmp_path, branching_tree):
    src = write_trees(tmp_path / "x.trees.jsonl", [branching_tree])
    out = tmp_path / "all"
    # OASST records no conversation ends: no end targets, and a thread that would train nothing is left out.
    prepare(PrepareConfig(sources=[str(src)], out=str(out), test_fraction=0, validation_fraction=0))
    (only,) = read_split(out, "train")
    assert [m["target"] for m in only["messages"]] == [True, False, True, False]
    assert not only["ends_conversation"] and not only["end_recorded"]

    prepare(PrepareConfig(sources=[str(src)], out=str(out), end_markers="always", test_fraction=0,
                          validation_fraction=0))
    examples = read_split(out, "train")
    assert len(examples) == 2
    long, short = sorted(examples, key=lambda e: -len(e["messages"]))
    assert [m["role"] for m in long["messages"]] == ["user", "assistant", "user", "assistant"]
    assert [m["target"] for m in long["messages"]] == [True, False, True, False]
    # The shared first human turn is a target once only; the second thread keeps it as context.
    assert [m["target"] for m in short["messages"]] == [False, False]
    assert long["ends_conversation"] and short["ends_conversation"]

    best = tmp_path / "best"
    prepare(PrepareConfig(sources=[str(src)], out=str(best), branches="best", end_markers="always",
                          test_fraction=0, validation_fraction=0))
    assert len(read_split(best, "train")) == 1


def test_sharegpt_parts_rejoin_into_one_conversation_with_one_end(tmp_path):
    h, g = "human", "gpt"
    src = sharegpt_file(tmp_path / "parts.json", [
        ("c_0", [(h, "first question"), (g, "answer one"), (h, "second question"), (g, "answer two")]),
        ("c_3", [(g, "answer two"), (h, "third question"), (g, "answer three")]),  # repeats the turn it follows
        ("c_6", [(h, "fourth question"), (g, "answer four")]),  # starts right after
        ("c_9", [(h, "a later question"), (g, "a later answer")]),  # turn 8 is missing: a break
        ("solo", [(h, "one question"), (g, "one answer")]),
    ])
    out = tmp_path / "o"
    manifest = prepare(PrepareConfig(sources=[src], out=str(out), test_fraction=0, validation_fraction=0))
    examples = {e["tree_id"]: e for e in read_split(out, "train")}
    whole = examples["c_0"]
    assert [m["content"] for m in whole["messages"] if m["role"] == "user"] == [
        "first question", "second question", "third question", "fourth question"]
    assert [m["content"] for m in whole["messages"]].count("answer two") == 1
    # The person went on after c_0..c_5 (the break), so no end there; the segment after the break does
    # not open the conversation, so its first human turn is context, and only the last segment ends.
    assert not whole["ends_conversation"] and all(m["target"] for m in whole["messages"] if m["role"] == "user")
    later = examples["c_9"]
    assert later["ends_conversation"] and [m["target"] for m in later["messages"]] == [False, False]
    assert examples["solo"]["ends_conversation"]
    info = manifest["sources"][0]
    assert info["parts_joined"] == 2 and info["part_breaks"] == 1 and info["records_end"]


def test_duplicates_are_trained_once_and_linked_conversations_share_a_split(tmp_path):
    h, g = "human", "gpt"
    long_turn = "please write me a short poem about the sea and the sky"
    records = [(f"dup{i}", [(h, "Hello there!"), (g, f"reply {i}"), (h, "and  MORE  please")]) for i in range(3)]
    records += [(f"link{i}", [(h, long_turn + "!" * i), (g, f"poem {i}"), (h, f"thanks {i}")]) for i in range(40)]
    src = sharegpt_file(tmp_path / "d.json", records)
    out = tmp_path / "o"
    manifest = prepare(PrepareConfig(sources=[src], out=str(out), test_fraction=0.3, validation_fraction=0.3))
    by_split = {s: [e["tree_id"] for e in read_split(out, s)] for s in ("train", "validation", "test")}
    kept = [t for ids in by_split.values() for t in ids]
    assert sum(t.startswith("dup") for t in kept) == 1 and manifest["dedup"]["exact_duplicates_dropped"] == 2
    assert sum(any(t.startswith("link") for t in ids) for ids in by_split.values()) == 1
    assert manifest["dedup"]["conversations_in_linked_units"] == 43  # 40 linked + the 3 copies
    off = prepare(PrepareConfig(sources=[src], out=str(tmp_path / "off"), dedup=False, test_fraction=0,
                                validation_fraction=0))
    assert off["counts"]["train"]["trees"] == 43


def test_end_markers_setting_is_checked_and_never_means_none(tmp_path):
    src = sharegpt_file(tmp_path / "e.json", [("a", [("human", "hi"), ("gpt", "hello")])])
    m = prepare(PrepareConfig(sources=[src], out=str(tmp_path / "n"), end_markers="never", test_fraction=0,
                              validation_fraction=0))
    assert m["counts"]["train"]["end_targets"] == 0
    with pytest.raises(UserError, match="end_markers"):
        prepare(PrepareConfig(sources=[src], out=str(tmp_path / "x"), end_markers="sometimes"))


def test_embedded_sharegpt_one_end_per_conversation_and_no_leak_across_splits(tmp_path):
    from userlm.data.dedup import normalise

    out = tmp_path / "sg"
    manifest = prepare(PrepareConfig(sources=["sharegpt"], out=str(out)))
    splits = {s: read_split(out, s) for s in ("train", "validation", "test")}
    examples = [e for exs in splits.values() for e in exs]
    # hRPPgZT is cut into parts _0, _11 and _17 in the release: one conversation, one end.
    (whole,) = [e for e in examples if e["tree_id"].startswith("hRPPgZT")]
    assert whole["ends_conversation"] and sum(e["ends_conversation"] for e in examples) <= len(examples)
    assert len({e["tree_id"] for e in examples}) == len(examples)
    assert manifest["sources"][0]["parts_joined"] > 8000
    # Continuation parts no longer open conversations: every example starts with its conversation's start.
    assert not any(e["tree_id"].rsplit("_", 1)[-1] not in ("0",) and "_" in e["tree_id"] and
                   e["tree_id"].rsplit("_", 1)[-1].isdigit() for e in examples)

    def long_turns(exs):
        return {normalise(m["content"]) for e in exs for m in e["messages"]
                if m["role"] == "user" and len(normalise(m["content"]).split()) >= 8}

    train, validation, test = (long_turns(splits[s]) for s in ("train", "validation", "test"))
    assert test and validation
    assert not test & train and not test & validation and not validation & train


@needs_shared
def test_real_oasst_has_no_end_targets_by_default_and_counts_what_filters_dropped(tmp_path):
    m = prepare(PrepareConfig(sources=[str(OASST2_SAMPLE), str(OASST_EN)], out=str(tmp_path / "o")))
    assert sum(c.get("end_targets", 0) for c in m["counts"].values()) == 0
    assert not any(e["ends_conversation"] for e in _all_examples(tmp_path / "o"))
    sample = m["sources"][0]
    # 338 of the 401 sample trees are not ready_for_export (still growing, halted, aborted, ...)
    assert sum(n for k, n in sample["dropped_trees"].items() if k.startswith("tree_state:")) == 338
    assert m["sources"][1]["dropped_messages"]["synthetic"] > 0
    kept = prepare(PrepareConfig(sources=[str(OASST2_SAMPLE)], out=str(tmp_path / "k"), keep_unfinished_trees=True))
    assert kept["sources"][0]["trees"] > sample["trees"]


def test_filters_drop_deleted_unreviewed_synthetic_and_other_languages(tmp_path):
    trees = [
        {"message_tree_id": "en", "prompt": msg("p", "prompter", "Hello there", [
            msg("a", "assistant", "deleted answer", deleted=True),
            msg("b", "assistant", "bad answer", review_result=False),
            msg("c", "assistant", "model answer", synthetic=True),
            msg("d", "assistant", "good answer")])},
        {"message_tree_id": "es", "prompt": msg("q", "prompter", "¿Cómo estás?", [msg("r", "assistant", "Bien")],
                                                lang="es")},
        {"message_tree_id": "gone", "prompt": msg("z", "prompter", "removed", deleted=True)},
    ]
    src = write_trees(tmp_path / "f.trees.jsonl", trees)
    out = tmp_path / "o"
    prepare(PrepareConfig(sources=[str(src)], out=str(out), lang=["es"], test_fraction=0, validation_fraction=0))
    assert [e["lang"] for e in read_split(out, "train")] == ["es"]
    prepare(PrepareConfig(sources=[str(src)], out=str(out), test_fraction=0, validation_fraction=0))
    texts = {m["content"] for e in read_split(out, "train") for m in e["messages"]}
    assert "good answer" in texts and not texts & {"deleted answer", "bad answer", "model answer", "removed"}


def test_greeting_opens_conversations(tmp_path, branching_tree):
    src = write_trees(tmp_path / "x.trees.jsonl", [branching_tree])
    out = tmp_path / "g"
    prepare(PrepareConfig(sources=[str(src)], out=str(out), greeting="How can I help?", test_fraction=0,
                          validation_fraction=0))
    first = read_split(out, "train")[0]["messages"][0]
    assert first == {"role": "assistant", "content": "How can I help?", "target": False}


def test_malformed_line_names_file_line_and_field(tmp_path, branching_tree):
    bad = {"message_tree_id": "t2", "prompt": {"message_id": "x", "role": "prompter"}}
    src = write_trees(tmp_path / "bad.trees.jsonl", [branching_tree, bad])
    with pytest.raises(UserError, match=r"bad.trees.jsonl:2: field 'prompt.text': missing"):
        list(read_oasst_trees(src, ReadReport()))
    (tmp_path / "json.trees.jsonl").write_text(json.dumps(branching_tree) + "\n{not json\n")
    with pytest.raises(UserError, match=r"json.trees.jsonl:2: .*invalid JSON"):
        list(read_oasst_trees(tmp_path / "json.trees.jsonl", ReadReport()))
    report = ReadReport()
    assert len(list(read_oasst_trees(src, report, skip_bad=True))) == 1 and report.skipped_records == 1


def test_failed_prepare_leaves_no_output(tmp_path, branching_tree):
    src = write_trees(tmp_path / "bad.trees.jsonl", [branching_tree, {"prompt": {"role": "x"}}])
    out = tmp_path / "never"
    with pytest.raises(UserError):
        prepare(PrepareConfig(sources=[str(src)], out=str(out)))
    assert not out.exists() and not list(tmp_path.glob(".never*"))


def test_gzip_trees_and_flat_message_table(tmp_path, branching_tree):
    gz = tmp_path / "x.trees.jsonl.gz"
    with gzip.open(gz, "wt") as f:
        f.write(json.dumps(branching_tree) + "\n")
    assert len(list(read_source(str(gz), ReadReport()))) == 1
    rows = [
        {"message_id": "p1", "parent_id": None, "message_tree_id": "t1", "role": "prompter", "text": "Hi", "lang": "en"},
        {"message_id": "a1", "parent_id": "p1", "message_tree_id": "t1", "role": "assistant", "text": "Hello",
         "lang": "en", "rank": 0},
        {"message_id": "p2", "parent_id": "a1", "message_tree_id": "t1", "role": "prompter", "text": "Bye", "lang": "en"},
    ]
    flat = tmp_path / "messages.jsonl"
    flat.write_text("".join(json.dumps(r) + "\n" for r in rows))
    trees = list(read_source(str(flat), ReadReport()))
    assert len(trees) == 1 and trees[0].root.children[0].children[0].text == "Bye"


@needs_shared
def test_real_oasst_splits_are_by_tree_and_deterministic(tmp_path):
    cfg = dict(sources=[str(OASST2_SAMPLE), str(OASST_EN)], validation_fraction=0.1, test_fraction=0.1, seed=3,
               keep_unfinished_trees=True)
    a = prepare(PrepareConfig(out=str(tmp_path / "a"), **cfg))
    b = prepare(PrepareConfig(out=str(tmp_path / "b"), **cfg))
    assert a["content_hash"] == b["content_hash"]
    trees_by_split = {s: {e["tree_id"] for e in read_split(tmp_path / "a", s)} for s in ("train", "validation", "test")}
    assert not trees_by_split["train"] & trees_by_split["test"]
    assert not trees_by_split["train"] & trees_by_split["validation"]
    assert all(trees_by_split.values())
    examples = _all_examples(tmp_path / "a")
    langs = {e["lang"] for e in examples}
    assert {"en", "es"} <= langs  # the sample is ~60% non-English
    # Synthetic (model-written) prompter turns never become targets.
    synthetic = set()
    for line in OASST_EN.read_text().splitlines():
        stack = [json.loads(line)["prompt"]]
        while stack:
            m = stack.pop()
            stack.extend(m.get("replies", []))
            if m.get("synthetic") and m["role"] == "prompter":
                synthetic.add(m["text"].strip())
    targets = {m["content"] for e in examples for m in e["messages"] if m["target"]}
    assert synthetic and not synthetic & targets
    assert split_of("some-tree", PrepareConfig(seed=1)) == split_of("some-tree", PrepareConfig(seed=1))


def test_cli_prepare_stats_and_one_line_errors(tmp_path, branching_tree):
    src = write_trees(tmp_path / "x.trees.jsonl", [branching_tree])
    run = lambda *a: subprocess.run([sys.executable, "-m", "workflows.cli", *a], capture_output=True, text=True)
    r = run("data", "prepare", "--source", str(src), "--out", str(tmp_path / "o"))
    assert r.returncode == 0, r.stderr
    r = run("data", "stats", str(tmp_path / "o"), "--json")
    assert json.loads(r.stdout)["train"]["human_turns"] + json.loads(r.stdout)["test"]["human_turns"] + \
        json.loads(r.stdout)["validation"]["human_turns"] == 2
    (tmp_path / "bad.trees.jsonl").write_text('{"prompt": {"message_id": "m", "role": "prompter"}}\n')
    r = run("data", "prepare", "--source", str(tmp_path / "bad.trees.jsonl"), "--out", str(tmp_path / "b"))
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "bad.trees.jsonl:1" in r.stderr
    assert "Traceback" not in r.stderr


def test_help_does_not_import_torch():
    code = "import sys; from workflows.cli import build_parser; build_parser(); print('torch' in sys.modules)"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.stdout.strip() == "False"


def test_reference_termination_is_na_where_the_source_records_no_end(tmp_path, branching_tree):
    import math

    from evaluators.reference import reference_units
    from evaluators.registry import Context, behaviour

    src = write_trees(tmp_path / "x.trees.jsonl", [branching_tree])
    prepare(PrepareConfig(sources=[str(src)], out=str(tmp_path / "o"), test_fraction=1.0 - 1e-9,
                          validation_fraction=0))
    reference = reference_units(str(tmp_path / "o"))
    assert reference and all(u["ended_by_user"] is None for u in reference)
    units = [{"user_turns": ["hi"], "ended_by_user": True, "truncated": [False]}]
    result = behaviour(Context(units=units, reference=reference, run_info={})).metrics["termination_rate"]
    assert result["run"]["value"] == 1.0
    assert math.isnan(result["reference"]["value"]) and "no conversation ends" in result["reference"]["note"]
    # A replay runs every conversation to its real end: its termination_rate (0 for any model, 1 for people)
    # would measure the replay, not the user; its ends are end_f1's.
    replay = behaviour(Context(units=units, reference=units, run_info={"mode": "replay"})).metrics["termination_rate"]
    assert replay["run"]["value"] is None and "end_f1" in replay["run"]["note"] and replay["reference"]["value"] is None
