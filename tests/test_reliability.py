"""Issue 17: never destroy a user's files, never drop data silently, never answer bad input with a traceback.
Fast tests: no model is loaded (each failing case stops before one would be)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import msg, write_trees

from workflows.cli import build_parser, main, run

SMOKE_SCENARIOS = Path(__file__).resolve().parents[1] / "scenarios" / "smoke"
TREE = {"message_tree_id": "t1", "prompt": msg("p1", "prompter", "How do I boil an egg?", [
    msg("a1", "assistant", "Boil it for 8 minutes.", [msg("p2", "prompter", "And a soft one?")])])}


pytestmark = pytest.mark.usefixtures("keep_thread_settings")


def cli(capsys, *argv):
    """Run the CLI in-process; return (exit code, stderr lines)."""
    code = main([str(a) for a in argv])
    err = capsys.readouterr().err
    return code, [line for line in err.splitlines() if line.strip()]


def one_line_error(err, *needles):
    assert len(err) == 1 and err[0].startswith("error: ") and "unexpected" not in err[0], err
    for needle in needles:
        assert str(needle) in err[0], err
    return err[0]


@pytest.fixture
def source(tmp_path):
    return write_trees(tmp_path / "x.trees.jsonl", [TREE])


# 1. --out never deletes what it did not write


def test_prepare_refuses_a_directory_of_user_files_and_keeps_them(tmp_path, capsys, source):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "thesis.tex").write_text("years of work")
    code, err = cli(capsys, "data", "prepare", "--source", source, "--out", out)
    assert code == 2
    one_line_error(err, out, "--overwrite")
    assert (out / "thesis.tex").read_text() == "years of work"
    assert not list(tmp_path.glob(".mine.partial-*"))


def test_prepare_out_dot_and_project_root_are_refused(tmp_path, capsys, source, monkeypatch):
    project = tmp_path / "project"
    (project / ".git").mkdir(parents=True)
    (project / "notes.txt").write_text("keep")
    monkeypatch.chdir(project)
    for out, extra in ((".", []), (".", ["--overwrite"]), (str(project), ["--overwrite"])):
        code, err = cli(capsys, "data", "prepare", "--source", source, "--out", out, *extra)
        assert code == 2
        one_line_error(err)
    monkeypatch.chdir(tmp_path)
    code, err = cli(capsys, "data", "prepare", "--source", source, "--out", project, "--overwrite")
    assert code == 2 and ".git" in one_line_error(err, project)
    assert (project / "notes.txt").read_text() == "keep" and (project / ".git").is_dir()


def test_prepare_replaces_its_own_output_an_empty_dir_or_with_overwrite(tmp_path, capsys, source):
    out = tmp_path / "data"
    out.mkdir()  # empty
    assert cli(capsys, "data", "prepare", "--source", source, "--out", out)[0] == 0
    first = json.loads((out / "manifest.json").read_text())
    assert first["kind"] == "userlm-prepared-data"
    assert cli(capsys, "data", "prepare", "--source", source, "--out", out, "--seed", "1")[0] == 0
    assert json.loads((out / "manifest.json").read_text())["config"]["seed"] == 1
    other = tmp_path / "other"
    other.mkdir()
    (other / "old.txt").write_text("x")
    assert cli(capsys, "data", "prepare", "--source", source, "--out", other, "--overwrite")[0] == 0
    assert not (other / "old.txt").exists() and (other / "manifest.json").exists()


def test_leftover_partial_directories_of_killed_runs_are_cleaned(tmp_path, capsys, source):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    leftover = tmp_path / f".data.partial-{dead.pid}-abc123"
    leftover.mkdir()
    (leftover / "train.jsonl").write_text("{}\n")
    legacy = tmp_path / ".data.partial-k2j3h4"  # v0.1 naming (no process id)
    legacy.mkdir()
    alive = tmp_path / f".data.partial-{os.getpid()}-zzz"  # a live writer's scratch is left alone
    alive.mkdir()
    assert cli(capsys, "data", "prepare", "--source", source, "--out", tmp_path / "data")[0] == 0
    assert not leftover.exists() and not legacy.exists() and alive.exists()


def test_simulate_refuses_an_unrelated_run_json_and_a_foreign_directory(tmp_path, capsys):
    out = tmp_path / "r"
    out.mkdir()
    (out / "run.json").write_text('{"my": "own file"}\n')
    code, err = cli(capsys, "simulate", "--scenarios", SMOKE_SCENARIOS, "--out", out, "--samples", 1)
    assert code == 2
    one_line_error(err, "run.json", "--overwrite")
    assert json.loads((out / "run.json").read_text()) == {"my": "own file"}
    (out / "run.json").unlink()
    (out / "paper.pdf").write_text("keep")
    code, err = cli(capsys, "simulate", "--scenarios", SMOKE_SCENARIOS, "--out", out, "--samples", 1)
    assert code == 2 and (out / "paper.pdf").read_text() == "keep"


def test_train_classifier_refuses_before_training(tmp_path, capsys):
    out = tmp_path / "clf"
    out.mkdir()
    (out / "keep.txt").write_text("keep")
    code, err = cli(capsys, "evaluate", "train-classifier", "--set", f"out={out}")
    assert code == 2
    one_line_error(err, out)
    assert (out / "keep.txt").exists()


# 5. exit codes: 0 success, 2 any error, compare 1 for a regression only


def test_any_exception_is_exit_2_and_one_line(capsys):
    def boom(args):
        raise ValueError("something\nwent wrong")

    parser = build_parser()
    parser._subparsers._group_actions[0].choices["report"].set_defaults(func=boom)
    assert run(["report", "x"], parser) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and "ValueError" in err[0] and "Traceback" not in err[0]


def test_compare_adapter_without_manifest_is_an_error_not_a_regression(tmp_path, capsys):
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text("{}")
    code, err = cli(capsys, "compare", adapter, adapter, "--scenarios", SMOKE_SCENARIOS, "--out", tmp_path / "c")
    assert code == 2
    one_line_error(err, "manifest.json")


def test_corrupt_manifest_is_exit_2_naming_file_and_line(tmp_path, capsys, source):
    out = tmp_path / "d"
    assert cli(capsys, "data", "prepare", "--source", source, "--out", out)[0] == 0
    (out / "manifest.json").write_text('{\n "counts": {},\n "content_hash": \n')
    code, err = cli(capsys, "data", "stats", out)
    assert code == 2
    one_line_error(err, "manifest.json:4")
    (out / "manifest.json").write_text('{"kind": "userlm-prepared-data"}')
    code, err = cli(capsys, "data", "stats", out)
    assert code == 2 and "'counts'" in one_line_error(err, "manifest.json")


def test_exit_codes_in_a_real_process(tmp_path, source):
    run_cli = lambda *a: subprocess.run([sys.executable, "-m", "workflows.cli", *map(str, a)],
                                        capture_output=True, text=True, check=False)
    assert run_cli("data", "prepare", "--source", source, "--out", tmp_path / "ok").returncode == 0
    r = run_cli("data", "stats", tmp_path / "nothing")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr


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


# 4. command-line values parsed by their declared type, not as YAML


def test_option_values_are_not_yaml(tmp_path, capsys, source, monkeypatch):
    from trainer.train import TrainConfig
    from userlm.config import load_config

    monkeypatch.chdir(tmp_path)
    assert cli(capsys, "data", "prepare", "--source", source, "--out", "runs/run #1")[0] == 0
    assert (tmp_path / "runs" / "run #1" / "manifest.json").exists() and not (tmp_path / "runs" / "run").exists()
    assert cli(capsys, "data", "prepare", "--source", source, "--set", "out=sets/run #2", "--set", "greeting=no")[0] == 0
    manifest = json.loads((tmp_path / "sets" / "run #2" / "manifest.json").read_text())
    assert manifest["config"]["greeting"] == "no"  # a string field stays a string (YAML would say False)
    foreign = tmp_path / "r #1"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("x")
    code, err = cli(capsys, "simulate", "--scenarios", SMOKE_SCENARIOS, "--out", foreign)
    assert code == 2 and "r #1:" in one_line_error(err)
    cfg = load_config(TrainConfig, None, ["learning_rate=5e-4", "max_train_examples=null", "gradient_checkpointing=yes"])
    assert (cfg.learning_rate, cfg.max_train_examples, cfg.gradient_checkpointing) == (5e-4, None, True)
    (tmp_path / "c.yaml").write_text("learning_rate: 5e-4\n")
    assert load_config(TrainConfig, tmp_path / "c.yaml").learning_rate == 5e-4
    code, err = cli(capsys, "train", "--set", "learning_rate=fast")
    assert code == 2
    one_line_error(err, "learning_rate", "fast")


# 6. torch threads from the cores available to this process, per process of a launch, overridable


def _threads_in_subprocess(env_extra, *argv):
    env = {k: v for k, v in os.environ.items() if k not in (
        "OMP_NUM_THREADS", "MKL_NUM_THREADS", "USERLM_THREADS", "LOCAL_WORLD_SIZE", "WORLD_SIZE")}
    code = ("import sys; from userlm.threads import configure_threads; "
            "n = configure_threads(int(sys.argv[1]) if len(sys.argv) > 1 else None); "
            "import torch; print(n, torch.get_num_threads())")
    r = subprocess.run([sys.executable, "-c", code, *argv], env={**env, **env_extra}, capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stderr
    return tuple(map(int, r.stdout.split()))


def test_thread_count_follows_available_cores_launch_and_override(capsys):
    from userlm.threads import available_cores

    cores = available_cores()
    assert cores <= len(os.sched_getaffinity(0))
    assert _threads_in_subprocess({}) == (cores, cores)
    assert _threads_in_subprocess({"LOCAL_WORLD_SIZE": "2"}) == (max(1, cores // 2),) * 2
    assert _threads_in_subprocess({"LOCAL_WORLD_SIZE": "2", "OMP_NUM_THREADS": "1"}) == (max(1, cores // 2),) * 2
    assert _threads_in_subprocess({"USERLM_THREADS": "1"}) == (1, 1)
    assert _threads_in_subprocess({"USERLM_THREADS": "2", "OMP_NUM_THREADS": "2"}, "1") == (1, 1)  # --threads wins
    code, err = cli(capsys, "data", "prepare", "--threads", "0", "--source", "x")
    assert code == 2
    one_line_error(err, "threads")


def test_prepare_never_replaces_another_kind_of_userlm_output(tmp_path, capsys, source):
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "manifest.json").write_text('{"kind": "userlm-adapter"}')
    (adapter / "adapter_model.safetensors").write_text("hours of training")
    code, err = cli(capsys, "data", "prepare", "--source", source, "--out", adapter)
    assert code == 2
    one_line_error(err, adapter, "userlm-adapter")
    assert (adapter / "adapter_model.safetensors").exists()


def test_report_compare_and_score_texts_never_overwrite_a_users_file(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    for name, argv in (("report.md", ["report", tmp_path / "run", "--out", out]),
                       ("compare.json", ["compare", "a", "b", "--scenarios", SMOKE_SCENARIOS, "--out", out])):
        (out / name).write_text("my notes")
        code, err = cli(capsys, *argv)
        assert code == 2
        one_line_error(err, name, "--overwrite")
        assert (out / name).read_text() == "my notes"
    texts = tmp_path / "t.jsonl"
    texts.write_text('{"text": "hi"}\n')
    (tmp_path / "t.scored.jsonl").write_text("mine\n")
    code, err = cli(capsys, "evaluate", "score-texts", texts)
    assert code == 2 and (tmp_path / "t.scored.jsonl").read_text() == "mine\n"
    one_line_error(err, "t.scored.jsonl")
