"""Issue 27 item 3: every record a reader drops is counted by reason (in the manifest and the summary), and
a structural error in the middle of a file is an error naming the record. Tiny inputs, no model."""

import json
from collections import Counter

import pytest
from conftest import cli, msg, one_line_error, sharegpt_file, write_trees

from userlm.data.oasst import jsonl_rows, trees_from_message_rows
from userlm.data.prepare import PrepareConfig, threads
from userlm.data.sharegpt import read_sharegpt
from userlm.data.trees import Message, ReadReport, Tree
from userlm.io import UserError

pytestmark = pytest.mark.usefixtures("keep_thread_settings")


def row(mid, parent, tree, role, text=None):
    return {"message_id": mid, "parent_id": parent, "message_tree_id": tree, "role": role,
            "text": text or f"message {mid} of tree {tree}", "lang": "en", "review_result": True, "deleted": False}


def conversation(tree, prefix=""):
    """p -> a -> p2 -> a2: two human turns."""
    return [row(f"{prefix}p", None, tree, "prompter"), row(f"{prefix}a", f"{prefix}p", tree, "assistant"),
            row(f"{prefix}p2", f"{prefix}a", tree, "prompter"), row(f"{prefix}a2", f"{prefix}p2", tree, "assistant")]


def table(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def read_rows(path, skip_bad=False):
    report = ReadReport()
    trees = list(trees_from_message_rows(jsonl_rows(path, report, skip_bad), str(path), report, skip_bad))
    return trees, report


def prepare_output(capsys, source, out, *extra):
    """`data prepare` in-process: (exit code, what it printed: the summary)."""
    from workflows.cli import main

    code = main(["data", "prepare", "--source", str(source), "--out", str(out), *extra])
    return code, capsys.readouterr().out


def messages(trees):
    n, stack = 0, [t.root for t in trees]
    while stack:
        n += 1
        stack += stack.pop().children
    return n


def test_a_second_tree_reusing_message_ids_is_an_error_naming_the_row(tmp_path, capsys):
    path = table(tmp_path / "m.jsonl", conversation("t1") + conversation("t2"))  # t2 reuses p, a, p2, a2
    code, err = cli(capsys, "data", "prepare", "--source", path, "--out", tmp_path / "o")
    assert code == 2 and not (tmp_path / "o").exists()
    one_line_error(err, "m.jsonl", "row 5", "message_id", "repeats row 1")
    trees, report = read_rows(path, skip_bad=True)
    assert len(trees) == 1 and messages(trees) == 4 and report.dropped == {"duplicate_id": 4}
    assert report.skipped_records == 4


def test_a_self_parent_row_and_a_parent_cycle_are_errors_or_counted_with_their_branch(tmp_path, capsys):
    base = conversation("t1")
    selfish = table(tmp_path / "self.jsonl", base + [row("s", "s", "t1", "prompter"), row("s2", "s", "t1", "assistant")])
    code, err = cli(capsys, "data", "prepare", "--source", selfish, "--out", tmp_path / "o")
    assert code == 2
    one_line_error(err, "self.jsonl", "row 5", "parent_id", "own message_id")
    trees, report = read_rows(selfish, skip_bad=True)
    assert messages(trees) == 4 and report.dropped == {"self_parent": 2}
    cycle = table(tmp_path / "cycle.jsonl", base + [row("x", "y", "t1", "prompter"), row("y", "x", "t1", "assistant"),
                                                    row("z", "y", "t1", "prompter")])
    code, err = cli(capsys, "data", "prepare", "--source", cycle, "--out", tmp_path / "o")
    assert code == 2
    one_line_error(err, "cycle.jsonl", "row 5", "parent cycle", "'x' -> 'y' -> 'x'")
    trees, report = read_rows(cycle, skip_bad=True)
    assert messages(trees) == 4 and report.dropped == {"cycle": 3}


def test_orphans_count_the_whole_branch_below_a_missing_parent(tmp_path, capsys):
    path = table(tmp_path / "m.jsonl", conversation("t1") + [row("o", "gone", "t1", "prompter"),
                                                              row("o2", "o", "t1", "assistant")])
    trees, report = read_rows(path)  # a parent filtered out of the table: counted, not an error
    assert messages(trees) == 4 and report.dropped == {"orphan": 2} and report.skipped_records == 0
    assert cli(capsys, "data", "prepare", "--source", path, "--out", tmp_path / "o")[0] == 0
    manifest = json.loads((tmp_path / "o" / "manifest.json").read_text())
    assert manifest["sources"][0]["dropped_records"] == {"orphan": 2}


def test_a_parent_in_another_tree_is_an_error(tmp_path, capsys):
    path = table(tmp_path / "m.jsonl", conversation("t1") + [row("b", "p2", "t2", "assistant")])
    code, err = cli(capsys, "data", "prepare", "--source", path, "--out", tmp_path / "o")
    assert code == 2
    one_line_error(err, "row 5", "in tree 't1'")


def test_a_prompter_reply_to_a_prompter_is_an_error_naming_the_message(tmp_path, capsys):
    tree = {"message_tree_id": "t1", "prompt": msg("p1", "prompter", "Hi there, how do I boil an egg?", [
        msg("a1", "assistant", "Boil it.", [msg("p2", "prompter", "And then?", [
            msg("p3", "prompter", "Hello?", [msg("a3", "assistant", "Peel it.", [msg("p4", "prompter", "Thanks")])])])])])}
    good = {"message_tree_id": "t2", "prompt": msg("q1", "prompter", "What is rain?", [msg("b1", "assistant", "Water.")])}
    path = write_trees(tmp_path / "x.trees.jsonl", [tree, good])
    code, err = cli(capsys, "data", "prepare", "--source", path, "--out", tmp_path / "o")
    assert code == 2
    one_line_error(err, "x.trees.jsonl:1", "prompt.replies[0].replies[0].replies[0].role", "prompter reply")
    code, _out = prepare_output(capsys, path, tmp_path / "o", "--skip-bad")
    assert code == 0
    assert "record:malformed 1" in _out
    src = json.loads((tmp_path / "o" / "manifest.json").read_text())["sources"][0]
    assert src["skipped_records"] == 1 and src["dropped_records"] == {"malformed": 1} and src["trees"] == 1
    flat = table(tmp_path / "m.jsonl", conversation("t1") + [row("p3", "p2", "t1", "prompter"),
                                                              row("a3", "p3", "t1", "assistant")])
    code, err = cli(capsys, "data", "prepare", "--source", flat, "--out", tmp_path / "o2")
    assert code == 2
    one_line_error(err, "row 5", "user reply to a user message (row 3)")  # roles are read as user/assistant
    trees, report = read_rows(flat, skip_bad=True)
    assert messages(trees) == 4 and report.dropped == {"same_role_reply": 2}


def test_threads_count_every_message_of_a_pruned_branch():
    a = [Message(f"m{i}", "user" if i % 2 == 0 else "assistant", f"turn {i}") for i in range(6)]
    a[0].children = [a[1]]
    a[1].children = [a[2], a[4]]
    a[4].deleted = True
    a[4].children = [a[5]]
    a[2].children = [a[3]]
    same = Message("s", "user", "again")  # a same-role reply in a tree built outside the readers
    same.children = [Message("s2", "assistant", "x")]
    a[2].children.append(same)
    dropped = Counter()
    paths = threads(Tree("t", "test", a[0]), PrepareConfig(), dropped)
    assert [[m.id for m in p] for p in paths] == [["m0", "m1", "m2", "m3"]]
    assert dropped == {"deleted": 2, "same_role_reply": 2}


def _records(n):
    return [(f"r{i}", [("human", f"question {i}"), ("gpt", f"answer {i}")]) for i in range(1, n + 1)]


def test_sharegpt_record_4_of_10_missing_a_quote_is_an_error_naming_record_4(tmp_path, capsys):
    path = tmp_path / "s.json"
    sharegpt_file(path, _records(10))
    text = path.read_text()
    path.write_text(text.replace('"answer 4"', '"answer 4'))
    code, err = cli(capsys, "data", "prepare", "--source", path, "--out", tmp_path / "o")
    assert code == 2 and not (tmp_path / "o").exists()
    one_line_error(err, "s.json", "record 4")
    report = ReadReport()
    trees = list(read_sharegpt(path, report, skip_bad=True))
    assert [t.tree_id for t in trees] == [f"r{i}" for i in range(1, 11) if i != 4]
    assert report.dropped == {"malformed": 1} and report.dropped_bytes == 0


def test_sharegpt_cut_off_tail_is_tolerated_and_counted_in_manifest_and_summary(tmp_path, capsys):
    path = tmp_path / "s.json"
    sharegpt_file(path, _records(10))
    text = path.read_text()
    path.write_text(text[: text.index('"answer 10"')])  # cut inside the last record
    code, out = prepare_output(capsys, path, tmp_path / "o")
    assert code == 0
    src = json.loads((tmp_path / "o" / "manifest.json").read_text())["sources"][0]
    assert src["dropped_records"] == {"cut_off_tail": 1} and src["dropped_bytes"] > 0
    assert "record:cut_off_tail 1" in out
    report = ReadReport()
    assert len(list(read_sharegpt(path, report))) == 9 and report.skipped_records == 0


def test_a_broken_sharegpt_record_is_skipped_to_the_next_whole_one_under_skip_bad(tmp_path):
    path = tmp_path / "s.json"
    sharegpt_file(path, _records(3))
    path.write_text(path.read_text().replace('"r2", "conversations": [', '"r2", "conversations": ]'))
    with pytest.raises(UserError, match="record 2"):
        list(read_sharegpt(path, ReadReport(), skip_bad=False))
    report = ReadReport()
    assert [t.tree_id for t in read_sharegpt(path, report, skip_bad=True)] == ["r1", "r3"]
    assert report.dropped == {"malformed": 1}
