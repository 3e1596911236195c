"""Issue 17, rules 2 and 3: never drop data silently, never answer bad input with a traceback (the other rules
are test_reliability.py). Fast tests: no model is loaded (each failing case stops before one would be)."""

import json

import pytest
from conftest import SMOKE_SCENARIOS, TREE, cli, one_line_error, write_trees

pytestmark = pytest.mark.usefixtures("keep_thread_settings")


# 2. no silent drops


def _sharegpt(records):
    return json.dumps([{"id": f"c{i}", "conversations": [{"from": "human", "value": t},
                                                         {"from": "gpt", "value": "ok"}]}
                       for i, t in enumerate(records)], indent=1)


def test_sharegpt_malformed_middle_record_is_an_error_not_the_end_of_the_file(tmp_path, capsys):
    from userlm.data.sharegpt import read_sharegpt
    from userlm.data.trees import ReadReport

    text = _sharegpt(["one", "two", "three", "four"])
    bad = text.replace('"two"', '"two" oops', 1)  # invalid JSON inside record 2, records 3 and 4 follow
    path = tmp_path / "s.json"
    path.write_text(bad)
    code, err = cli(capsys, "data", "prepare", "--source", path, "--out", tmp_path / "o")
    assert code == 2 and not (tmp_path / "o").exists()
    one_line_error(err, "s.json:", "record 2")
    report = ReadReport()
    assert [t.root.text for t in read_sharegpt(path, report, skip_bad=True)] == ["one", "three", "four"]
    assert report.skipped_records == 1 and report.dropped_bytes == 0
    # wrong fields in the middle: also named, also skippable
    path.write_text(text.replace('"two"', '["two"]', 1))
    code, err = cli(capsys, "data", "prepare", "--source", path, "--out", tmp_path / "o")
    assert code == 2
    one_line_error(err, "record 2", "conversations[0].value")
    assert cli(capsys, "data", "prepare", "--source", path, "--out", tmp_path / "o", "--skip-bad")[0] == 0
    manifest = json.loads((tmp_path / "o" / "manifest.json").read_text())
    assert manifest["sources"][0]["skipped_records"] == 1 and manifest["sources"][0]["trees"] == 3


def test_sharegpt_cut_off_tail_is_tolerated_and_counted(tmp_path, capsys):
    text = _sharegpt(["one", "two", "three"])
    path = tmp_path / "cut.json"
    path.write_text(text[: text.index('"three"') + 4])
    out = tmp_path / "o"
    assert cli(capsys, "data", "prepare", "--source", path, "--out", out)[0] == 0
    src = json.loads((out / "manifest.json").read_text())["sources"][0]
    assert src["trees"] == 2 and src["dropped_bytes"] > 0 and src["skipped_records"] == 0


def test_string_false_deleted_is_named_not_a_silent_drop(tmp_path, capsys):
    tree = json.loads(json.dumps(TREE))
    tree["prompt"]["deleted"] = "false"
    src = write_trees(tmp_path / "s.trees.jsonl", [tree])
    code, err = cli(capsys, "data", "prepare", "--source", src, "--out", tmp_path / "o")
    assert code == 2
    one_line_error(err, "s.trees.jsonl:1", "prompt.deleted")


@pytest.mark.parametrize("content", ["", "[]", "[\n]\n"])
def test_empty_sources_are_errors(tmp_path, capsys, content):
    for name in ("e.json", "e.trees.jsonl", "e.jsonl"):
        if name != "e.json" and content.strip():
            continue
        path = tmp_path / name
        path.write_text(content)
        code, err = cli(capsys, "data", "prepare", "--source", path, "--out", tmp_path / "o")
        assert code == 2 and not (tmp_path / "o").exists()
        one_line_error(err, name)


def test_empty_scenario_list_and_non_positive_samples_are_errors(tmp_path, capsys):
    empty = tmp_path / "empty.yaml"
    empty.write_text("[]\n")
    code, err = cli(capsys, "simulate", "--scenarios", empty, "--out", tmp_path / "r")
    assert code == 2
    one_line_error(err, "empty.yaml")
    for samples in ("0", "-1"):
        code, err = cli(capsys, "simulate", "--scenarios", SMOKE_SCENARIOS, "--samples", samples,
                        "--out", tmp_path / "r")
        assert code == 2
        one_line_error(err, "samples")
    assert not (tmp_path / "r").exists()
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text("{}")
    (adapter / "manifest.json").write_text('{"kind": "userlm-adapter", "base_model": "embedded:smollm2-135m-instruct"}')
    code, err = cli(capsys, "compare", adapter, adapter, "--scenarios", SMOKE_SCENARIOS, "--samples", "0",
                    "--out", tmp_path / "c")
    assert code == 2
    one_line_error(err, "samples")


def _unfinished_run(run_dir):
    run_dir.mkdir()
    (run_dir / "run.json").write_text(json.dumps({
        "kind": "userlm-simulation-run", "identity": {}, "total_conversations": 8,
        "config": {"user": "prompted:embedded:smollm2-135m-instruct", "assistant": "embedded:smollm2-135m-instruct"}}))
    turn = {"role": "user", "text": "hi"}
    (run_dir / "transcripts.jsonl").write_text("".join(json.dumps(
        {"scenario_id": "s", "sample": i, "stop_reason": "max_turns", "turns": [turn]}) + "\n" for i in range(2)))
    return run_dir


def test_evaluate_and_compare_refuse_unfinished_runs(tmp_path, capsys):
    run_dir = _unfinished_run(tmp_path / "run")
    code, err = cli(capsys, "evaluate", run_dir)
    assert code == 2
    one_line_error(err, "unfinished", "2 of 8")
    assert not (run_dir / "metrics.json").exists()
    code, err = cli(capsys, "compare", run_dir, run_dir, "--scenarios", SMOKE_SCENARIOS, "--out", tmp_path / "c")
    assert code == 2
    one_line_error(err, "unfinished")


def test_mistyped_thresholds_path_is_an_error(tmp_path, capsys):
    run_dir = _unfinished_run(tmp_path / "run")
    code, err = cli(capsys, "compare", run_dir, run_dir, "--scenarios", SMOKE_SCENARIOS,
                    "--thresholds", tmp_path / "tresholds.yaml", "--out", tmp_path / "c")
    assert code == 2
    one_line_error(err, "tresholds.yaml")


# 3. tracebacks from untrusted input


@pytest.mark.parametrize("field,value", [("role", ["prompter"]), ("replies", 5), ("lang", ["en"]), ("text", 3)])
def test_wrong_json_types_name_line_and_field(tmp_path, capsys, field, value):
    tree = json.loads(json.dumps(TREE))
    tree["prompt"][field] = value
    src = write_trees(tmp_path / "t.trees.jsonl", [TREE, tree])
    code, err = cli(capsys, "data", "prepare", "--source", src, "--out", tmp_path / "o")
    assert code == 2
    one_line_error(err, "t.trees.jsonl:2", f"prompt.{field}")
    assert cli(capsys, "data", "prepare", "--source", src, "--out", tmp_path / "o", "--skip-bad")[0] == 0
    assert json.loads((tmp_path / "o" / "manifest.json").read_text())["sources"][0]["skipped_records"] == 1


def test_non_utf8_and_deep_nesting_in_data_scenarios_and_transcripts(tmp_path, capsys):
    good = json.dumps(TREE) + "\n"
    src = tmp_path / "u.trees.jsonl"
    src.write_bytes(good.encode() + b'{"prompt": "\xff\xfe"}\n' + b"[" * 3000 + b"]" * 3000 + b"\n")
    code, err = cli(capsys, "data", "prepare", "--source", src, "--out", tmp_path / "o")
    assert code == 2
    one_line_error(err, "u.trees.jsonl:2", "UTF-8")
    assert cli(capsys, "data", "prepare", "--source", src, "--out", tmp_path / "o", "--skip-bad")[0] == 0
    assert json.loads((tmp_path / "o" / "manifest.json").read_text())["sources"][0]["skipped_records"] == 2
    share = tmp_path / "s.json"
    share.write_bytes(_sharegpt(["one", "two", "three"]).replace('"two"', '"tw\udcff"').encode(
        "utf-8", "surrogateescape"))
    code, err = cli(capsys, "data", "prepare", "--source", share, "--out", tmp_path / "o2")
    assert code == 2
    one_line_error(err, "s.json:", "record 2", "UTF-8")
    scenario = tmp_path / "bad.yaml"
    scenario.write_bytes(b"id: a\ndescription: \xff\n")
    code, err = cli(capsys, "simulate", "--scenarios", scenario, "--out", tmp_path / "r")
    assert code == 2
    one_line_error(err, "bad.yaml:2", "UTF-8")
    scenario.write_text("id: a\ndescription: b\ntags: " + "[" * 3000 + "]" * 3000 + "\n")
    code, err = cli(capsys, "simulate", "--scenarios", scenario, "--out", tmp_path / "r")
    assert code == 2
    one_line_error(err, "bad.yaml")
    run_dir = _unfinished_run(tmp_path / "run")
    with open(run_dir / "transcripts.jsonl", "ab") as f:
        f.write(b'{"scenario_id": "s", "sample": 9, "stop_reason": "x", "turns": [{"role": "user", "text": "\xff"}]}\n')
    code, err = cli(capsys, "evaluate", run_dir)
    assert code == 2
    one_line_error(err, "transcripts.jsonl:3", "UTF-8")


def test_truncated_and_fake_gzip(tmp_path, capsys):
    import gzip

    whole = gzip.compress((json.dumps(TREE) + "\n").encode() * 50)
    gz = tmp_path / "t.trees.jsonl.gz"
    gz.write_bytes(whole[: len(whole) // 2])
    code, err = cli(capsys, "data", "prepare", "--source", gz, "--out", tmp_path / "o")
    assert code == 2
    one_line_error(err, "t.trees.jsonl.gz", "gzip")
    gz.write_bytes((json.dumps(TREE) + "\n").encode())  # plain text named .gz
    code, err = cli(capsys, "data", "prepare", "--source", gz, "--out", tmp_path / "o")
    assert code == 2
    one_line_error(err, "t.trees.jsonl.gz:1", "gzip")


def test_bad_line_in_flat_jsonl_table(tmp_path, capsys):
    rows = [{"message_id": "p1", "parent_id": None, "message_tree_id": "t1", "role": "prompter", "text": "Hi"},
            {"message_id": "a1", "parent_id": "p1", "message_tree_id": "t1", "role": "assistant", "text": "Hello"}]
    flat = tmp_path / "m.jsonl"
    flat.write_text(json.dumps(rows[0]) + "\n{oops\n" + json.dumps(rows[1]) + "\n")
    code, err = cli(capsys, "data", "prepare", "--source", flat, "--out", tmp_path / "o")
    assert code == 2
    one_line_error(err, "m.jsonl:2", "invalid JSON")
    assert cli(capsys, "data", "prepare", "--source", flat, "--out", tmp_path / "o", "--skip-bad")[0] == 0


def test_corrupt_run_and_metrics_json(tmp_path, capsys):
    run_dir = _unfinished_run(tmp_path / "run")
    (run_dir / "run.json").write_text('{"config": ')
    code, err = cli(capsys, "evaluate", run_dir)
    assert code == 2
    one_line_error(err, "run.json:1", "not valid JSON")
    (run_dir / "run.json").write_text('{"finished_at": "x"}')
    code, err = cli(capsys, "evaluate", run_dir)
    assert code == 2
    one_line_error(err, "run.json", "'config'")
    (run_dir / "metrics.json").write_text('{"label": "x", "metrics": [1]}')
    code, err = cli(capsys, "report", run_dir, "--out", tmp_path / "rep")
    assert code == 2
    one_line_error(err, "metrics.json", "'metrics'")


def test_bad_scheduler_fails_before_the_model_loads(tmp_path, capsys, source):
    data = tmp_path / "data"
    assert cli(capsys, "data", "prepare", "--source", source, "--out", data)[0] == 0
    code, err = cli(capsys, "train", "--set", f"data_dir={data}", "--set", f"output_dir={tmp_path / 'a'}",
                    "--set", "lr_scheduler_type=bogus")
    assert code == 2
    one_line_error(err, "lr_scheduler_type", "bogus")
    assert not (tmp_path / "a").exists()
